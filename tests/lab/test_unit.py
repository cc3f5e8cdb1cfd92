"""Fast tests, no Docker: topology validation, MACs, subnets, CLI bad input."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.topology import Topology, guest_mac, subnet_for, validate_lab_name

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"

GOOD = """
version: "2.4"
x-mplab: {lab: default, nodes: 3, subnet: 10.77.0.0/24, gateway: 10.77.0.1, services_ip: 10.77.0.2,
          ip_range: 10.77.0.64/26, dhcp: [10.77.0.128, 10.77.0.254]}
networks: {lan: {}}
services: {node: {image: x}, services: {image: y}}
"""


@pytest.mark.parametrize("name", ["default", "a", "lab1", "123456789"])
def test_valid_lab_names(name: str) -> None:
    assert validate_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "UPPER", "has-dash", "1234567890", "a b", "x_y"])
def test_invalid_lab_names(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid lab name"):
        validate_lab_name(name)


def test_mac_matches_convention() -> None:
    import hashlib

    h = hashlib.sha256(b"default/node1").hexdigest()
    assert guest_mac("default", "node1") == f"02:6d:70:{h[0:2]}:{h[2:4]}:{h[4:6]}"


def test_subnet_for_default_and_others() -> None:
    base = IPv4Network("10.77.0.0/24")
    assert subnet_for("default", base) == base
    s = subnet_for("x1", base)
    assert s.prefixlen == 24 and s.subnet_of(IPv4Network("10.77.0.0/16")) and s != base
    assert subnet_for("x1", base) == s  # deterministic


def test_topology_from_repo_compose() -> None:
    t = Topology.load("default", COMPOSE)
    assert str(t.subnet) == "10.77.0.0/24" and str(t.gateway) == "10.77.0.1"
    assert t.bridge == "mplab-default" and t.project == "mplab-default"
    env = t.env()
    assert env["MPLAB_BRIDGE"] == "mplab-default" and env["MPLAB_DHCP_START"] == "10.77.0.128"


def test_other_lab_shifts_layout(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_text(GOOD)
    t = Topology.load("abc", f)
    o = int(t.subnet.network_address)
    assert int(t.gateway) == o + 1 and int(t.services_ip) == o + 2
    assert int(t.dhcp_start) == o + 128 and int(t.dhcp_end) == o + 254
    assert t.ip_range.subnet_of(t.subnet) and t.nodes == 3 and t.bridge == "mplab-abc"


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("services: [", "not valid YAML"),
        ("- a\n- b\n", "not a compose file"),
        ("networks: {lan: {}}\nservices: {node: {}}\n", "no service `services`"),
        ("services: {node: {image: x}, services: {image: y}}\n", "no network `lan`"),
        (GOOD.replace("10.77.0.0/24,", "10.77.0.0/16,"), "not a /24"),
        (GOOD.replace("gateway: 10.77.0.1", "gateway: 10.99.0.1"), "outside subnet"),
        (GOOD.replace("10.77.0.128", "10.77.0.70"), "overlaps ip_range"),
        (GOOD.replace("gateway: 10.77.0.1", "gateway: banana"), "bad x-mplab value"),
    ],
)
def test_bad_compose_one_clear_line(tmp_path: Path, text: str, msg: str) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        Topology.load("default", f)
    s = str(ei.value)
    assert msg in s and str(f) in s and "fix:" in s and "\n" not in s


def test_missing_compose_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="compose file not found"):
        Topology.load("default", tmp_path / "nope.yml")


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--lab", "BAD", "status"], "invalid lab name"),
        (["bogus"], "invalid choice"),
        ([], "required"),
        (["--lab", "x", "exec", "node1"], "exec needs CODE or -f FILE"),
        (["--lab", "x", "exec", "node1", "-f", "/nonexistent.py"], "no such file"),
        (["--lab", "x", "cp", "/nonexistent", "node1:/a"], "no such file"),
        (["--lab", "x", "cp", __file__, "node1"], "must be NODE:PATH"),
        (["--lab", "x", "up", "--nodes", "0"], "invalid node count"),
        (["--lab", "x", "up", "--nodes", "two"], "invalid int value"),
        (["--lab", "x", "capture", "-w", "/tmp/x.pcap", "--duration", "-1"], "--duration must be > 0"),
        (["--lab", "x", "--file", "/nonexistent.yml", "status"], "compose file not found"),
    ],
)
def test_cli_bad_input_one_line_exit_2(args: list[str], msg: str) -> None:
    p = _cli(*args)
    assert p.returncode == 2, p
    assert msg in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_cli_no_compose_file_found(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "lab", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert p.returncode == 2 and "no docker-compose.yml" in p.stderr and "Traceback" not in p.stderr


def test_conformance_renders_a_junit_report(tmp_path: Path) -> None:
    """`mplab conformance --junit X` renders without a lab (lab/conformance.py)."""
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuite><testcase classname="tests.socket.test_usocket_connect" name="test_ok" time="0.5">'
        '<properties><property name="method" value="connect"/><property name="check" value="connects"/>'
        "</properties></testcase></testsuite>"
    )
    p = _cli("conformance", "--junit", str(junit), "--out", str(tmp_path / "r"), "--artifacts", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "r" / "conformance.md").read_text()
    assert "| `connect` | connects | ✅ pass |" in md, md


@pytest.mark.parametrize("nl", ["\r\n", "\n"])  # docker logs read as text may drop the \r
def test_hard_boots_in_a_console_log(nl: str) -> None:
    """A node's log tells a hard boot (its network is gone) from a soft reset (it is not):
    `status` and the first console of a process read it (Node.reboot_unseen, issue 12)."""
    from lab.console import hard_boots
    from lab.lab import BRINGUP_MARK

    banner = (
        f'MicroPython v1.25.0 on 2026-12-02; mps2-an385 with Cortex-M3{nl}Type "help()" for more information.{nl}>>> '
    )
    up = f"raw REPL; CTRL-B to exit{nl}>OK{BRINGUP_MARK} node1{nl}>"
    assert hard_boots("entrypoint" + nl + banner + up) == [len("entrypoint" + nl)]
    log = banner + up + "\x04>" + banner  # a QMP system_reset with no console connected
    assert hard_boots(log)[-1] > log.rfind(BRINGUP_MARK)
    # a soft reset (deploy: Ctrl-D, main.py prints, then the banner) keeps the network
    soft = banner + up + f"MPY: soft reboot{nl}main ran{nl}" + banner
    assert hard_boots(soft) == [0]
    # ... but a hard reset after an exec interrupted that main.py is a hard boot again
    hard = soft[: -len(banner)] + f"raw REPL; CTRL-B to exit{nl}>OK" + banner
    assert len(hard_boots(hard)) == 2
