"""The lab against the real Docker daemon (no mocks): bring-up, DNS, TCP/UDP on the wire,
teardown, crash recovery, isolation between labs and off the LAN, dead-node status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP

from lab import GuestError, Lab, Node
from lab.runtime import Runtime

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
OFF_LAB = "192.0.2.1"  # TEST-NET-1: no route, never a real host


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60).stdout


def leftovers(name: str) -> dict[str, str]:
    """Everything of lab ``name`` still on the machine."""
    out = {
        "containers": _docker("ps", "-aq", "--filter", f"label=mplab.lab={name}").strip(),
        "networks": _docker("network", "ls", "-q", "--filter", f"label=mplab.lab={name}").strip(),
    }
    link = subprocess.run(["ip", "link", "show", f"mplab-{name}"], capture_output=True, text=True, timeout=10)
    out["bridge"] = link.stdout.strip() if link.returncode == 0 else ""
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10)
    out["nft"] = " ".join(t for t in tables.stdout.split("\n") if t.endswith(f" mplab_{name}"))
    rules = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, timeout=10)
    out["iptables"] = " ".join(r for r in rules.stdout.split("\n") if f"mplab-{name}:" in r)
    return {k: v for k, v in out.items() if v}


@contextmanager
def extra_lab(name: str, nodes: int = 1, runtime: Runtime | None = None) -> Iterator[Lab]:
    """A lab of its own for one test (down before and after), on ``runtime`` (the default one)."""
    lab = Lab(name, runtime=runtime, progress=None)
    lab.down()
    try:
        lab.up(nodes=nodes)
        yield lab
    finally:
        lab.down()


def test_every_repl_answers_and_holds_a_lease(lab: Lab, nodes: list[Node]) -> None:
    assert len(nodes) >= 2
    leases = lab.leases()
    for nd in nodes:
        assert nd.eval("1 + 1") == 2
        assert nd.mac in leases, f"{nd.name} ({nd.mac}) has no lease: {leases}"
        ip = leases[nd.mac]
        assert lab.topology.dhcp_start <= __import__("ipaddress").ip_address(ip) <= lab.topology.dhcp_end
        assert nd.eval("lan.ifconfig()[0]") == ip == nd.ip


def test_dns_resolves_other_node(nodes: list[Node]) -> None:
    n1, n2 = nodes[0], nodes[1]
    got = n1.eval("__import__('socket').getaddrinfo('node2.lab', 7)[0][-1]")
    assert tuple(got) == (n2.ip, 7)


def test_node_to_node_tcp_and_udp_on_the_wire(nodes: list[Node], wire) -> None:
    n1, n2 = nodes[0], nodes[1]
    n2.exec("import socket\nsrv = socket.socket()\nsrv.bind(('0.0.0.0', 5001))\nsrv.listen(1)")
    n1.exec(f"import socket\nc = socket.socket()\nc.connect(({n2.ip!r}, 5001))\nc.send(b'ping')")
    assert n2.exec("conn, addr = srv.accept()\nprint(conn.recv(10))\nconn.send(b'pong')").strip() == "b'ping'"
    assert n1.eval("c.recv(10)") == b"pong"
    n1.exec("c.close()")
    n2.exec("conn.close()\nsrv.close()")
    wire.expect_sequence(
        [
            (TCP, {"flags": "S", "src": n1.ip, "dst": n2.ip, "dport": 5001}),
            (TCP, {"flags": "SA", "src": n2.ip, "dst": n1.ip, "sport": 5001}),
        ],
        within=2.0,
    )
    wire.expect(TCP, src=n1.ip, dst=n2.ip, dport=5001, where=lambda p: bytes(p[TCP].payload) == b"ping")

    n2.exec("u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', 5002))")
    n1.exec(f"v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nv.sendto(b'dgram', ({n2.ip!r}, 5002))")
    data, addr = n2.eval("u.recvfrom(100)")
    assert data == b"dgram" and addr[0] == n1.ip
    n1.exec("v.close()")
    n2.exec("u.close()")
    wire.expect(UDP, src=n1.ip, dst=n2.ip, dport=5002)


def test_host_to_node_tcp(lab: Lab, node: Node, host_peer, wire) -> None:
    node.exec("import socket\nsrv = socket.socket()\nsrv.bind(('0.0.0.0', 5003))\nsrv.listen(1)")
    s = host_peer.tcp_connect(node.ip, 5003)
    node.exec("conn, addr = srv.accept()\nconn.send(b'hello host')")
    assert s.recv(100) == b"hello host"
    node.exec("conn.close()\nsrv.close()")
    wire.expect(TCP, flags="S", src=lab.host_ip, dst=node.ip, dport=5003)

    # and the other way: node → host server
    srv = host_peer.tcp_server()
    port = srv.getsockname()[1]
    node.exec(f"c = socket.socket()\nc.connect(({lab.host_ip!r}, {port}))\nc.send(b'hi')")
    conn, peer = srv.accept()
    assert conn.recv(10) == b"hi" and peer[0] == node.ip
    conn.close()
    node.exec("c.close()")
    wire.expect(TCP, flags="S", src=node.ip, dst=lab.host_ip, dport=port)


def test_guest_cannot_reach_off_lab_address(node: Node, wire) -> None:
    code = (
        "import socket\ns = socket.socket()\ns.settimeout(3)\n"
        f"try:\n    s.connect(({OFF_LAB!r}, 80))\nfinally:\n    s.close()"
    )
    with pytest.raises(GuestError) as ei:
        node.exec(code, timeout=15)
    assert ei.value.exc_type == "OSError", ei.value.traceback
    wire.expect_none(IP, dst=OFF_LAB, within=0.5)


def test_guest_exception_is_typed(node: Node) -> None:
    with pytest.raises(GuestError) as ei:
        node.exec("raise OSError(113)")
    assert ei.value.exc_type == "OSError" and ei.value.errno == 113
    assert "Traceback" in ei.value.traceback
    assert node.eval("'still alive'") == "still alive"


def test_down_leaves_nothing() -> None:
    with extra_lab("tdown", nodes=1) as lab:
        assert leftovers("tdown")
        assert lab.node("node1").eval("2 * 21") == 42
    assert leftovers("tdown") == {}
    lab.down()  # idempotent
    assert leftovers("tdown") == {}


def test_down_after_sigkilled_up() -> None:
    name = "tkill"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "lab", "--lab", name, "down"], env=env, capture_output=True, cwd=REPO)
    p = subprocess.Popen(
        [sys.executable, "-m", "lab", "--lab", name, "up", "--nodes", "2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and len(_docker("ps", "-q", "--filter", f"label=mplab.lab={name}").split()) < 2
        ):
            time.sleep(0.2)
        assert leftovers(name).get("containers"), "up never started containers"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    d = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", name, "down"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert d.returncode == 0, d.stderr
    assert leftovers(name) == {}


def test_two_labs_do_not_see_each_other(lab: Lab, node: Node, tmp_path: Path) -> None:
    from ipaddress import ip_address

    from lab import Wire

    cross = (
        "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    u.sendto(b'x', ({ip!r}, 7))\n    print('sent')\nexcept OSError as e:\n    print(e.errno)\n"
        "u.close()"
    )
    with extra_lab("tiso", nodes=1) as other:
        o1 = other.node("node1")
        assert other.subnet != lab.subnet
        with lab.capture(tmp_path / "mine.pcap") as mine, other.capture(tmp_path / "theirs.pcap") as theirs:
            # traffic inside each lab
            o1.exec(
                "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(2)\n"
                f"u.sendto(b'x', ({other.services_ip!r}, 7))\nu.recvfrom(10)\nu.close()"
            )
            node.exec(
                "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(2)\n"
                f"u.sendto(b'x', ({lab.services_ip!r}, 7))\nu.recvfrom(10)\nu.close()"
            )
            # and attempts across: no route (the guests have no gateway)
            assert o1.exec(cross.format(ip=node.ip)).strip() in ("118", "113")  # EHOSTUNREACH
            assert node.exec(cross.format(ip=o1.ip)).strip() in ("118", "113")
            Wire(theirs).expect(UDP, src=o1.ip, dst=other.services_ip, dport=7)
            Wire(mine).expect(UDP, src=node.ip, dst=lab.services_ip, dport=7)
            time.sleep(0.5)

            def foreign(p, subnet, mac) -> bool:
                return p.src == mac or (
                    IP in p and (ip_address(p[IP].src) in subnet or ip_address(p[IP].dst) in subnet)
                )

            assert not [p.summary() for p in mine.packets if foreign(p, other.subnet, o1.mac)]
            assert not [p.summary() for p in theirs.packets if foreign(p, lab.subnet, node.mac)]


def test_killed_qemu_shows_down_with_console_tail() -> None:
    with extra_lab("tdead", nodes=1) as lab:
        nd = lab.node("node1")
        nd.exec("print('marker-before-kill')")
        assert nd.is_alive()
        os.kill(nd.pid, signal.SIGKILL)  # QEMU is the container's PID 1
        deadline = time.monotonic() + 20
        while nd.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not nd.is_alive()
        (row,) = lab.status()
        assert row.state.startswith("down"), row
        assert row.console_tail, row
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.run(
            [sys.executable, "-m", "lab", "--lab", "tdead", "status"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1 and "down" in p.stdout and "console tail" in p.stdout, p.stdout


FAILING = """
from scapy.layers.inet import TCP

