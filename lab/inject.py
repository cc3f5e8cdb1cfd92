"""Packet injection on the lab bridge, and builders for the packets field bugs are made of.

``inject(lab, pkt)`` sends a frame on the lab's bridge ``mplab-<lab>`` (scapy ``sendp``); a
bare IP packet gets an Ethernet header for a lab address it can resolve. Only lab addresses
are accepted (docs/impairments.md, "Network hygiene").

Builders: ``tcp_rst_for`` (sequence number from the captured segments), ``icmp_port_unreachable``,
``icmp_host_unreachable``, ``gratuitous_arp``. Responders (context managers, each keeps its
nft rules in the lab's ``bridge mplab_<lab>`` table and removes them on exit):
``DnsResponder`` (NXDOMAIN, SERVFAIL, delayed, truncated, wrong ID), ``DhcpNoOffer``,
``DhcpNak``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING, Any, Protocol

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import AsyncSniffer

from .capture import send_on, start_sniffer, stop_sniffer
from .errors import CaptureError, ConfigError, LabError
from .hostnet import bridge_mac, nft_add, nft_delete
from .topology import LanView
from .util import poll_until

if TYPE_CHECKING:
    from .capture import Capture

__all__ = ["bridge_mac", "send_on"]  # importable from here as before

BROADCAST = "ff:ff:ff:ff:ff:ff"


class _HasMac(Protocol):
    """A node, as the responders need it: its guest MAC."""

    mac: str


def inject(lab: LanView, pkt: Packet, count: int = 1) -> Packet:
    """Send ``pkt`` on the lab bridge; returns the frame sent. IP destinations must be lab hosts."""
    if pkt.haslayer(IP):
        for a in (pkt[IP].dst,):
            if IPv4Address(a) not in lab.subnet and a != "255.255.255.255":
                raise ConfigError(f"refusing to inject to {a}: not in lab {lab.name}'s subnet {lab.subnet}")
    if not pkt.haslayer(Ether):
        if not pkt.haslayer(IP):
            raise ConfigError("inject needs an Ether or IP packet")
        macs = lab.lan_hosts()
        dst = macs.get(pkt[IP].dst)
        if not dst:
            raise ConfigError(f"no MAC known for {pkt[IP].dst} in lab {lab.name}: give Ether(dst=...)/...")
        src = macs.get(pkt[IP].src) or bridge_mac(lab.bridge)
        pkt = Ether(src=src, dst=dst) / pkt
    send_on(lab.bridge, pkt, count)
    return pkt


# ---- builders ---------------------------------------------------------------------------------
def _packets(capture_or_packets: Capture | Iterable[Packet]) -> list[Packet]:
    ps = getattr(capture_or_packets, "packets", capture_or_packets)
    return list(ps() if callable(ps) else ps)


def _seq_after(p: Packet) -> int:
    t = p[TCP]
    n = len(bytes(t.payload))
    # trailing Ethernet padding is dissected as Padding, not TCP payload
    if p.haslayer(IP):
        n = max(0, p[IP].len - p[IP].ihl * 4 - t.dataofs * 4)
    return (t.seq + n + (1 if t.flags.S else 0) + (1 if t.flags.F else 0)) & 0xFFFFFFFF


def _later(a: int | None, b: int) -> int:
    if a is None:
        return b
    return b if ((b - a) & 0xFFFFFFFF) < 0x80000000 else a


def tcp_rst_for(
    capture_or_packets: Capture | Iterable[Packet],
    client_ip: str,
    client_port: int,
    server_ip: str,
    server_port: int,
    to: str = "client",
) -> Packet:
    """An RST into an established connection, as if from the other end (``to="client"``: from
    the server). Its sequence number is the receiver's next expected one (RFC 5961: lwIP takes
    an RST only at exactly rcv_nxt), from the segments the capture saw: the sender's highest
    seq+len, or the receiver's highest ACK, whichever is later."""
    if to not in ("client", "server"):
        raise ConfigError(f"to={to!r}: use 'client' or 'server'")
    rcv_ip, rcv_port, snd_ip, snd_port = (
        (client_ip, client_port, server_ip, server_port)
        if to == "client"
        else (server_ip, server_port, client_ip, client_port)
    )
    seq: int | None = None
    ack: int | None = None
    rcv_mac = snd_mac = None
    for p in _packets(capture_or_packets):
        if not (p.haslayer(TCP) and p.haslayer(IP)):
            continue
        ip, t = p[IP], p[TCP]
        if (ip.src, t.sport, ip.dst, t.dport) == (snd_ip, snd_port, rcv_ip, rcv_port):
            seq = _later(seq, _seq_after(p))
            if p.haslayer(Ether):
                snd_mac, rcv_mac = p[Ether].src, p[Ether].dst
        elif (ip.src, t.sport, ip.dst, t.dport) == (rcv_ip, rcv_port, snd_ip, snd_port):
            if t.flags.A:
                ack = _later(ack, t.ack)
            if p.haslayer(Ether):
                rcv_mac, snd_mac = p[Ether].src, p[Ether].dst
    nxt = seq if ack is None else _later(seq, ack)
    if nxt is None or rcv_mac is None:
        raise LabError(
            f"no segments of {client_ip}:{client_port} <-> {server_ip}:{server_port} captured: "
            "start the capture before the connection"
        )
    return (
        Ether(src=snd_mac, dst=rcv_mac)
        / IP(src=snd_ip, dst=rcv_ip)
        / TCP(sport=snd_port, dport=rcv_port, flags="R", seq=nxt, window=0)
    )


