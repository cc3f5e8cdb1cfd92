"""Labs of 64, 128 and 256 nodes on this machine, measured (issue 16).

    python -m bench scale                     64, 128 and 256 nodes, one lab at a time
    python -m bench scale --sizes 64 --lab sc1

For each size: `mplab up --nodes N` from no lab (wall time of the CLI), then every guest must
hold a lease and answer an exec on its REPL; then, idle, the per-node memory (RSS and PSS of
each node container's processes from /proc/<pid>/smaps_rollup, the containerd shim beside
it, and the drop of MemAvailable) and idle CPU per node over a fixed window; then `mplab
down` (timed) and a check that nothing of the lab is left. The figures are merged into
reports/bench/results.json (other sections' figures are kept) and summary.md; the plot is
scale.png. Not part of `make bench` (a 256-node lab saturates the 2 cores for minutes):
`make bench-scale`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    REPORT_DIR,
    Figure,
    idle_cpu,
    mem_available_kib,
    rss_pss_kib,
    write_results,
)
from lab import Lab, hostnet

MPLAB = [sys.executable, "-m", "lab"]
SIZES = (64, 128, 256)
Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(f"[bench scale] {msg}", file=sys.stderr, flush=True)


def _cli(lab: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPLAB, "--lab", lab, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _container_pids(ids: list[str]) -> dict[str, list[int]]:
    """container id (12 hex) -> host PIDs of its processes, from each process's cgroup path."""
    out: dict[str, list[int]] = {i: [] for i in ids}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cg = (d / "cgroup").read_text()
        except OSError:
            continue
        for m in re.finditer(r"([0-9a-f]{64})", cg):
            short = m.group(1)[:12]
            if short in out:
                out[short].append(int(d.name))
                break
    return out


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def check_all_answer(lab: Lab, n: int) -> dict[str, Any]:
    """Every node leased (a distinct address in the pool) and answering an exec; else RuntimeError."""
    nodes = lab.nodes
    leases = lab.leases()
    topo = lab.topology
    missing = [nd.name for nd in nodes if nd.mac not in leases]
    ips = [leases[nd.mac] for nd in nodes if nd.mac in leases]
    if len(nodes) != n or missing or len(set(ips)) != n:
        raise RuntimeError(f"{len(nodes)} nodes of {n}, no lease: {missing[:10]}, distinct leases {len(set(ips))}")
    from ipaddress import IPv4Address

    outside = [ip for ip in ips if not topo.dhcp_start <= IPv4Address(ip) <= topo.dhcp_end]
    if outside:
        raise RuntimeError(f"leases outside the pool {topo.dhcp_start}-{topo.dhcp_end}: {outside[:5]}")

    def ask(nd: Any) -> float:
        t0 = time.monotonic()
        out = nd.exec("print(6 * 7)", timeout=60).strip()
        if out != "42":
            raise RuntimeError(f"{nd.name}: exec answered {out!r}")
        return (time.monotonic() - t0) * 1000

    with ThreadPoolExecutor(max_workers=32) as pool:
        rtt = list(pool.map(ask, nodes))
    lab.close()
    return {"answered": len(rtt), "exec_ms_median": statistics.median(rtt), "exec_ms_max": max(rtt)}


def idle_and_memory(lab: Lab, window: float) -> dict[str, Any]:
    nodes = lab.nodes
    by_id = _container_pids([nd.info.id for nd in nodes])
    with ThreadPoolExecutor(max_workers=16) as pool:
        qemu = list(pool.map(lambda nd: nd.pid, nodes))  # each container's PID 1 is its QEMU
    if 0 in qemu:
        raise RuntimeError(f"{qemu.count(0)} node(s) have no running QEMU")
    cpu, host_busy = idle_cpu(qemu, window)
    rss, pss, shim_rss, nproc = [], [], [], []
    for nd, pid in zip(nodes, qemu, strict=True):
        pids = by_id.get(nd.info.id) or [pid]
        mem = [rss_pss_kib(p) for p in pids]
        rss.append(sum(m[0] for m in mem) / 1024)
        pss.append(sum(m[1] for m in mem) / 1024)
        nproc.append(len(pids))
        shim = _ppid(pid)
        if b"containerd-shim" in Path(f"/proc/{shim}/cmdline").read_bytes():
            shim_rss.append(rss_pss_kib(shim)[1] / 1024)
    return {
        "cpu_pct_per_node": cpu,
        "rss_mib_per_node": rss,
        "pss_mib_per_node": pss,
        "shim_pss_mib_median": statistics.median(shim_rss) if shim_rss else 0.0,
        "processes_per_container": statistics.median(nproc),
        "host_busy_pct_of_a_core": host_busy,
        "window_s": window,
    }


