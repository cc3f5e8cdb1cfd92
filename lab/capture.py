"""Packet capture on the lab bridge (host side) and wire assertions.

``Capture`` runs a scapy ``AsyncSniffer`` on the bridge ``mplab-<lab>`` (promiscuous, so
frames bridged between two containers are seen too) and writes a pcap. ``Wire`` polls the
growing packet list::

    with Capture(lab.bridge, "t.pcap") as cap:
        wire = Wire(cap)
        ...
        wire.expect(TCP, flags="S", dst=node.ip, dport=7, within=2.0)

On failure it raises ``WireTimeout`` (an ``AssertionError``) with what was expected, a summary
line per packet seen and the pcap path. A ``Wire`` also reads a pcap another program is writing
(``Wire(PcapFile(path))``: tcpdump in the firmware tests' namespace). The packet helpers it is
built on are in lab/packets.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from scapy.config import conf
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer, sendp
from scapy.utils import PcapReader, wrpcap

from .errors import CaptureError, ConfigError
from .hostnet import bridge_exists
from .packets import (
    Match,
    app_view,
    bind_app_ports,
    bound_generation,
    decoded,
    describe,
    flags_of,
    is_app_layer,
    is_dhcp,
    is_ip,
    is_tcp,
    matches,
    qname_of,
)
from .util import poll_until

Spec = tuple[Any, dict[str, Any]]


def start_sniffer(
    iface: str, prn: Callable[[Packet], Any], bpf: str | None = None, timeout: float = 5.0
) -> AsyncSniffer | None:
    """Start a promiscuous sniffer on ``iface`` and wait until it listens.

    Returns None (and leaves nothing running) if it did not start within ``timeout``.
    Promiscuous, so that frames bridged between two containers are seen too.
    """
    ready = threading.Event()
    conf.sniff_promisc = True
    sniffer = AsyncSniffer(iface=iface, filter=bpf, prn=prn, store=False, started_callback=ready.set)
    sniffer.start()
    if not ready.wait(timeout):
        stop_sniffer(sniffer)
        return None
    return sniffer


def stop_sniffer(sniffer: AsyncSniffer | None) -> None:
    """Stop a sniffer from :func:`start_sniffer`; None and already stopped ones are fine."""
    if sniffer is None:
        return
    try:
        sniffer.stop(join=True)
    except Exception:
        pass


def send_on(iface: str, pkt: Packet, count: int = 1) -> None:
    """``sendp`` on a lab bridge (refuses any other interface)."""
    if not iface.startswith("mplab-"):
        raise ConfigError(f"refusing to inject on {iface!r}: only lab bridges (mplab-<lab>)")
    if not pkt.haslayer(Ether):
        raise ConfigError("inject on a bridge needs an Ethernet frame: Ether(dst=..)/IP(..); or use inject(lab, pkt)")
    sendp(pkt, iface=iface, count=count, verbose=False)


class Capture:
    """Sniff ``iface`` into memory; the pcap is written at ``path`` on stop (and on demand)."""

    def __init__(
        self,
        iface: str,
        path: Path | str,
        bpf: str | None = None,
        mac: str | None = None,
    ) -> None:
        self.iface = iface
        self.path = Path(path)
        filters = [f"({bpf})"] if bpf else []
        if mac:
            filters.append(f"(ether host {mac})")
        self.bpf = " and ".join(filters) or None
        self._packets: list[Packet] = []
        self._lock = threading.Lock()
        self._sniffer: AsyncSniffer | None = None
        self.t0 = 0.0

    def _on_packet(self, p: Packet) -> None:
        with self._lock:
            self._packets.append(p)

    def start(self, timeout: float = 5.0) -> Capture:
        """Start sniffing; CaptureError (one line) if it cannot."""
        self.t0 = time.time()
        if os.geteuid() != 0:
            raise CaptureError("packet capture needs root: run as root or with CAP_NET_RAW")
        if not bridge_exists(self.iface):
            raise CaptureError(f"capture: no interface {self.iface} on this host: is the lab up? (`mplab up`)")
        try:
            self._sniffer = start_sniffer(self.iface, self._on_packet, self.bpf, timeout)
        except OSError as e:
            raise CaptureError(f"capture on {self.iface} failed: {e}") from None
        if self._sniffer is None:
            raise CaptureError(f"capture on {self.iface} did not start within {timeout:g}s (bad BPF filter?)")
        return self

    def send(self, pkt: Packet, count: int = 1) -> None:
        """Send an Ethernet frame on the captured lab bridge."""
        send_on(self.iface, pkt, count)

    def clear(self) -> None:
        """Forget the packets captured so far (a long run keeps only what it still needs)."""
        with self._lock:
            self._packets.clear()

    def stop(self) -> Path:
        stop_sniffer(self._sniffer)
        self._sniffer = None
        return self.write()

    def write(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the bridge is Ethernet; a frame scapy could not dissect comes back as Raw
        pkts = [p if isinstance(p, Ether) else Ether(bytes(p)) for p in self.packets]
        wrpcap(str(self.path), pkts, linktype=1)  # DLT_EN10MB
        return self.path

    @property
    def packets(self) -> list[Packet]:
        with self._lock:
            return list(self._packets)

    @property
    def running(self) -> bool:
        return self._sniffer is not None

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PcapFile:
    """A pcap that another program (tcpdump) is writing, as a packet source for ``Wire``."""

    def __init__(self, path: Path | str, iface: str = "pcap") -> None:
        self.path = Path(path)
        self.iface = iface
        self.t0 = 0.0

    @property
    def packets(self) -> list[Packet]:
        if not self.path.exists() or self.path.stat().st_size < 24:
            return []
        out: list[Packet] = []
        try:
            with PcapReader(str(self.path)) as reader:
                out.extend(reader)
        except EOFError:  # a record still being written: keep what is complete
            pass
        if out and not self.t0:
            self.t0 = float(out[0].time)
        return out

    def write(self) -> Path:
        return self.path  # the writer owns the file

    def send(self, pkt: Packet, count: int = 1) -> None:
        raise ConfigError(f"{self.path}: a pcap file is read-only; send on a lab bridge (Capture)")


class WireTimeout(AssertionError):
    """Nothing on the wire matched in time (the message lists what was seen).

    ``expected`` is what was waited for (one line per spec, ✓/✗ for a sequence) and
    ``matched`` the packets that did match so far: the pytest plugin's ladder.html highlights
    them and marks where the missing one belonged.
    """

    def __init__(self, message: str, expected: Sequence[str] = (), matched: Sequence[Packet] = ()) -> None:
        super().__init__(message)
        self.expected = list(expected)
        self.matched = list(matched)


class Wire:
    """Assertions about what crossed the LAN, on top of a running ``Capture`` (or a ``PcapFile``).

    Every query polls the growing packet list until it matches or times out; a timeout raises
    ``WireTimeout`` listing what was captured and where the pcap is.
    """

    def __init__(self, capture: Capture | PcapFile, poll: float = 0.02) -> None:
        self.capture = capture
        self.poll = poll
        # the last application-layer view: (first packet's id, count, bind generation), view
        self._app: tuple[tuple[int, int, int], list[Packet]] | None = None
        bind_app_ports()

    def _view(self, layer: Any, since: float | None) -> list[Packet]:
        """The packets to match ``layer`` against. For an application layer, TCP streams on
        its ports are reassembled into messages (packets.app_view): a message a device wrote
        in pieces is still one MQTT PUBLISH, and a port bound after the capture still counts."""
        if layer is None or not is_app_layer(layer):
            return self.packets(since)
        ps = self.packets()
        key = (id(ps[0]) if ps else 0, len(ps), bound_generation())
        if self._app is None or self._app[0] != key:
            self._app = (key, app_view(ps))
        view = self._app[1]
        return view if not since else [p for p in view if float(p.time) >= since]

    @property
    def path(self) -> Path:
        return self.capture.path

    def packets(self, since: float | None = None) -> list[Packet]:
        ps = self.capture.packets
        return ps if not since else [p for p in ps if float(p.time) >= since]

    def mark(self) -> float:
        """A timestamp to pass as ``since`` to later assertions."""
        return time.time()

    def inject(self, pkt: Packet, count: int = 1) -> None:
        """Send an Ethernet frame on the captured lab bridge (lab/inject.py has the builders)."""
        self.capture.send(pkt, count)

    def summary(self, packets: Sequence[Packet] | None = None, last: int = 40) -> str:
        """The last ``last`` packets, one line each, time relative to the capture's start."""
        ps = self.packets() if packets is None else list(packets)
        shown = ps[-last:]
        t0 = self.capture.t0
        head = f"seen on {self.capture.iface} ({len(ps)} packets{f', last {last}' if len(ps) > last else ''}):"
        lines = [f"  {float(p.time) - t0:8.3f}  {p.summary()}" for p in shown] or ["  (nothing)"]
        return "\n".join([head, *lines])

    def _fail(
        self,
        expected: Iterable[str],
        note: str,
        found: Sequence[Packet] = (),
        seen: Sequence[Packet] | None = None,
        layers: Sequence[Any] = (),
        since: float | None = None,
    ) -> WireTimeout:
        self.capture.write()
        expected = list(expected)
        lines = [f"wire: {note}", "expected:"]
        lines += [f"  {e}" for e in expected]
        if found:
            lines.append("matched so far:")
            lines += [f"  {p.summary()}" + (f"\n      {decoded(p)}" if decoded(p) else "") for p in found]
        for layer in dict.fromkeys(x for x in layers if x is not None and (is_app_layer(x) or x is DNS)):
            have = [p for p in self._view(layer, since) if p.haslayer(layer)]
            if have:  # what there was of that layer, decoded: which field differed shows
                lines.append(f"{layer.__name__} seen ({len(have)}, last 5 decoded):")
                lines += [f"  {float(p.time) - self.capture.t0:8.3f}  {decoded(p)}" for p in have[-5:]]
        lines.append(self.summary(seen))
        lines.append(f"pcap: {self.capture.path}")
        return WireTimeout("\n".join(lines), list(expected), found)

    # ---- field specs ------------------------------------------------------------------
    def expect(
        self,
        layer: Any = None,
        within: float = 2.0,
        since: float | None = None,
        where: Callable[[Packet], bool] | None = None,
        **fields: Any,
    ) -> Packet:
        """Wait up to ``within`` s for a packet with ``layer`` and these field values."""

        def first() -> Packet | None:
            for p in self._view(layer, since):
                if matches(p, layer, fields) and (where is None or where(p)):
                    return p
            return None

        p = poll_until(first, within, self.poll)
        if p is None:
            raise self._fail(
                [describe(layer, fields)], f"no matching packet within {within:g}s", layers=[layer], since=since
            )
        return p

    def expect_none(
        self,
        layer: Any = None,
        within: float = 1.0,
        since: float | None = None,
        where: Callable[[Packet], bool] | None = None,
        **fields: Any,
    ) -> None:
        """Wait ``within`` s and assert that no such packet was seen."""
        time.sleep(within)
        bad = [p for p in self._view(layer, since) if matches(p, layer, fields) and (where is None or where(p))]
        if bad:
            raise self._fail([f"no {describe(layer, fields)}"], f"{len(bad)} unexpected packet(s)", bad, since=since)

    def expect_sequence(
        self, specs: Sequence[Spec | Any], within: float = 2.0, since: float | None = None
    ) -> list[Packet]:
        """Wait for packets matching ``specs`` in this order: [(TCP, {"flags": "S"}), ...]."""
        norm: list[Spec] = [s if isinstance(s, tuple) else (s, {}) for s in specs]
        found: list[Packet] = []

        app = next((lay for lay, _ in norm if lay is not None and is_app_layer(lay)), None)

        def complete() -> bool:
            found.clear()
            for p in self._view(app, since):
                if len(found) < len(norm) and matches(p, *norm[len(found)]):
                    found.append(p)
            return len(found) == len(norm)

        if not poll_until(complete, within, self.poll):
            i = len(found)
            exp = [("✓ " if k < i else "✗ ") + describe(lay, f) for k, (lay, f) in enumerate(norm)]
            note = f"sequence incomplete after {within:g}s ({i}/{len(norm)} matched)"
            raise self._fail(exp, note, found, layers=[lay for lay, _ in norm], since=since)
        return list(found)

    # ---- predicates -------------------------------------------------------------------
    def wait(self, match: Match, what: str, timeout: float = 5.0, count: int = 1, since: float = 0.0) -> list[Packet]:
        """Packets (captured at or after ``since``, a ``time.time()``) that ``match``: at least
        ``count`` of them within ``timeout``, else WireTimeout naming ``what``."""
        found: list[Packet] = []

        def enough() -> bool:
            found[:] = [p for p in self.packets(since) if match(p)]
            return len(found) >= count

        if not poll_until(enough, timeout, max(self.poll, 0.05)):
            raise self._fail([f"{count} x {what}"], f"saw {len(found)} within {timeout:g}s", found, self.packets(since))
        return list(found)

    def one(self, match: Match, what: str, timeout: float = 5.0, since: float = 0.0) -> Packet:
        """The first packet that matches (waiting for it)."""
        return self.wait(match, what, timeout, since=since)[0]

    # ---- protocol-specific ------------------------------------------------------------
    def dhcp(self, msg_type: str, mac: str, timeout: float = 5.0, since: float = 0.0) -> list[Packet]:
        """DHCP messages of ``msg_type`` ('discover', 'request', 'offer', 'ack') about ``mac``."""
        return self.wait(lambda p: is_dhcp(p, msg_type, mac), f"DHCP {msg_type} for {mac}", timeout, since=since)

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
            lambda p: is_ip(p, ICMP, src, dst) and p[ICMP].type == icmp_type and p[ICMP].id == ident,
            f"ICMP {name} id={ident:#x} {src} > {dst}",
            timeout,
            count=count,
        )

    def udp(
        self, src: str, dst: str, dport: int, payload: bytes, sport: int | None = None, timeout: float = 5.0
    ) -> Packet:
        return self.one(
            lambda p: is_ip(p, UDP, src, dst)
            and p[UDP].dport == dport
            and (sport is None or p[UDP].sport == sport)
            and bytes(p[UDP].payload) == payload,
            f"UDP {src}:{sport or '*'} > {dst}:{dport} with the {len(payload)}-byte payload",
            timeout,
        )

    def dns_query(self, src: str, server: str, name: str, timeout: float = 5.0) -> Packet:
        fqdn = name.rstrip(".") + "."
        return self.one(
            lambda p: is_ip(p, DNS, src, server)
            and p[UDP].dport == 53
            and p[DNS].qr == 0
            and p[DNS].qd is not None
            and qname_of(p) == fqdn
            and p[DNS].qd[0].qtype == 1,
            f"DNS A query for {fqdn} {src} > {server}:53",
            timeout,
        )

    def dns_answer(self, query: Packet, timeout: float = 5.0) -> list[str]:
        """The A records of the response to ``query`` (same id, back to its source port)."""
        resp = self.one(
            lambda p: is_ip(p, DNS, query[IP].dst, query[IP].src)
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
            lambda p: is_tcp(p, client, server, dport=port) and flags_of(p) == "S",
            f"TCP SYN {client} > {server}:{port}",
            timeout,
        )
        cport = syn[TCP].sport
        synack = self.one(
            lambda p: is_tcp(p, server, client, sport=port, dport=cport)
            and flags_of(p) == "SA"
            and p[TCP].ack == syn[TCP].seq + 1,
            f"TCP SYN-ACK {server}:{port} > {client}:{cport}",
            timeout,
        )
        ack = self.one(
            lambda p: is_tcp(p, client, server, sport=cport, dport=port)
            and "A" in flags_of(p)
            and "S" not in flags_of(p)
            and p[TCP].seq == syn[TCP].seq + 1
            and p[TCP].ack == synack[TCP].seq + 1,
            f"TCP ACK of the handshake {client}:{cport} > {server}:{port}",
            timeout,
        )
        return syn, synack, ack

    def tcp_payload_bytes(self, syn: Packet, src: str, timeout: float = 5.0, expect: int | None = None) -> int:
        """Bytes of payload ``src`` sent on the connection that ``syn`` opened (retransmits
        counted once: the highest sequence number reached minus the ISN); waits up to
        ``timeout`` for ``expect`` bytes, if given."""
        a, b = syn[IP].src, syn[IP].dst
        ap, bp = syn[TCP].sport, syn[TCP].dport
        sport, dport, dst = (ap, bp, b) if src == a else (bp, ap, a)

        def total() -> int:
            segs = [p for p in self.packets() if is_tcp(p, src, dst, sport=sport, dport=dport)]
            isn = next((p[TCP].seq for p in segs if "S" in flags_of(p)), None)
            top = max((p[TCP].seq + len(p[TCP].payload) for p in segs if len(p[TCP].payload)), default=None)
            return 0 if isn is None or top is None else (top - isn - 1) % 2**32

        if expect is None:
            return total()
        got = [0]

        def reached() -> bool:
            got[0] = total()
            return got[0] >= expect

        poll_until(reached, timeout, 0.1)
        return got[0]
