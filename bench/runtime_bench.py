"""The runtime's cost (issue 16): `mplab up` under each runtime, where the time of a 32-node up
goes, and the daemon's own floor.

- ``runtime_up_<N>_<runtime>``: wall seconds of ``mplab --lab X up --nodes N`` (the CLI, from no
  lab to every guest leased and every daemon healthy) under the Engine API runtime and the
  compose CLI runtime with Compose v2 and v1 (those present).
- ``runtime_phases_32``: the engine runtime's 32-node up by phase (containers started, every
  lease, daemons healthy), from its progress lines.
- ``daemon_floor_per_container``: what dockerd itself takes to create and start one trivial
  container (``sleep``, no QEMU) on an internal dual-stack network like the lab's, 8 at a time,
  and dockerd's CPU seconds per container: the part no client can remove.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.types

from bench.common import CLK_TCK, REPO, Figure, cpu_ticks, host_cpu
from lab.runtime.compose import compose_versions

Log = Callable[[str], None]
RUNTIMES = {
    "engine": {"MPLAB_RUNTIME": "engine"},
    "compose_v2": {"MPLAB_RUNTIME": "compose", "MPLAB_COMPOSE": "docker compose"},
    "compose_v1": {"MPLAB_RUNTIME": "compose", "MPLAB_COMPOSE": "docker-compose"},
}
_STAMP_RE = re.compile(r"^\s*([\d.]+) (.*)$")


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _mplab(lab: str, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--lab", lab, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def up_wall(lab: str, runtime: str, nodes: int, repeat: int, log: Log) -> list[float]:
    """Wall seconds of `mplab up --nodes N` from no lab, ``repeat`` times (down after each)."""
    env = RUNTIMES[runtime]
    out = []
    _mplab(lab, env, "down")
    for _ in range(repeat):
        t0 = time.monotonic()
        p = _mplab(lab, env, "up", "--nodes", str(nodes))
        dt = time.monotonic() - t0
        _mplab(lab, env, "down")
        if p.returncode != 0:
            log(f"up {nodes} under {runtime} failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        out.append(dt)
    log(f"up {nodes} nodes, {runtime}: {', '.join(f'{x:.2f}' for x in out)} s")
    return out


PHASES_SCRIPT = """
import sys, time
from lab import Lab
t0 = time.monotonic()
lab = Lab(sys.argv[1], progress=lambda m: print(f"{time.monotonic() - t0:.3f} {m}", flush=True))
lab.up(nodes=int(sys.argv[2]))
print(f"{time.monotonic() - t0:.3f} returned", flush=True)
"""


PROFILED = ("dockerd", "containerd", "containerd-shim", "qemu-system-arm", "python3", "python")


def cpu_by_command() -> dict[str, float]:
    """CPU seconds so far of every process alive now, summed by command name (``comm``)."""
    out: dict[str, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            ticks = cpu_ticks(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
        out[comm] = out.get(comm, 0.0) + ticks / CLK_TCK
    return out


def phases(lab: str, nodes: int) -> dict[str, float]:
    """Seconds from the start of ``Lab.up`` to: every container started, every lease, the
    daemons healthy (the engine runtime); and the profile of that up: CPU seconds by process
    (those alive at its end: dockerd, containerd and its shims, QEMU, the lab's Python) and of
    the whole machine, which says where the time went on 2 cores."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **RUNTIMES["engine"]}
    _mplab(lab, RUNTIMES["engine"], "down")
    try:
        cpu0, busy0 = cpu_by_command(), host_cpu()[0] / CLK_TCK
        p = subprocess.run(
            [sys.executable, "-c", PHASES_SCRIPT, lab, str(nodes)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        cpu1, busy1 = cpu_by_command(), host_cpu()[0] / CLK_TCK
    finally:
        _mplab(lab, RUNTIMES["engine"], "down")
    stamps = [(float(m.group(1)), m.group(2)) for line in p.stdout.splitlines() if (m := _STAMP_RE.match(line))]
    out: dict[str, float] = {}
    for t, msg in stamps:
        if "containers:" in msg and msg.strip().endswith("started"):
            out["containers_started"] = t
        if re.search(r"node\d+: \d+\.\d+\.\d+\.\d+ \(", msg):
            out["last_lease"] = t
        if "healthy" in msg:
            out["daemons_healthy"] = t
        if msg == "returned":
            out["returned"] = t
    for comm in PROFILED:
        if comm in cpu1:
            out[f"cpu_s_{comm}"] = round(cpu1[comm] - cpu0.get(comm, 0.0), 2)
    out["cpu_s_machine"] = round(busy1 - busy0, 2)
    return out


def _dockerd_pid() -> int:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "dockerd":
                    return int(d.name)
            except OSError:
                continue
    return 0


def daemon_floor(n: int = 32, workers: int = 8, image: str = "mplab/base:0.1.0") -> dict[str, float]:
    """Create and start ``n`` ``sleep`` containers on an internal dual-stack network, ``workers``
    at a time, through the Engine API; seconds per container and dockerd CPU per container."""
    api = docker.APIClient(version="auto", max_pool_size=workers + 8)
    name = "mplabfloor"
    for c in api.containers(all=True, filters={"label": f"{name}=1"}):
        api.remove_container(c["Id"], force=True)
    for net in api.networks(names=[name]):
        api.remove_network(net["Id"])
    pools = [
        docker.types.IPAMPool(subnet="10.76.255.0/24", gateway="10.76.255.1"),
        docker.types.IPAMPool(subnet="fd6d:706c:6162:ffff::/64", gateway="fd6d:706c:6162:ffff::1"),
    ]
    net = api.create_network(
        name, driver="bridge", internal=True, enable_ipv6=True, ipam=docker.types.IPAMConfig(pool_configs=pools),
        labels={name: "1"},
    )  # fmt: skip
    dockerd = _dockerd_pid()
    try:

        def one(i: int) -> None:
            hc = api.create_host_config(cap_add=["NET_ADMIN"], sysctls={"net.ipv6.conf.all.disable_ipv6": "1"})
            nc = api.create_networking_config({name: api.create_endpoint_config()})
            cid = api.create_container(
                image, command=["sleep", "600"], name=f"{name}{i}", host_config=hc, networking_config=nc,
                labels={name: "1"},
            )["Id"]  # fmt: skip
            api.start(cid)

        cpu0 = cpu_ticks(dockerd) if dockerd else 0
        t0 = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(n)))
        wall = time.monotonic() - t0
        cpu = (cpu_ticks(dockerd) - cpu0) / CLK_TCK if dockerd else 0.0
    finally:
        with ThreadPoolExecutor(workers) as pool:
            list(
                pool.map(
                    lambda c: api.remove_container(c["Id"], force=True),
                    api.containers(all=True, filters={"label": f"{name}=1"}),
                )
            )
        api.remove_network(net["Id"])
    return {"wall_per_container_s": wall / n, "dockerd_cpu_per_container_s": cpu / n, "wall_s": wall, "n": n}


def run(repeat: int = 3, counts: tuple[int, ...] = (2, 32), lab_name: str = "brt", log: Log = _log) -> list[Figure]:
    figs: list[Figure] = []
    for n in counts:
        have = compose_versions()
        for rt in RUNTIMES:
            if rt.startswith("compose_") and rt.removeprefix("compose_") not in have:
                log(f"{rt}: not on this machine, skipped")
                continue
            samples = up_wall(lab_name, rt, n, repeat if n <= 8 else max(1, repeat - 1), log)
            goal = {2: "<= 2.5", 32: "<= 10"}.get(n, "") if rt == "engine" else ""
            figs.append(
                Figure(
                    f"runtime_up_{n}_{rt}",
                    "s",
                    samples,
                    goal=goal,
                    note=f"wall time of `mplab up --nodes {n}` (CLI) from no lab to every guest leased and every "
                    f"daemon healthy, runtime {rt}",
                    params={"nodes": n, "runtime": rt},
                )
            )
    ph = phases(lab_name, 32)
    log(f"engine up 32 by phase: {ph}")
    figs.append(
        Figure(
            "runtime_phases_32",
            "s",
            [ph.get("returned", 0.0)],
            note="the engine runtime's Lab.up(32) by phase, seconds from its start",
            params=ph,
        )
    )
    fl = daemon_floor()
    log(f"daemon floor: {fl}")
    figs.append(
        Figure(
            "daemon_floor_per_container",
            "s",
            [fl["wall_per_container_s"]],
            note="dockerd alone: create + start of a `sleep` container on an internal dual-stack network, 8 at a "
            "time, through the Engine API; params: dockerd CPU seconds per container",
            params=fl,
        )
    )
    return figs


if __name__ == "__main__":
    for f in run():
        print(f.name, f.stats(), f.params)