def leftovers(lab: Lab) -> list[str]:
    """What of the lab is still there after `down`: containers, networks, the bridge, the run dir."""
    left = [f"container {c.name}" for c in lab.runtime.containers(lab.name)]
    left += [f"network {n}" for n in lab.runtime.networks(lab.name)]
    if hostnet.bridge_exists(lab.bridge):
        left.append(f"bridge {lab.bridge}")
    if lab.run_dir.exists():
        left.append(f"run dir {lab.run_dir}")
    left += [f"nft table {t}" for t in ("bridge", "inet") if hostnet.nft_rules(lab.name, t)]
    return left


def one_size(lab_name: str, n: int, window: float, log: Log) -> dict[str, Any]:
    down0 = _cli(lab_name, "down", timeout=900)
    if down0.returncode != 0:
        raise RuntimeError(f"down before {n}: {down0.stderr[-400:]}")
    time.sleep(2.0)
    avail0 = mem_available_kib()
    t0 = time.monotonic()
    p = _cli(lab_name, "up", "--nodes", str(n), timeout=1800)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        _cli(lab_name, "down", timeout=900)
        raise RuntimeError(f"up --nodes {n} failed after {wall:.0f} s: {' '.join(p.stderr.splitlines()[-3:])[:600]}")
    m = re.search(r"up, \d+ node\(s\), ([\d.]+)s", p.stderr)
    c = re.search(r"containers up \(([\d.]+)s\)", p.stderr)
    log(
        f"{n} nodes up in {wall:.1f} s (the lab's own count: {m.group(1) if m else '?'} s, "
        f"of which containers {c.group(1) if c else '?'} s)"
    )
    res: dict[str, Any] = {
        "nodes": n,
        "up_wall_s": wall,
        "up_lab_s": float(m.group(1)) if m else None,
        "containers_s": float(c.group(1)) if c else None,  # the runtime's part; the rest is the consoles
    }
    lab = Lab(lab_name, progress=None)
    try:
        res["subnet"] = str(lab.topology.subnet)
        res.update(check_all_answer(lab, n))
        log(f"{n} nodes: all leased, all answer (exec median {res['exec_ms_median']:.0f} ms)")
        time.sleep(5.0)  # the last bring-up's traffic settles
        res.update(idle_and_memory(lab, window))
        res["mem_available_drop_mib_per_node"] = (avail0 - mem_available_kib()) / 1024 / n
        log(
            f"{n} nodes idle: cpu/node median {statistics.median(res['cpu_pct_per_node']):.2f}%, "
            f"host {res['host_busy_pct_of_a_core']:.0f}% of a core; "
            f"RSS {statistics.median(res['rss_mib_per_node']):.1f} "
            f"PSS {statistics.median(res['pss_mib_per_node']):.1f} MiB/node, "
            f"MemAvailable drop {res['mem_available_drop_mib_per_node']:.1f} MiB/node"
        )
    finally:
        lab.close()
        t1 = time.monotonic()
        d = _cli(lab_name, "down", timeout=900)
        res["down_s"] = time.monotonic() - t1
        res["down_error"] = " ".join(d.stderr.strip().splitlines()[-1:])[:400] if d.returncode else ""
    res["left_after_down"] = leftovers(lab)
    log(
        f"{n} nodes down in {res['down_s']:.1f} s{' (failed: ' + res['down_error'] + ')' if res['down_error'] else ''}"
        f"; left: {res['left_after_down'] or 'nothing'}"
    )
    return res


