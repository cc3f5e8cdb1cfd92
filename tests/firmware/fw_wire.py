"""Wire assertions on the TAP capture (tcpdump's pcap, read with scapy).

tcpdump writes each packet as it sees it (``-U``), but a packet may land a few ms after the
guest's REPL answered, so every query polls the pcap until it matches or times out; the
timeout message lists what was captured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.all import ARP, BOOTP, DHCP, DNS, ICMP, IP, TCP, UDP, Ether, Packet, PcapReader

Match = Callable[[Packet], bool]

DHCP_TYPES = {1: "discover", 2: "offer", 3: "request", 5: "ack", 6: "nak", 7: "release"}


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def dhcp_options(pkt: Packet) -> dict[str, Any]:
    """A DHCP packet's options as a dict (``message-type`` is a name: 'discover', ...)."""
    opts: dict[str, Any] = {}
    for opt in pkt[DHCP].options:
        if isinstance(opt, tuple) and len(opt) >= 2:
            key, value = opt[0], opt[1] if len(opt) == 2 else opt[1:]
            if key == "message-type":
                value = DHCP_TYPES.get(value, value)
            opts[key] = value
    return opts


def dhcp_type(pkt: Packet) -> str | None:
    return dhcp_options(pkt).get("message-type") if DHCP in pkt else None


class WireTimeout(AssertionError):
    """Nothing on the wire matched in time."""


