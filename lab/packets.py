"""Helpers over plain scapy packets (what a ``Capture`` holds, or a pcap read back): matching,
TCP flags, stream reassembly, segment/option inspection, checksums, timing, DHCP and DNS fields.
IPv4 and IPv6 alike: addresses compare as scapy prints them (IPv6 compressed, lower case).

``Wire`` (lab/capture.py) is built on these; tests and scenarios use them directly on
``wire.packets()``::

    from lab import packets as pk
    pk.reassemble(wire.packets(), node.ip, 7)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import Packet

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def l3(p: Packet) -> Packet | None:
    """The packet's IP or IPv6 layer (None for neither)."""
    if IP in p:
        return p[IP]
    if IPv6 in p:
        return p[IPv6]
    return None


def flags_of(p: Packet) -> str:
    """TCP flags as a canonical string in the order FSRPAUEC (e.g. "SA", "FA", "R")."""
    v = int(p[TCP].flags)
    return "".join(k for k, bit in FLAG_BITS.items() if v & bit)


def has_flags(p: Packet, want: str, exact: bool = False) -> bool:
    got = set(flags_of(p))
    return got == set(want) if exact else set(want) <= got


def tcp_packets(
    pkts: Iterable[Packet],
    src: str | None = None,
    dst: str | None = None,
    sport: int | None = None,
    dport: int | None = None,
) -> list[Packet]:
    """TCP packets matching the given endpoints, in capture order."""
    out = []
    for p in pkts:
        ip = l3(p)
        if ip is None or TCP not in p:
            continue
        t = p[TCP]
        if src is not None and ip.src != src:
            continue
        if dst is not None and ip.dst != dst:
            continue
        if sport is not None and t.sport != sport:
            continue
        if dport is not None and t.dport != dport:
            continue
        out.append(p)
    return out


def conversation(pkts: Iterable[Packet], a: tuple[str, int], b: tuple[str, int]) -> list[Packet]:
    """Both directions of one TCP connection a<->b, in capture order."""
    out = []
    for p in pkts:
        ip = l3(p)
        if ip is None or TCP not in p:
            continue
        s = (ip.src, p[TCP].sport)
        d = (ip.dst, p[TCP].dport)
        if (s, d) in ((a, b), (b, a)):
            out.append(p)
    return out


def payload_of(p: Packet) -> bytes:
    """TCP payload, without Ethernet padding (trimmed to the IP total / IPv6 payload length)."""
    doff = p[TCP].dataofs * 4
    if IP not in p and IPv6 in p:  # no extension headers on TCP segments here
        return bytes(p[IPv6])[40 + doff : 40 + p[IPv6].plen]
    ip = p[IP]
    hl = ip.ihl * 4
    tl = ip.len
    raw = bytes(ip)[hl + doff : tl]
    return raw


def data_segments(pkts: Iterable[Packet], src: str, sport: int) -> list[Packet]:
    """Segments from src:sport that carry payload."""
    return [p for p in tcp_packets(pkts, src=src, sport=sport) if payload_of(p)]


def reassemble(pkts: Iterable[Packet], src: str, sport: int, dst: str | None = None) -> bytes:
    """The byte stream src:sport sent, rebuilt from sequence numbers.

    Handles retransmissions and overlaps (first copy of each byte wins) and stops at the
    first hole, as a receiver would. The ISN comes from the SYN when it is in the capture,
    else from the lowest sequence number seen.
    """
    segs = tcp_packets(pkts, src=src, sport=sport, dst=dst)
    if not segs:
        return b""
    isn = None
    for p in segs:
        if p[TCP].flags & 0x02:
            isn = (p[TCP].seq + 1) & 0xFFFFFFFF
            break
    if isn is None:
        isn = min(p[TCP].seq for p in segs if payload_of(p)) if any(payload_of(p) for p in segs) else 0
    buf: dict[int, int] = {}
    for p in segs:
        data = payload_of(p)
        if not data:
            continue
        off = (p[TCP].seq - isn) & 0xFFFFFFFF
        for i, b in enumerate(data):
            buf.setdefault(off + i, b)
    out = bytearray()
    i = 0
    while i in buf:
        out.append(buf[i])
        i += 1
    return bytes(out)


def retransmissions(pkts: Iterable[Packet], src: str, sport: int) -> list[Packet]:
    """Data segments whose sequence range was already sent once (retransmits)."""
    seen: set[tuple[int, int]] = set()
    out = []
    for p in data_segments(pkts, src, sport):
        key = (p[TCP].seq, len(payload_of(p)))
        if key in seen:
            out.append(p)
        seen.add(key)
    return out


def tcp_options(p: Packet) -> dict[str, object]:
    """TCP options of a packet as a dict (scapy names: MSS, WScale, SAckOK, Timestamp, ...)."""
    return {name: val for name, val in p[TCP].options if name not in ("NOP", "EOL")}


def gaps(times: Sequence[float]) -> list[float]:
    """Intervals between consecutive timestamps (seconds)."""
    return [round(b - a, 4) for a, b in itertools.pairwise(times)]


def times_of(pkts: Iterable[Packet]) -> list[float]:
    return [float(p.time) for p in pkts]


