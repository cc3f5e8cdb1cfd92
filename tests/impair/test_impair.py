"""Impairments, link flaps, injection and the scapy TCP peer against the real lab (Docker,
QEMU, the firmware; no mocks). The ``lab`` fixture is shared by the whole session: every
test clears what it impairs (context managers / finally)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.dhcp import DHCP
from scapy.layers.dns import DNS
from scapy.layers.inet import TCP, UDP

from lab import Lab, Node
from lab.impair import nft_rules, nft_table
from lab.inject import DnsResponder, tcp_rst_for
from lab.tcp_peer import TcpPeer

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def mplab(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--lab", lab.name, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_loss_rate_over_1000_udp_datagrams(lab: Lab, node: Node, host_peer, wire) -> None:
    rx = host_peer.udp(timeout=1.0)
    # Room for all 1000 datagrams, so a reader thread starved of the GIL can't add host-side
    # loss to the link's (SO_RCVBUFFORCE: root may exceed rmem_max).
    rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
    port = rx.getsockname()[1]
    got: set[bytes] = set()
    done = threading.Event()

    def reader() -> None:  # read while the guest sends: the socket buffer holds only ~300
        while not done.is_set():
            try:
                got.add(rx.recv(64))
            except TimeoutError:
                pass

    node.exec(
        f"import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.connect(({lab.host_ip!r}, {port}))"
    )
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    # Resolve the host's MAC before the loss starts: a dropped ARP request leaves lwIP silent
    # until its 1 s ARP timer asks again, ~350 datagrams later (seen in CI: 0..349 missing).
    node.exec("u.send(b'warm')")
    wire.expect(UDP, dport=port, within=5.0)
    with node.impair(loss="10%") as imp:
        assert node.impairments()["loss"] == "10%"
        assert imp.loss == "10%"
        node.exec("import time\nfor i in range(1000):\n    u.send(b'%04d' % i)\n    time.sleep_ms(1)\n", timeout=60)
        time.sleep(1.0)
        done.set()
        th.join()
    node.exec("u.close()")
    assert node.impairments() == {}
    # Counted where the impaired link ends: on the lab bridge, past the drop rule; the host
    # socket's count is reported beside it.
    on_wire = {bytes(p[UDP].payload) for p in wire.packets() if p.haslayer(UDP) and p[UDP].dport == port}
    on_wire.discard(b"warm")
    got.discard(b"warm")
    lost = 1000 - len(on_wire)
    assert 60 <= lost <= 140, f"lost {lost}/1000 on the wire with loss 10% (host socket got {len(got)})"


def _rtt_on_wire(lab: Lab, node: Node, wire, host_peer, n: int = 5) -> float:
    """UDP request host→guest, reply guest→host: min time between them in the pcap."""
    s = host_peer.udp()
    node.exec(
        "import socket\ne = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ne.bind(('0.0.0.0', 7007))\n"
        "e.settimeout(5)"
    )
    best = 99.0
    for i in range(n):
        since = wire.mark()
        s.sendto(b"ping%d" % i, (node.ip, 7007))
        node.exec("d, a = e.recvfrom(64)\ne.sendto(d, a)")
        s.recvfrom(64)
        q = wire.expect(UDP, dst=node.ip, dport=7007, since=since)
        r = wire.expect(UDP, src=node.ip, sport=7007, since=since)
        best = min(best, float(r.time) - float(q.time))
    node.exec("e.close()")
    return best


def test_delay_shows_in_pcap_and_clear_removes_it(lab: Lab, node: Node, wire, host_peer) -> None:
    # runs with either engine: tc netem, or the userspace engine where the kernel lacks netem
    base = _rtt_on_wire(lab, node, wire, host_peer)
    r = mplab(lab, "impair", "node1", "--delay", "100ms")
    assert r.returncode == 0, r.stderr
    try:
        slow = _rtt_on_wire(lab, node, wire, host_peer)
    finally:
        r = mplab(lab, "impair", "node1", "--clear")
    assert r.returncode == 0, r.stderr
    after = _rtt_on_wire(lab, node, wire, host_peer)
    assert slow >= base + 0.095, (base, slow)
    assert after < base + 0.05, (base, after)


def test_rate_and_loss_via_cli_show_in_status(lab: Lab, node: Node) -> None:
    r = mplab(lab, "impair", "node1", "--loss", "5%", "--rate", "2mbit")
    try:
        assert r.returncode == 0, r.stderr
        assert "loss 5%" in r.stdout and "rate 2mbit" in r.stdout
        st = mplab(lab, "status")
        assert "impairments node1: out: loss 5% rate 2mbit" in st.stdout, st.stdout
    finally:
        r = mplab(lab, "impair", "node1", "--clear")
    assert r.returncode == 0, r.stderr
    assert "impairments" not in mplab(lab, "status").stdout
    assert node.impairments() == {}
    assert node.eval("1 + 1") == 2  # the console never went through the impairment


def test_link_down_and_up(lab: Lab, node: Node, wire) -> None:
    try:
        node.link(False)
        deadline = time.monotonic() + 5
        while node.connected():
            assert time.monotonic() < deadline, "isconnected() still True 5 s after link down"
            time.sleep(0.1)
        since = wire.mark()
    finally:
        node.link(True)
    node.wait_connected(30)
    # lwIP restarts DHCP on link up: a REQUEST/ACK for the same lease is on the wire
    wire.expect(DHCP, src=node.ip or "0.0.0.0", since=since, within=5, where=lambda p: p.haslayer(DHCP))
    wire.expect(UDP, sport=67, since=since, within=5)
    assert node.ip and node.eval("lan.ifconfig()[0]") == node.ip


def test_injected_rst_gives_econnreset(lab: Lab, node: Node, wire, host_peer) -> None:
    srv = host_peer.tcp_server()
    port = srv.getsockname()[1]
    node.exec(f"import socket\nc = socket.socket()\nc.connect(({lab.host_ip!r}, {port}))\nc.send(b'hi')")
    conn, (cip, cport) = srv.accept()
    try:
        assert conn.recv(2) == b"hi"
        conn.sendall(b"hello")
        assert node.eval("c.recv(5)") == b"hello"
        wire.expect(TCP, src=node.ip, dport=port, flags="A", where=lambda p: p[TCP].ack > 0, within=2)
        time.sleep(0.3)  # let the guest's ACK of "hello" reach the capture
        rst = tcp_rst_for(wire.capture, cip, cport, lab.host_ip, port)
        wire.inject(rst)
        wire.expect(TCP, flags="R", dst=cip, dport=cport, within=2)
        out = node.exec(
            "try:\n    c.recv(10)\n    print('no error')\nexcept OSError as e:\n    print('errno', e.errno)\nc.close()"
        )
    finally:
        conn.close()
    assert out.strip() == "errno 104", out  # ECONNRESET


def test_dns_nxdomain_gives_negative_getaddrinfo_error(lab: Lab, node: Node, wire) -> None:
    ok = node.eval("__import__('socket').getaddrinfo('peer.lab', 80)[0][-1][0]")
    assert ok == lab.services_ip
    with DnsResponder(lab, "peer.lab", "nxdomain", node=node) as dns:
        t0 = time.monotonic()
        out = node.exec(
            "import socket\ntry:\n    print(socket.getaddrinfo('peer.lab', 80))\n"
            "except OSError as e:\n    print('errno', e.errno)"
        )
        took = time.monotonic() - t0
        assert dns.seen and dns.sent and not dns.errors, (dns.seen, dns.sent, dns.errors)
    assert took < 2.0, f"getaddrinfo took {took:.1f}s: a timeout, not our NXDOMAIN"
    assert out.startswith("errno -"), out
    wire.expect(DNS, src=lab.services_ip, dst=node.ip, where=lambda p: p[DNS].qr == 1 and p[DNS].rcode == 3)
    # the responder is gone: dnsmasq answers again
    assert node.eval("__import__('socket').getaddrinfo('peer.lab', 80)[0][-1][0]") == lab.services_ip


def test_tcp_peer_out_of_order_zero_window_early_fin(lab: Lab, node: Node, wire) -> None:
    with TcpPeer(lab) as peer:
        rules = nft_rules(lab.name, "inet")
        assert any(peer.tag in str(r.get("comment")) for r in rules), rules
        node.exec(f"import socket\nt = socket.socket()\nt.settimeout(5)\nt.connect(({lab.host_ip!r}, {peer.port}))")
        conn = peer.accept()
        # out-of-order segments: the guest's lwIP reassembles them
        conn.send_out_of_order(b"abcdefghijkl", parts=3)
        assert node.exec("d = b''\nwhile len(d) < 12:\n    d += t.recv(12)\nprint(d)").strip() == "b'abcdefghijkl'"
        # zero window: the guest's data does not get in
        conn.zero_window()
        node.exec("t.send(b'x' * 100)")
        assert conn.recv(timeout=1.0) == b""
        conn.open_window()
        assert conn.recv(timeout=10.0, n=100) == b"x" * 100
        # no kernel RST from the host while the peer plays TCP
        wire.expect_none(TCP, src=lab.host_ip, sport=peer.port, flags="R", within=0.2)
        # early FIN: the guest reads EOF
        conn.fin()
        assert node.exec("print(t.recv(10))").strip() == "b''"
        node.exec("t.close()")
        assert conn.wait("remote_fin", timeout=5)
    assert not any(peer.tag in str(r.get("comment")) for r in nft_rules(lab.name, "inet"))


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--loss", "10 %"], "invalid loss '10 %'"),
        (["--loss", "abc"], "invalid loss 'abc'"),
        (["--delay=-5ms"], "must not be negative"),
        (["--jitter", "20ms"], "jitter needs a delay"),
        (["--reorder", "5%"], "reorder needs a delay"),
        (["--rate", "fast"], "invalid rate 'fast'"),
        ([], "nothing to do"),
        (["--clear", "--loss", "1%"], "--clear takes no other"),
    ],
)
def test_impair_bad_input(args: list[str], msg: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", "nolab", "impair", "node1", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 2, r
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_link_bad_input() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "link", "node1", "sideways"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "invalid choice" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_everything_gone_after_down() -> None:
    name = f"{os.environ.get('LAB', 'imp')[:5]}dn"
    lab = Lab(name, progress=None)
    lab.down()
    try:
        lab.up(nodes=1)
        nd = lab.node("node1")
        nd.impair(loss="20%", rate="1mbit", direction="both")
        assert nd.impairments()
        peer = TcpPeer(lab).start()  # deliberately not stopped: down must remove its rule
        DnsResponder(lab, "peer.lab", "servfail").start().abandon()  # rule left behind
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f"bridge {nft_table(name)}" in tables and f"inet {nft_table(name)}" in tables
        peer.abandon()
    finally:
        lab.down()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert nft_table(name) not in tables, tables
    ps = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=mplab.lab={name}"], capture_output=True, text=True
    ).stdout
    assert ps.strip() == ""  # the containers, and with them their qdiscs, are gone
    assert subprocess.run(["ip", "link", "show", f"mplab-{name}"], capture_output=True).returncode != 0
