"""lab/upstream.py without a lab: the skip file, run-tests.py's output, the unittest stand-in."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import ConfigError
from lab import upstream as up

SKIP_FILE = Path(__file__).with_name("skip.yml")


def _trees() -> list[Path]:
    src = up.repo_root() / "firmware" / "build" / "src"
    return sorted(p / "tests" for p in src.glob("micropython-*") if (p / "tests" / "run-tests.py").is_file())


def test_skip_file_entries_name_real_tests() -> None:
    skips = up.load_skips(SKIP_FILE)
    assert skips, "the skip file is empty"
    trees = _trees()
    if not trees:
        pytest.skip("no unpacked MicroPython source (make firmware)")
    every = {t for tree in trees for t in up.collect(tree)}
    assert [s.test for s in skips if s.test not in every] == []


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("- test: extmod/asyncio_basic.py\n  because: flaky\n  reason: x\n", "because must be one of"),
        ("- test: extmod/asyncio_basic.py\n  because: internet\n", "a reason is required"),
        ("- test: basics/int1.py\n  because: internet\n  reason: x\n", "is not in the suites"),
        ("- test: extmod/ssl_basic.py\n  because: internet\n  reason: x\n  why: y\n", "expected the keys"),
        ("test: x\n", "expected a list"),
    ],
)
def test_skip_file_is_checked(tmp_path: Path, entry: str, complaint: str) -> None:
    p = tmp_path / "skip.yml"
    p.write_text(entry)
    with pytest.raises(ConfigError, match=complaint):
        up.load_skips(p)


def test_skip_versions() -> None:
    s = up.Skip("net_hosted/asyncio_loopback.py", "upstream-lwip", "r", ("1.25.0",))
    assert s.applies("1.25.0") and not s.applies("1.26.1")
    assert up.Skip("x", "internet", "r").applies("9.9.9")


def test_missing_tree_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^upstream tests for MicroPython 9\.9\.9: .* fix: make firmware"):
        up.tests_dir("9.9.9", root=tmp_path)


def test_parse_output() -> None:
    log = (
        "platform=mplab arch=armv7em inlineasm=thumb\n"
        "pass  extmod/asyncio_basic.py \n"
        "pass  extmod/ssl_noleak.py (unittest: 2 ran)\n"
        "skip  extmod/ssl_poll.py\n"
        "FAIL  net_hosted/asyncio_loopback.py \n"
        "lrge  extmod/tls_threads.py\n"
        "3 tests performed (9 individual testcases)\n"
    )
    assert up.parse_output(log) == {
        "extmod/asyncio_basic.py": "pass",
        "extmod/ssl_noleak.py": "pass",
        "extmod/ssl_poll.py": "skip",
        "net_hosted/asyncio_loopback.py": "fail",
        "extmod/tls_threads.py": "lrge",
    }


def test_failure_diff(tmp_path: Path) -> None:
    (tmp_path / "net_hosted_x.py.exp").write_text("a\nb\n")
    (tmp_path / "net_hosted_x.py.out").write_text("a\nc\nCRASH")
    d = up.failure_diff(tmp_path, "net_hosted/x.py")
    assert "-b\n" in d and "+c\n" in d and "+CRASH\n\\ No newline at end of file\n" in d


def test_suites() -> None:
    assert up.suite_of("extmod/tls_dtls.py") == "tls"
    assert up.suite_of("net_hosted/accept_timeout.py") == "net_hosted"
    assert up.suite_of("net_inet/ssl_cert.py") is None


# The unittest stand-in, run under CPython (it is plain Python), must end the way run-tests.py
# recognises a unittest run (run_one_test: the "-" * 70 line, "Ran N tests", "", the verdict).
_CASES = """
import unittest

class T(unittest.TestCase):
    def test_ok(self):
        with self.assertRaises(ValueError):
            int("x")
        self.assertEqual(1, 1)
    def test_skip(self):
        self.skipTest("no")
    {extra}

if __name__ == "__main__":
    unittest.main()
