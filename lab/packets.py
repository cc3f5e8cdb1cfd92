"""Helpers over plain scapy packets (what a ``Capture`` holds, or a pcap read back): matching,
TCP flags, stream reassembly, segment/option inspection, checksums, timing, DHCP and DNS fields.
IPv4 and IPv6 alike: addresses compare as scapy prints them (IPv6 compressed, lower case).

``Wire`` (lab/capture.py) is built on these; tests and scenarios use them directly on
``wire.packets()``::

    from lab import packets as pk
    pk.reassemble(wire.packets(), node.ip, 7)

Why one module of this size (~600 lines): flat helpers grouped by layer (matching, TCP, DHCP,
DNS, MQTT, TLS, HTTP, NTP), imported by tests and scenarios under one name, ``pk``.
"""

from __future__ import annotations

import itertools
import re
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
    return _locate(p, layer, name)[1]


def _locate(p: Packet, layer: Any, name: str) -> tuple[Packet | None, Any]:
    """(the layer that holds ``name``, its value); a virtual field (``sni``) has no layer."""
    virtual = VIRTUAL_FIELDS.get((getattr(layer, "__name__", ""), name))
    if virtual is not None:
        return None, virtual(p)
    lay: Packet | None = p[layer]
    while lay is not None:
        if name in lay.fields or any(f.name == name for f in lay.fields_desc):
            return lay, lay.getfieldval(name)
        lay = lay.underlayer
    # a layer inside a list field (a TLS record's messages) has no underlayer: the packet's own
    for below in (TCP, UDP, IP):
        if below in p and any(f.name == name for f in p[below].fields_desc):
            return p[below], p[below].getfieldval(name)
    raise KeyError(name)


def _equal(lay: Packet | None, name: str, got: Any, want: Any) -> bool:
    """Field equality as a test means it: bytes equal to a str, enums equal to their name."""
    if got == want:
        return True
    if isinstance(want, int) and not isinstance(want, bool) and isinstance(got, bytes):
        return got == str(want).encode()  # HTTP's Status_Code is b"200"; a scenario's "200" is read as 200
    if isinstance(want, str):
        if isinstance(got, bytes):
            return got == want.encode()
        if lay is not None:
            try:
                shown = lay.get_field(name).i2repr(lay, got)
            except Exception:
                return False
            return str(shown).strip("'") == want
    return False


def matches(p: Packet, layer: Any, fields: dict[str, Any]) -> bool:
    """Whether ``p`` has ``layer`` and these field values (a callable value is a predicate)."""
    if layer is not None and not p.haslayer(layer):
        return False
    for name, want in fields.items():
        try:
            lay, got = _locate(p, layer, name) if layer is not None else (p, p.getfieldval(name))
        except (KeyError, AttributeError, IndexError):
            return False
        if callable(want):
            if not want(got):
                return False
        elif name == "flags":
            if str(got) != str(want) and got != want:
                return False
        elif not _equal(lay, name, got, want):
            return False
    return True


def describe(layer: Any, fields: dict[str, Any]) -> str:
    """``TCP(flags='S', dport=7)``: a spec as failure messages show it."""
    name = getattr(layer, "__name__", str(layer)) if layer is not None else "any"
    parts = [f"{k}={v!r}" for k, v in fields.items()]
    return f"{name}({', '.join(parts)})"


Match = Callable[[Packet], bool]


def is_ip(p: Packet, layer: Any, src: str, dst: str) -> bool:
    """An IPv4 or IPv6 packet src > dst that has ``layer`` (TCP, UDP, ICMP, DNS, ...)."""
    ip = l3(p)
    return ip is not None and layer in p and ip.src == src and ip.dst == dst


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


# ---- application layers (MQTT, TLS, HTTP, DNS, NTP) ---------------------------------------------
# Names that Wire.expect and the scenarios' wire assertions take, and the TCP/UDP ports each is
# dissected on. scapy binds MQTT to 1883, TLS to 443 and HTTP to 80/8080 itself; the rest are the
# lab's own ports (MQTT over TLS on 8883 is TLS on the wire). A test on another port calls
# bind_port("MQTT", port) before the traffic is captured or matched.
APP_PORTS: dict[str, tuple[int, ...]] = {"MQTT": (1883,), "TLS": (443, 8883, 4433), "HTTP": (80, 8080)}


