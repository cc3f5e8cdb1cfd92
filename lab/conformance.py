"""Run the socket conformance suite and write reports/conformance.md and .html.

    mplab --lab conf conformance [--junit FILE] [--out DIR] [-- extra pytest args]

Runs ``pytest tests/socket`` with a JUnit XML report (unless ``--junit`` points at an
existing one, then it only renders). Each test records, through the suite's ``check``
marker, the usocket method and the check it covers; the report is a matrix of
method x check -> pass / fail / xfail (deviation, with its reason) / xpass, with links to
the pcaps and console transcripts the lab plugin keeps under artifacts/ (on failure), and to
the ladder diagram of each kept pcap (its ladder.html, rendered here when the plugin left
none). When tests/socket/test_differential.py ran, a "Differential" section follows: guest vs
CPython/Linux on the wire (lab/differential).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import ladder
from .errors import ConfigError, LabError

ROOT = Path(__file__).resolve().parents[1]  # the checkout: tests/socket, reports/, artifacts/
ORDER = [
    "constants",
    "socket",
    "getaddrinfo",
    "connect",
    "bind",
    "listen",
    "accept",
    "send",
    "sendall",
    "write",
    "recv",
    "read",
    "readinto",
    "readline",
    "sendto",
    "recvfrom",
    "setsockopt",
    "settimeout",
    "setblocking",
    "close",
    "makefile",
    "SOCK_RAW",
]
SYMBOL = {
    "pass": "✅ pass",
    "fail": "❌ FAIL",
    "xfail": "⚠️ deviation",
    "xpass": "❔ xpass",
    "skip": "⏭ skip",
    "error": "💥 error",
}


@dataclass
class Case:
    nodeid: str
    method: str
    check: str
    outcome: str
    seconds: float
    message: str = ""
    deviation: str = ""
    artifacts: list[str] = field(default_factory=list)
    ladder: str = ""  # the wire check's ladder.html, relative to the checkout


def _nodeid(tc: ET.Element) -> str:
    cls = tc.get("classname", "")
    path = cls.replace(".", "/") + ".py"
    return f"{path}::{tc.get('name', '')}"


def _artifact_dir(artifacts: Path, nodeid: str) -> Path:
    # same rule as lab/pytest_plugin.py _test_dir
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__")).strip("_")
    return artifacts / safe[:150]


def parse(junit: Path, artifacts: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value", "") for p in tc.iter("property")}
        nodeid = _nodeid(tc)
        name = tc.get("name", "")
        param = name[name.index("[") :] if "[" in name else ""
        method = props.get("method") or Path(tc.get("classname", "")).suffix.lstrip(".") or "?"
        check = (props.get("check") or name) + (f" {param}" if param else "")
        outcome, msg = "pass", ""
        fail = tc.find("failure")
        err = tc.find("error")
        skip = tc.find("skipped")
        if fail is not None:
            msg = fail.get("message", "")
            outcome = "xpass" if "XPASS" in msg else "fail"
        elif err is not None:
            outcome, msg = "error", err.get("message", "")
        elif skip is not None:
            msg = skip.get("message", "")
            outcome = "xfail" if skip.get("type") == "pytest.xfail" else "skip"
        elif props.get("deviation"):  # non-strict xfail that passed this time
            outcome = "xpass"
        d = _artifact_dir(artifacts, nodeid)
        kept = artifacts / "conformance" / d.name  # a deviation's pcap (tests/socket/conftest.py)
        lad = _ladder_of(d) or _ladder_of(kept)
        arts = sorted(_rel(p) for x in (d, kept) if x.is_dir() for p in x.glob("*") if p.is_file())
        cases.append(
            Case(
                nodeid, method, check, outcome, float(tc.get("time", 0) or 0), msg, props.get("deviation", ""), arts,
                _rel(lad) if lad else "",
            )
        )  # fmt: skip
    return cases


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _ladder_of(d: Path) -> Path | None:
    """The ladder of a test's kept wire.pcap: the plugin's ladder.html, else rendered now."""
    out, pcap = d / "ladder.html", d / "wire.pcap"
    if out.is_file():
        return out
    if not pcap.is_file():
        return None
    try:
        return ladder.write_pcap(pcap, out, title=d.name)
    except LabError:
        return None


def _methods(cases: list[Case]) -> list[str]:
    seen = {c.method for c in cases}
    return [m for m in ORDER if m in seen] + sorted(seen - set(ORDER))


def totals(cases: list[Case]) -> dict[str, int]:
    t: dict[str, int] = defaultdict(int)
    for c in cases:
        t[c.outcome] += 1
    return dict(t)


def render_md(cases: list[Case], meta: str) -> str:
    by = defaultdict(list)
    for c in cases:
        by[c.method].append(c)
    t = totals(cases)
    out = [
        "# usocket conformance report",
        "",
        meta,
        "",
        "Totals: " + ", ".join(f"{SYMBOL.get(k, k)} {v}" for k, v in sorted(t.items())),
        "",
        "| method | check | result | time | ladder | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for m in _methods(cases):
        for c in by[m]:
            ev = " ".join(f"[{Path(a).name}]({os.path.relpath(ROOT / a, ROOT / 'reports')})" for a in c.artifacts)
            lad = f"[ladder]({os.path.relpath(ROOT / c.ladder, ROOT / 'reports')})" if c.ladder else ""
            cells = [f"`{m}`", c.check.replace("|", "/"), SYMBOL[c.outcome], f"{c.seconds:.2f}s", lad, ev]
            out.append("| " + " | ".join(cells) + " |")
    devs = [c for c in cases if c.outcome in ("xfail", "xpass")]
    if devs:
        out += ["", "## Deviations from the spec / CPython (xfail, strict unless noted)", ""]
        for c in devs:
            out.append(f"- **{c.method}** — {c.check}: {c.deviation or c.message}")
    bad = [c for c in cases if c.outcome in ("fail", "error")]
    if bad:
        out += ["", "## Failures", ""]
        for c in bad:
            out.append(f"- `{c.nodeid}`: {c.message.splitlines()[0] if c.message else ''}")
    return "\n".join(out) + "\n"


def render_html(cases: list[Case], meta: str) -> str:
    by = defaultdict(list)
    for c in cases:
        by[c.method].append(c)
    color = {
        "pass": "#d4f7d4",
        "fail": "#ffb3b3",
        "xfail": "#fff0b3",
        "xpass": "#e0d4ff",
        "skip": "#eee",
        "error": "#ff9999",
    }
    rows = []
    for m in _methods(cases):
        group = by[m]
        for i, c in enumerate(group):
            ev = " ".join(
                f'<a href="{html.escape(os.path.relpath(ROOT / a, ROOT / "reports"))}">{html.escape(Path(a).name)}</a>'
                for a in c.artifacts
            )
            lad = (
                f'<a class="ladder" href="{html.escape(os.path.relpath(ROOT / c.ladder, ROOT / "reports"))}">ladder</a>'
                if c.ladder
                else ""
            )
            note = html.escape(c.deviation or (c.message.splitlines()[0] if c.message else ""))
            head = f'<th rowspan="{len(group)}"><code>{html.escape(m)}</code></th>' if i == 0 else ""
            rows.append(
                f"<tr>{head}<td>{html.escape(c.check)}</td>"
                f'<td style="background:{color[c.outcome]}" title="{note}">{SYMBOL[c.outcome]}</td>'
                f"<td>{c.seconds:.2f}s</td><td>{lad}</td><td>{ev}</td>"
                f"<td><small>{note if c.outcome != 'pass' else ''}</small></td></tr>"
            )
    t = totals(cases)
    return f"""<!doctype html><meta charset="utf-8"><title>usocket conformance</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}</style>
