"""Ladder diagrams of captured traffic: one lane per lab host, one arrow per frame, time down
the page (docs/ladder.md).

``model`` turns frames into events and rows (no browser needed to check it), ``labels`` says
what each frame is, ``render`` writes one self-contained HTML page. The bundles' verdict.html,
the pytest plugin's ladder.html and ``mplab view`` all come through :func:`write_pcap`::

    from lab import ladder
    ladder.write_pcap("wire.pcap", "wire.html", hosts=ladder.Hosts().add("node1", "10.0.0.64"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import (
    BROADCAST,
    EXPECTED,
    FRAME,
    NOTE,
    RUN,
    Event,
    Finding,
    Hosts,
    Ladder,
    Lane,
    Note,
    Row,
    build,
    collapse,
)
from .render import page, svg

__all__ = [
    "BROADCAST",
    "EXPECTED",
    "FRAME",
    "NOTE",
    "RUN",
    "Event",
    "Finding",
    "Hosts",
    "Ladder",
    "Lane",
    "Note",
    "Row",
    "build",
    "collapse",
    "page",
    "read_pcap",
    "svg",
    "write",
    "write_pcap",
]


def read_pcap(path: Path | str) -> list[Any]:
    """The packets of a pcap (or pcapng); ConfigError, one line, if it is missing or not one."""
    from scapy.error import Scapy_Exception
    from scapy.utils import rdpcap

    p = Path(path)
    if not p.is_file():
        what = "a directory, not a file" if p.is_dir() else "no such file"
        raise ConfigError(f"{p}: {what} (give the path of a .pcap, e.g. a bundle's wire.pcap)")
    try:
        return list(rdpcap(str(p)))
    except (Scapy_Exception, EOFError, OSError, ValueError, TypeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{p}: not a readable pcap ({why}); fix: give a pcap or pcapng file") from None


def write(ladder: Ladder, out: Path | str, *, extra_html: str = "") -> Path:
    """Write ``ladder``'s page to ``out``; returns the path."""
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    o.write_text(page(ladder, extra_html=extra_html), encoding="utf-8")
    return o


def write_pcap(
    pcap: Path | str,
    out: Path | str | None = None,
    *,
    hosts: Hosts | None = None,
    title: str = "",
    t0: float | None = None,
    notes: Sequence[Note] = (),
    findings: Sequence[Finding] = (),
    extra_html: str = "",
) -> Path:
    """Render ``pcap``'s ladder to ``out`` (default: beside it, ``<name>.html``)."""
    src = Path(pcap)
    pkts = read_pcap(src)
    lad = build(pkts, hosts, title=title or src.name, t0=t0, notes=notes, findings=findings, source=src.name)
    return write(lad, Path(out) if out is not None else src.with_suffix(".html"), extra_html=extra_html)