def _icmp_unreach(orig: Packet, code: int, src: str | None) -> Packet:
    if not orig.haslayer(IP):
        raise ConfigError("need the original IP packet (e.g. from wire.expect(...))")
    ip = orig[IP]
    quoted = bytes(ip)[: ip.ihl * 4 + 8]
    frame = IP(src=src or ip.dst, dst=ip.src) / ICMP(type=3, code=code) / Raw(quoted)
    if orig.haslayer(Ether):
        frame = Ether(src=orig[Ether].dst, dst=orig[Ether].src) / frame
    return frame


def icmp_port_unreachable(orig_pkt: Packet, src: str | None = None) -> Packet:
    """ICMP type 3 code 3 quoting ``orig_pkt`` (from its destination, unless ``src``)."""
    return _icmp_unreach(orig_pkt, 3, src)


def icmp_host_unreachable(orig_pkt: Packet, src: str | None = None) -> Packet:
    """ICMP type 3 code 1 quoting ``orig_pkt`` (from its destination, unless ``src``: a
    router would send it from its own address, e.g. the lab gateway)."""
    return _icmp_unreach(orig_pkt, 1, src)


def gratuitous_arp(ip: str, mac: str, reply: bool = True) -> Packet:
    """A broadcast gratuitous ARP claiming ``ip`` is at ``mac`` (an ARP change if ``ip``
    belongs to someone else). ``reply=False`` sends the request form."""
    ip_address(ip)
    return Ether(src=mac, dst=BROADCAST) / ARP(
        op=2 if reply else 1, hwsrc=mac, psrc=ip, hwdst=BROADCAST if reply else "00:00:00:00:00:00", pdst=ip
    )


