"""DHCP: DISCOVER and REQUEST carry the node's MAC and hostname; the guest binds the ACKed address."""

from __future__ import annotations

from scapy.all import BOOTP

from lab.netns import HOST_IP, Guest
from lab.packets import dhcp_options, mac_bytes


def test_discover_and_request_carry_mac_and_hostname(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    assert c.eval("lan.config('mac')") == mac_bytes(guest.mac)
    assert c.eval("network.hostname()") == guest.hostname
    for kind in ("discover", "request"):
        pkt = guest.wire.dhcp(kind, guest.mac)[0]
        opts = dhcp_options(pkt)
        assert bytes(pkt[BOOTP].chaddr)[:6] == mac_bytes(guest.mac), f"{kind}: chaddr"
        hostname = opts.get("hostname")
        assert hostname is not None, f"DHCP {kind} has no option 12 (hostname): {opts}"
        assert hostname.rstrip(b"\0") == guest.hostname.encode(), f"{kind}: option 12 = {hostname!r}"


def test_guest_binds_the_acked_address(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    ack = guest.wire.dhcp("ack", guest.mac)[-1]
    yiaddr = ack[BOOTP].yiaddr
    opts = dhcp_options(ack)
    assert opts.get("server_id") == HOST_IP
    ifconfig = c.eval("lan.ifconfig()")
    assert ifconfig[0] == yiaddr
    assert ifconfig[1] == opts.get("subnet_mask")
    assert ifconfig[3] == HOST_IP, "DNS server should come from DHCP option 6"
    assert c.eval("lan.ipconfig('addr4')") == (yiaddr, opts.get("subnet_mask"))
    assert c.eval("lan.ipconfig('dhcp4')") is True
    assert c.eval("lan.isconnected()") is True
    request = guest.wire.dhcp("request", guest.mac)[-1]
    assert dhcp_options(request).get("requested_addr") == yiaddr