<h1>usocket conformance report</h1><p>{html.escape(meta)}</p>
<p>{", ".join(f"{SYMBOL.get(k, k)} {v}" for k, v in sorted(t.items()))}</p>
<table><tr><th>method</th><th>check</th><th>result</th><th>time</th><th>ladder</th><th>pcap / console</th>
<th>note</th></tr>
{"".join(rows)}</table>
"""


def main(
    lab_name: str,
    *,
    junit: Path | None = None,
    out: Path = ROOT / "reports",
    artifacts: Path = ROOT / "artifacts",
    pytest_args: list[str] | None = None,
) -> int:
    """Run tests/socket in lab ``lab_name`` (unless ``junit`` names a JUnit XML to render) and
    write ``out``/conformance.{md,html}; returns pytest's exit code."""
    if junit is not None and not junit.is_file():
        raise ConfigError(f"{junit}: no such file (--junit takes the JUnit XML of an earlier run)")
    out.mkdir(parents=True, exist_ok=True)
    rc = 0
    diff_json = artifacts / "differential" / "differential.json"  # tests/socket/test_differential.py
    if junit is None:
        diff_json.unlink(missing_ok=True)  # never render a stale comparison
        junit = out / "conformance.junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/socket",
            "--mplab-lab",
            lab_name,
            f"--mplab-artifacts={artifacts}",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
            "-q",
            "-rfEX",
            *(pytest_args or []),
        ]
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        if not junit.is_file():
            print("conformance: pytest wrote no JUnit XML", file=sys.stderr)
            return rc or 2
    cases = parse(junit, artifacts)
    meta = (
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from {junit.name}; "
        f"{len(cases)} checks over {len(_methods(cases))} methods; lab `{lab_name}`."
    )
    md, page = render_md(cases, meta), render_html(cases, meta)
    if diff_json.is_file():  # differential section: guest vs CPython/Linux (lab/differential)
        from . import differential

        data = json.loads(diff_json.read_text())
        md += "\n" + differential.render_md(data, level=2, link_base=out)
        page += differential.render_html(data, level=2, link_base=out)
    (out / "conformance.md").write_text(md)
    (out / "conformance.html").write_text(page)
    t = totals(cases)
    print(f"conformance: {out / 'conformance.md'}, {out / 'conformance.html'}: {t}")
    return rc
