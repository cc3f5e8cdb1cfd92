"""Putting an application and its libraries onto a node, as ``mpremote`` and ``mip`` do.

``deploy(node, "app/")`` copies a project tree (``boot.py``, ``main.py``, ``lib/``...) to the
node's filesystem, recursively and only where a file changed, then soft-resets the board so
that ``boot.py`` and ``main.py`` run. ``install(node, packages)`` puts packages
(lab/packages.py) into ``/lib``, the same way. Both compare hashes: the guest hashes its copy
of every file (``hashlib.sha256``, one exec for the whole tree) and only files whose hash
differs from the host's are sent, with :func:`lab.guestfs.put`; each one is read back by hash
after it is written::

    rep = deploy(node, Path("myapp"), progress=print)
    rep.bytes_sent, rep.sent, rep.unchanged, rep.console   # console: what the guest printed

It takes anything with ``exec``, ``name`` and ``console`` (a :class:`lab.Node`).
"""

from __future__ import annotations

import ast
import hashlib
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import guestfs
from .console import CTRL_D, Console, ConsoleTimeout
from .errors import ConfigError, LabError
from .packages import Package

Progress = Callable[[str], None]
SKIP = {"__pycache__", ".git", ".hg", ".svn", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
WRITE_CHUNK = 1024  # bytes per exec: raw-paste flow control makes a larger literal safe; measured best


class _Node(Protocol):
    name: str

    def exec(self, code: str, timeout: float = ...) -> str: ...

    @property
    def console(self) -> Console: ...


class DeployError(LabError):
    """A deploy or install failed on the guest side (a file in the way, a bad read-back)."""


@dataclass
class Copied:
    path: str  # on the guest
    size: int
    sent: bool  # False: the guest's copy had the same hash


@dataclass
class Report:
    """What a deploy or install did: files sent and left alone, bytes sent, the reset's output."""

    node: str
    files: list[Copied] = field(default_factory=list)
    dirs_made: list[str] = field(default_factory=list)
    reset: bool = False
    console: str = ""  # the guest's output after the soft reset (main.py's first lines)
    packages: list[str] = field(default_factory=list)  # name==version of each package installed
    channel: str = ""  # how the files went: "host" (staged, semihosting) or "console"; "" = none sent

    @property
    def bytes_sent(self) -> int:
        return sum(f.size for f in self.files if f.sent)

    @property
    def sent(self) -> list[str]:
        return [f.path for f in self.files if f.sent]

    @property
    def unchanged(self) -> list[str]:
        return [f.path for f in self.files if not f.sent]

    def summary(self) -> str:
        total = sum(f.size for f in self.files)
        return f"{self.node}: {len(self.sent)} file(s) sent ({self.bytes_sent} bytes" + (
            f", by {self.channel}" if self.channel else ""
        ) + "), " f"{len(self.unchanged)} unchanged, {len(self.files)} in all ({total} bytes)" + (
            ", soft reset" if self.reset else ""
        )


def _noop(_m: str) -> None:
    pass


# ---- the host's tree --------------------------------------------------------------------------
def tree(src: Path) -> list[tuple[str, Path]]:
    """The files of a project directory: (path relative to it, file), hidden ones skipped."""
    if not src.is_dir():
        raise ConfigError(f"{src}: not a directory (deploy takes a project tree with main.py, lib/, ...)")
    out = []
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if any(p in SKIP or p.startswith(".") for p in rel.parts) or f.suffix == ".pyc":
            continue
        if f.is_file():
            out.append((rel.as_posix(), f))
    return out


# ---- the guest's side -------------------------------------------------------------------------
_HASH_FN = """
import os, hashlib, binascii
def _mplab_h(p):
    try:
        st = os.stat(p)
    except OSError:
        return None
    if st[0] & 0x4000:
        return 'dir'
    h = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(b if n == 512 else b[:n])
    return binascii.hexlify(h.digest()).decode()
"""


def guest_hashes(node: _Node, paths: Sequence[str], timeout: float = 60.0) -> list[str | None]:
    """For each guest path: its sha256 (hex), ``'dir'``, or None when absent. One exec."""
    if not paths:
        return []
    code = _HASH_FN + f"print(repr([_mplab_h(p) for p in {list(paths)!r}]))\ndel _mplab_h\n"
    try:
        out = node.exec(code, timeout=timeout)
    except LabError as e:
        raise DeployError(f"{node.name}: hashing the guest's files failed: {str(e).splitlines()[0]}") from None
    return list(ast.literal_eval(out.strip()))


def sync(
    node: _Node,
    files: Sequence[tuple[str, bytes]],
    progress: Progress | None = None,
    chunk: int = WRITE_CHUNK,
) -> Report:
    """Make each guest path hold these bytes, sending only what differs; parents are made."""
    say = progress or _noop
    rep = Report(node.name)
    paths = [p for p, _ in files]
    dirs = sorted({d for p in paths for d in _parents(p)}, key=lambda d: (d.count("/"), d))
    states = guest_hashes(node, [*dirs, *paths])
    dstate, fstate = dict(zip(dirs, states[: len(dirs)], strict=True)), states[len(dirs) :]
    for d in dirs:
        if dstate[d] is None:
            guestfs.mkdir(node, d)
            rep.dirs_made.append(d)
        elif dstate[d] != "dir":
            raise DeployError(f"{node.name}: {d} is a file on the guest, but the tree has a directory there")
    todo = []
    for (path, data), have in zip(files, fstate, strict=True):
        if have == "dir":
            raise DeployError(f"{node.name}: {path} is a directory on the guest, but the tree has a file there")
        changed = have != hashlib.sha256(data).hexdigest()
        rep.files.append(Copied(path, len(data), changed))
        if changed:
            todo.append((path, data))
    total = sum(len(d) for _, d in todo)
    done = [0, 0]  # files, bytes

    def sent(path: str, n: int) -> None:
        done[0] += 1
        done[1] += n
        say(f"  [{done[0]}/{len(todo)}] {path} ({n} bytes, {done[1]}/{total})")

    rep.channel = guestfs.put_many(node, todo, chunk=chunk, on_file=sent) if todo else ""
    if todo:  # read back by hash: a short write would otherwise go unnoticed until import
        again = guest_hashes(node, [p for p, _ in todo])
        for (path, data), h in zip(todo, again, strict=True):
            if h != hashlib.sha256(data).hexdigest():
                raise DeployError(f"{node.name}: {path}: the guest's copy does not match after writing")
    return rep


def _parents(path: str) -> list[str]:
    out = []
    d = posixpath.dirname(path)
    while d not in ("", "/"):
        out.append(d)
        d = posixpath.dirname(d)
    return out


def soft_reset(node: _Node, wait: str | None = None, timeout: float = 10.0) -> str:
    """Soft-reset from the friendly REPL (Ctrl-D), so boot.py and then main.py run.

    (``machine.soft_reset()`` or Ctrl-D in the raw REPL would skip main.py: the board runs it
    only in friendly-REPL mode.) Returns what the guest printed: until the ``>>>`` prompt
    (main.py ended), the regex ``wait``, or ``timeout`` seconds (main.py still runs; the next
    exec interrupts it). The network interface survives; the REPL's ``lan`` global does not.
    """
    con = node.console
    con.friendly()
    con.send(CTRL_D)
    got: list[str] = []  # built from expect()'s before/match, not the transcript
    try:
        got.append(con.expect(r"soft reboot\r?\n", timeout=10.0))
        got.append(con.expect(wait if wait else r">>> $", timeout=timeout))
        got.insert(1, con.before)
    except ConsoleTimeout as e:
        got.append(e.tail)
        if wait:
            text = "".join(got)[-300:]
            msg = f"{node.name}: after the soft reset, no {wait!r} within {timeout:g}s; got {text!r}"
            raise DeployError(msg) from None
    return "".join(got).replace("\r\n", "\n").replace("\x04", "")


# ---- the two operations -----------------------------------------------------------------------
def deploy(
    node: _Node,
    src: Path | str,
    dest: str = "/",
    reset: bool = True,
    progress: Progress | None = None,
    wait: str | None = None,
    follow: float = 5.0,
) -> Report:
    """Copy the project tree ``src`` to ``dest`` on the node (changed files only), then
    soft-reset so main.py runs (``reset=False``: do not). ``wait``: a regex main.py prints."""
    say = progress or _noop
    src = Path(src)
    items = tree(src)
    if not items:
        raise ConfigError(f"{src}: no files to deploy")
    base = "/" + dest.strip("/") if dest.strip("/") else ""
    say(f"{node.name}: deploy {src} -> {base or '/'} ({len(items)} file(s))")
    rep = sync(node, [(f"{base}/{rel}", f.read_bytes()) for rel, f in items], say)
    if reset:
        say(f"{node.name}: soft reset")
        rep.console = soft_reset(node, wait, follow)
        rep.reset = True
    return rep


def install(
    node: _Node,
    packages: Iterable[Package],
    target: str = "/lib",
    progress: Progress | None = None,
) -> Report:
    """Install packages' files under ``target`` (``/lib``, on the board's sys.path)."""
    say = progress or _noop
    pkgs = list(packages)
    base = "/" + target.strip("/")
    files: dict[str, bytes] = {}
    for p in pkgs:
        say(f"{node.name}: {p.name} {p.version or '(no version)'} from {p.source} ({len(p.files)} file(s))")
        for f in p.files:
            files[f"{base}/{f.target}"] = f.data
    rep = sync(node, sorted(files.items()), say)
    rep.packages = [f"{p.name}=={p.version}" if p.version else p.name for p in pkgs]
    return rep


def describe(rep: Report) -> dict[str, Any]:
    """A report as plain data (for a scenario bundle)."""
    return {
        "node": rep.node,
        "bytes_sent": rep.bytes_sent,
        "sent": rep.sent,
        "unchanged": rep.unchanged,
        "reset": rep.reset,
        "packages": rep.packages,
        "channel": rep.channel,
    }
