"""SOCK_RAW: an ICMP echo request from a raw socket is on the wire and the reply comes back."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP

from lab import packets as _w
from lab.snippet import run


def _echo(ident: int, seq: int, data: bytes) -> bytes:
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    padded = hdr + b"\0" * (len(hdr) % 2)
    s = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return struct.pack("!BBHHH", 8, 0, ~s & 0xFFFF, ident, seq) + data


@pytest.mark.check("SOCK_RAW", "ICMP echo: request on the wire, reply received with IP header")
def test_raw_icmp_echo(node, wire, addrs):
    pkt = _echo(0x4D50, 7, b"mplab-raw")
    r = run(
        node,
        f"r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\nr.settimeout(3)\n"
        f"n = r.sendto({pkt!r}, ({addrs.host!r}, 0))\nd, a = r.recvfrom(200)\nr.close()",
        "(n, d, a)",
    )
    assert r.ok, r
    n, data, addr = r.value
    assert n == len(pkt)
    assert addr[0] == addrs.host
    req = wire.expect(ICMP, src=node.ip, dst=addrs.host, type=8, id=0x4D50, seq=7)
    assert bytes(req[ICMP].payload)[:9] == b"mplab-raw" and _w.checksum_ok(req)
    wire.expect(ICMP, src=addrs.host, dst=node.ip, type=0, id=0x4D50, seq=7)
    # IPv4 raw sockets deliver the IP header, as on Linux
    ip = IP(data)
    assert ip.src == addrs.host and ip.proto == 1
    assert ip[ICMP].type == 0 and ip[ICMP].id == 0x4D50 and ip[ICMP].seq == 7
    assert bytes(ip[ICMP].payload)[:9] == b"mplab-raw"