def app_layers() -> dict[str, Any]:
    """Layer name -> scapy class, for every application layer (imports scapy's dissectors)."""
    from scapy.contrib import mqtt
    from scapy.layers import http, ntp
    from scapy.layers.tls import handshake, record

    return {
        "MQTT": mqtt.MQTT,
        "MQTTConnect": mqtt.MQTTConnect,
        "MQTTConnack": mqtt.MQTTConnack,
        "MQTTPublish": mqtt.MQTTPublish,
        "MQTTPuback": mqtt.MQTTPuback,
        "MQTTSubscribe": mqtt.MQTTSubscribe,
        "MQTTDisconnect": mqtt.MQTTDisconnect,
        "TLS": record.TLS,
        "TLSClientHello": handshake.TLSClientHello,
        "TLSServerHello": handshake.TLSServerHello,
        "TLSAlert": record.TLSAlert,
        "HTTP": http.HTTP,
        "HTTPRequest": http.HTTPRequest,
        "HTTPResponse": http.HTTPResponse,
        "DNS": DNS,
        "NTP": ntp.NTP,
    }


_BOUND: set[tuple[str, int]] = set()
_PORT_LAYER: dict[int, str] = {}  # TCP port -> the protocol its stream carries (bind_port)


def bind_port(layer: str, port: int) -> None:
    """Dissect TCP ``port`` (either direction) as ``layer`` ("MQTT", "TLS" or "HTTP")."""
    from scapy.packet import bind_bottom_up, bind_layers

    if (layer, port) in _BOUND:
        return
    top = app_layers()
    if layer not in APP_PORTS:
        raise ValueError(f"bind_port: {layer!r} is not one of {', '.join(APP_PORTS)}")
    if layer == "MQTT":  # MQTT is bound both ways in scapy (it builds PUBLISHes too)
        bind_layers(TCP, top[layer], sport=port)
        bind_layers(TCP, top[layer], dport=port)
    else:
        bind_bottom_up(TCP, top[layer], sport=port)
        bind_bottom_up(TCP, top[layer], dport=port)
    _BOUND.add((layer, port))
    _PORT_LAYER[port] = layer


def port_layer(port: int) -> str | None:
    """The application protocol bound to TCP ``port`` ("MQTT", "TLS", "HTTP"), if any."""
    return _PORT_LAYER.get(port)


def bound_generation() -> int:
    """Changes whenever a port is bound: packets dissected before then may lack a layer."""
    return len(_BOUND)


def bind_app_ports() -> None:
    """Bind every layer of APP_PORTS to its ports (idempotent)."""
    for layer, ports in APP_PORTS.items():
        for port in ports:
            bind_port(layer, port)


def redissect(p: Packet) -> Packet:
    """``p`` dissected again from its bytes with the layers bound now (its time kept)."""
    from scapy.layers.l2 import Ether

    if not isinstance(p, Ether):
        return p
    q = Ether(bytes(p))
    q.time = p.time
    return q


def sni_of(p: Packet) -> str | None:
    """The server name a TLS ClientHello asks for (its SNI extension), or None."""
    from scapy.layers.tls.extensions import TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello

    if not p.haslayer(TLSClientHello):
        return None
    for ext in p[TLSClientHello].ext or []:
        if isinstance(ext, TLS_Ext_ServerName):
            for sn in ext.servernames or []:
                name = sn.servername
                return name.decode() if isinstance(name, bytes) else str(name)
    return None


def _qname(p: Packet) -> str | None:
    return qname_of(p) if p.haslayer(DNS) and p[DNS].qd else None


# Fields that are not a scapy field of the layer but are what one asserts on.
VIRTUAL_FIELDS: dict[tuple[str, str], Callable[[Packet], Any]] = {
    ("TLSClientHello", "sni"): sni_of,
    ("TLS", "sni"): sni_of,
    ("DNS", "qname"): _qname,
}


def is_app_layer(layer: Any) -> bool:
    """MQTT, TLS, HTTP, NTP and their messages (DNS is dissected anyway)."""
    name = getattr(layer, "__name__", "")
    return name != "DNS" and name in app_layers()