"""


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [
        ("", "OK (skipped=1)"),
        ("def test_fail(self):\n        self.assertIn(3, [1])", "FAILED (failures=1, errors=0)"),
        ("def test_error(self):\n        raise OSError(5)", "FAILED (failures=0, errors=1)"),
    ],
)
def test_guest_unittest_summary(tmp_path: Path, extra: str, verdict: str) -> None:
    shutil.copy(Path(up.__file__).with_name("guest_unittest.py"), tmp_path / "unittest.py")
    (tmp_path / "t.py").write_text(_CASES.format(extra=extra))
    # The script's directory comes first on sys.path: "import unittest" finds the stand-in.
    p = subprocess.run([sys.executable, "-S", "t.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    assert lines[-4] == "-" * 70 and lines[-2] == "", p.stdout + p.stderr
    assert re.match(r"Ran (\d+) tests$", lines[-3])
    assert lines[-1] == verdict


def test_run_process_stops_a_silent_run(tmp_path: Path) -> None:
    code = "import time; print('pass  extmod/a.py', flush=True); time.sleep(60)"
    rc, out = up._run_process([sys.executable, "-c", code], tmp_path, timeout=30, idle=1.5)
    assert rc is None
    assert "pass  extmod/a.py" in out and "no output for 1.5 s" in out


def test_skip_reason_names_run_tests_line(tmp_path: Path) -> None:
    (tmp_path / "run-tests.py").write_text('x = 1\n        skip_tests.add("extmod/ssl_poll.py")\n')
    assert "run-tests.py line 2" in up._skip_reason(tmp_path, "extmod/ssl_poll.py")
    assert "printed SKIP" in up._skip_reason(tmp_path, "extmod/ssl_ioctl.py")


# A fake run-tests.py: fails extmod/asyncio_b.py on its first run only, as a timing race would.
_FAKE_RUN_TESTS = """
import os, sys
args = sys.argv[1:]
rdir = args[args.index("-r") + 1]
tests = [a for a in args if a.endswith(".py")]
mark = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran-once")
first = not os.path.exists(mark)
open(mark, "w").close()
print("platform=mplab arch=armv7em")
for t in tests:
    if t == "extmod/asyncio_b.py" and first:
        base = os.path.join(rdir, t.replace("/", "_"))
        open(base + ".exp", "w").write("1\\n2\\n")
        open(base + ".out", "w").write("2\\n1\\n")
        print("FAIL ", t)
    elif t == "extmod/ssl_c.py":
        print("skip ", t)
    else:
        print("pass ", t)
"""


class _FakeLab:
    name = "fake"


class _FakeNode:
    """What lab.upstream.run uses of a Node, with no lab behind it."""

    name = "node1"
    container_ip = "127.0.0.1"
    console_port = 9
    lab = _FakeLab()

    def __init__(self) -> None:
        self.calls: list[str] = []

    def eval(self, expr: str, timeout: float = 10.0) -> object:
        return False if "listdir" in expr else "9.9.9"

    def exec(self, code: str, timeout: float = 10.0) -> str:
        self.calls.append("exec")
        return ""

    def close(self) -> None:
        self.calls.append("close")

    def bringup(self) -> None:
        self.calls.append("bringup")

    def wait_connected(self, timeout: float = 30.0) -> None:
        self.calls.append("wait_connected")


def test_run_retries_and_reports_flaky(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    tdir = tmp_path / "firmware" / "build" / "src" / "micropython-9.9.9" / "tests"
    (tdir / "extmod").mkdir(parents=True)
    (tdir / "net_hosted").mkdir()
    (tdir.parent / "tools").mkdir()
    (tdir.parent / "tools" / "pyboard.py").write_text("")
    (tdir / "run-tests.py").write_text(_FAKE_RUN_TESTS)
    for t in ("extmod/asyncio_a.py", "extmod/asyncio_b.py", "extmod/ssl_c.py", "net_hosted/connect_x.py"):
        (tdir / t).write_text("print(1)\n")
    skips = [up.Skip("net_hosted/connect_x.py", "internet", "connects to a public host")]
    node = _FakeNode()
    res = up.run(node, skips=skips, out_dir=tmp_path / "out", root=tmp_path)  # type: ignore[arg-type]
    st = {t: (o.status, o.flaky) for t, o in res.outcomes.items()}
    assert st == {
        "extmod/asyncio_a.py": ("pass", False),
        "extmod/asyncio_b.py": ("pass", True),
        "extmod/ssl_c.py": ("skip", False),
        "net_hosted/connect_x.py": ("skip", False),
    }
    assert "+2\n 1\n-2\n" in res.outcomes["extmod/asyncio_b.py"].diff  # the first run's diff is kept
    assert "needs the internet" in res.outcomes["net_hosted/connect_x.py"].reason
    assert "flaky" in res.summary() and res.restore_error == ""
    assert node.calls.index("close") < node.calls.index("bringup")  # console freed, then given back
    assert (tmp_path / "out" / "results.json").is_file() and (tmp_path / "out" / "retry" / "run-tests.log").is_file()
