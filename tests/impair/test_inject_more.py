"""The injection builders and responders of lab/inject.py and the scapy TCP peer of
lab/tcp_peer.py that tests/impair/test_impair.py does not reach, on the real lab (Docker,
QEMU, the firmware; no mocks). Each test asserts on what the guest got *and* on the packets.

What lwIP does here is recorded and asserted, also where Linux would differ:
* lwIP's raw API never passes ICMP destination-unreachable to its PCBs: a UDP socket does not
  see a port unreachable (Linux: ECONNREFUSED on the next call), a connect() does not see a
  host unreachable (Linux: EHOSTUNREACH at once) and keeps retransmitting its SYN.
* A gratuitous ARP (reply or request form) for an address already in lwIP's ARP table
  overwrites the entry (etharp_update_arp_entry, ETHARP_FLAG_FIND_ONLY).
* DHCP: with no OFFER lwIP keeps sending DISCOVERs with a growing backoff (2 s, 4 s, ...) and
  isconnected() stays False; a NAK to its INIT-REBOOT REQUEST (sent on link up) drops the
  address and goes back to DISCOVER.
* DNS: SERVFAIL and REFUSED fail getaddrinfo at once with a negative code (no other server to
  try); a truncated answer is not retried over TCP; an answer with the wrong ID is ignored and
  the query is retransmitted; the resolver gives up after about 6-7 s.

The ``lab`` fixture is shared by the session: every test undoes what it changes (responders
and TCP peers are context managers that remove their nft rules; DHCP is re-run on the guest).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from lab import Lab, Node, snippet
from lab.impair import nft_rules
from lab.inject import (
    DhcpNak,
    DhcpNoOffer,
    DnsResponder,
    gratuitous_arp,
    icmp_host_unreachable,
    icmp_port_unreachable,
    wait_for,
)
from lab.tcp_peer import TcpPeer

pytestmark = pytest.mark.docker

# the firmware's errno values (newlib numbering)
ETIMEDOUT = 116


def guest(node: Node, body: str, expr: str = "None", timeout: float = 15.0) -> tuple[str, Any, int]:
    """Run ``body`` on the guest, then ``expr``: ('ok', value, ms) or ('err', errno, ms)."""
    r = snippet.run(node, body, expr, timeout=timeout, errno_names=False)
    return r.kind, r.value, r.ms


class Background(threading.Thread):
    """Run a blocking guest call while the test injects; ``result()`` joins and re-raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as e:  # re-raised in result()
            self.error = e

    def result(self, timeout: float = 30.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the guest call did not return"
        if self.error is not None:
            raise self.error
        return self.value


def dhcp_type(p: Packet) -> int | None:
    if not p.haslayer(DHCP):
        return None
    opts = {o[0]: o[1] for o in p[DHCP].options if isinstance(o, tuple)}
    return opts.get("message-type")


def dhcp_from(wire: Any, node: Node, since: float, mtype: int) -> list[Packet]:
    return [p for p in wire.packets(since) if p[Ether].src.lower() == node.mac.lower() and dhcp_type(p) == mtype]


def redo_dhcp(node: Node, timeout: float = 20.0) -> None:
    """Restart the guest's DHCP client at once (lan.active off/on) and wait for the lease, so
    the session lab is as it was (the backoff would otherwise take up to a minute)."""
    node.exec("lan.active(False)\nlan.active(True)")
    node.wait_connected(timeout)
    deadline = time.monotonic() + 5
    while not node.ip and time.monotonic() < deadline:  # node.ip is dnsmasq's lease file
        time.sleep(0.1)


# ---- ICMP -------------------------------------------------------------------------------------
def test_icmp_port_unreachable_is_ignored_by_udp_socket(lab: Lab, node: Node, wire, host_peer) -> None:
    # A bound host socket that never answers: the host kernel sends no ICMP of its own (for a
    # really closed port it would), so the injected port unreachable is the only one.
    h = host_peer.udp(timeout=3)
    port = h.getsockname()[1]
    node.exec(
        f"import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.connect(({lab.host_ip!r}, {port}))\nu.settimeout(1)\nu.send(b'ping')"
    )
    assert h.recv(64) == b"ping"
    orig = wire.expect(UDP, src=node.ip, dst=lab.host_ip, dport=port)
    icmp = icmp_port_unreachable(orig)
    assert icmp[IP].src == lab.host_ip and icmp[IP].dst == node.ip and icmp[Ether].dst == orig[Ether].src
    wire.inject(icmp)
    got = wire.expect(ICMP, type=3, code=3, src=lab.host_ip, dst=node.ip)
    # the quote is the guest's own IP header + the first 8 bytes (the UDP header)
    assert bytes(got[ICMP].payload)[:28] == bytes(orig[IP])[:28]
    try:
        kind, val, ms = guest(node, "u.recv(64)")
        # lwIP drops ICMP errors for UDP: the socket just times out (Linux: ECONNREFUSED)
        assert (kind, val) == ("err", ETIMEDOUT), (kind, val)
        assert 900 <= ms <= 3000, ms  # its own 1 s timeout
        kind, val, _ = guest(node, "pass", "u.send(b'again')")
        assert (kind, val) == ("ok", 5)  # and the next send goes out as usual
        assert h.recv(64) == b"again"
    finally:
        node.exec("u.close()")
    icmps = [p for p in wire.packets() if p.haslayer(ICMP) and p[IP].dst == node.ip]
    assert len(icmps) == 1, [p.summary() for p in icmps]  # ours only: nothing from the kernel
    wire.expect_none(ICMP, src=node.ip, within=0.2)  # the guest does not answer an ICMP error


def test_icmp_host_unreachable_does_not_abort_connect(lab: Lab, node: Node, wire) -> None:
    # TcpPeer(listen=False): nobody answers the SYN, and its nft rule keeps the host kernel's
    # RST from answering it either: the guest's SYN is left to time out.
    with TcpPeer(lab, listen=False) as peer:
        since = wire.mark()
        bg = Background(
            lambda: guest(node, f"s = socket.socket()\ns.settimeout(4)\ns.connect(({lab.host_ip!r}, {peer.port}))")
        )
        syn = wire.expect(TCP, flags="S", src=node.ip, dst=lab.host_ip, dport=peer.port, since=since, within=3)
        wire.inject(icmp_host_unreachable(syn, src=lab.gateway))  # from the "router"
        icmp = wire.expect(ICMP, type=3, code=1, dst=node.ip, since=since)
        kind, val, ms = bg.result()
        node.exec("s.close()")
    # lwIP ignores it: connect() runs to its own timeout (Linux: EHOSTUNREACH at once)
    assert (kind, val) == ("err", ETIMEDOUT), (kind, val)
    assert 3900 <= ms <= 6000, ms  # its own 4 s timeout
    syns = [p for p in wire.packets(since) if p.haslayer(TCP) and p[TCP].flags == "S" and p[IP].src == node.ip]
    assert len(syns) >= 2 and all(p[TCP].seq == syn[TCP].seq for p in syns), [p.summary() for p in syns]
    assert any(float(p.time) > float(icmp.time) for p in syns), "no SYN retransmit after the ICMP"
    assert bytes(icmp[ICMP].payload)[:28] == bytes(syn[IP])[:28]


# ---- ARP --------------------------------------------------------------------------------------
def test_gratuitous_arp_moves_guest_arp_entry(lab: Lab, node: Node, wire) -> None:
    fake = "02:00:00:00:be:ef"  # locally administered; nobody on the LAN has it

    def echo(payload: bytes) -> tuple[str, Any, int]:
        return guest(node, f"u.sendto({payload!r}, ({lab.services_ip!r}, 7))", "u.recv(64)")

    node.exec("import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(1)")
    try:
        assert echo(b"one")[:2] == ("ok", b"one")  # the guest now has an ARP entry for services
        real = wire.expect(UDP, src=node.ip, dst=lab.services_ip, dport=7)[Ether].dst
        # The builder's frame, but unicast to this guest: a broadcast would also rewrite the
        # host's, the other node's and dnsmasq's caches in this shared lab.
        garp = gratuitous_arp(lab.services_ip, fake)
        assert garp[ARP].op == 2 and garp[ARP].psrc == garp[ARP].pdst == lab.services_ip
        assert garp[ARP].hwsrc == garp[Ether].src == fake and garp[Ether].dst == "ff:ff:ff:ff:ff:ff"
        garp[Ether].dst = node.mac
        since = wire.mark()
        wire.inject(garp)
        wire.expect(ARP, op=2, psrc=lab.services_ip, hwsrc=fake, since=since)
        kind, val, _ = echo(b"two")
        moved = wire.expect(UDP, src=node.ip, dst=lab.services_ip, dport=7, since=since)
        assert moved[Ether].dst == fake, moved.summary()  # the next frame goes to the new MAC
        assert (kind, val) == ("err", ETIMEDOUT)  # ... so no echo comes back
        wire.expect_none(ARP, src=node.mac, since=since, within=0.1)  # no ARP request: it trusted it
    finally:
        # the request form, with the real MAC, puts the entry back
        back = gratuitous_arp(lab.services_ip, real, reply=False)
        assert back[ARP].op == 1
        back[Ether].dst = node.mac
        since = wire.mark()
        wire.inject(back)
        res = echo(b"three")
        node.exec("u.close()")
    assert res[:2] == ("ok", b"three")
    assert wire.expect(UDP, src=node.ip, dst=lab.services_ip, dport=7, since=since)[Ether].dst == real


# ---- DHCP -------------------------------------------------------------------------------------
def test_dhcp_no_offer_after_release(lab: Lab, node: Node, wire) -> None:
    ip0 = node.ip
    since = wire.mark()
    node.exec("lan.active(False)")  # DHCPRELEASE (dnsmasq sees it: the responder is not on yet)
    try:
        rel = wire.expect(DHCP, where=lambda p: dhcp_type(p) == 7 and p[Ether].src == node.mac, since=since)
        assert rel[BOOTP].ciaddr == ip0
        with DhcpNoOffer(lab, node) as blk:
            assert any(blk.tag in str(r.get("comment")) for r in nft_rules(lab.name, "bridge"))
            t0 = wire.mark()
            node.exec("lan.active(True)")
            assert wait_for(lambda: len(dhcp_from(wire, node, t0, 1)) >= 3, 9.0), "fewer than 3 DISCOVERs in 9 s"
            connected = node.connected()
            ifc = node.eval("lan.ifconfig()[0]")
            assert len(blk.seen) >= 3 and not blk.errors
        assert not any(blk.tag in str(r.get("comment")) for r in nft_rules(lab.name, "bridge"))
    finally:
        redo_dhcp(node)
    assert connected is False and ifc == "0.0.0.0"
    disc = dhcp_from(wire, node, t0, 1)
    gaps = [float(b.time) - float(a.time) for a, b in itertools.pairwise(disc)]
    assert 1.0 <= gaps[0] <= 3.0 and gaps[1] >= gaps[0] * 1.5, gaps  # lwIP's backoff: 2 s, 4 s, ...
    chaddr = bytes.fromhex(node.mac.replace(":", ""))
    offers = [p for p in wire.packets(t0) if dhcp_type(p) == 2 and p[BOOTP].chaddr[:6] == chaddr]
    assert not any(float(p.time) < float(disc[2].time) for p in offers), "an OFFER got through"
    assert node.connected() and node.ip  # and DHCP works again once the responder is gone


def test_dhcp_nak_on_reboot_request(lab: Lab, node: Node, wire) -> None:
    # lwIP renews at T1 = half of dnsmasq's 1 h lease; the renewal a test can trigger is the
    # INIT-REBOOT REQUEST lwIP sends for its lease after a link flap (dhcp_network_changed).
    ip0 = node.ip
    try:
        with DhcpNak(lab, node) as nak:
            since = wire.mark()
            node.link(False)
            assert wait_for(lambda: not node.connected(), 5.0, poll=0.1)
            node.link(True)
            assert wait_for(lambda: nak.sent, 6.0), f"no REQUEST to NAK (seen: {[p.summary() for p in nak.seen]})"
            assert wait_for(lambda: dhcp_from(wire, node, since, 1), 5.0), "no DISCOVER after the NAK"
            connected = node.connected()
            ifc = node.eval("lan.ifconfig()[0]")
            assert not nak.errors, nak.errors
    finally:
        node.link(True)
        redo_dhcp(node)
    req = dhcp_from(wire, node, since, 3)[0]
    opts = {o[0]: o[1] for o in req[DHCP].options if isinstance(o, tuple)}
    assert opts.get("requested_addr") == ip0, opts
    n = wire.expect(UDP, sport=67, dport=68, since=since, where=lambda p: dhcp_type(p) == 6)
    assert n[BOOTP].xid == req[BOOTP].xid and n[IP].src == lab.services_ip
    assert float(n.time) > float(req.time)
    disc = [p for p in dhcp_from(wire, node, since, 1) if float(p.time) > float(n.time)]
    assert disc, "no DISCOVER after the NAK"
    # the NAK took the address away: isconnected() is False until a new lease
    assert connected is False and ifc == "0.0.0.0"
    assert node.connected() and node.ip


# ---- DNS --------------------------------------------------------------------------------------
def _lookup(node: Node, name: str) -> tuple[str, Any, int]:
    return guest(node, "pass", f"socket.getaddrinfo({name!r}, 80)[0][-1][0]", timeout=20)


@pytest.mark.parametrize("mode, rcode", [("servfail", 2), ("refused", 5)])
def test_dns_error_rcode_gives_negative_error(lab: Lab, node: Node, wire, mode: str, rcode: int) -> None:
    since = wire.mark()
    with DnsResponder(lab, "peer.lab", mode, node=node) as dns:
        kind, val, ms = _lookup(node, "peer.lab")
    # lwIP's first retransmit comes at its next 1 s DNS tick, which may fall before our answer:
    # then both copies are answered
    assert dns.seen and len(dns.sent) == len(dns.seen) and not dns.errors, (dns.seen, dns.sent, dns.errors)
    assert kind == "err" and isinstance(val, int) and val < 0, (kind, val)
    assert ms < 3000, f"{ms} ms: a timeout (about 6.6 s), not the {mode} answer"
    q = wire.expect(DNS, src=node.ip, dst=lab.services_ip, since=since, where=lambda p: p[DNS].qr == 0)
    a = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=since, where=lambda p: p[DNS].qr == 1)
    assert a[DNS].rcode == rcode and a[DNS].id == q[DNS].id and a[DNS].ancount == 0
    # no query after the answer: lwIP has no other server to try and does not retry after an
    # error rcode
    time.sleep(0.3)
    assert not [p for p in wire.packets(float(a.time)) if p.haslayer(DNS) and p[DNS].qr == 0 and p[IP].src == node.ip]


