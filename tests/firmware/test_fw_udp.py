"""UDP sendto/recvfrom both ways; ports and payloads on the wire; recvfrom names the sender."""

from __future__ import annotations

import socket

from lab.netns import HOST_IP, Guest

GUEST_PORT = 5005


def test_udp_both_ways(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    host = guest.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind((HOST_IP, 0))
    host.settimeout(5)
    host_port = host.getsockname()[1]
    to_host = b"mplab udp guest->host \x00\xff"
    to_guest = b"mplab udp host->guest \x01\xfe"
    try:
        c.exec(
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"u.bind(('0.0.0.0', {GUEST_PORT}))\n"
            "u.settimeout(5)\n"
            f"u.sendto({to_host!r}, ({HOST_IP!r}, {host_port}))\n"
        )
        data, addr = host.recvfrom(2048)
        assert data == to_host
        assert addr == (guest.ip, GUEST_PORT), "host's recvfrom should name the guest's address"
        host.sendto(to_guest, addr)
        got, sender = c.eval("u.recvfrom(256)")
        c.exec("u.close()")
    finally:
        host.close()
    assert got == to_guest
    assert tuple(sender) == (HOST_IP, host_port), "guest's recvfrom should name the host's address"
    guest.wire.udp(guest.ip, HOST_IP, host_port, to_host, sport=GUEST_PORT)
    guest.wire.udp(HOST_IP, guest.ip, GUEST_PORT, to_guest, sport=host_port)
