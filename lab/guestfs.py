"""File transfer to and from a guest's filesystem, built on the node's REPL (``exec``).

Modelled on mpremote's ``transport.py``: every operation is a few lines of guest Python run
with ``node.exec``, and an ``OSError`` raised on the guest becomes one :class:`GuestFSError`
here (:func:`_run`), naming the node, the path and the errno::

    from lab import guestfs
    guestfs.put(node, b"print('hi')\\n", "/main.py")
    guestfs.get(node, "/main.py")          # b"print('hi')\\n"
    guestfs.ls(node, "/")                  # [Entry("main.py", False, 12), ...]
    guestfs.mkdir(node, "/lib"); guestfs.rm(node, "/main.py"); guestfs.rmdir(node, "/lib")

Used by ``mplab cp``, ``mplab deploy`` and scenario ``files:``. It takes anything with
``exec(code, timeout=)`` and a ``name`` (a :class:`lab.Node`).

Writes take one of two channels. Through the console, the bytes go in the code of execs,
192 per exec: a few KiB/s, since the emulated UART takes one byte per turn of QEMU's main
loop. A node that can also ``stage`` files (:class:`Stager`: a Node puts them into its
container) has a faster one: the guest reads the staged file by Arm semihosting, with the
firmware's ``mplab.host_open`` / ``host_readinto``, at the speed of its filesystem. A
firmware without the ``mplab`` module (a user's own build) gets the console channel.
"""

from __future__ import annotations

import ast
import errno as errno_mod
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .console import GuestError
from .errors import LabError

CHUNK = 192  # bytes of file per exec when writing; its repr fits one raw-paste window or two
READ_CHUNK = 512  # bytes per exec when reading
_F = "_mplab_f"  # the guest global that holds an open file across execs


STAGE_MIN = 1024  # bytes in all below which the console is quicker than staging a file
_NO_HOST = "mplab-no-host-channel"


class _Exec(Protocol):
    name: str

    def exec(self, code: str, timeout: float = ...) -> str: ...


@runtime_checkable
class Stager(Protocol):
    """A node that can put files where its guest's semihosting calls see them."""

    def stage(self, files: Mapping[str, bytes]) -> str:
        """Store ``files`` (name → bytes); return the directory the guest sees them in."""
        ...


# Copy a staged file onto the guest's filesystem; the marker when the channel is missing.
_HOST_COPY = f"""
def _mplab_cp(src, dst):
    try:
        import mplab
        h = mplab.host_open(src)
    except (ImportError, OSError):
        print({_NO_HOST!r})
        return
    try:
        b = bytearray(4096)
        m = memoryview(b)
        with open(dst, 'wb') as f:
            while True:
                k = mplab.host_readinto(h, b)
                if not k:
                    break
                f.write(m[:k])
    finally:
        mplab.host_close(h)
"""


class GuestFSError(LabError):
    """A filesystem operation failed on the guest: ``lab1/node1: /x.py: get failed: ENOENT (errno 2)``."""

    def __init__(self, node: str, path: str, op: str, errno: int | None, detail: str) -> None:
        self.node, self.path, self.op, self.errno = node, path, op, errno
        super().__init__(f"{node}: {path}: {op} failed: {detail}")


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int


def errno_name(n: int | None) -> str:
    """``2`` -> ``"ENOENT"`` (MicroPython uses the Linux numbers for these)."""
    return errno_mod.errorcode.get(n, f"errno {n}") if n is not None else "?"


def _run(node: _Exec, path: str, op: str, code: str, timeout: float = 10.0) -> str:
    """Run ``code`` on the guest; its OSError (or any exception) becomes a GuestFSError."""
    try:
        return node.exec(code, timeout=timeout)
    except GuestError as e:
        if e.exc_type == "OSError" and e.errno is not None:
            detail = f"{errno_name(e.errno)} (errno {e.errno})"
        else:
            detail = (e.traceback.splitlines() or [str(e)])[-1]
        raise GuestFSError(_who(node), path, op, e.errno, detail) from None


def _who(node: _Exec) -> str:
    lab = getattr(getattr(node, "lab", None), "name", "")
    return f"{lab}/{node.name}" if lab else node.name


