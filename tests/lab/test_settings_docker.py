"""Every setting x-mplab accepts takes effect: change it, bring a real lab up, see it.

``domain`` reaches dnsmasq (the guests' names resolve in it, the DHCP lease hands it out) and
``console_port`` reaches QEMU's serial server in the node container (the lab's own console
connection, the published host port and the capture filter use it). The addresses (subnet,
gateway, services_ip, ip_range, dhcp) are shown to take effect by tests/lab/test_unit.py and
every lab test (each lab name moves them); ``nodes`` by ``mplab up``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, Node
from lab.topology import Topology

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
NAME = "wtbset"
DOMAIN = "wtb.test"
PORT = 6123


def compose_with(tmp: Path, **x_mplab: object) -> Path:
    """The repo's compose file with x-mplab fields replaced, in ``tmp`` (tap-net and VERSION linked)."""
    text = (REPO / "docker-compose.yml").read_text()
    for key, value in x_mplab.items():
        text, n = re.subn(rf"(?m)^(  {key}:) *\S+", rf"\g<1> {value}", text)
        assert n == 1, key
    (tmp / "docker-compose.yml").write_text(text)
    for f in ("tap-net", "VERSION"):
        (tmp / f).symlink_to(REPO / f)
    return tmp / "docker-compose.yml"


def inspect(container: str, fmt: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, container], capture_output=True, text=True, timeout=30
    ).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    cf = compose_with(tmp_path_factory.mktemp("settings"), domain=DOMAIN, console_port=PORT)
    the_lab = Lab(NAME, compose_file=cf, progress=None)
    the_lab.down()
    try:
        the_lab.up(nodes=2)
        yield the_lab
    finally:
        the_lab.down()


def test_topology_reads_them(lab: Lab) -> None:
    assert (lab.topology.domain, lab.topology.console_port) == (DOMAIN, PORT)
    assert lab.topology.env()["MPLAB_DOMAIN"] == DOMAIN and lab.topology.env()["MPLAB_CONSOLE_PORT"] == str(PORT)


def test_console_port_reaches_qemu(lab: Lab) -> None:
    nd: Node = lab.nodes[0]
    env = inspect(nd.container, "{{range .Config.Env}}{{println .}}{{end}}")
    assert f"MPLAB_CONSOLE_PORT={PORT}" in env.split("\n"), env
    # QEMU's serial server listens on the port (and nothing on the default one)
    cmdline = lab.runtime.exec(nd.container, ["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]).stdout
    assert f"port={PORT},server=on" in cmdline, cmdline
    # the lab's own console connection (up's bring-up) used it, and so does the published port
    assert nd.eval("1 + 1") == 2
    assert nd.console.name == f"{NAME}/{nd.name}"
    row = next(r for r in lab.status() if r.name == nd.name)
    assert row.serial.startswith(f"{nd.container_ip}:{PORT}"), row.serial
    binds = inspect(nd.container, "{{json .HostConfig.PortBindings}}")
    assert f'"{PORT}/tcp"' in binds and '"5555/tcp"' not in binds, binds
    # the capture filter leaves the console's port out
    assert f"tcp port {PORT}" in (lab.capture("/dev/null").bpf or "")


def test_domain_reaches_dnsmasq(lab: Lab) -> None:
    n1, n2 = lab.nodes[0], lab.nodes[1]
    got = n1.eval(f"__import__('socket').getaddrinfo('{n2.name}.{DOMAIN}', 7)[0][-1]")
    assert tuple(got) == (n2.ip, 7)
    got = n1.eval(f"__import__('socket').getaddrinfo('peer.{DOMAIN}', 7)[0][-1]")
    assert tuple(got) == (lab.services_ip, 7)
    # the default domain is not served any more
    r = n1.exec(
        f"try:\n    __import__('socket').getaddrinfo('{n2.name}.lab', 7)\n    print('resolved')\n"
        "except OSError as e:\n    print('error', e)"
    )
    assert r.startswith("error"), r


def test_bad_values_are_one_line(tmp_path: Path) -> None:
    from lab.errors import ConfigError

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="x-mplab.domain 'Bad_Domain!' is not a DNS domain"):
        Topology.load(NAME, compose_with(tmp_path / "a", domain="Bad_Domain!"))
    with pytest.raises(ConfigError, match="x-mplab.console_port 70000 is not a TCP port"):
        Topology.load(NAME, compose_with(tmp_path / "b", console_port=70000))


@pytest.fixture(autouse=True, scope="module")
def _needs_docker() -> None:
    if shutil.which("docker") is None:
        pytest.skip("needs docker")
