"""The guest answers ARP and ICMP echo from the host side of its namespace."""

from __future__ import annotations

import random

from lab.netns import HOST_IP, TAP, Guest, arp_probe, ping
from lab.packets import mac_bytes


def test_guest_answers_arp(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    mac = c.eval("lan.config('mac')")
    assert mac == mac_bytes(guest.mac)
    reply = arp_probe(guest.ns, TAP, HOST_IP, guest.ip)
    assert reply is not None, f"no ARP reply for {guest.ip}\n{guest.wire.summary()}"
    assert reply.hwsrc == guest.mac
    assert reply.pdst == HOST_IP
    guest.wire.arp_reply(guest.ip, guest.mac)


def test_guest_answers_icmp_echo(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    ident = random.randrange(1, 0xFFFF)
    replies = ping(guest.ns, guest.ip, ident, count=3)
    assert [seq for seq, _ in replies] == [1, 2, 3], f"echo replies: {replies}\n{guest.wire.summary()}"
    for seq, payload in replies:
        assert payload == f"mplab-ping-{ident:04x}-{seq}".encode()
    guest.wire.icmp(HOST_IP, guest.ip, 8, ident, count=3)
    guest.wire.icmp(guest.ip, HOST_IP, 0, ident, count=3)
    assert c.eval("lan.isconnected()") is True