def _value(node: _Exec, path: str, op: str, expr: str, setup: str = "") -> Any:
    out = _run(node, path, op, f"{setup}\nprint(repr({expr}))" if setup else f"print(repr({expr}))")
    return ast.literal_eval(out.strip())


def put(node: _Exec, data: bytes, path: str, chunk: int = CHUNK) -> int:
    """Write ``data`` to ``path`` on the guest (created or truncated); returns the byte count."""
    put_many(node, [(path, data)], chunk=chunk)
    return len(data)


def put_many(
    node: _Exec,
    files: Sequence[tuple[str, bytes]],
    chunk: int = CHUNK,
    on_file: Callable[[str, int], None] | None = None,
) -> str:
    """Write each ``(path, data)`` on the guest; return the channel used, "host" or "console".

    ``on_file(path, nbytes)`` is called after each file is written.
    """
    channel = "console"
    pending = list(files)
    if isinstance(node, Stager) and sum(len(d) for _, d in pending) >= STAGE_MIN:
        names = [hashlib.sha256(d).hexdigest() for _, d in pending]  # staged under their hash
        try:
            where = node.stage(dict(zip(names, (d for _, d in pending), strict=True)))
        except LabError:
            where = ""  # the console channel still works
        while where and pending:
            path, data = pending[0]
            src = f"{where}/{names.pop(0)}"
            out = _run(node, path, "put", f"{_HOST_COPY}\n_mplab_cp({src!r}, {path!r})\ndel _mplab_cp", timeout=60.0)
            if _NO_HOST in out:
                break
            channel = "host"
            pending.pop(0)
            if on_file is not None:
                on_file(path, len(data))
    for path, data in pending:
        _put_by_console(node, data, path, chunk)
        if on_file is not None:
            on_file(path, len(data))
    return channel


def _put_by_console(node: _Exec, data: bytes, path: str, chunk: int) -> None:
    _run(node, path, "put", f"{_F} = open({path!r}, 'wb')")
    try:
        for i in range(0, len(data), chunk):
            _run(node, path, "put", f"{_F}.write({data[i : i + chunk]!r})")
    finally:
        _run(node, path, "put", f"{_F}.close()\ndel {_F}")


def get(node: _Exec, path: str, chunk: int = READ_CHUNK) -> bytes:
    """The contents of ``path`` on the guest."""
    _run(node, path, "get", f"{_F} = open({path!r}, 'rb')")
    out = bytearray()
    try:
        while True:
            b = _value(node, path, "get", f"{_F}.read({chunk})")
            if not b:
                return bytes(out)
            out += b
    finally:
        _run(node, path, "get", f"{_F}.close()\ndel {_F}")


def stat(node: _Exec, path: str) -> Entry:
    """``path``'s kind and size (GuestFSError with ENOENT if it does not exist)."""
    st = _value(node, path, "stat", f"__import__('os').stat({path!r})")
    return Entry(path.rstrip("/").rsplit("/", 1)[-1] or "/", bool(st[0] & 0x4000), int(st[6]))


def exists(node: _Exec, path: str) -> bool:
    try:
        stat(node, path)
    except GuestFSError as e:
        if e.errno == errno_mod.ENOENT:
            return False
        raise
    return True


def ls(node: _Exec, path: str = "/") -> list[Entry]:
    """The entries of directory ``path``, sorted by name."""
    base = path.rstrip("/") or ""
    rows = _value(
        node,
        path,
        "ls",
        f"[(e[0], e[1], __import__('os').stat({base!r} + '/' + e[0])[6]) for e in __import__('os').ilistdir({path!r})]",
    )
    # by name: Entry has no ordering, so sorting the entries themselves failed for 2 or more
    return sorted((Entry(n, bool(t & 0x4000), int(s)) for n, t, s in rows), key=lambda e: e.name)


def mkdir(node: _Exec, path: str) -> None:
    _run(node, path, "mkdir", f"__import__('os').mkdir({path!r})")


def rm(node: _Exec, path: str) -> None:
    """Remove the file ``path``."""
    _run(node, path, "rm", f"__import__('os').remove({path!r})")


def rmdir(node: _Exec, path: str) -> None:
    """Remove the empty directory ``path``."""
    _run(node, path, "rmdir", f"__import__('os').rmdir({path!r})")