def test_dns_truncated_answer_is_not_retried_over_tcp(lab: Lab, node: Node, wire) -> None:
    since = wire.mark()
    with DnsResponder(lab, "peer.lab", "truncated", node=node) as dns:
        kind, val, ms = _lookup(node, "peer.lab")
    assert dns.sent and not dns.errors
    a = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=since, where=lambda p: p[DNS].qr == 1)
    assert a[DNS].tc == 1 and a[DNS].ancount == 0 and a[DNS].rcode == 0
    # lwIP has no DNS over TCP: an answer with no address is an error at once (a stub resolver
    # on Linux would retry over TCP)
    assert kind == "err" and val < 0 and ms < 3000, (kind, val, ms)
    wire.expect_none(TCP, src=node.ip, dport=53, since=since, within=0.2)


def test_dns_delayed_answer_within_timeout(lab: Lab, node: Node, wire) -> None:
    since = wire.mark()
    with DnsResponder(lab, "peer.lab", "delay", delay=0.5, node=node) as dns:
        kind, val, ms = _lookup(node, "peer.lab")
    assert dns.sent and not dns.errors, (dns.sent, dns.errors)
    assert (kind, val) == ("ok", lab.services_ip), (kind, val)
    assert ms >= 450, ms
    q = wire.expect(DNS, src=node.ip, since=since, where=lambda p: p[DNS].qr == 0)
    a = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=since, where=lambda p: p[DNS].qr == 1)
    assert float(a.time) - float(q.time) >= 0.45 and a[DNS].ancount == 1 and a[DNS].an[0].rdata == lab.services_ip
    assert a[DNS].an[0].ttl == 0  # like dnsmasq: the guest must not cache our answer past the test


