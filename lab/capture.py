"""Packet capture on the lab bridge (host side) and wire assertions.

``Capture`` runs a scapy ``AsyncSniffer`` on the bridge ``mplab-<lab>`` (promiscuous, so
frames bridged between two containers are seen too) and writes a pcap. ``Wire`` polls the
growing packet list::

    with Capture(lab.bridge, "t.pcap") as cap:
        wire = Wire(cap)
        ...
        wire.expect(TCP, flags="S", dst=node.ip, dport=7, within=2.0)

On failure it raises ``AssertionError`` with what was expected, a summary line per packet
seen and the pcap path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from scapy.config import conf
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer
from scapy.utils import wrpcap

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
        self.t0 = time.time()
        if os.geteuid() != 0:
            raise PermissionError(f"capture on {self.iface} needs root (CAP_NET_RAW): run as root or with sudo")
        self._sniffer = start_sniffer(self.iface, self._on_packet, self.bpf, timeout)
        if self._sniffer is None:
            raise RuntimeError(f"capture on {self.iface} did not start within {timeout}s")
        return self

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


def _field(p: Packet, layer: Any, name: str) -> Any:
    """``name`` from ``layer`` or the nearest layer below it (TCP → IP → Ether)."""
    lay: Packet | None = p[layer]
    while lay is not None:
        if name in lay.fields or any(f.name == name for f in lay.fields_desc):
            return lay.getfieldval(name)
        lay = lay.underlayer
    raise KeyError(name)


def matches(p: Packet, layer: Any, fields: dict[str, Any]) -> bool:
    if layer is not None and not p.haslayer(layer):
        return False
    for name, want in fields.items():
        try:
            got = _field(p, layer, name) if layer is not None else p.getfieldval(name)
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


def _describe(layer: Any, fields: dict[str, Any]) -> str:
    name = getattr(layer, "__name__", str(layer)) if layer is not None else "any"
    parts = [f"{k}={v!r}" for k, v in fields.items()]
    return f"{name}({', '.join(parts)})"


class Wire:
    """Assertions about what crossed the LAN, on top of a running ``Capture``."""

    def __init__(self, capture: Capture, poll: float = 0.02) -> None:
        self.capture = capture
        self.poll = poll

    @property
    def path(self) -> Path:
        return self.capture.path

    def packets(self, since: float | None = None) -> list[Packet]:
        ps = self.capture.packets
        return ps if since is None else [p for p in ps if float(p.time) >= since]

    def mark(self) -> float:
        """A timestamp to pass as ``since`` to later assertions."""
        return time.time()

    def inject(self, pkt: Packet, count: int = 1) -> None:
        """Send an Ethernet frame on the captured lab bridge (lab/inject.py has the builders)."""
        from .inject import send_on

        send_on(self.capture.iface, pkt, count)

    def _fail(self, expected: Iterable[str], note: str, found: Sequence[Packet] = ()) -> AssertionError:
        self.capture.write()
        ps = self.packets()
        lines = [f"wire: {note}", "expected:"]
        lines += [f"  {e}" for e in expected]
        if found:
            lines.append("matched so far:")
            lines += [f"  {p.summary()}" for p in found]
        shown = ps[-40:]
        lines.append(f"seen on {self.capture.iface} ({len(ps)} packets{', last 40' if len(ps) > 40 else ''}):")
        t0 = self.capture.t0
        lines += [f"  {float(p.time) - t0:8.3f}  {p.summary()}" for p in shown] or ["  (nothing)"]
        lines.append(f"pcap: {self.capture.path}")
        return AssertionError("\n".join(lines))

    def expect(
        self,
        layer: Any = None,
        within: float = 2.0,
        since: float | None = None,
        where: Callable[[Packet], bool] | None = None,
        **fields: Any,
    ) -> Packet:
        """Wait up to ``within`` s for a packet with ``layer`` and these field values."""
        deadline = time.monotonic() + within
        while True:
            for p in self.packets(since):
                if matches(p, layer, fields) and (where is None or where(p)):
                    return p
            if time.monotonic() >= deadline:
                raise self._fail([_describe(layer, fields)], f"no matching packet within {within:g}s")
            time.sleep(self.poll)

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
        bad = [p for p in self.packets(since) if matches(p, layer, fields) and (where is None or where(p))]
        if bad:
            raise self._fail([f"no {_describe(layer, fields)}"], f"{len(bad)} unexpected packet(s)", bad)

    def expect_sequence(
        self, specs: Sequence[Spec | Any], within: float = 2.0, since: float | None = None
    ) -> list[Packet]:
        """Wait for packets matching ``specs`` in this order: [(TCP, {"flags": "S"}), ...]."""
        norm: list[Spec] = [s if isinstance(s, tuple) else (s, {}) for s in specs]
        deadline = time.monotonic() + within
        while True:
            found: list[Packet] = []
            i = 0
            for p in self.packets(since):
                if i < len(norm) and matches(p, norm[i][0], norm[i][1]):
                    found.append(p)
                    i += 1
            if i == len(norm):
                return found
            if time.monotonic() >= deadline:
                exp = [("✓ " if k < i else "✗ ") + _describe(lay, f) for k, (lay, f) in enumerate(norm)]
                raise self._fail(exp, f"sequence incomplete after {within:g}s ({i}/{len(norm)} matched)", found)
            time.sleep(self.poll)