def figures(results: list[dict[str, Any]], lab_name: str) -> list[Figure]:
    figs: list[Figure] = []
    for r in results:
        n = r["nodes"]
        common = {k: v for k, v in r.items() if not isinstance(v, list)}
        figs += [
            Figure(
                f"scale_up_{n}",
                "s",
                [r["up_wall_s"]],
                goal="<= 90" if n == 256 else "",
                note=f"`mplab --lab {lab_name} up --nodes {n}` (CLI) from no lab to every guest leased; afterwards "
                "every guest's lease checked and an exec answered on each REPL",
                params=common,
            ),
            Figure(
                f"scale_rss_mib_{n}",
                "MiB per node",
                r["rss_mib_per_node"],
                note=f"RSS of each node container's processes (smaps_rollup), {n} idle leased nodes",
                params={"nodes": n},
            ),
            Figure(
                f"scale_pss_mib_{n}",
                "MiB per node",
                r["pss_mib_per_node"],
                note=f"PSS of each node container's processes (smaps_rollup), {n} idle leased nodes",
                params={"nodes": n, "shim_pss_mib_median": r["shim_pss_mib_median"]},
            ),
            Figure(
                f"scale_mem_available_drop_{n}",
                "MiB per node",
                [r["mem_available_drop_mib_per_node"]],
                note=f"MemAvailable before `up` minus after, / {n}: everything the lab costs the host (kernel, "
                "shims, dockerd) shared out per node",
                params={"nodes": n},
            ),
            Figure(
                f"scale_idle_cpu_{n}",
                "% of a core per node",
                r["cpu_pct_per_node"],
                goal="< 1",
                note=f"utime+stime of each QEMU over {r['window_s']:g} s, {n} idle leased nodes",
                params={"nodes": n, "host_busy_pct_of_a_core": r["host_busy_pct_of_a_core"]},
            ),
            Figure(
                f"scale_down_{n}",
                "s",
                [r["down_s"]],
                note=f"`mplab down` of {n} nodes, then what of the lab is left (containers, networks, bridge, "
                "run dir, nft tables): left_after_down",
                params={"nodes": n, "left_after_down": r["left_after_down"], "down_error": r["down_error"]},
            ),
        ]
    if results:
        big = max(results, key=lambda r: r["nodes"])
        figs.append(
            Figure(
                "scale_max_nodes_measured",
                "nodes",
                [float(big["nodes"])],
                note="the largest lab brought up here with every guest leased and answering (lab.topology.MAX_NODES); "
                f"at it, MemAvailable dropped {big['mem_available_drop_mib_per_node']:.1f} MiB per node",
                params={"mib_per_node": big["mem_available_drop_mib_per_node"]},
            )
        )
    return figs


def run(sizes: tuple[int, ...] = SIZES, lab_name: str = "scale", window: float = 10.0, log: Log = _log) -> list[Figure]:
    results = []
    for n in sizes:
        results.append(one_size(lab_name, n, window, log))
        if results[-1]["left_after_down"]:
            raise RuntimeError(f"after down of {n}: {results[-1]['left_after_down']} {results[-1]['down_error']}")
    return figures(results, lab_name)


def merge(new: list[Figure], out: Path, meta: dict[str, Any]) -> list[Figure]:
    """``new`` in place of the scale figures of ``out``/results.json, the other sections' kept."""
    keep = {"name", "unit", "samples", "goal", "baseline", "baseline_samples", "note", "params"}
    old: list[Figure] = []
    run_meta: dict[str, Any] = {"sections": {}}
    path = out / "results.json"
    if path.is_file():
        data = json.loads(path.read_text())
        old = [Figure(**{k: v for k, v in f.items() if k in keep}) for f in data.get("figures", [])]
        run_meta = data.get("run", run_meta)
    names = {f.name for f in new}
    figs = [f for f in old if f.name not in names and not f.name.startswith("scale_")] + new
    run_meta.setdefault("sections", {})["scale"] = meta
    write_results(figs, path, extra={"run": run_meta})
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma list of node counts (default 64,128,256)")
    ap.add_argument("--lab", default="scale", help="lab name (default: scale)")
    ap.add_argument("--idle-window", type=float, default=10.0, help="seconds of the idle CPU window")
    ap.add_argument("--out", type=Path, default=REPORT_DIR)
    args = ap.parse_args(argv)
    try:
        sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    except ValueError:
        ap.error(f"--sizes {args.sizes!r}: a comma list of whole numbers, e.g. 64,128,256")
    t0 = time.monotonic()
    status = "ok"
    figs: list[Figure] = []
    results: list[dict[str, Any]] = []
    try:
        for n in sizes:
            results.append(one_size(args.lab, n, args.idle_window, _log))
            if results[-1]["left_after_down"]:  # measured, but the next size would not start clean
                raise RuntimeError(f"after down of {n}: {results[-1]['left_after_down']} {results[-1]['down_error']}")
    except Exception as e:  # the sizes measured so far still make a report
        status = f"error: {type(e).__name__}: " + " ".join(str(e).splitlines()[:3])[:400]
        _log(status)
    figs = figures(results, args.lab)
    meta = {"status": status, "seconds": round(time.monotonic() - t0, 1), "sizes": list(sizes)}
    args.out.mkdir(parents=True, exist_ok=True)
    allf = merge(figs, args.out, meta)
    from bench.__main__ import plots, write_summary
    from bench.common import machine_info

    data = json.loads((args.out / "results.json").read_text())
    plots(allf, args.out)
    write_summary(allf, {**data.get("run", {}), "machine": machine_info()}, args.out / "summary.md")
    _log(f"wrote {args.out}/results.json, summary.md, scale.png ({meta['seconds']} s)")
    return 0 if status == "ok" else 1