def checksum_ok(p: Packet) -> bool:
    """True when the IP header and L4 (UDP/TCP/ICMP) checksums of ``p`` are valid.

    IPv6 (no header checksum): the upper-layer checksum (UDP, TCP, ICMPv6) over the pseudo
    header; a UDP checksum of 0 is invalid there (RFC 8200 8.1).
    """
    if IP not in p and IPv6 in p:
        ip6 = IPv6(bytes(p[IPv6])[: 40 + p[IPv6].plen])
        if ip6.nh not in (6, 17, 58):
            return False
        if ip6.nh == 17 and ip6[UDP].chksum == 0:
            return False
        return in6_chksum(ip6.nh, ip6.payload, bytes(ip6.payload)) == 0
    ip = p[IP]
    raw = bytes(ip)[: ip.len]
    fresh = IP(raw)
    fresh_ip = fresh.copy()
    del fresh_ip.chksum
    ok = IP(bytes(fresh_ip)).chksum == ip.chksum
    for layer in (UDP, TCP, ICMP):
        if layer in fresh:
            orig = fresh[layer].chksum
            if layer is UDP and orig == 0:  # "no checksum" is legal for UDP/IPv4
                continue
            again = fresh.copy()
            del again[layer].chksum
            ok = ok and IP(bytes(again))[layer].chksum == orig
    return ok


@dataclass
class Window:
    """Advertised receive windows seen from one endpoint (raw header values)."""

    values: list[int]

    @property
    def zero(self) -> bool:
        return 0 in self.values

    @property
    def min(self) -> int:
        return min(self.values) if self.values else -1


def windows(pkts: Iterable[Packet], src: str, sport: int) -> Window:
    return Window([p[TCP].window for p in tcp_packets(pkts, src=src, sport=sport)])


def summary(pkts: Iterable[Packet], limit: int = 40) -> str:
    """One line per packet, relative time first; for failure messages."""
    pk = list(pkts)
    if not pk:
        return "  (no packets)"
    t0 = float(pk[0].time)
    lines = []
    for p in pk[:limit]:
        ip = l3(p)
        if TCP in p and ip is not None:
            d = f"{ip.src}:{p[TCP].sport} > {ip.dst}:{p[TCP].dport} [{flags_of(p)}] "
            d += f"seq={p[TCP].seq} ack={p[TCP].ack} win={p[TCP].window} len={len(payload_of(p))}"
        else:
            d = p.summary()
        lines.append(f"  +{float(p.time) - t0:8.4f}s {d}")
    if len(pk) > limit:
        lines.append(f"  … {len(pk) - limit} more")
    return "\n".join(lines)


# ---- matching (Wire.expect and the scenarios' wire assertions) ---------------------------------
def field_of(p: Packet, layer: Any, name: str) -> Any:
    """``name`` from ``layer`` or the nearest layer below it (TCP → IP → Ether)."""
    lay: Packet | None = p[layer]
    while lay is not None:
        if name in lay.fields or any(f.name == name for f in lay.fields_desc):
            return lay.getfieldval(name)
        lay = lay.underlayer
    raise KeyError(name)


def matches(p: Packet, layer: Any, fields: dict[str, Any]) -> bool:
    """Whether ``p`` has ``layer`` and these field values (a callable value is a predicate)."""
    if layer is not None and not p.haslayer(layer):
        return False
    for name, want in fields.items():
        try:
            got = field_of(p, layer, name) if layer is not None else p.getfieldval(name)
        except (KeyError, AttributeError, IndexError):
            return False
        if callable(want):
            if not want(got):
                return False
        elif name == "flags":
            if str(got) != str(want) and got != want:
                return False
        elif got != want:
            return False
    return True


def describe(layer: Any, fields: dict[str, Any]) -> str:
    """``TCP(flags='S', dport=7)``: a spec as failure messages show it."""
    name = getattr(layer, "__name__", str(layer)) if layer is not None else "any"
    parts = [f"{k}={v!r}" for k, v in fields.items()]
    return f"{name}({', '.join(parts)})"


Match = Callable[[Packet], bool]


def is_ip(p: Packet, layer: Any, src: str, dst: str) -> bool:
    """An IP packet src > dst that has ``layer`` (TCP, UDP, ICMP, DNS, ...)."""
    return IP in p and layer in p and p[IP].src == src and p[IP].dst == dst


def is_tcp(p: Packet, src: str, dst: str, sport: int | None = None, dport: int | None = None) -> bool:
    """A TCP segment src > dst (and the given ports)."""
    return (
        is_ip(p, TCP, src, dst)
        and (sport is None or p[TCP].sport == sport)
        and (dport is None or p[TCP].dport == dport)
    )


# ---- DHCP and DNS -------------------------------------------------------------------------------
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


def is_dhcp(p: Packet, msg_type: str, mac: str) -> bool:
    """A DHCP ``msg_type`` ('discover', 'offer', 'request', 'ack', ...) about client ``mac``."""
    return BOOTP in p and bytes(p[BOOTP].chaddr)[:6] == mac_bytes(mac) and dhcp_type(p) == msg_type


def qname_of(p: Packet) -> str:
    """The first question's name of a DNS packet, with the trailing dot."""
    q = p[DNS].qd[0].qname
    return q.decode() if isinstance(q, bytes) else str(q)
