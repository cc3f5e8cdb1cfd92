"""The ladder's data: frames -> events -> rows, with no browser and no HTML.

A :class:`Ladder` has one :class:`Lane` per lab host (nodes by name, the host, services, then
any other address seen) and a list of :class:`Row`, in time order. A row is one frame (an
arrow), a collapsed run of similar frames (one thick arrow), a note on the time axis (a
timeline step, an impairment change, a console line) or the marker of a packet a failed
assertion expected. lab/ladder/render.py draws it; tests check it as data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .labels import FrameInfo, describe_frames

BROADCAST = "broadcast"
FRAME, RUN, NOTE, EXPECTED = "frame", "run", "note", "expected"
MIN_RUN = 6  # consecutive similar frames that collapse into one row


@dataclass
class Hosts:
    """Names of the lab's hosts: by IP (v4 or v6) and by MAC, and the order of their lanes."""

    by_ip: dict[str, str] = field(default_factory=dict)
    by_mac: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, name: str, ip: str | None = None, mac: str | None = None) -> Hosts:
        if ip:
            self.by_ip[ip] = name
        if mac:
            self.by_mac[mac.lower()] = name
        if name not in self.order:
            self.order.append(name)
        return self

    def name(self, ip: str | None, mac: str | None) -> str | None:
        if ip and ip in self.by_ip:
            return self.by_ip[ip]
        if mac and mac.lower() in self.by_mac:
            return self.by_mac[mac.lower()]
        return None

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Hosts:
        """From a bundle's status.json: nodes with ip/mac, ``host``, ``services``, ``macs`` (IP -> MAC)."""
        h = cls()
        macs = status.get("macs") or {}
        for n in status.get("nodes", []):
            h.add(str(n.get("name")), n.get("ip") or None, n.get("mac") or None)
        for name in ("host", "services"):
            if status.get(name):
                h.add(name, str(status[name]), macs.get(str(status[name])) or None)
        return h


@dataclass
class Lane:
    id: str  # the host's name, or the address when it has none
    addrs: list[str] = field(default_factory=list)


@dataclass
class Event:
    """One frame, placed: from lane ``src`` to lane ``dst`` at ``t`` (seconds since t0)."""

    frame: int  # 1-based frame number in the pcap
    t: float
    src: str
    dst: str
    label: str
    proto: str
    conv: str  # conversation key: "UDP 10.0.0.1:40000 <> 10.0.0.64:5005"
    kind: str  # what may collapse with what: "tcp-bulk", "udp", "" (never)
    length: int = 0  # payload bytes


@dataclass
class Note:
    """Something on the time axis that is not a frame: a step, an impairment, a console line."""

    t: float
    text: str
    kind: str = "step"  # step | impair | console | failure
    lane: str | None = None  # drawn on this lane; None: across the whole ladder
    t_end: float | None = None


@dataclass
class Finding:
    """An assertion and its evidence: the frames it matched; where a missing packet should be."""

    id: str
    text: str
    held: bool
    frames: list[int] = field(default_factory=list)
    expected_t: float | None = None  # a failed assertion: where the packet should have been
    expected_src: str | None = None  # addresses (or lane names) of the expected packet
    expected_dst: str | None = None
    expected_what: str = ""


@dataclass
class Row:
    kind: str  # frame | run | note | expected
    t: float
    label: str
    src: str | None = None
    dst: str | None = None
    frames: list[int] = field(default_factory=list)
    conv: str = ""
    proto: str = ""
    findings: list[str] = field(default_factory=list)  # ids of the findings that matched it
    t_end: float | None = None
    note_kind: str = ""


@dataclass
class Ladder:
    title: str
    lanes: list[Lane]
    events: list[Event]
    rows: list[Row]
    findings: list[Finding] = field(default_factory=list)
    t0: float = 0.0  # epoch seconds of t = 0
    source: str = ""  # the pcap, as the page names it

    def lane_ids(self) -> list[str]:
        return [ln.id for ln in self.lanes]

    def arrows(self) -> list[Row]:
        return [r for r in self.rows if r.kind in (FRAME, RUN)]


def events_of(infos: Iterable[FrameInfo], hosts: Hosts, t0: float) -> list[Event]:
    out = []
    for f in infos:
        src = hosts.name(f.src_ip, f.src_mac) or f.src_ip or f.src_mac or "?"
        if f.broadcast:
            dst = hosts.name(f.dst_ip, None) if f.dst_ip and not f.dst_ip.endswith(".255") else None
            dst = dst or BROADCAST
        else:
            dst = hosts.name(f.dst_ip, f.dst_mac) or f.dst_ip or f.dst_mac or "?"
        out.append(Event(f.frame, f.time - t0, src, dst, f.label, f.proto, f.conv, f.kind, f.length))
    return out


def lanes_of(events: Sequence[Event], hosts: Hosts, notes: Sequence[Note] = ()) -> list[Lane]:
    """The hosts' own lanes (in their order) that appear, then other addresses, broadcast last."""
    seen: list[str] = []
    for e in events:
        for x in (e.src, e.dst):
            if x not in seen:
                seen.append(x)
    for n in notes:
        if n.lane and n.lane not in seen:
            seen.append(n.lane)
    named = [h for h in hosts.order if h in seen]
    rest = [x for x in seen if x not in named and x != BROADCAST]
    ids = named + rest + ([BROADCAST] if BROADCAST in seen else [])
    addrs: dict[str, list[str]] = {i: [] for i in ids}
    for ip, name in hosts.by_ip.items():
        if name in addrs:
            addrs[name].append(ip)
    return [Lane(i, addrs[i]) for i in ids]


