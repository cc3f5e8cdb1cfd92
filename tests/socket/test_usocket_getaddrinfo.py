"""getaddrinfo(): DNS on the wire (query to the DHCP-learned server, QNAME, answer),
numeric addresses without DNS, negative error codes, bounded time against a silent server."""

from __future__ import annotations

import socket
import time

import pytest
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, UDP

from lab import packets as _w
from lab.snippet import run


def _dns(wire, src: str | None = None) -> list:
    return [p for p in wire.packets() if DNS in p and (src is None or p[IP].src == src)]


def _qname(p) -> str:
    return p[DNS].qd[0].qname.decode() if p[DNS].qd else ""


@pytest.mark.check("getaddrinfo", "lab name: A query with the QNAME to the DHCP DNS server; answer = result")
def test_lab_name(node, wire, addrs):
    dns_server = node.eval("__import__('network').ipconfig('dns')")
    assert dns_server == addrs.services, f"DHCP gave DNS {dns_server}, lab says {addrs.services}"
    r = run(node, expr="socket.getaddrinfo('peer.lab', 7)")
    assert r.ok, r
    assert r.value == [(2, 1, 0, "", (addrs.services, 7))], r
    q = wire.expect(DNS, src=node.ip, dst=dns_server, qr=0)
    assert q[UDP].dport == 53
    assert _qname(q).lower() == "peer.lab.", _qname(q)
    assert q[DNS].qd[0].qtype == 1  # A
    a = wire.expect(DNS, src=dns_server, dst=node.ip, qr=1, id=q[DNS].id)
    assert a[DNS].rcode == 0 and a[DNS].ancount >= 1
    answers = [a[DNS].an[i].rdata for i in range(a[DNS].ancount) if a[DNS].an[i].type == 1]
    assert r.value[0][4][0] in [str(x) for x in answers], answers


@pytest.mark.check("getaddrinfo", "numeric address: no DNS packet")
def test_numeric(node, wire, addrs):
    r = run(node, expr=f"socket.getaddrinfo({addrs.host!r}, 8080)")
    assert r.ok and r.value == [(2, 1, 0, "", (addrs.host, 8080))], r
    time.sleep(0.3)  # asserting an absence
    assert not _dns(wire, node.ip), "numeric getaddrinfo sent DNS:\n" + _w.summary(_dns(wire))


@pytest.mark.check("getaddrinfo", "unknown name: OSError with a negative code, NXDOMAIN on the wire")
def test_unknown_name(node, wire, addrs):
    r = run(node, expr="socket.getaddrinfo('no-such-host-x1.lab', 80)")
    assert r.kind == "err" and isinstance(r.errno, int) and r.errno < 0, r
    q = wire.expect(DNS, src=node.ip, qr=0)
    assert _qname(q).lower() == "no-such-host-x1.lab."
    a = wire.expect(DNS, dst=node.ip, qr=1, id=q[DNS].id)
    assert a[DNS].rcode == 3  # NXDOMAIN


@pytest.mark.check("getaddrinfo", "silent DNS server: error within a bounded time, retries on the wire")
def test_silent_server(node, wire, addrs):
    # A host UDP socket on :53 that reads and never answers (a lab address, not outside).
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((addrs.host, 53))
    old = node.eval("__import__('network').ipconfig('dns')")
    try:
        r = run(
            node,
            f"import network\nnetwork.ipconfig(dns={addrs.host!r})\n"
            "try:\n    socket.getaddrinfo('silent-x1.lab', 80)\n"
            f"finally:\n    network.ipconfig(dns={old!r})",
            timeout=40,
        )
    finally:
        sink.close()
    assert r.kind == "err" and isinstance(r.errno, int) and r.errno < 0, r
    assert r.seconds <= 15.0, f"getaddrinfo took {r.seconds}s against a silent server"
    qs = [p for p in _dns(wire, node.ip) if p[IP].dst == addrs.host]
    assert len(qs) >= 2, "no DNS retries:\n" + _w.summary(wire.packets())
    gaps = _w.gaps(_w.times_of(qs))
    print(f"getaddrinfo failed after {r.seconds:.2f}s; {len(qs)} queries, gaps {gaps}")
    assert all(_qname(p).lower() == "silent-x1.lab." for p in qs)


@pytest.mark.check("getaddrinfo", "result tuple shape (family, type, proto, canonname, sockaddr)")
def test_tuple_shape(node, wire, addrs):
    r = run(node, expr="socket.getaddrinfo('host.lab', 443)[0]")
    assert r.ok, r
    fam, typ, proto, canon, sa = r.value
    assert (fam, typ, canon) == (2, 1, "") and sa == (addrs.host, 443), r
    assert isinstance(proto, int)