def test_dns_delayed_answer_beyond_timeout(lab: Lab, node: Node, wire) -> None:
    since = wire.mark()
    with DnsResponder(lab, "peer.lab", "delay", delay=7.5, node=node) as dns:
        kind, val, ms = _lookup(node, "peer.lab")
        failed_at = time.time()
        # the first answer does come, after the guest gave up
        late = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=since, within=3, where=lambda p: p[DNS].qr == 1)
    stopped = time.time()
    assert kind == "err" and val < 0, (kind, val)
    assert ms >= 5500, ms  # lwIP's resolver timeout, not a fast error
    assert len(dns.seen) >= 3 and not dns.errors, dns.errors
    queries = [p for p in wire.packets(since) if p.haslayer(DNS) and p[DNS].qr == 0 and p[IP].src == node.ip]
    assert len(queries) >= 3 and len({p[DNS].id for p in queries}) == 1, [p.summary() for p in queries]
    assert float(late.time) > failed_at - 0.2 and late[DNS].id == queries[0][DNS].id
    # the resolver's port is closed by then: lwIP answers the late answer with a port unreachable
    icmp = wire.expect(ICMP, type=3, code=3, src=node.ip, dst=lab.services_ip, since=float(late.time))
    assert icmp[UDPerror].sport == 53 and icmp[UDPerror].dport == queries[0][UDP].sport
    # the answers still scheduled when the responder stopped are cancelled: wait until the third
    # query's answer would have been due, and see nothing after the stop
    time.sleep(max(0.0, float(queries[2].time) + 7.5 + 0.3 - time.time()))
    answers = [
        p
        for p in wire.packets(stopped)
        if p.haslayer(DNS) and p[DNS].qr == 1 and p[IP].dst == node.ip and not p.haslayer(ICMP)
    ]
    assert not answers, [p.summary() for p in answers]