# ---- responders -------------------------------------------------------------------------------
class _Responder:
    """A sniffer on the lab bridge plus nft rules that hide the matching frames from dnsmasq."""

    kind = "responder"
    bpf = ""

    def __init__(self, lab: LanView) -> None:
        self.lab = lab
        self.tag = f"mplab-{lab.name}:{self.kind}:{id(self):x}"
        self._sniffer: AsyncSniffer | None = None
        self.seen: list[Packet] = []
        self.sent: list[Packet] = []
        self.errors: list[str] = []  # exceptions in the sniffer thread, which would otherwise vanish
        self._timers: list[threading.Timer] = []  # answers scheduled for later (DnsResponder delay)
        self._send_lock = threading.Lock()
        self._stopped = False

    def _guarded(self, p: Packet) -> None:
        try:
            self._on(p)
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")

    def _rules(self) -> list[tuple[str, str]]:
        return []

    def _on(self, p: Packet) -> None:
        raise NotImplementedError

    def _send(self, frame: Packet) -> None:
        # Under the lock, so that once stop() has returned nothing more goes out (a timer that
        # had already fired could not be cancelled).
        with self._send_lock:
            if self._stopped:
                return
            self.sent.append(frame)  # first: the guest may act on it before sendp returns
            send_on(self.lab.bridge, frame)

    def start(self) -> Any:
        self._stopped = False
        self._sniffer = start_sniffer(self.lab.bridge, self._guarded, self.bpf)
        if self._sniffer is None:
            raise CaptureError(f"{self.kind}: sniffer on {self.lab.bridge} did not start")
        try:
            for chain, rule in self._rules():
                nft_add(self.lab.name, "bridge", chain, rule, self.tag)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        with self._send_lock:
            self._stopped = True
        nft_delete(self.lab.name, "bridge", self.tag)
        stop_sniffer(self._sniffer)
        self._sniffer = None
        # a stopped responder sends nothing more: drop the answers still scheduled (after the
        # sniffer stopped, so that no new one is scheduled meanwhile)
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    def abandon(self) -> None:
        """Stop sniffing but leave the host rules in place, as a killed process would
        (for tests that ``mplab down`` removes them)."""
        stop_sniffer(self._sniffer)
        self._sniffer = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _qname_wire(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


DNS_MODES = ("nxdomain", "servfail", "delay", "truncated", "wrong_id", "refused")


class DnsResponder(_Responder):
    """Answer DNS queries for ``name`` (to the lab's DNS server) from scapy.

    mode: ``nxdomain`` | ``servfail`` | ``refused`` (rcode only), ``delay`` (the right answer
    after ``delay`` s), ``truncated`` (TC bit, no answer), ``wrong_id`` (right answer, ID+1).
    With ``exclusive`` (default) an nft rule on the host's bridge drops those queries before
    they reach dnsmasq, so only this answer arrives. ``node`` limits it to one guest.
    """

    kind = "dns"

    def __init__(
        self,
        lab: LanView,
        name: str,
        mode: str = "nxdomain",
        delay: float = 2.0,
        address: str | None = None,
        node: _HasMac | None = None,
        exclusive: bool = True,
    ) -> None:
        if mode not in DNS_MODES:
            raise ConfigError(f"invalid DNS mode {mode!r}: use one of {', '.join(DNS_MODES)}")
        super().__init__(lab)
        self.name = name.rstrip(".").lower()
        self.mode = mode
        self.delay = delay
        self.address = address
        self.node = node
        self.exclusive = exclusive
        self.bpf = f"udp dst port 53 and dst host {lab.services_ip}"

    def _match(self) -> str:
        q = _qname_wire(self.name)[:16]  # nft raw payload ≤ 128 bits: match a prefix of the qname
        src = f"ether saddr {self.node.mac} " if self.node else ""
        return f"{src}ip daddr {self.lab.services_ip} udp dport 53 @th,160,{len(q) * 8} 0x{q.hex()}"

    def _rules(self) -> list[tuple[str, str]]:
        # forward, not prerouting: the host's bridge sniffer still sees the query (pcap evidence)
        return [("through", f"{self._match()} drop")] if self.exclusive else []

    def start(self) -> DnsResponder:
        if self.mode in ("delay", "wrong_id") and self.address is None:
            self.address = self._resolve()
        return super().start()

    def _resolve(self) -> str:
        # A kernel UDP socket bound to the host's lab address, not scapy's sr1: scapy reads the
        # routing table once, so in a process that brought the lab up after loading scapy, sr1
        # sent this query out of the default route (off the lab) and never saw an answer.
        import socket

        r: DNS | None = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.bind((self.lab.host_ip, 0))
            s.sendto(bytes(DNS(rd=1, qd=DNSQR(qname=self.name))), (self.lab.services_ip, 53))
            try:
                r = DNS(s.recv(1500))
            except OSError:
                pass
        if r is None or r.ancount == 0:
            raise LabError(f"dns: {self.name} does not resolve on {self.lab.services_ip}; pass address=")
        return str(r[DNS].an[0].rdata)

    def _on(self, p: Packet) -> None:
        if not (p.haslayer(DNS) and p.haslayer(IP) and p[DNS].qr == 0 and p[DNS].qd):
            return
        if p[IP].dst != self.lab.services_ip or p[IP].src == self.lab.services_ip:
            return
        if self.node is not None and p[Ether].src.lower() != self.node.mac.lower():
            return
        qd = p[DNS].qd[0] if isinstance(p[DNS].qd, list) else p[DNS].qd
        qname = qd.qname.decode(errors="replace").rstrip(".").lower()
        if qname != self.name:
            return
        self.seen.append(p)
        dns = DNS(id=p[DNS].id, qr=1, aa=1, rd=p[DNS].rd, ra=1, qd=qd)
        if self.mode in ("nxdomain", "servfail", "refused"):
            dns.rcode = {"nxdomain": 3, "servfail": 2, "refused": 5}[self.mode]
        elif self.mode == "truncated":
            dns.tc = 1
        else:
            # TTL 0, as dnsmasq gives for the lab's names: with a TTL lwIP would cache this answer
            # and answer later lookups of the name from its cache after the responder is gone
            dns.an = DNSRR(rrname=qd.qname, type="A", ttl=0, rdata=self.address)
            if self.mode == "wrong_id":
                dns.id = (p[DNS].id + 1) & 0xFFFF
        frame = (
            Ether(src=p[Ether].dst, dst=p[Ether].src)
            / IP(src=p[IP].dst, dst=p[IP].src)
            / UDP(sport=53, dport=p[UDP].sport)
            / dns
        )
        if self.mode == "delay":
            t = threading.Timer(self.delay, self._send, args=(frame,))
            t.daemon = True
            self._timers.append(t)
            t.start()
        else:
            self._send(frame)


class DhcpNoOffer(_Responder):
    """The node's DHCP requests never reach dnsmasq (nft drop on the host's bridge): no
    OFFER, no ACK, so no lease and no renewal, until ``stop()``."""

    kind = "dhcp-block"
    bpf = "udp dst port 67"

    def __init__(self, lab: LanView, node: _HasMac) -> None:
        super().__init__(lab)
        self.node = node

    def _rules(self) -> list[tuple[str, str]]:
        return [("through", f"ether saddr {self.node.mac} udp dport 67 drop")]

    def _on(self, p: Packet) -> None:
        if p.haslayer(Ether) and p[Ether].src.lower() == self.node.mac.lower():
            self.seen.append(p)


class DhcpNak(DhcpNoOffer):
    """Answer the node's DHCPREQUESTs with a DHCPNAK from the DHCP server's address (dnsmasq
    never sees them); DISCOVERs go unanswered while it runs."""

    kind = "dhcp-nak"

    def _on(self, p: Packet) -> None:
        super()._on(p)
        if not (p.haslayer(DHCP) and p[Ether].src.lower() == self.node.mac.lower()):
            return
        opts = {o[0]: o[1] for o in p[DHCP].options if isinstance(o, tuple)}
        if opts.get("message-type") != 3:  # request
            return
        svc_mac = self.lab.lan_hosts().get(self.lab.services_ip) or bridge_mac(self.lab.bridge)
        nak = (
            Ether(src=svc_mac, dst=BROADCAST)
            / IP(src=self.lab.services_ip, dst="255.255.255.255")
            / UDP(sport=67, dport=68)
            / BOOTP(op=2, xid=p[BOOTP].xid, chaddr=p[BOOTP].chaddr, flags=p[BOOTP].flags)
            / DHCP(options=[("message-type", "nak"), ("server_id", self.lab.services_ip), "end"])
        )
        self._send(nak)


def wait_for(pred: Any, timeout: float, poll: float = 0.05) -> bool:
    """Whether ``pred()`` became true within ``timeout`` (``lab.util.poll_until``, as a bool)."""
    return bool(poll_until(pred, timeout, poll))
