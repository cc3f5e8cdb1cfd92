"""Shared pieces of the benchmarks: samples, statistics, machine facts, the results file."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REPORT_DIR = REPO / "reports" / "bench"


@dataclass
class Figure:
    """One measured quantity: raw samples plus the goal it is held against."""

    name: str
    unit: str
    samples: list[float]
    goal: str = ""
    baseline: str = ""
    baseline_samples: list[float] = field(default_factory=list)
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def stats(self, samples: list[float] | None = None) -> dict[str, float]:
        values = sorted(self.samples if samples is None else samples)
        if not values:
            return {}
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        return {"n": len(values), "min": values[0], "median": statistics.median(values), "p95": p95, "max": values[-1]}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = self.stats()
        if self.baseline_samples:
            data["baseline_stats"] = self.stats(self.baseline_samples)
        return data


CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_pss_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def mem_available_kib() -> int:
    """The kernel's MemAvailable, in KiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def host_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat (idle and iowait
    are not busy)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def idle_cpu(pids: list[int], window: float) -> tuple[list[float], float]:
    """Sleep ``window`` s; each of ``pids``' CPU over it (% of one core), and the whole host's
    busy time (% of one core, so up to 100 x the cores)."""
    c0 = {p: cpu_ticks(p) for p in pids}
    h0 = host_cpu()
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    c1 = {p: cpu_ticks(p) for p in pids}
    h1 = host_cpu()
    host = (h1[0] - h0[0]) / max(1, h1[1] - h0[1]) * 100 * (os.cpu_count() or 1)
    return [(c1[p] - c0[p]) / CLK_TCK / dt * 100 for p in pids], host


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat), in clock ticks."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def receive_timed(server: socket.socket, result: dict[str, float], timeout: float = 60.0) -> None:
    """Accept one connection on ``server`` and read it to EOF; put ``bytes`` and ``seconds``
    (first byte to EOF, i.e. the transfer without the handshake) into ``result``.

    Meant for a thread while the guest sends; leaves ``result`` empty if accept fails."""
    try:
        conn, _ = server.accept()
    except OSError:
        return
    conn.settimeout(timeout)
    got, start = 0, 0.0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        if not got:
            start = time.monotonic()
        got += len(data)
    result["seconds"] = time.monotonic() - start
    result["bytes"] = got
    conn.close()


def machine_info() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "qemu": run("qemu-system-arm", "--version").splitlines()[0] if run("qemu-system-arm", "--version") else "",
        "docker": run("docker", "version", "--format", "{{.Server.Version}}"),
        "git_sha": run("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "git_dirty": bool(run("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no")),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "firmware_manifest": json.loads((REPO / "firmware/build/manifest.json").read_text())
        if (REPO / "firmware/build/manifest.json").exists()
        else None,
    }


def write_results(figures: list[Figure], path: Path, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine_info(), **(extra or {}), "figures": [f.to_json() for f in figures]}
    path.write_text(json.dumps(data, indent=2) + "\n")
