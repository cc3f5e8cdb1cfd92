"""Rendering a differential comparison (its JSON) as Markdown and HTML; also a section of the
conformance report (lab/conformance.py)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from .run import ROOT

# ---- rendering (also used by lab/conformance.py) -----------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if v else "[]"
    return str(v)


def _verdict_md(r: dict[str, Any]) -> str:
    return {
        "documented difference": "≠ documented",
        "same (asserted)": "= asserted",
        "UNEXPECTED": "❌ UNEXPECTED",
    }.get(r["verdict"], "≠" if r["differs"] else "=")


def render_md(data: dict[str, Any], level: int = 1, link_base: Path | None = None) -> str:
    h = "#" * level
    meta = data.get("meta", {})
    out = [
        f"{h} Differential: MicroPython/lwIP guest vs CPython/Linux peer",
        "",
        f"Same snippets, same lab, same host peers; each side's facts come from the wire (its own "
        f"address). Guest: {meta.get('guest', '?')}; Linux: {meta.get('linux', '?')}. "
        f"{meta.get('when', '')}. See docs/differential.md.",
        "",
    ]
    summary = []
    for s in data.get("scenarios", []):
        d = [r["fact"] for r in s["rows"] if r["differs"]]
        bad = [r for r in s["rows"] if r["verdict"] == "UNEXPECTED"]
        summary.append(
            f"| {s['title']} | {s['aspect']} | {', '.join(d) or 'none'} | {'❌ ' + str(len(bad)) if bad else '✅'} |"
        )
    out += ["| scenario | aspect | differs in | expectations |", "|---|---|---|---|", *summary, ""]
    for s in data.get("scenarios", []):
        pcap = s["pcap"]
        if link_base is not None:
            pcap = os.path.relpath(ROOT / pcap, link_base)
        out += [
            f"{h}# {s['title']} (`{s['key']}`)",
            "",
            f"guest: `{s['guest']['result']}` in {s['guest']['ms']} ms · linux: `{s['linux']['result']}` in "
            f"{s['linux']['ms']} ms · pcap: [{Path(pcap).name}]({pcap})",
            "",
            "| fact | guest (lwIP) | linux | |",
            "|---|---|---|---|",
        ]
        for r in s["rows"]:
            note = f" {r['note']}" if r["note"] else ""
            out.append(
                f"| {r['fact']} | {_fmt(r['guest']).replace('|', '/')} | {_fmt(r['linux']).replace('|', '/')} | "
                f"{_verdict_md(r)}{note} |"
            )
        out.append("")
    return "\n".join(out)


def render_html(data: dict[str, Any], level: int = 1, link_base: Path | None = None) -> str:
    e = html.escape
    meta = data.get("meta", {})
    color = {"documented difference": "#fff0b3", "same (asserted)": "#d4f7d4", "UNEXPECTED": "#ffb3b3"}
    parts = [
        f"<h{level}>Differential: MicroPython/lwIP guest vs CPython/Linux peer</h{level}>",
        f"<p>Guest: {e(str(meta.get('guest', '?')))}; Linux: {e(str(meta.get('linux', '?')))}. "
        f"{e(str(meta.get('when', '')))}. Facts are read from the wire, per side.</p>",
    ]
    for s in data.get("scenarios", []):
        pcap = s["pcap"]
        if link_base is not None:
            pcap = os.path.relpath(ROOT / pcap, link_base)
        rows = []
        for r in s["rows"]:
            bg = color.get(r["verdict"], "#f3e6ff" if r["differs"] else "#fff")
            rows.append(
                f"<tr><td>{e(r['fact'])}</td><td>{e(_fmt(r['guest']))}</td><td>{e(_fmt(r['linux']))}</td>"
                f'<td style="background:{bg}">{e(_verdict_md(r))} <small>{e(r["note"])}</small></td></tr>'
            )
        parts.append(
            f"<h{level + 1}>{e(s['title'])} <small>({e(s['aspect'])})</small></h{level + 1}>"
            f"<p>guest: <code>{e(s['guest']['result'])}</code> in {s['guest']['ms']} ms · linux: "
            f"<code>{e(s['linux']['result'])}</code> in {s['linux']['ms']} ms · "
            f'<a href="{e(pcap)}">{e(Path(pcap).name)}</a></p>'
            "<table><tr><th>fact</th><th>guest (lwIP)</th><th>linux</th><th></th></tr>" + "".join(rows) + "</table>"
        )
    return "\n".join(parts)


def page_html(data: dict[str, Any]) -> str:
    return (
        '<!doctype html><meta charset="utf-8"><title>differential</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}</style>\n"
        + render_html(data, link_base=ROOT / "reports")
    )


def write_reports(data: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "differential.json").write_text(json.dumps(data, indent=1))
    (out / "differential.md").write_text(render_md(data, link_base=out) + "\n")
    (out / "differential.html").write_text(page_html(data))