def fields_text(lay: Packet, limit: int = 200) -> str:
    """``MQTTPublish(topic='a/b', msgid=1, value='21')``: one layer's fields, decoded."""
    parts = []
    for f in lay.fields_desc:
        v = lay.getfieldval(f.name)
        if v is None:  # an absent optional field (most of an HTTP request's headers)
            continue
        try:
            shown = str(f.i2repr(lay, v))
        except Exception:
            shown = repr(v)
        if isinstance(v, bytes):
            shown = repr(v.decode("utf-8", "replace"))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{f.name}={shown}")
    text = f"{type(lay).__name__}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decoded(p: Packet) -> str:
    """The application layers of ``p`` (above TCP/UDP), each as its decoded field list."""
    from scapy.layers.tls.record import TLS

    out = []
    lay: Packet | None = p[TCP].payload if TCP in p else p[UDP].payload if UDP in p else None
    while lay is not None and lay.__class__.__name__ not in ("NoPayload", "Raw", "Padding"):
        if isinstance(lay, TLS):  # a record: its messages, not the list's repr
            out.append(f"TLS(type={lay.get_field('type').i2repr(lay, lay.type)}, version={lay.version:#x})")
            out += [fields_text(m, 300) for m in lay.msg or [] if isinstance(m, Packet)]
            if (sni := sni_of(p)) is not None:
                out.append(f"sni={sni!r}")
        else:
            out.append(fields_text(lay))
        lay = lay.payload if lay.payload else None
    return " / ".join(out)


# ---- TCP streams of application messages ---------------------------------------------------------
# Devices write a message in pieces (umqtt.simple sends a PUBLISH's header, topic, id and payload
# with four writes: four segments), so matching segment by segment misses them. The stream view
# reassembles each direction of each connection on a bound port and cuts it into messages.
def _frame_mqtt(b: bytes) -> int | None:
    n, mult = 0, 1
    for i in range(1, min(len(b), 5)):
        n += (b[i] & 0x7F) * mult
        mult *= 128
        if b[i] < 0x80:
            return 1 + i + n
    return None


def _frame_tls(b: bytes) -> int | None:
    return 5 + int.from_bytes(b[3:5], "big") if len(b) >= 5 else None


def _frame_http(b: bytes) -> int | None:
    end = b.find(b"\r\n\r\n")
    if end < 0:
        return None
    m = re.search(rb"(?im)^content-length:\s*(\d+)", b[:end])
    return end + 4 + (int(m.group(1)) if m else 0)


_FRAMERS: dict[str, Callable[[bytes], int | None]] = {"MQTT": _frame_mqtt, "TLS": _frame_tls, "HTTP": _frame_http}


@dataclass
class _Flow:
    next: int  # the next sequence number the stream expects
    buf: bytes = b""
    ahead: dict[int, bytes] | None = None  # segments past a hole, by sequence number

    def add(self, seq: int, data: bytes) -> None:
        behind = (self.next - seq) % 2**32
        if behind < 2**31:  # starts at or before what we have: keep only the new bytes
            if behind >= len(data):
                return
            data = data[behind:]
        elif (seq - self.next) % 2**32:  # past a hole: later
            self.ahead = {**(self.ahead or {}), seq: data}
            return
        self.buf += data
        self.next = (self.next + len(data)) % 2**32
        while self.ahead and self.next in self.ahead:
            self.add(self.next, self.ahead.pop(self.next))


def stream_messages(pkts: Sequence[Packet]) -> list[tuple[int, Packet]]:
    """Application messages of the TCP streams on bound ports: (index of the segment that
    completed it, a packet with that segment's headers and the message as its payload)."""
    layers = app_layers()
    flows: dict[tuple[str, int, str, int], _Flow] = {}
    out: list[tuple[int, Packet]] = []
    for i, p in enumerate(pkts):
        if IP not in p or TCP not in p:
            continue
        t = p[TCP]
        proto = _PORT_LAYER.get(t.dport) or _PORT_LAYER.get(t.sport)
        if proto is None:
            continue
        key = (p[IP].src, t.sport, p[IP].dst, t.dport)
        if t.flags & 0x02:
            flows[key] = _Flow((t.seq + 1) % 2**32)
            continue
        data = payload_of(p)
        if not data:
            continue
        st = flows.setdefault(key, _Flow(t.seq))
        st.add(t.seq, data)
        while (n := _FRAMERS[proto](st.buf)) is not None and n <= len(st.buf):
            msg, st.buf = st.buf[:n], st.buf[n:]
            q = p.copy()
            q[TCP].remove_payload()
            q = q / layers[proto](msg)
            q.time = p.time
            out.append((i, q))
    return out


def app_view(pkts: Sequence[Packet]) -> list[Packet]:
    """``pkts`` with every segment of a bound TCP port replaced by the messages its stream
    completed (in capture order); other packets dissected again (NTP, DNS) as they are."""
    msgs: dict[int, list[Packet]] = {}
    for i, q in stream_messages(pkts):
        msgs.setdefault(i, []).append(q)
    out: list[Packet] = []
    for i, p in enumerate(pkts):
        if TCP in p and (_PORT_LAYER.get(p[TCP].dport) or _PORT_LAYER.get(p[TCP].sport)):
            out += msgs.get(i, [])
        else:
            out.append(redissect(p))
    return out
