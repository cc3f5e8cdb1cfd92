"""sendto(), recvfrom() over UDP: header fields and checksum on the wire, sender address,
broadcast, non-blocking, queueing."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from lab import packets as _w
from lab.snippet import run


def _udp(ip: str, port: int) -> socket.socket:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.bind((ip, port))
    u.settimeout(3)
    return u


@pytest.mark.check("sendto", "ports, length, payload, valid checksum on the wire")
def test_sendto_wire(node, wire, addrs, port):
    h = _udp(addrs.host, port)
    try:
        r = run(
            node,
            f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port + 1}))\n"
            f"n = u.sendto(b'ping-udp-123', ({addrs.host!r}, {port}))\nu.close()",
            "n",
        )
        data, src = h.recvfrom(100)
    finally:
        h.close()
    assert r.ok and r.value == 12, r
    assert data == b"ping-udp-123" and src == (node.ip, port + 1)
    p = wire.expect(UDP, src=node.ip, dst=addrs.host, sport=port + 1, dport=port)
    assert p[UDP].len == 8 + 12
    assert bytes(p[UDP].payload)[:12] == b"ping-udp-123"
    assert p[UDP].chksum != 0, "UDP checksum not computed"
    assert _w.checksum_ok(p), "bad IP/UDP checksum"


@pytest.mark.check("recvfrom", "returns the payload and the sender's address")
def test_recvfrom_sender(node, wire, addrs, port):
    h = _udp(addrs.host, port)
    try:
        run(node, f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port + 1}))")
        h.sendto(b"from-host", (node.ip, port + 1))
        r = run(node, "u.settimeout(3)\nd = u.recvfrom(100)\nu.close()", "d")
    finally:
        h.close()
    assert r.ok and r.value == (b"from-host", (addrs.host, port)), r
    wire.expect(UDP, src=addrs.host, dst=node.ip, sport=port, dport=port + 1)


@pytest.mark.check("recvfrom", "UDP echo with the services peer: request and reply on the wire")
def test_echo_services(node, wire, addrs):
    r = run(
        node,
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(3)\n"
        f"u.sendto(b'echo me', ({addrs.services!r}, 7))\nd = u.recvfrom(100)\nu.close()",
        "d",
    )
    assert r.ok and r.value == (b"echo me", (addrs.services, 7)), r
    q = wire.expect(UDP, src=node.ip, dst=addrs.services, dport=7)
    wire.expect(UDP, src=addrs.services, dst=node.ip, sport=7, dport=q[UDP].sport)


@pytest.mark.check("sendto", "broadcast reaches the LAN (Ethernet and IP broadcast)")
def test_broadcast(node, wire, addrs, port):
    h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    h.bind(("", port))
    h.settimeout(3)
    try:
        r = run(
            node,
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
            f"n = u.sendto(b'to-all', ({addrs.broadcast!r}, {port}))\nu.close()",
            "n",
        )
        data, src = h.recvfrom(100)
    finally:
        h.close()
    assert r.ok and r.value == 6, r
    assert data == b"to-all" and src[0] == node.ip
    p = wire.expect(UDP, src=node.ip, dst=addrs.broadcast, dport=port)
    assert p[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert _w.checksum_ok(p)


@pytest.mark.check("sendto", "broadcast without SO_BROADCAST: EACCES")
@pytest.mark.xfail(
    strict=True,
    reason="lwIP is built with IP_SOF_BROADCAST=0, so a broadcast sendto() goes out without "
    "SO_BROADCAST; Linux/CPython raise EACCES. Upstream: "
    "https://github.com/micropython/micropython/issues/8729 and PR "
    "https://github.com/micropython/micropython/pull/11818 (SO_BROADCAST added to modlwip; it is "
    "enforced only on builds with IP_SOF_BROADCAST=1, e.g. rp2 gave EHOSTUNREACH without it)",
)
def test_broadcast_needs_option(node, wire, addrs, port):
    r = run(
        node,
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"try:\n    u.sendto(b'x', ({addrs.broadcast!r}, {port}))\nfinally:\n    u.close()",
    )
    assert r.errno == "EACCES", r


@pytest.mark.check("recvfrom", "non-blocking with no data: EAGAIN at once")
def test_recvfrom_nonblocking(node, wire, port):
    r = run(
        node,
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port}))\n"
        "u.setblocking(False)\ntry:\n    u.recvfrom(10)\nfinally:\n    u.close()",
    )
    assert r.errno == "EAGAIN" and r.ms < 100, r
    assert not [p for p in wire.packets() if UDP in p and p[IP].src == node.ip]


@pytest.mark.check("recvfrom", "two datagrams queued before recvfrom: both delivered")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip keeps one pbuf per UDP socket (_lwip_udp_incoming drops a datagram "
    "while one is unread); Linux queues up to SO_RCVBUF. Upstream: "
    "https://github.com/micropython/micropython/pull/17261 (merged for 1.26: a 4-deep queue; "
    "the 1.25.0 image still has one slot)",
)
def test_recvfrom_queue(node, wire, addrs, port):
    h = _udp(addrs.host, port)
    try:
        run(node, f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port + 1}))")
        h.sendto(b"one", (node.ip, port + 1))
        h.sendto(b"two", (node.ip, port + 1))
        wire.expect(UDP, src=addrs.host, dport=port + 1, where=lambda p: bytes(p[UDP].payload) == b"two")
        r = run(
            node,
            "u.settimeout(1)\na = u.recvfrom(10)[0]\ntry:\n    b = u.recvfrom(10)[0]\n" "finally:\n    u.close()",
            "(a, b)",
        )
    finally:
        h.close()
    assert r.ok and r.value == (b"one", b"two"), r


@pytest.mark.check("recvfrom", "bufsize smaller than the datagram: truncated, rest discarded")
def test_recvfrom_truncates(node, wire, addrs, port):
    h = _udp(addrs.host, port)
    try:
        run(node, f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port + 1}))")
        h.sendto(b"0123456789", (node.ip, port + 1))
        wire.expect(UDP, src=addrs.host, dport=port + 1)
        r = run(
            node,
            "u.settimeout(0.3)\na = u.recvfrom(4)[0]\ntry:\n    b = u.recvfrom(10)[0]\n"
            "except OSError as e:\n    b = e.errno\nu.close()",
            "(a, b == errno.ETIMEDOUT)",
        )
    finally:
        h.close()
    assert r.ok and r.value == (b"0123", True), r
