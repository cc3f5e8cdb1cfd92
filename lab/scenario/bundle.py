"""The evidence bundle of one run: verdict.json (machine-readable) and verdict.md (for people).

The runner writes the other files (wire.pcap, consoles, status.json, peers.log, ...);
this module writes the verdict and names the bundle's directory.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

from .firmware import Firmware
from .model import ERROR, NOT_REPRODUCED, REPRODUCED, Result, RunState, Scenario

FILES = (
    ("wire.pcap", "everything on the lab bridge except the host's REPL traffic (tcp port 5555)"),
    ("nodeN.console.txt", "each node's console (docker logs: everything the guest printed)"),
    ("repl/nodeN.console.log", "the REPL transcript of the runner"),
    ("status.json", "lab status at the end (nodes, IPs, MACs, state)"),
    ("firmware.manifest.json", "the firmware's manifest"),
    ("scenario.yml", "the scenario as run"),
    ("peers.log", "what the host-side peers saw"),
    ("verdict.json", "this verdict, machine-readable"),
)


def bundle_dir(scn: Scenario, fw: Firmware, root: Path | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return (root or Path("artifacts/repro")) / f"{scn.name}-{fw.label}-{stamp}"


def _rel_t(t: float, t0: float) -> str:
    return f"{t - t0:.3f}" if t and t0 else "-"


def write_verdict(runner: RunState, res: Result) -> None:
    scn, fw, t0 = runner.scn, runner.fw, runner.t_cap0
    out = res.bundle
    data = {
        "scenario": scn.name,
        "upstream": scn.upstream,
        "firmware": {
            "label": fw.label,
            "version": fw.version,
            "elf": str(fw.elf),
            "sha256": fw.manifest.get("sha256", ""),
        },
        "lab": res.lab,
        "verdict": res.verdict,
        "exit_code": res.exit_code,
        "error": res.error,
        "duration_s": round(res.duration, 2),
        "pcap": "wire.pcap" if (out / "wire.pcap").is_file() else None,
        "checks": [dataclasses.asdict(c) for c in res.checks],
        "steps": [
            {**dataclasses.asdict(s), "t_start": _rel_t(s.t_start, t0), "t_end": _rel_t(s.t_end, t0)} for s in res.steps
        ],
    }
    (out / "verdict.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "verdict.md").write_text("\n".join(_markdown(runner, res)) + "\n")


def _markdown(runner: RunState, res: Result) -> list[str]:
    scn, fw, t0 = runner.scn, runner.fw, runner.t_cap0
    L: list[str] = []
    L.append(f"# {scn.name} on firmware {fw.label}: **{res.verdict.upper()}**\n")
    if scn.upstream:
        L.append(f"Upstream: {scn.upstream}\n")
    if scn.description:
        L.append(scn.description + "\n")
    meaning = {
        REPRODUCED: "every assertion of the bug's signature held: the bug shows on this firmware.",
        NOT_REPRODUCED: "at least one assertion of the bug's signature did not hold (✗ below): "
        "the bug did not show on this firmware.",
        ERROR: f"the scenario could not run: {res.error}",
    }
    L.append(f"Verdict: **{res.verdict}** — {meaning[res.verdict]}\n")
    L.append(f"- firmware: `{fw.elf}` (MicroPython {fw.version}, sha256 {str(fw.manifest.get('sha256', ''))[:16]}…)")
    L.append(f"- lab: `{res.lab}`, run time {res.duration:.1f}s, scenario `{scn.path}`")
    L.append(
        "- times below are seconds since the capture started = the time column of `wire.pcap` "
        "(Wireshark: View > Time Display Format > Seconds Since Beginning of Capture); "
        "`#N` is the frame number in `wire.pcap`\n"
    )
    L.append("## Assertions\n")
    if not res.checks:
        L.append("(none evaluated)\n")
    for c in res.checks:
        L.append(
            f"- {'✓ held' if c.held else '✗ did not hold'} — {c.label}, {scn.path.name}:{c.line}"
            + (f": *{c.says}*" if c.says else "")
        )
        L.append(f"  - {c.detail}")
        for p in c.packets[:10]:
            L.append(f"  - `#{p.frame}` t={p.t:.3f}s {p.summary}")
        if len(c.packets) > 10:
            L.append(f"  - … {len(c.packets) - 10} more")
    L.append("\n## Timeline\n")
    L.append("| step | action | start | end | result |")
    L.append("|---|---|---|---|---|")
    for s in res.steps:
        if s.timed_out:
            what = s.note
        elif s.exception:
            what = f"raised {s.exception}" + (f" errno {s.errno}" if s.errno is not None else "")
        else:
            what = s.error or s.note or (s.output.strip().replace("\n", " ⏎ ")[:100] if s.output else "ok")
        L.append(
            f"| {s.id} (line {s.line}) | {s.action} | {_rel_t(s.t_start, t0)} | "
            f"{_rel_t(s.t_end, t0)} | {what.replace('|', '/')} |"
        )
    L.append("\n## Files\n")
    for name, what in FILES:
        L.append(f"- `{name}`: {what}")
    return L
