"""lab.guestfs on a real guest: put/get round trip, ls/stat/mkdir/rm, and guest errors as one
LabError naming node, path and errno."""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from lab import LabError, Node, deploy, guestfs

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
DATA = bytes(range(256)) * 3 + b"\r\n'\"\\ end"  # every byte value, quotes, a length not a chunk multiple


def test_put_get_round_trip(node: Node) -> None:
    assert guestfs.put(node, DATA, "/t_gfs.bin") == len(DATA)
    try:
        assert guestfs.get(node, "/t_gfs.bin") == DATA
        assert guestfs.get(node, "/t_gfs.bin", chunk=100) == DATA
        st = guestfs.stat(node, "/t_gfs.bin")
        assert (st.name, st.is_dir, st.size) == ("t_gfs.bin", False, len(DATA))
        assert guestfs.Entry("t_gfs.bin", False, len(DATA)) in guestfs.ls(node, "/")
        guestfs.put(node, b"", "/t_gfs.bin")  # truncates
        assert guestfs.get(node, "/t_gfs.bin") == b""
    finally:
        guestfs.rm(node, "/t_gfs.bin")
    assert not guestfs.exists(node, "/t_gfs.bin")


def test_directories(node: Node) -> None:
    guestfs.mkdir(node, "/t_gfs_d")
    try:
        guestfs.put(node, b"x = 1\n", "/t_gfs_d/m.py")
        assert guestfs.ls(node, "/t_gfs_d") == [guestfs.Entry("m.py", False, 6)]
        assert guestfs.stat(node, "/t_gfs_d").is_dir
        with pytest.raises(guestfs.GuestFSError) as ei:
            guestfs.mkdir(node, "/t_gfs_d")
        assert ei.value.errno == errno.EEXIST and "EEXIST" in str(ei.value)
        guestfs.rm(node, "/t_gfs_d/m.py")
    finally:
        guestfs.rmdir(node, "/t_gfs_d")
    assert not guestfs.exists(node, "/t_gfs_d")


def test_missing_path_is_one_lab_error_naming_node_path_and_errno(node: Node) -> None:
    for op in (guestfs.get, guestfs.stat, guestfs.rm, guestfs.ls):
        with pytest.raises(LabError) as ei:
            op(node, "/no/such/t_gfs")
        e = ei.value
        assert isinstance(e, guestfs.GuestFSError) and e.errno == errno.ENOENT, e
        msg = str(e)
        assert msg == f"{node.lab.name}/{node.name}: /no/such/t_gfs: {op.__name__} failed: ENOENT (errno 2)", msg
    with pytest.raises(guestfs.GuestFSError, match=r"/no/such/dir/x\.py: put failed: ENOENT"):
        guestfs.put(node, b"x", "/no/such/dir/x.py")
    # the REPL is still usable afterwards (no half-open file left behind)
    assert node.eval("1 + 1") == 2


def _cp(node: Node, src: Path, dst: str) -> subprocess.CompletedProcess[str]:
    node.close()  # the console takes one client at a time: let the CLI's in
    return subprocess.run(
        [sys.executable, "-m", "lab", "--lab", node.lab.name, "cp", str(src), f"{node.name}:{dst}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_cp_uses_guestfs(node: Node, tmp_path: Path) -> None:
    src = tmp_path / "c.py"
    src.write_bytes(DATA)
    r = _cp(node, src, "/t_gfs_cp.py")
    assert r.returncode == 0 and f"({len(DATA)} bytes)" in r.stdout, r.stderr
    try:
        assert guestfs.get(node, "/t_gfs_cp.py") == DATA
    finally:
        guestfs.rm(node, "/t_gfs_cp.py")
    r = _cp(node, src, "/no/such/x.py")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{node.name}: /no/such/x.py: put failed: ENOENT (errno 2)" in r.stderr, r.stderr


# ---- the two channels of a write ---------------------------------------------------------
BIG = bytes(range(256)) * 800  # 200 KiB: seconds by the console, well under one by the host channel


class StagesElsewhere:
    """The node, staging into its container but naming a directory the guest cannot open:
    what a firmware without the host channel, or a broken staging, looks like to guestfs."""

    def __init__(self, node: Node, fail: bool = False) -> None:
        self.node, self.name, self.fail = node, node.name, fail
        self.staged = 0

    def exec(self, code: str, timeout: float = 10.0) -> str:
        return self.node.exec(code, timeout=timeout)

    def stage(self, files: dict[str, bytes]) -> str:
        if self.fail:
            raise LabError("staging refused")
        self.staged += len(files)
        self.node.stage(files)
        return "/nonexistent-stage"


def _guest_sha(node: Node, path: str) -> str:
    return deploy.guest_hashes(node, [path])[0] or ""


def test_a_large_write_goes_by_the_host_channel(node: Node) -> None:
    assert guestfs.put_many(node, [("/t_big.bin", BIG)]) == "host"
    try:
        assert _guest_sha(node, "/t_big.bin") == hashlib.sha256(BIG).hexdigest()
        assert guestfs.stat(node, "/t_big.bin").size == len(BIG)
    finally:
        guestfs.rm(node, "/t_big.bin")


def test_small_writes_take_the_console(node: Node) -> None:
    assert guestfs.put_many(node, [("/t_small.bin", DATA)]) == "console"  # below STAGE_MIN
    try:
        assert guestfs.get(node, "/t_small.bin") == DATA
    finally:
        guestfs.rm(node, "/t_small.bin")


@pytest.mark.parametrize("fail", [False, True], ids=["guest-cannot-open", "staging-fails"])
def test_without_the_host_channel_the_console_writes_it_whole(node: Node, fail: bool) -> None:
    data = BIG[:6000]
    other = StagesElsewhere(node, fail=fail)
    seen: list[tuple[str, int]] = []
    got = guestfs.put_many(
        other, [("/t_fb1.bin", data), ("/t_fb2.bin", data[::-1])], on_file=lambda p, n: seen.append((p, n))
    )
    try:
        assert got == "console"
        assert seen == [("/t_fb1.bin", 6000), ("/t_fb2.bin", 6000)]
        assert _guest_sha(node, "/t_fb1.bin") == hashlib.sha256(data).hexdigest()
        assert _guest_sha(node, "/t_fb2.bin") == hashlib.sha256(data[::-1]).hexdigest()
        assert other.staged == (0 if fail else 2)
    finally:
        guestfs.rm(node, "/t_fb1.bin")
        guestfs.rm(node, "/t_fb2.bin")