def collapse(events: Sequence[Event], keep: Collection[int] = (), min_run: int = MIN_RUN) -> list[Row]:
    """One row per event, except runs of ``min_run`` or more consecutive events of the same
    conversation and kind (bulk TCP data and its ACKs, a stream of datagrams), which become
    one ``run`` row. A frame in ``keep`` (an assertion matched it) is never collapsed, nor is
    a retransmission or a zero window (labels.describe_frames gives those no kind)."""
    keep = set(keep)
    rows: list[Row] = []
    i = 0
    while i < len(events):
        e = events[i]
        j = i + 1
        if e.kind and e.frame not in keep:
            while (
                j < len(events)
                and events[j].kind == e.kind
                and events[j].conv == e.conv
                and events[j].frame not in keep
            ):
                j += 1
        if j - i >= min_run:
            rows.append(_run_row(events[i:j]))
        else:
            j = i + 1
            rows.append(Row(FRAME, e.t, e.label, e.src, e.dst, [e.frame], e.conv, e.proto))
        i = j
    return rows


def _run_row(run: Sequence[Event]) -> Row:
    """A collapsed run: drawn from the side that sent most bytes (or frames)."""
    by_dir: dict[tuple[str, str], list[Event]] = {}
    for e in run:
        by_dir.setdefault((e.src, e.dst), []).append(e)
    (src, dst), main = max(by_dir.items(), key=lambda kv: (sum(e.length for e in kv[1]), len(kv[1])))
    parts = []
    for (s, d), evs in by_dir.items():
        nbytes = sum(e.length for e in evs)
        parts.append(f"{s}→{d} {len(evs)}" + (f" ({nbytes} B)" if nbytes else ""))
    label = f"×{len(run)} {run[0].proto} {run[0].kind.split('-')[-1]}: " + ", ".join(parts)
    return Row(RUN, run[0].t, label, src, dst, [e.frame for e in run], run[0].conv, run[0].proto, t_end=run[-1].t)


def _lane_of(addr: str | None, hosts: Hosts, lanes: list[str]) -> str | None:
    if not addr:
        return None
    if addr in lanes:
        return addr
    name = hosts.by_ip.get(addr)
    return name if name in lanes else None


def build(
    packets: Sequence[Any],
    hosts: Hosts | None = None,
    *,
    title: str = "",
    t0: float | None = None,
    notes: Sequence[Note] = (),
    findings: Sequence[Finding] = (),
    min_run: int = MIN_RUN,
    source: str = "",
) -> Ladder:
    """The ladder of ``packets`` (scapy packets with their times, e.g. a pcap read back).

    ``t0`` is the epoch time of t = 0 (default: the first packet); ``notes`` are times relative
    to it. Frames a finding matched are never collapsed and are marked with its id; a failed
    finding with an ``expected_t`` adds an ``expected`` row there.
    """
    hosts = hosts or Hosts()
    infos = describe_frames(packets)
    if t0 is None:
        t0 = infos[0].time if infos else 0.0
    events = events_of(infos, hosts, t0)
    keep = {f for fd in findings for f in fd.frames}
    rows = collapse(events, keep, min_run)
    by_frame = {r.frames[0]: r for r in rows if r.kind == FRAME}
    for fd in findings:
        for f in fd.frames:
            if f in by_frame:
                by_frame[f].findings.append(fd.id)
    lanes = lanes_of(events, hosts, notes)
    ids = [ln.id for ln in lanes]
    extra: list[Row] = [Row(NOTE, n.t, n.text, n.lane, None, t_end=n.t_end, note_kind=n.kind) for n in notes]
    for fd in findings:
        if fd.held or fd.expected_t is None:
            continue
        src = _lane_of(fd.expected_src, hosts, ids)
        dst = _lane_of(fd.expected_dst, hosts, ids)
        extra.append(Row(EXPECTED, fd.expected_t, fd.expected_what or fd.text, src, dst, findings=[fd.id]))
    return Ladder(title, lanes, events, merge(rows, extra), list(findings), t0, source)


SAME_TIME = 2e-6  # a pcap keeps microseconds: times from the live capture differ by that much


def _before(x: Row, frame: Row) -> bool:
    if abs(x.t - frame.t) <= SAME_TIME:
        return x.kind == NOTE
    return x.t < frame.t


def merge(rows: Sequence[Row], extra: Sequence[Row]) -> list[Row]:
    """``rows`` (frames, in capture order) with ``extra`` (notes, markers) put in by time. A
    note goes before the frames of its own time (it explains them); a marker of a missing
    packet after them (it is placed at the last packet that did match)."""
    out: list[Row] = []
    pending = sorted(extra, key=lambda r: (r.t, r.kind != NOTE))
    k = 0
    for r in rows:
        while k < len(pending) and _before(pending[k], r):
            out.append(pending[k])
            k += 1
        out.append(r)
    return out + pending[k:]
