"""The evidence bundle of one run: verdict.json (machine-readable), verdict.md (for people) and
verdict.html (the ladder of wire.pcap with the assertions linked to their frames, lab/ladder).

The runner writes the other files (wire.pcap, consoles, status.json, peers.log, ...);
this module writes the verdict and names the bundle's directory.
"""

from __future__ import annotations

import dataclasses
import html
import json
from datetime import datetime
from pathlib import Path

from .. import ladder
from ..errors import ConfigError
from .firmware import Firmware
from .model import ERROR, NOT_REPRODUCED, REPRODUCED, Result, RunState, Scenario, StepResult

FILES = (
    ("wire.pcap", "everything on the lab bridge except the host's REPL traffic (tcp port 5555)"),
    ("nodeN.console.txt", "each node's console (docker logs: everything the guest printed)"),
    ("repl/nodeN.console.log", "the REPL transcript of the runner"),
    ("status.json", "lab status at the end (nodes, IPs, MACs, state)"),
    ("firmware.manifest.json", "the firmware's manifest"),
    ("scenario.yml", "the scenario as run"),
    ("peers.log", "what the host-side peers saw"),
    ("verdict.json", "this verdict, machine-readable"),
    ("verdict.html", "the ladder of wire.pcap, each assertion linked to its frames (one file, opens offline)"),
)
IMPAIR_ACTIONS = ("impair", "clear", "link", "inject")


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
    write_html(runner, res)


def findings(res: Result) -> list[ladder.Finding]:
    """The checks as the ladder shows them: matched frames, and where a missing one belonged."""
    out = []
    for k, c in enumerate(res.checks, 1):
        text = f"{c.label}, line {c.line}" + (f": {c.says}" if c.says else "") + f" — {c.detail}"
        e = c.expected
        out.append(
            ladder.Finding(
                f"a{k}",
                text,
                c.held,
                [p.frame for p in c.packets],
                e.t if e else None,
                e.src if e else None,
                e.dst if e else None,
                e.what if e else "",
            )
        )
    return out


def notes(runner: RunState, res: Result) -> list[ladder.Note]:
    """The timeline's steps (impairments apart), and what each exec printed, on the time axis."""
    t0 = runner.t_cap0
    out: list[ladder.Note] = []
    for s in res.steps:
        if not s.t_start or not t0:
            continue
        step = next((st for st in runner.scn.timeline if st.id == s.id), None)
        says = f" — {step.says}" if step is not None and step.says else ""
        node = str(step.args.get("node", "")) if step is not None else ""
        kind = "impair" if s.action in IMPAIR_ACTIONS else "step"
        args = _args(step.args) if step is not None and kind == "impair" else ""
        end = s.t_end - t0 if s.t_end else None
        out.append(ladder.Note(s.t_start - t0, f"step {s.id}: {s.action}{args}{says}", kind, node or None, end))
        said = _console(s)
        if said and s.t_end:
            out.append(ladder.Note(s.t_end - t0, f"{node or s.id} printed: {said}", "console", node or None))
    return out


def _args(a: dict[str, object]) -> str:
    shown = ", ".join(f"{k}={x}" for k, x in a.items() if isinstance(x, str | int | float | bool))
    return f" ({shown})" if shown else ""


def _console(s: StepResult) -> str:
    text = s.output.strip()
    if s.exception:
        text = (text + " ⏎ " if text else "") + f"raised {s.exception}"
    return text.replace("\r", "").replace("\n", " ⏎ ")[:160]


def write_html(runner: RunState, res: Result) -> Path:
    """verdict.html: the ladder of the bundle's wire.pcap (an empty ladder without one)."""
    out = res.bundle
    status: dict[str, object] = {}
    if (out / "status.json").is_file():
        status = json.loads((out / "status.json").read_text())
    hosts = ladder.Hosts.from_status(status)
    pcap = out / "wire.pcap"
    pkts: list[object] = []
    if pcap.is_file():
        try:
            pkts = ladder.read_pcap(pcap)
        except ConfigError:
            pkts = []
    scn, fw = runner.scn, runner.fw
    title = f"{scn.name} on firmware {fw.label}: {res.verdict.upper()}"
    lad = ladder.build(
        pkts,
        hosts,
        title=title,
        t0=runner.t_cap0 or None,
        notes=notes(runner, res),
        findings=findings(res),
        source="wire.pcap",
    )
    head = (
        f'<p class="verdict"><b>{html.escape(res.verdict)}</b>'
        + (f": {html.escape(res.error)}" if res.error else "")
        + f"<br><small>scenario <code>{html.escape(scn.path.name)}</code>, lab <code>{html.escape(res.lab)}</code>, "
        f'MicroPython {html.escape(fw.version)}; <a href="verdict.md">verdict.md</a>, '
        f'<a href="wire.pcap">wire.pcap</a></small></p>'
        + (f"<p>{html.escape(scn.description)}</p>" if scn.description else "")
        + "<h3>Assertions</h3>"
    )
    return ladder.write(lad, out / "verdict.html", extra_html=head)


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
        "- the ladder diagram of the capture, with each assertion's frames highlighted: `verdict.html`\n"
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
