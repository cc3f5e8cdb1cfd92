"""One line per frame, as a person reads a ladder: who to whom, and the protocol's own words.

TCP shows its flags, sequence numbers relative to each direction's first (as Wireshark does),
the window and the payload length, and the application messages the segment completed
(MQTT, TLS, HTTP, reassembled by lab.packets.stream_messages); UDP its ports and length;
DNS the question and the answers; DHCP the message type; ICMP the type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import packets as pk


@dataclass
class FrameInfo:
    frame: int  # 1-based
    time: float  # epoch seconds
    src_ip: str | None
    dst_ip: str | None
    src_mac: str | None
    dst_mac: str | None
    broadcast: bool
    label: str
    proto: str
    conv: str
    kind: str  # collapse class: "tcp-data", "udp", ... ("" = never collapsed)
    length: int


def _enum(lay: Any, name: str) -> str:
    try:
        return str(lay.get_field(name).i2repr(lay, lay.getfieldval(name))).strip("'")
    except Exception:
        return str(lay.getfieldval(name))


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def app_label(msg: Any) -> str:
    """An application message (MQTT, TLS record, HTTP) in a few words."""
    from scapy.contrib import mqtt
    from scapy.layers import http
    from scapy.layers.tls.record import TLS

    if msg.haslayer(mqtt.MQTT):
        m = msg[mqtt.MQTT]
        out = f"MQTT {_enum(m, 'type')}"
        if msg.haslayer(mqtt.MQTTPublish):
            out += f" {_text(msg[mqtt.MQTTPublish].topic)}"
        elif msg.haslayer(mqtt.MQTTConnect):
            out += f" id={_text(msg[mqtt.MQTTConnect].clientId)}"
        elif msg.haslayer(mqtt.MQTTConnack):
            out += f" rc={msg[mqtt.MQTTConnack].retcode}"
        return out
    if msg.haslayer(TLS):
        rec = msg[TLS]
        names = [type(m).__name__.removeprefix("TLS") for m in rec.msg or [] if hasattr(m, "fields_desc")]
        names = [n for n in names if n and n not in ("ApplicationData", "Raw")]
        sni = pk.sni_of(msg)
        return "TLS " + (", ".join(names) if names else _enum(rec, "type")) + (f" sni={sni}" if sni else "")
    if msg.haslayer(http.HTTPRequest):
        r = msg[http.HTTPRequest]
        return f"HTTP {_text(r.Method)} {_text(r.Path)}"
    if msg.haslayer(http.HTTPResponse):
        r = msg[http.HTTPResponse]
        return f"HTTP {_text(r.Status_Code)} {_text(r.Reason_Phrase)}"
    return ""


def _dns(p: Any) -> str:
    from scapy.layers.dns import DNS

    d = p[DNS]
    q = d.qd[0] if d.qd else None
    qn = _text(q.qname).rstrip(".") if q is not None else "?"
    qt = _enum(q, "qtype") if q is not None else ""
    if not d.qr:
        return f"DNS {qt}? {qn}"
    if d.rcode:
        return f"DNS {qn}: {_enum(d, 'rcode')}"
    ans = []
    an = d.an
    items = an if isinstance(an, list) else ([] if an is None else list(an.iterpayloads()))
    for rr in items[:3]:
        ans.append(_text(getattr(rr, "rdata", "")))
    return f"DNS {qn} {qt} → {', '.join(ans) or '(no answer)'}"


def _dhcp(p: Any) -> str:
    from scapy.layers.dhcp import BOOTP

    t = pk.dhcp_type(p) or "?"
    yi = p[BOOTP].yiaddr
    return f"DHCP {t}" + (f" {yi}" if t in ("offer", "ack") and yi and yi != "0.0.0.0" else "")


def _icmp(p: Any) -> str:
    from scapy.layers.inet import ICMP

    i = p[ICMP]
    out = f"ICMP {_enum(i, 'type')}"
    if i.type in (3, 5, 11):
        out += f" ({_enum(i, 'code')})"
    elif i.type in (0, 8):
        out += f" id={i.id} seq={i.seq}"
    return out


def _icmp6(p: Any) -> str | None:
    from scapy.layers import inet6

    for cls, word in (
        (inet6.ICMPv6ND_NS, "ND NS"),
        (inet6.ICMPv6ND_NA, "ND NA"),
        (inet6.ICMPv6ND_RS, "ND RS"),
        (inet6.ICMPv6ND_RA, "ND RA"),
        (inet6.ICMPv6EchoRequest, "ICMPv6 echo-request"),
        (inet6.ICMPv6EchoReply, "ICMPv6 echo-reply"),
        (inet6.ICMPv6DestUnreach, "ICMPv6 dest-unreach"),
        (inet6.ICMPv6MLReport2, "MLDv2 report"),
        (inet6.ICMPv6MLReport, "MLD report"),
    ):
        if p.haslayer(cls):
            tgt = getattr(p[cls], "tgt", None) or getattr(p[cls], "mladdr", None)
            return word + (f" {tgt}" if tgt else "")
    return None


def _layers_above(p: Any, lay: Any) -> str:
    """``IPv6 / IPv6ExtHdrHopByHop / ICMPv6Unknown``: what a frame with no label of its own is."""
    names = []
    while lay is not None and type(lay).__name__ not in ("NoPayload", "Raw", "Padding"):
        names.append(type(lay).__name__)
        lay = lay.payload if lay.payload else None
    return " / ".join(names) or p.summary()


class _Seq:
    """Relative sequence numbers per TCP direction (the first SYN's, or the first seen), and
    the highest one sent so far (a segment below it is a retransmission)."""

    def __init__(self) -> None:
        self.isn: dict[tuple[str, int, str, int], int] = {}
        self.top: dict[tuple[str, int, str, int], int] = {}

    def resent(self, key: tuple[str, int, str, int], rel: int, length: int) -> bool:
        """Whether ``length`` bytes at relative ``rel`` were all sent before; remembers them."""
        if not length:
            return False
        top = self.top.get(key, 0)
        self.top[key] = max(top, rel + length)
        return rel + length <= top

    def rel(self, key: tuple[str, int, str, int], seq: int, syn: bool) -> int:
        if syn or key not in self.isn:
            self.isn[key] = seq
        return (seq - self.isn[key]) % 2**32

    def rel_ack(self, key: tuple[str, int, str, int], ack: int) -> int | None:
        back = (key[2], key[3], key[0], key[1])
        return (ack - self.isn[back]) % 2**32 if back in self.isn else None


def describe_frames(packets: Sequence[Any]) -> list[FrameInfo]:
    """A :class:`FrameInfo` for every packet, in order."""
    from scapy.layers.dhcp import DHCP
    from scapy.layers.dns import DNS
    from scapy.layers.inet import ICMP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.ntp import NTP

    pk.bind_app_ports()
    pkts = [pk.redissect(p) for p in packets]
    msgs: dict[int, list[Any]] = {}
    for i, q in pk.stream_messages(pkts):
        msgs.setdefault(i, []).append(q)
    seq = _Seq()
    out: list[FrameInfo] = []
    for i, p in enumerate(pkts):
        eth = p.getlayer(Ether)
        smac, dmac = (eth.src, eth.dst) if eth is not None else (None, None)
        ip = pk.l3(p)
        sip, dip = (ip.src, ip.dst) if ip is not None else (None, None)
        bcast = dmac is not None and (dmac == "ff:ff:ff:ff:ff:ff" or int(dmac[:2], 16) & 1 == 1)
        proto, conv, kind, length = type(p.lastlayer()).__name__, "", "", 0
        if ARP in p:
            a = p[ARP]
            sip, dip = a.psrc, a.pdst
            label = f"ARP who-has {a.pdst}" if a.op == 1 else f"ARP {a.psrc} is-at {a.hwsrc}"
            proto, conv = "ARP", f"ARP {a.psrc}"
        elif ip is not None and TCP in p:
            t = p[TCP]
            key = (ip.src, t.sport, ip.dst, t.dport)
            fl = pk.flags_of(p)
            data = pk.payload_of(p)
            length = len(data)
            rs = seq.rel(key, t.seq, "S" in fl)
            ra = seq.rel_ack(key, t.ack) if "A" in fl else None
            label = f"{t.sport} → {t.dport} [{fl}] seq={rs}" + (f" ack={ra}" if ra is not None else "")
            label += f" win={t.window} len={length}"
            resent = seq.resent(key, rs, length)
            if resent:
                label += " retransmission"
            apps = [x for x in (app_label(m) for m in msgs.get(i, [])) if x]
            if apps:
                label = " | ".join(apps) + "  " + label
            proto = "TCP"
            a, b = sorted([f"{ip.src}:{t.sport}", f"{ip.dst}:{t.dport}"])
            conv = f"TCP {a} ↔ {b}"
            # bulk: plain data and ACKs; a retransmission or a zero window is never collapsed
            kind = "tcp-data" if fl in ("A", "PA") and not apps and not resent and t.window else ""
        elif ip is not None and UDP in p:
            u = p[UDP]
            length = max(u.len - 8, 0) if u.len else len(u.payload)
            if DHCP in p:
                label, proto = _dhcp(p), "DHCP"
            elif DNS in p and (u.sport == 53 or u.dport == 53 or u.sport == 5353 or u.dport == 5353):
                label, proto = _dns(p), "DNS"
            elif NTP in p and 123 in (u.sport, u.dport):
                label, proto = f"NTP {_enum(p[NTP], 'mode')}", "NTP"
            else:
                label, proto, kind = f"UDP {u.sport} → {u.dport} len={length}", "UDP", "udp"
            a, b = sorted([f"{ip.src}:{u.sport}", f"{ip.dst}:{u.dport}"])
            conv = f"UDP {a} ↔ {b}"
        elif ip is not None and ICMP in p:
            label, proto = _icmp(p), "ICMP"
            conv = "ICMP " + " ↔ ".join(sorted([ip.src, ip.dst]))
        elif ip is not None and (six := _icmp6(p)) is not None:
            label, proto = six, "ICMPv6"
            conv = "ICMPv6 " + " ↔ ".join(sorted([ip.src, ip.dst]))
        elif ip is not None:
            label = _layers_above(p, ip)
        else:
            label = p.summary()
        if sip == "0.0.0.0":  # a DHCP client before its lease: named by its MAC
            sip = None
        if dip is not None and (dip == "255.255.255.255" or dip.startswith("ff0")):
            bcast = True
        out.append(FrameInfo(i + 1, float(p.time), sip, dip, smac, dmac, bcast, label, proto, conv, kind, length))
    return out