def test_dns_wrong_id_is_ignored_then_real_answer(lab: Lab, node: Node, wire) -> None:
    since = wire.mark()
    dns = DnsResponder(lab, "peer.lab", "wrong_id", node=node).start()
    try:
        bg = Background(lambda: _lookup(node, "peer.lab"))
        assert wait_for(lambda: dns.sent, 5.0), "the query never reached the responder"
    finally:
        dns.stop()  # from now on dnsmasq answers the guest's retransmitted query
    kind, val, ms = bg.result()
    assert not dns.errors
    assert (kind, val) == ("ok", lab.services_ip), (kind, val)
    q1 = wire.expect(DNS, src=node.ip, since=since, where=lambda p: p[DNS].qr == 0)
    bad = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=since, where=lambda p: p[DNS].qr == 1)
    assert bad[DNS].id == (q1[DNS].id + 1) & 0xFFFF and bad[DNS].an[0].rdata == lab.services_ip
    # the guest did not take it: it asked again (same ID), and took dnsmasq's answer to that
    q2 = wire.expect(DNS, src=node.ip, since=float(bad.time) + 1e-6, where=lambda p: p[DNS].qr == 0)
    good = wire.expect(DNS, src=lab.services_ip, dst=node.ip, since=float(q2.time), where=lambda p: p[DNS].qr == 1)
    assert q2[DNS].id == q1[DNS].id == good[DNS].id
    assert ms >= (float(q2.time) - float(q1.time)) * 1000 - 100, ms


