"""Differential mode: the same socket snippets on the guest (MicroPython/lwIP) and on a Linux
peer in the lab (CPython), compared on the REPL result *and* on the wire (docs/differential.md).

    mplab --lab diff diff [--keep] [--out reports] [--only KEY]

Brings the lab up (1 node) unless it is up, starts the Linux peer (lab/linux_peer.py), runs
every scenario on both sides at once (different ports, one capture of the lab bridge per
scenario, kept as artifacts/differential/<scenario>.pcap), and writes
reports/differential.{json,md,html}. ``mplab conformance`` renders the same data as a section
of the conformance report; tests/socket/test_differential.py runs it under pytest and asserts
the documented differences (``EXPECTED``).

Modules: ``sides`` (where a snippet runs), ``scenarios`` (what is run and which wire facts are
read), ``expect`` (the documented differences), ``run`` (both sides at once, compared),
``render`` (Markdown/HTML).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .expect import EXPECTED, Gaps, Near, Pred
from .render import page_html, render_html, render_md, write_reports
from .run import ROOT, Comparison, SideRun, compare, meta_for, run_all, to_json
from .scenarios import SCENARIOS, Scenario
from .sides import Ctx, GuestSide, LinuxSide, Result, Side

__all__ = [
    "EXPECTED",
    "ROOT",
    "SCENARIOS",
    "Comparison",
    "Ctx",
    "Gaps",
    "GuestSide",
    "LinuxSide",
    "Near",
    "Pred",
    "Result",
    "Scenario",
    "Side",
    "SideRun",
    "compare",
    "main",
    "meta_for",
    "page_html",
    "render_html",
    "render_md",
    "run_all",
    "select",
    "to_json",
    "write_reports",
]


def select(only: list[str] | None) -> list[Scenario]:
    """The scenarios named in ``only`` (all when empty); ConfigError naming the valid keys."""
    if not only:
        return list(SCENARIOS)
    keys = [s.key for s in SCENARIOS]
    bad = [k for k in only if k not in keys]
    if bad:
        raise ConfigError(f"unknown differential scenario {', '.join(bad)}: use one of {', '.join(keys)}")
    return [s for s in SCENARIOS if s.key in only]


def main(
    lab_name: str,
    *,
    keep: bool = False,
    out: Path = ROOT / "reports",
    artifacts: Path = ROOT / "artifacts" / "differential",
    only: list[str] | None = None,
    progress: Callable[[str], None] = lambda m: print(m, flush=True),
) -> int:
    """Run the differential in lab ``lab_name`` (up if needed), write the reports; 1 if a
    documented difference no longer holds."""
    from ..lab import Lab
    from ..linux_peer import LinuxPeer

    scs = select(only)
    lab = Lab(lab_name)
    was_up = bool(lab.nodes)
    try:
        if not was_up:
            lab.up(nodes=1)
        node = lab.nodes[0]
        with LinuxPeer(lab) as peer:
            progress(f"differential: {node.name} {node.ip} vs {peer.name} {peer.ip} on {lab.bridge}")
            comps = run_all(lab, node, peer, artifacts, scs, progress=progress)
            data = json.loads(to_json(comps, meta_for(node, peer)))
        write_reports(data, out)
    finally:
        if not keep and not was_up:
            lab.down()
    bad = [f"{c.key}: {p}" for c in comps for p in c.problems()]
    progress(f"differential: {out / 'differential.md'} ({len(bad)} unexpected)")
    for b in bad:
        progress("  " + b)
    return 1 if bad else 0