def test_fails_on_the_wire(lab, node, wire):
    node.eval("1")
    # some real traffic for the kept pcap (console sessions are not captured), then a miss
    node.exec(f"import socket\\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{lab.host_ip}', 9))")
    wire.expect(TCP, dport=4, within=0.3)
"""


def test_failure_keeps_pcap_and_transcripts(tmp_path: Path) -> None:
    t = tmp_path / "test_inner.py"
    t.write_text(FAILING)
    art = tmp_path / "artifacts"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(t),
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "--mplab-lab",
            "tart",
            "--mplab-nodes",
            "1",
            "--mplab-file",
            str(REPO / "docker-compose.yml"),
            "--mplab-artifacts",
            str(art),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout
    assert "mplab artifacts" in out and "wire.pcap" in out and "node1.console.txt" in out, out
    assert "ladder.html" in out, out  # the pcap's ladder diagram (lab/ladder), named in the report
    assert "no matching packet within" in out and "pcap:" in out, out
    (d,) = [x for x in art.iterdir() if x.name.startswith("test_inner")]
    assert (d / "wire.pcap").stat().st_size > 24
    assert "<svg" in (d / "ladder.html").read_text()
    # both directions, control bytes included (the raw-paste window size is not UTF-8)
    transcript = (d / "node1.console.txt").read_bytes().decode("utf-8", "replace")
    assert "print(repr(1))" in transcript and "\x041\r\n\x04\x04>" in transcript  # sent and answered
    assert leftovers("tart") == {}
