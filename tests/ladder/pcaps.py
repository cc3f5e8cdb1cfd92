"""A small known capture, made with scapy: DHCP, ARP, DNS, a TCP connection with bulk data,
three datagrams, an MQTT CONNECT and a ping, between node1, the host and services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import ladder

NODE, HOST, SVC = "10.5.0.64", "10.5.0.1", "10.5.0.2"
NODE_MAC, HOST_MAC, SVC_MAC = "02:00:00:00:00:40", "02:00:00:00:00:01", "02:00:00:00:00:02"
T0 = 1000.0
BULK = 10  # data segments in the TCP connection, each ACKed: 21 frames of bulk with the handshake's ACK


def hosts() -> ladder.Hosts:
    return ladder.Hosts().add("node1", NODE, NODE_MAC).add("host", HOST, HOST_MAC).add("services", SVC, SVC_MAC)


def packets() -> list[Any]:
    from scapy.contrib.mqtt import MQTT, MQTTConnect
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import Raw

    t = [T0]
    out: list[Any] = []

    def add(p: Any, dt: float = 0.01) -> None:
        p.time = t[0]
        t[0] += dt
        out.append(p)

    n2h = Ether(src=NODE_MAC, dst=HOST_MAC) / IP(src=NODE, dst=HOST)
    h2n = Ether(src=HOST_MAC, dst=NODE_MAC) / IP(src=HOST, dst=NODE)
    n2s = Ether(src=NODE_MAC, dst=SVC_MAC) / IP(src=NODE, dst=SVC)
    s2n = Ether(src=SVC_MAC, dst=NODE_MAC) / IP(src=SVC, dst=NODE)
    add(
        Ether(src=NODE_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(NODE_MAC.replace(":", "")))
        / DHCP(options=[("message-type", "discover"), "end"])
    )
    add(s2n / UDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=NODE) / DHCP(options=[("message-type", "offer"), "end"]))
    add(Ether(src=NODE_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=NODE_MAC, psrc=NODE, pdst=SVC))
    add(Ether(src=SVC_MAC, dst=NODE_MAC) / ARP(op=2, hwsrc=SVC_MAC, psrc=SVC, pdst=NODE, hwdst=NODE_MAC))
    add(n2s / UDP(sport=1234, dport=53) / DNS(id=1, rd=1, qd=DNSQR(qname="www.lab")))
    answer = DNS(id=1, qr=1, qd=DNSQR(qname="www.lab"), an=DNSRR(rrname="www.lab", rdata=SVC))
    add(s2n / UDP(sport=53, dport=1234) / answer)
    c, s = 1000, 5000
    add(n2h / TCP(sport=40000, dport=7, flags="S", seq=c))
    add(h2n / TCP(sport=7, dport=40000, flags="SA", seq=s, ack=c + 1))
    add(n2h / TCP(sport=40000, dport=7, flags="A", seq=c + 1, ack=s + 1))
    for k in range(BULK):
        add(n2h / TCP(sport=40000, dport=7, flags="PA", seq=c + 1 + 100 * k, ack=s + 1) / Raw(b"x" * 100))
        add(h2n / TCP(sport=7, dport=40000, flags="A", seq=s + 1, ack=c + 101 + 100 * k))
    add(n2h / TCP(sport=40000, dport=7, flags="FA", seq=c + 1 + 100 * BULK, ack=s + 1))
    for k in range(3):
        add(h2n / UDP(sport=40001, dport=5005) / Raw(b"dgram-%d" % k), 0.05)
    add(n2s / TCP(sport=40002, dport=1883, flags="PA", seq=1, ack=1) / MQTT() / MQTTConnect(clientId=b"dev1"))
    add(n2h / ICMP(type=8, id=1, seq=1))
    return out


def write(path: Path) -> Path:
    from scapy.utils import wrpcap

    wrpcap(str(path), packets(), linktype=1)
    return path