# ---- TCP peer ---------------------------------------------------------------------------------
def _guest_server(node: Node, port: int) -> None:
    node.exec(
        "import socket\nsrv = socket.socket()\nsrv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"srv.bind(('0.0.0.0', {port}))\nsrv.listen(1)\nsrv.settimeout(5)"
    )


def test_tcp_peer_connects_to_guest_server(lab: Lab, node: Node, wire) -> None:
    port = 8701
    _guest_server(node, port)
    try:
        with TcpPeer(lab, listen=False) as peer:
            since = wire.mark()
            conn = peer.connect(node.ip, port, timeout=5)
            acc = guest(node, "c, a = srv.accept()\nc.settimeout(5)", "a")
            assert acc[:2] == ("ok", (lab.host_ip, peer.port)), acc
            hs = wire.expect_sequence(
                [
                    (TCP, {"flags": "S", "src": lab.host_ip, "sport": peer.port, "dst": node.ip, "dport": port}),
                    (TCP, {"flags": "SA", "src": node.ip, "sport": port, "dport": peer.port}),
                    (TCP, {"flags": "A", "src": lab.host_ip, "dport": port}),
                ],
                since=since,
            )
            assert hs[1][TCP].ack == (hs[0][TCP].seq + 1) & 0xFFFFFFFF
            assert hs[2][TCP].ack == (hs[1][TCP].seq + 1) & 0xFFFFFFFF
            conn.send(b"hello guest")
            got = guest(node, "d = b''\nwhile len(d) < 11:\n    d += c.recv(64)", "d")
            assert got[:2] == ("ok", b"hello guest"), got
            assert guest(node, "pass", "c.send(b'hi peer')")[:2] == ("ok", 7)
            assert conn.recv(timeout=5, n=7) == b"hi peer"
            node.exec("c.close()")  # the guest closes first: FIN, and the peer ACKs it
            assert conn.wait("remote_fin", timeout=5)
            conn.fin()
            wire.expect(
                TCP, src=node.ip, sport=port, flags="A", since=since, where=lambda p: p[TCP].ack == conn.snd_nxt
            )  # the guest ACKs our FIN
            assert not conn.reset
            wire.expect_none(
                TCP, flags="R", since=since, within=0.2, where=lambda p: port in (p[TCP].sport, p[TCP].dport)
            )
    finally:
        node.exec("srv.close()")