class Wire:
    """Queries over the packets captured so far on the namespace's TAP."""

    def __init__(self, pcap: Path) -> None:
        self.pcap = pcap

    def packets(self) -> list[Packet]:
        if not self.pcap.exists() or self.pcap.stat().st_size < 24:
            return []
        out: list[Packet] = []
        try:
            with PcapReader(str(self.pcap)) as reader:
                for p in reader:
                    out.append(p)
        except EOFError:  # a record still being written: keep what is complete
            pass
        return out

    def summary(self, packets: list[Packet] | None = None, last: int = 40) -> str:
        pkts = self.packets() if packets is None else packets
        lines = [f"  {float(p.time):.3f} {p.summary()}" for p in pkts[-last:]]
        return f"{len(pkts)} packets in {self.pcap}, last {min(last, len(pkts))}:\n" + "\n".join(lines)

    def wait(self, match: Match, what: str, timeout: float = 5.0, count: int = 1, since: float = 0.0) -> list[Packet]:
        """Packets (captured at or after ``since``, a ``time.time()``) that ``match``:
        at least ``count`` of them within ``timeout``, else WireTimeout naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            pkts = [p for p in self.packets() if float(p.time) >= since]
            found = [p for p in pkts if match(p)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise WireTimeout(
                    f"on the wire: expected {count} x {what} within {timeout:g}s, saw {len(found)}\n"
                    + self.summary(pkts)
                )
            time.sleep(0.1)

    def one(self, match: Match, what: str, timeout: float = 5.0, since: float = 0.0) -> Packet:
        """The first packet that matches (waiting for it)."""
        return self.wait(match, what, timeout, since=since)[0]

    # ---- protocol-specific ----------------------------------------------------------
    def dhcp(self, msg_type: str, mac: str, timeout: float = 5.0, since: float = 0.0) -> list[Packet]:
        """DHCP messages of ``msg_type`` ('discover', 'request', 'offer', 'ack') about ``mac``."""
        chaddr = mac_bytes(mac)

        def match(p: Packet) -> bool:
            return BOOTP in p and bytes(p[BOOTP].chaddr)[:6] == chaddr and dhcp_type(p) == msg_type

        return self.wait(match, f"DHCP {msg_type} for {mac}", timeout, since=since)

    def arp_reply(self, ip: str, mac: str, timeout: float = 5.0) -> Packet:
        return self.one(
            lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == ip and p[ARP].hwsrc == mac,
            f"ARP reply {ip} is-at {mac}",
            timeout,
        )

    def icmp(
        self, src: str, dst: str, icmp_type: int, ident: int, count: int = 1, timeout: float = 5.0
    ) -> list[Packet]:
        name = {0: "echo-reply", 8: "echo-request"}.get(icmp_type, f"type {icmp_type}")
        return self.wait(
            lambda p: IP in p
            and ICMP in p
            and p[IP].src == src
            and p[IP].dst == dst
            and p[ICMP].type == icmp_type
            and p[ICMP].id == ident,
            f"ICMP {name} id={ident:#x} {src} > {dst}",
            timeout,
            count=count,
        )

    def udp(
        self, src: str, dst: str, dport: int, payload: bytes, sport: int | None = None, timeout: float = 5.0
    ) -> Packet:
        return self.one(
            lambda p: IP in p
            and UDP in p
            and p[IP].src == src
            and p[IP].dst == dst
            and p[UDP].dport == dport
            and (sport is None or p[UDP].sport == sport)
            and bytes(p[UDP].payload) == payload,
            f"UDP {src}:{sport or '*'} > {dst}:{dport} with the {len(payload)}-byte payload",
            timeout,
        )

    def dns_query(self, src: str, server: str, name: str, timeout: float = 5.0) -> Packet:
        fqdn = name.rstrip(".") + "."
        return self.one(
            lambda p: IP in p
            and DNS in p
            and p[IP].src == src
            and p[IP].dst == server
            and p[UDP].dport == 53
            and p[DNS].qr == 0
            and p[DNS].qd is not None
            and _qname(p) == fqdn
            and p[DNS].qd[0].qtype == 1,
            f"DNS A query for {fqdn} {src} > {server}:53",
            timeout,
        )

    def dns_answer(self, query: Packet, timeout: float = 5.0) -> list[str]:
        """The A records of the response to ``query`` (same id, back to its source port)."""
        resp = self.one(
            lambda p: IP in p
            and DNS in p
            and p[IP].src == query[IP].dst
            and p[IP].dst == query[IP].src
            and p[UDP].dport == query[UDP].sport
            and p[DNS].qr == 1
            and p[DNS].id == query[DNS].id,
            f"DNS response id={query[DNS].id}",
            timeout,
        )
        return [rr.rdata for rr in (resp[DNS].an or []) if rr.type == 1]

    def tcp_handshake(self, client: str, server: str, port: int, timeout: float = 5.0) -> tuple[Packet, Packet, Packet]:
        """SYN client>server:port, SYN-ACK back, ACK: the three packets of one connection."""
        syn = self.one(
            lambda p: _tcp(p, client, server, dport=port) and _flags(p) == "S",
            f"TCP SYN {client} > {server}:{port}",
            timeout,
        )
        cport = syn[TCP].sport
        synack = self.one(
            lambda p: _tcp(p, server, client, sport=port, dport=cport)
            and _flags(p) == "SA"
            and p[TCP].ack == syn[TCP].seq + 1,
            f"TCP SYN-ACK {server}:{port} > {client}:{cport}",
            timeout,
        )
        ack = self.one(
            lambda p: _tcp(p, client, server, sport=cport, dport=port)
            and "A" in _flags(p)
            and "S" not in _flags(p)
            and p[TCP].seq == syn[TCP].seq + 1
            and p[TCP].ack == synack[TCP].seq + 1,
            f"TCP ACK of the handshake {client}:{cport} > {server}:{port}",
            timeout,
        )
        return syn, synack, ack

    def tcp_payload_bytes(self, syn: Packet, src: str, timeout: float = 5.0, expect: int | None = None) -> int:
        """Bytes of payload ``src`` sent on the connection that ``syn`` opened (retransmits
        counted once: the highest sequence number reached minus the ISN)."""
        a, b = syn[IP].src, syn[IP].dst
        ap, bp = syn[TCP].sport, syn[TCP].dport
        sport, dport, dst = (ap, bp, b) if src == a else (bp, ap, a)
        deadline = time.monotonic() + timeout
        while True:
            segs = [p for p in self.packets() if _tcp(p, src, dst, sport=sport, dport=dport)]
            isn = next((p[TCP].seq for p in segs if "S" in _flags(p)), None)
            top = max((p[TCP].seq + len(p[TCP].payload) for p in segs if len(p[TCP].payload)), default=None)
            total = 0 if isn is None or top is None else (top - isn - 1) % 2**32
            if expect is None or total >= expect or time.monotonic() >= deadline:
                return total
            time.sleep(0.1)


def _qname(p: Packet) -> str:
    q = p[DNS].qd[0].qname
    return q.decode() if isinstance(q, bytes) else str(q)


def _flags(p: Packet) -> str:
    return str(p[TCP].flags)


def _tcp(p: Packet, src: str, dst: str, sport: int | None = None, dport: int | None = None) -> bool:
    return (
        IP in p
        and TCP in p
        and p[IP].src == src
        and p[IP].dst == dst
        and (sport is None or p[TCP].sport == sport)
        and (dport is None or p[TCP].dport == dport)
    )


__all__ = ["Ether", "Wire", "WireTimeout", "dhcp_options", "dhcp_type", "mac_bytes"]
