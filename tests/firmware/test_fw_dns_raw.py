"""getaddrinfo() asks dnsmasq (the DHCP-given DNS server); a raw ICMP socket pings the host."""

from __future__ import annotations

import random

from scapy.all import ICMP, IP, Raw

from lab.netns import HOST_IP, Guest

GUEST_PING = """
import struct
def _csum(b):
    if len(b) % 2:
        b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
def _raw_ping(dst, ident, seq, payload):
    head = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    pkt = struct.pack('!BBHHH', 8, 0, _csum(head + payload), ident, seq) + payload
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)
    s.settimeout(5)
    try:
        s.sendto(pkt, (dst, 0))
        while True:
            r = s.recv(512)
            if r[0] >> 4 == 4:  # the IP header came along
                r = r[(r[0] & 15) * 4:]
            typ, code, ck, rid, rseq = struct.unpack('!BBHHH', r[:8])
            if typ == 0 and rid == ident:
                return typ, rid, rseq, r[8:]
    finally:
        s.close()
"""


def test_getaddrinfo_asks_dnsmasq(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    result = c.eval("socket.getaddrinfo('peer.lab', 80)")
    assert result, "getaddrinfo returned nothing"
    family, _kind, _proto, _canon, sockaddr = result[0]
    assert family == 2
    assert tuple(sockaddr) == (HOST_IP, 80)
    query = guest.wire.dns_query(guest.ip, HOST_IP, "peer.lab")
    answers = guest.wire.dns_answer(query)
    assert answers == [HOST_IP], f"dnsmasq answered {answers}"
    assert sockaddr[0] in answers
    assert f"query[A] peer.lab from {guest.ip}" in guest.dnsmasq_log.read_text()


def test_raw_socket_icmp_echo(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    ident = random.randrange(1, 0xFFFF)
    payload = b"mplab raw icmp"
    c.exec(GUEST_PING)
    typ, rid, rseq, data = c.eval(f"_raw_ping({HOST_IP!r}, {ident}, 7, {payload!r})")
    assert (typ, rid, rseq, data) == (0, ident, 7, payload)
    request = guest.wire.icmp(guest.ip, HOST_IP, 8, ident)[0]
    assert request[ICMP].seq == 7 and bytes(request[Raw].load) == payload
    reply = guest.wire.icmp(HOST_IP, guest.ip, 0, ident)[0]
    assert reply[IP].dst == guest.ip and bytes(reply[Raw].load) == payload