def test_tcp_peer_stall_then_resume(lab: Lab, node: Node, wire) -> None:
    port = 8702
    _guest_server(node, port)
    try:
        with TcpPeer(lab, listen=False) as peer:
            conn = peer.connect(node.ip, port, timeout=5)
            assert guest(node, "c, a = srv.accept()\nc.settimeout(5)", "a")[0] == "ok"
            conn.stall()
            since = wire.mark()
            sent = guest(node, "pass", "c.send(b'stalled data')")
            assert sent[:2] == ("ok", 12)  # buffered: the stall is invisible to send()

            def copies() -> list[Packet]:
                return [
                    p
                    for p in wire.packets(since)
                    if p.haslayer(TCP) and p[IP].src == node.ip and p[TCP].sport == port and p[IP].len > 40
                ]

            # no ACK: the guest retransmits the same segment
            assert wait_for(lambda: len(copies()) >= 2, 8.0), [p.summary() for p in copies()]
            first = copies()[0]
            end = (first[TCP].seq + 12) & 0xFFFFFFFF
            assert all(p[TCP].seq == first[TCP].seq for p in copies())
            wire.expect_none(
                TCP, src=lab.host_ip, sport=peer.port, since=since, within=0, where=lambda p: p[TCP].ack == end
            )
            assert bytes(conn.data[-12:]) == b"stalled data"  # it still landed in the peer
            conn.resume()
            ack = wire.expect(
                TCP, src=lab.host_ip, sport=peer.port, flags="A", since=since, where=lambda p: p[TCP].ack == end
            )
            n = len(copies())
            wire.expect_none(
                TCP, src=node.ip, sport=port, since=float(ack.time) + 0.05, within=1.5, where=lambda p: p[IP].len > 40
            )  # the retransmits stop
            assert len(copies()) == n
            conn.send(b"after")  # and the connection works both ways again
            assert guest(node, "pass", "c.recv(64)")[:2] == ("ok", b"after")
            assert conn.recv(timeout=1) == b"stalled data"
            node.exec("c.close()")
            assert conn.wait("remote_fin", timeout=5)
            conn.fin()
    finally:
        node.exec("srv.close()")
