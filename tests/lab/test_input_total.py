"""Every input path is total (issue 12): bad input gives one line with the file, line, field and
fix, never a traceback. No Docker. Each test is an item of the issue's "Why" list and fails on
the code before it (there: UnicodeDecodeError tracebacks, unknown keys accepted, `--timeout 0`
taken as 0.1 s, `--loss -5%` misparsed, `repro --check` saying ok to what the run rejects).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "docker-compose.yml").read_text()


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_non_utf8_compose_file_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_bytes(GOOD.encode().replace(b"x-mplab:", b"# caf\xe9\nx-mplab:", 1))
    with pytest.raises(ConfigError, match=r"line \d+, column 6: not UTF-8 .*fix: save the compose file as UTF-8"):
        Topology.load("default", f)
    p = cli("--file", str(f), "status")
    assert p.returncode == 2 and "not UTF-8" in one_line(p)


def test_non_utf8_scenario_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "s.yml"
    f.write_bytes(b"name: x\n# \xff\xfe\n")
    p = cli("repro", "--check", str(f))
    assert p.returncode == 2 and "line 2" in one_line(p) and "not UTF-8" in p.stderr


def test_unknown_x_mplab_key_suggests_the_nearest(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_text(GOOD.replace("  nodes: 2 ", "  nodse: 2 ", 1))
    with pytest.raises(ConfigError, match=r"line 11: unknown x-mplab key 'nodse'.*did you mean `nodes`"):
        Topology.load("default", f)


def test_missing_x_mplab_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_text(GOOD.replace("x-mplab:", "x-mplb:", 1))
    with pytest.raises(ConfigError, match=r"unknown top-level key 'x-mplb'.*did you mean `x-mplab`"):
        Topology.load("default", f)
    start = GOOD.index("x-mplab:")
    end = GOOD.index("networks:")
    f.write_text(GOOD[:start] + GOOD[end:])
    with pytest.raises(ConfigError, match=r"no `x-mplab:` block"):
        Topology.load("default", f)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_exec_timeout_must_be_a_positive_number(value: str) -> None:
    p = cli("--lab", "tnone", "exec", "--timeout", value, "node1", "print(1)")
    assert p.returncode == 2 and "--timeout" in one_line(p)


def test_negative_loss_is_named_not_misparsed() -> None:
    p = cli("--lab", "tnone", "impair", "node1", "--loss", "-5%")
    line = one_line(p)
    assert p.returncode == 2 and "invalid loss '-5%': must not be negative" in line, line


def _scenario(tmp_path: Path, firmware: str) -> Path:
    """A real scenario of the repo, on another firmware."""
    f = tmp_path / "s.yml"
    text = (REPO / "scenarios" / "accept-queue-rst.yml").read_text()
    f.write_text(text.replace("firmware: 1.25.0", f"firmware: {firmware}", 1))
    return f


def test_repro_check_rejects_unknown_version(tmp_path: Path) -> None:
    p = cli("repro", "--check", str(_scenario(tmp_path, "1.24.0")))
    assert p.returncode == 2 and "unknown firmware version 1.24.0" in one_line(p)
    p = cli("repro", "--check", "--firmware", "9.9.9", str(_scenario(tmp_path, "1.25.0")))
    assert p.returncode == 2 and "unknown firmware version 9.9.9" in one_line(p)


def test_repro_check_rejects_a_non_elf_firmware(tmp_path: Path) -> None:
    bad = tmp_path / "firmware.elf"
    bad.write_text("not an elf")
    p = cli("repro", "--check", "--firmware", str(bad), str(_scenario(tmp_path, "1.25.0")))
    assert p.returncode == 2 and "not an ELF file" in one_line(p)


def test_host_helpers_come_from_the_package_not_the_compose_dir() -> None:
    from lab import hostnet

    assert hostnet.helper("mplab-host-net") == REPO / "tap-net" / "mplab-host-net"


def test_version_outside_the_checkout_is_the_package_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPLAB_VERSION", raising=False)
    f = tmp_path / "docker-compose.yml"
    f.write_text(GOOD)
    assert Topology.load("default", f).version == (REPO / "VERSION").read_text().strip()  # not "dev"


def test_images_are_interpolated_as_compose_does(tmp_path: Path) -> None:
    from lab.topology import compose_images

    t = Topology.load("default", REPO / "docker-compose.yml", version="zz9")
    assert compose_images(t) == ["mplab/node:zz9", "mplab/services:zz9"]


def test_dns_peer_takes_query_and_peer_options_are_checked(tmp_path: Path) -> None:
    from lab.scenario import schema

    text = (REPO / "tests" / "scenarios" / "dns-peer.yml").read_text()
    assert schema.load(REPO / "tests" / "scenarios" / "dns-peer.yml").peers[0].options["query"] == "ghost.lab"
    f = tmp_path / "s.yml"
    f.write_text(text.replace("query: ghost.lab, ", ""))
    with pytest.raises(ConfigError, match=r"s.yml:8: peers\[0\]: `query` is missing"):
        schema.load(f)
    f.write_text(text.replace("mode: nxdomain", "mdoe: nxdomain"))
    with pytest.raises(ConfigError, match=r"peers\[0\].mdoe: unknown field.*did you mean `mode`"):
        schema.load(f)
