"""Running the scenarios on both sides at once, one capture per scenario, and comparing."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .expect import EXPECTED, _ok
from .scenarios import SCENARIOS, Scenario
from .sides import Ctx, Facts, GuestSide, LinuxSide

ROOT = Path(__file__).resolve().parents[2]  # the checkout: pcap paths in reports are relative to it

# ---- running ----------------------------------------------------------------------------


@dataclass
class SideRun:
    side: str
    label: str
    ip: str
    result: str
    ms: int
    facts: Facts
    error: str = ""


@dataclass
class Comparison:
    key: str
    title: str
    aspect: str
    pcap: str
    guest: SideRun
    linux: SideRun
    rows: list[dict[str, Any]] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"{r['fact']}: {r['note']}" for r in self.rows if r["verdict"] == "UNEXPECTED"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= max(0.1, 0.1 * abs(b))
    return a == b


def compare(key: str, g: SideRun, lx: SideRun) -> list[dict[str, Any]]:
    exp = EXPECTED.get(key, {})
    names = list(dict.fromkeys([*g.facts, *lx.facts]))
    rows = []
    for n in names:
        gv, lv = g.facts.get(n), lx.facts.get(n)
        row = {"fact": n, "guest": gv, "linux": lv, "differs": not _same(gv, lv), "verdict": "shown", "note": ""}
        if n in exp:
            eg, el = exp[n]
            bad = []
            if not _ok(eg, gv):
                bad.append(f"guest {gv!r}, expected {eg!r}")
            if not _ok(el, lv):
                bad.append(f"linux {lv!r}, expected {el!r}")
            row["verdict"] = "UNEXPECTED" if bad else ("documented difference" if row["differs"] else "same (asserted)")
            row["note"] = "; ".join(bad)
        rows.append(row)
    return rows


def _port_base() -> int:
    return 41000 + (os.getpid() % 100) * 200


def run_all(
    lab: Any,
    node: Any,
    peer: Any,
    artifacts: Path,
    scenarios: list[Scenario] | None = None,
    progress: Callable[[str], None] = lambda m: print(m, flush=True),
) -> list[Comparison]:
    """Run each scenario on the guest and on the Linux peer at once; compare."""
    guest, linux = GuestSide(node), LinuxSide(peer)
    out = []
    base = _port_base()
    artifacts.mkdir(parents=True, exist_ok=True)
    for i, sc in enumerate(scenarios or SCENARIOS):
        cap = lab.capture(artifacts / f"{sc.key}.pcap", bpf=sc.bpf)
        cap.start()
        t0 = time.monotonic()
        runs: dict[str, SideRun] = {}
        try:
            with ThreadPoolExecutor(2) as pool:
                ctxs = [
                    Ctx(lab.host_ip, lab.services_ip, base + i * 20 + k * 10, partial(getattr, cap, "packets"))
                    for k in (0, 1)
                ]
                futs = {s.name: pool.submit(sc.fn, s, ctx) for s, ctx in zip((guest, linux), ctxs, strict=True)}
                for s in (guest, linux):
                    try:
                        r, facts = futs[s.name].result()
                        runs[s.name] = SideRun(s.name, s.label, s.ip, r.text(), r.ms, _jsonable(facts))
                    except Exception as e:  # one side failing is a finding, not a crash
                        err = f"{type(e).__name__}: {e}"
                        runs[s.name] = SideRun(s.name, s.label, s.ip, "harness error", 0, {}, err)
        finally:
            pcap = cap.stop()
        c = Comparison(
            sc.key, sc.title, sc.aspect, str(pcap.relative_to(ROOT) if pcap.is_relative_to(ROOT) else pcap),
            runs["guest"], runs["linux"],
        )  # fmt: skip
        c.rows = compare(sc.key, c.guest, c.linux)
        if c.guest.error or c.linux.error:
            c.rows.append(
                {"fact": "harness", "guest": c.guest.error, "linux": c.linux.error, "differs": True,
                 "verdict": "UNEXPECTED", "note": "a side raised"}
            )  # fmt: skip
        diffs = sum(r["differs"] for r in c.rows)
        progress(f"  {sc.key}: {diffs} difference(s), {len(c.problems())} unexpected ({time.monotonic() - t0:.1f}s)")
        out.append(c)
    return out


def to_json(comps: list[Comparison], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "scenarios": [asdict(c) for c in comps]}, indent=1, default=repr)


def meta_for(node: Any, peer: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    try:
        ver = node.eval("__import__('sys').implementation._machine + ' ' + __import__('os').uname().release")
    except Exception:
        ver = "?"
    try:
        pyver = peer.eval("__import__('sys').version.split()[0] + ' on Linux ' + __import__('os').uname().release")
    except Exception:
        pyver = "?"
    return {
        "guest": f"{node.name} {node.ip}: {ver}",
        "linux": f"{peer.name} {peer.ip}: CPython {pyver}",
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
