"""Link down/up through QEMU's QMP set_link: isconnected() follows, and DHCP runs again."""

from __future__ import annotations

import time

from scapy.all import BOOTP

from lab.netns import Guest
from lab.packets import dhcp_options
from lab.qmp import Qmp

NIC = "lan9118.0"  # QEMU's id of the -nic model=lan9118 device ("info network")


def test_link_down_then_up(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    qmp = Qmp(guest.qmp_sock)
    try:
        assert NIC in qmp.hmp("info network")
        qmp.execute("set_link", name=NIC, up=False)
        assert guest.wait_connected(False, 10), "isconnected() still True 10 s after the link went down"
        assert c.eval("lan.status()") == 0
        up_at = time.time()
        qmp.execute("set_link", name=NIC, up=True)
    finally:
        qmp.execute("set_link", name=NIC, up=True)
        qmp.close()
    # a fresh lease: a REQUEST from the node after the link came back, and its ACK
    request = guest.wire.dhcp("request", guest.mac, timeout=15, since=up_at)[0]
    ack = guest.wire.dhcp("ack", guest.mac, timeout=10, since=float(request.time))[0]
    assert ack[BOOTP].xid == request[BOOTP].xid
    assert guest.wait_connected(True, 15), "isconnected() not True 15 s after the link came back"
    assert c.eval("lan.ifconfig()[0]") == ack[BOOTP].yiaddr
    assert dhcp_options(request).get("hostname", b"").rstrip(b"\0") == guest.hostname.encode()
