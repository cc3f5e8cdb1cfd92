"""Upstream MicroPython's own tests on a lab node, with upstream's ``tests/run-tests.py``.

The tests come from the unpacked source of the node's MicroPython version
(``firmware/build/src/micropython-<version>/tests``) and run there unchanged: run-tests.py
drives the node's serial console through ``tools/pyboard.py`` with the device string
``exec:socat - TCP:<container ip>:5555``. The tree is only read (results go to ``out_dir``).

::

    from lab.upstream import run, load_skips
    result = run(node, skips=load_skips(path), out_dir=Path("artifacts/upstream"))
    result.outcomes["extmod/asyncio_basic.py"].status     # "pass" | "fail" | "skip" | "error"

QEMU's chardev takes one client at a time: while run-tests.py holds the console, the node's
``Console`` is closed; afterwards it is reconnected and the node's network bring-up redone
(run-tests.py soft-resets the guest before every test, which clears ``lan``).
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import guestfs
from .console import ConsoleError
from .errors import ConfigError, LabError
from .lab import Node

# The suites, as globs relative to upstream's tests/ directory (issue 11).
SUITES: dict[str, tuple[str, ...]] = {
    "asyncio": ("extmod/asyncio_*.py",),
    "ssl": ("extmod/ssl_*.py",),
    "tls": ("extmod/tls_*.py",),
    "select": ("extmod/select_*.py",),
    "socket": ("extmod/socket_*.py",),
    "net_hosted": ("net_hosted/*.py",),
}
# The reasons a skip-file entry may give (tests/upstream/skip.yml explains them).
SKIP_BECAUSE = {
    "internet": "needs the internet",
    "upstream-lwip": "upstream skips it on lwIP ports",
}
# Where the guest's unittest stand-in goes: sys.path is ['', '.frozen'] and the cwd is "/".
GUEST_UNITTEST = "/unittest.py"
RUN_TIMEOUT = 900.0  # the whole run-tests.py: about 30 s on an idle node; others load the host
IDLE_TIMEOUT = 180.0  # no line from run-tests.py for this long: it hangs (pyboard.py has no timeout)

_LINE_RE = re.compile(r"^(pass|FAIL|skip|lrge) +(\S+\.py)\b")
_TESTERROR_RE = re.compile(r"^error: test (\S+\.py) requires (\S+)")

Progress = Callable[[str], None]


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Skip:
    """One entry of the skip file."""

    test: str
    because: str
    reason: str
    versions: tuple[str, ...] = ()  # empty: every version

    def applies(self, version: str) -> bool:
        return not self.versions or version in self.versions

    @property
    def text(self) -> str:
        return f"{SKIP_BECAUSE[self.because]}: {self.reason}"


@dataclass
class Outcome:
    test: str
    suite: str
    status: str  # "pass" | "fail" | "skip" | "error"
    reason: str = ""  # skip: why; error: what went wrong
    diff: str = ""  # fail (or flaky pass): unified diff of expected vs actual output
    flaky: bool = False  # passed only on the retry


@dataclass
class Result:
    version: str
    tests_dir: Path
    out_dir: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    elapsed: float = 0.0
    returncode: int | None = None
    log: str = ""
    restore_error: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "tests_dir": str(self.tests_dir),
            "elapsed_s": round(self.elapsed, 1),
            "returncode": self.returncode,
            "counts": {suite: dict(c) for suite, c in self.counts().items()},
            "outcomes": {
                t: {"suite": o.suite, "status": o.status, "flaky": o.flaky, "reason": o.reason, "diff": o.diff}
                for t, o in sorted(self.outcomes.items())
            },
            "restore_error": self.restore_error,
        }

    def counts(self) -> dict[str, Counter[str]]:
        """suite -> Counter of statuses, in SUITES order."""
        out: dict[str, Counter[str]] = {s: Counter() for s in SUITES}
        for o in self.outcomes.values():
            out.setdefault(o.suite, Counter())[o.status] += 1
        return out

    def summary(self) -> str:
        rows = [f"upstream tests, MicroPython {self.version}, {self.elapsed:.1f} s"]
        for suite, c in self.counts().items():
            rows.append(
                f"  {suite:<11} pass {c['pass']:>3}  fail {c['fail']:>3}  skip {c['skip']:>3}  error {c['error']:>3}"
            )
        flaky = sorted(t for t, o in self.outcomes.items() if o.flaky)
        if flaky:
            rows.append(f"  flaky (failed, then passed on the retry): {' '.join(flaky)}")
        return "\n".join(rows)


def tests_dir(version: str, root: Path | None = None) -> Path:
    """Upstream's tests/ for a version, as unpacked by ``make -C firmware``."""
    d = (root or repo_root()) / "firmware" / "build" / "src" / f"micropython-{version}" / "tests"
    if not (d / "run-tests.py").is_file() or not (d.parent / "tools" / "pyboard.py").is_file():
        raise ConfigError(
            f"upstream tests for MicroPython {version}: {d} is missing; "
            f"fix: make firmware MICROPYTHON_VERSION={version} (it unpacks the source)"
        )
    return d


def default_version(root: Path | None = None) -> str:
    """The version of firmware/build/firmware.elf (what the images carry), else the first buildable one."""
    from .scenario import known_versions

    r = root or repo_root()
    man = r / "firmware" / "build" / "manifest.json"
    try:
        return str(json.loads(man.read_text())["micropython"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        versions = known_versions(r)
        if not versions:
            raise ConfigError(f"no MicroPython version: {man} and firmware/sources.mk are missing") from None
        return versions[0]


def node_version(node: Node) -> str:
    """The MicroPython version the node runs, e.g. "1.25.0"."""
    v = node.eval("'%d.%d.%d' % __import__('sys').implementation.version[:3]", timeout=30.0)
    return str(v)


def suite_of(test: str) -> str | None:
    for suite, globs in SUITES.items():
        if any(fnmatch.fnmatchcase(test, g) for g in globs):
            return suite
    return None


def load_skips(path: Path) -> list[Skip]:
    """Read and check the skip file: every entry names a suite test, a known reason, a text."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"skip file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"skip file {path}: not YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"skip file {path}: expected a list of entries (- test: ..., because: ..., reason: ...)")
    skips: list[Skip] = []
    seen: set[str] = set()
    for i, e in enumerate(data, 1):
        where = f"skip file {path}, entry {i}"
        if not isinstance(e, dict) or set(e) - {"test", "because", "reason", "versions"}:
            raise ConfigError(f"{where}: expected the keys test, because, reason (and optional versions)")
        test, because, reason = e.get("test"), e.get("because"), e.get("reason")
        if not isinstance(test, str) or suite_of(test) is None:
            raise ConfigError(f"{where}: test {test!r} is not in the suites ({', '.join(SUITES)})")
        if because not in SKIP_BECAUSE:
            raise ConfigError(f"{where} ({test}): because must be one of {', '.join(SKIP_BECAUSE)}, not {because!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where} ({test}): a reason is required")
        versions = e.get("versions") or []
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigError(f'{where} ({test}): versions must be a list of strings such as ["1.25.0"]')
        if test in seen:
            raise ConfigError(f"{where}: {test} is listed twice")
        seen.add(test)
        skips.append(Skip(test, because, " ".join(reason.split()), tuple(versions)))
    return skips


def collect(tdir: Path) -> list[str]:
    """Every suite test in a tests/ tree, sorted, as run-tests.py names them ("extmod/x.py")."""
    found: set[str] = set()
    for globs in SUITES.values():
        for g in globs:
            found.update(p.relative_to(tdir).as_posix() for p in tdir.glob(g))
    return sorted(found)


def parse_output(text: str) -> dict[str, str]:
    """run-tests.py's per-test lines -> test -> "pass" | "fail" | "skip" | "lrge" (too large)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if m:
            out[m.group(2)] = {"pass": "pass", "FAIL": "fail", "skip": "skip", "lrge": "lrge"}[m.group(1)]
    return out


def failure_diff(out_dir: Path, test: str) -> str:
    """Unified diff of the .exp/.out pair run-tests.py leaves for a failed test."""
    base = out_dir / test.replace("..", "_").replace("./", "").replace("/", "_")
    exp_p, out_p = Path(f"{base}.exp"), Path(f"{base}.out")
    out = out_p.read_text(errors="replace") if out_p.is_file() else ""
    if not exp_p.is_file():  # a unittest test: no expected text, its output says what failed
        return out
    exp = exp_p.read_text(errors="replace")
    lines = difflib.unified_diff(
        exp.splitlines(keepends=True), out.splitlines(keepends=True), f"{test} (expected)", f"{test} (node)"
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def install_unittest(node: Node) -> bool:
    """Copy the unittest stand-in onto the node (lab/guest_unittest.py says why).

    False (and nothing copied) if the node already has a unittest of its own there.
    """
    if node.eval(f"{GUEST_UNITTEST[1:]!r} in __import__('os').listdir('/')", timeout=30.0):
        return False
    guestfs.put(node, (Path(__file__).parent / "guest_unittest.py").read_bytes(), GUEST_UNITTEST)
    return True


def remove_unittest(node: Node) -> None:
    node.exec(f"import os\ntry:\n    os.remove({GUEST_UNITTEST!r})\nexcept OSError:\n    pass", timeout=30.0)


def run_tests_cmd(node: Node, tdir: Path, tests: Iterable[str], out_dir: Path) -> list[str]:
    # retry: QEMU re-listens a moment after the lab's console hung up; a refused connect would
    # leave pyboard.py reading EOF forever.
    device = f"exec:socat - TCP:{node.container_ip}:{node.console_port},retry=20,interval=0.5"
    return [sys.executable, "-B", str(tdir / "run-tests.py"), "-t", device, "-r", str(out_dir), *tests]


def _run_process(cmd: list[str], cwd: Path, timeout: float, idle: float) -> tuple[int | None, str]:
    """Run run-tests.py; (returncode or None if it was stopped, its output).

    pyboard.py has no overall timeout and spins on EOF if the console goes away, so the run is
    stopped after ``timeout`` seconds, or after ``idle`` seconds without a line of output
    (run-tests.py prints one per test, and pyboard gives up on a silent test after 10 s).
    """
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MICROPY_CPYTHON3=sys.executable)
    # Its own session, so that stopping it ends run-tests.py and the socat it started, no more.
    p = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert p.stdout is not None
    chunks: list[bytes] = []
    why = ""
    t0 = last = time.monotonic()
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now - t0 > timeout:
                why = f"run-tests.py stopped after {timeout:g} s"
                break
            if now - last > idle:
                why = f"run-tests.py stopped: no output for {idle:g} s"
                break
            if sel.select(timeout=1.0):
                data = os.read(p.stdout.fileno(), 65536)
                if not data:
                    break
                chunks.append(data)
                last = time.monotonic()
    if why:
        os.killpg(p.pid, signal.SIGTERM)
    try:
        rc: int | None = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    p.stdout.close()
    out = b"".join(chunks).decode(errors="replace")
    if why:
        return None, out + f"\n[mplab: {why}]\n"
    return rc, out


def run(
    node: Node,
    *,
    skips: list[Skip],
    out_dir: Path,
    version: str | None = None,
    root: Path | None = None,
    timeout: float = RUN_TIMEOUT,
    idle: float = IDLE_TIMEOUT,
    retry: bool = True,
    progress: Progress | None = None,
) -> Result:
    """Run every suite test of the node's version on the node; one Outcome per test.

    Tests that fail are run once more (``retry``); see ``_retry``.

    The node is given back afterwards (console connected, network brought up); if that fails,
    ``Result.restore_error`` says why and the outcomes still stand.
    """
    say = progress or (lambda _m: None)
    version = version or node_version(node)
    tdir = tests_dir(version, root)
    if shutil.which("socat") is None:
        raise ConfigError("socat is not installed; fix: make host-packages")
    all_tests = collect(tdir)
    skipped = {s.test: s for s in skips if s.applies(version)}
    to_run = [t for t in all_tests if t not in skipped]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    res = Result(version, tdir, out_dir)
    for t, s in skipped.items():
        if t in all_tests:
            res.outcomes[t] = Outcome(t, suite_of(t) or "?", "skip", f"skip file: {s.text}")

    ours = install_unittest(node)
    node.close()  # the chardev serves one client: run-tests.py's socat gets it
    say(f"upstream tests: MicroPython {version}, {len(to_run)} tests on {node.name} ({len(skipped)} in the skip file)")
    t0 = time.monotonic()
    try:
        res.returncode, res.log = _run_once(node, tdir, to_run, out_dir, "run-tests.log", timeout, idle)
        _fill_outcomes(res, to_run, res.log, out_dir)
        failed = [t for t, o in res.outcomes.items() if o.status == "fail"]
        if failed and retry:
            _retry(res, node, failed, timeout, idle, say)
    finally:
        res.elapsed = time.monotonic() - t0
        res.restore_error = _restore(node, ours)
    (out_dir / "summary.txt").write_text(res.summary() + "\n")
    (out_dir / "results.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    say(res.summary())
    return res


def _run_once(
    node: Node, tdir: Path, tests: list[str], out_dir: Path, log_name: str, timeout: float, idle: float
) -> tuple[int | None, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = run_tests_cmd(node, tdir, tests, out_dir)
    rc, log = _run_process(cmd, tdir, timeout, idle)
    (out_dir / log_name).write_text(" ".join(cmd) + "\n\n" + log)
    return rc, log


def _retry(res: Result, node: Node, failed: list[str], timeout: float, idle: float, say: Progress) -> None:
    """Run the failed tests once more: some upstream tests race a 10 ms asyncio.sleep, which a
    guest on a loaded host can lose. A pass on the retry is kept as "flaky", never hidden."""
    say(f"upstream tests: {len(failed)} failed, running them once more: {' '.join(failed)}")
    rdir = res.out_dir / "retry"
    rc, log = _run_once(node, res.tests_dir, failed, rdir, "run-tests.log", timeout, idle)
    again = Result(res.version, res.tests_dir, rdir, returncode=rc)
    _fill_outcomes(again, failed, log, rdir)
    for t in failed:
        first, second = res.outcomes[t], again.outcomes[t]
        if second.status == "pass":
            res.outcomes[t] = Outcome(
                t,
                first.suite,
                "pass",
                "flaky: failed on the first run, passed on the retry",
                diff=first.diff,
                flaky=True,
            )
        else:
            first.reason = f"failed on the retry too ({second.status})"


def _restore(node: Node, remove_ours: bool) -> str:
    """Give the node back as the lab left it: console connected, network up. '' or what failed."""
    try:
        node.bringup()  # run-tests.py soft-reset the guest: `lan` is gone (the netif is not)
        node.wait_connected(60.0)
        if remove_ours:
            remove_unittest(node)
    except (LabError, ConsoleError) as e:
        return f"{node.lab.name}/{node.name}: not given back after run-tests.py: {str(e).splitlines()[0]}"
    return ""


def _skip_reason(tdir: Path, test: str) -> str:
    """Who skipped a test that run-tests.py reports as "skip": its own list, or the test itself."""
    src = (tdir / "run-tests.py").read_text(errors="replace").splitlines()
    for n, line in enumerate(src, 1):
        if f'"{test}"' in line:
            return f"skipped by upstream: run-tests.py line {n} ({line.strip()})"
    return "skipped by upstream: the test printed SKIP (its own feature check), or a run-tests.py feature check"


def _fill_outcomes(res: Result, to_run: list[str], log: str, out_dir: Path) -> None:
    statuses = parse_output(log)
    needs = {m.group(1): m.group(2) for m in map(_TESTERROR_RE.match, log.splitlines()) if m}
    tail = "\n".join(log.strip().splitlines()[-15:])
    for t in to_run:
        suite = suite_of(t) or "?"
        st = statuses.get(t)
        if st == "pass":
            res.outcomes[t] = Outcome(t, suite, "pass")
        elif st == "fail":
            res.outcomes[t] = Outcome(t, suite, "fail", diff=failure_diff(out_dir, t))
        elif st == "skip":
            res.outcomes[t] = Outcome(t, suite, "skip", _skip_reason(res.tests_dir, t))
        elif st == "lrge":  # 1.26+: the test's code did not fit (MemoryError while compiling)
            res.outcomes[t] = Outcome(t, suite, "fail", diff="run-tests.py: too large for the target")
        elif t in needs:
            res.outcomes[t] = Outcome(t, suite, "error", f"run-tests.py stopped: the test requires {needs[t]}")
        else:
            why = "it was stopped" if res.returncode is None else f"it exited {res.returncode}"
            res.outcomes[t] = Outcome(
                t, suite, "error", f"no result from run-tests.py ({why}); its output ends:\n{tail}"
            )
