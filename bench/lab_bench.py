"""Lab figures on the Docker LAN: `lab up` time, idle CPU/RSS per node, REPL round trip
(our Console against mpremote), TCP/UDP through the lab bridge with and without capture.

Everything runs in a dedicated lab (default name ``bench``), which is always taken down at
the end. Network hygiene: the only peers are the lab's own hosts (guests, the bridge's host
address) and loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import CLK_TCK, REPO, Figure, cpu_ticks, idle_cpu, mem_available_kib, receive_timed, rss_pss_kib
from lab import Lab
from lab.console import Console

MPLAB = [sys.executable, "-m", "lab"]
PAGE = os.sysconf("SC_PAGE_SIZE")

Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- lab up ------------------------------------------------------------------------------
def _cli(lab: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPLAB, "--lab", lab, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _down(lab: str) -> float:
    t0 = time.monotonic()
    p = _cli(lab, "down")
    if p.returncode != 0:
        raise RuntimeError(f"mplab --lab {lab} down failed: {p.stderr[-500:]}")
    return time.monotonic() - t0


FAILURES: list[str] = []


def _up_cli(lab: str, n: int, tries: int = 3) -> float:
    """Seconds of `mplab --lab LAB up --nodes N` from nothing to every guest leased.

    A failed `up` is recorded in FAILURES (it is a finding: the lab should not fail) and retried
    from a clean state; the sample is the time of the successful attempt.
    """
    for attempt in range(tries):
        t0 = time.monotonic()
        p = _cli(lab, "up", "--nodes", str(n))
        dt = time.monotonic() - t0
        if p.returncode == 0:
            return dt
        msg = " ".join(p.stderr.strip().splitlines()[1:3])[:300]
        FAILURES.append(f"up --nodes {n} (attempt {attempt + 1}, {dt:.1f} s): {msg}")
        _log(f"lab up {n} failed, retrying from a clean lab: {msg}")
        _down(lab)
    raise RuntimeError(f"mplab --lab {lab} up --nodes {n} failed {tries} times: {p.stderr[-800:]}")


# ---- /proc accounting --------------------------------------------------------------------


def _node_rss_kib(pid: int) -> int:
    """RSS of a node's host processes: QEMU + its containerd shim + docker-proxy for its published port."""
    total = rss_pss_kib(pid)[0]
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if b"containerd-shim" in Path(f"/proc/{ppid}/cmdline").read_bytes():
        total += rss_pss_kib(ppid)[0]
    return total


def _proxy_rss_kib() -> tuple[int, int]:
    """(count, total RSS) of docker-proxy processes (one per published port)."""
    n = kib = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if Path(d, "comm").read_text().strip() == "docker-proxy":
                n += 1
                kib += rss_pss_kib(int(d.name))[0]
        except OSError:
            continue
    return n, kib


def _qemu_pids(lab: Lab) -> list[int]:
    """Host PIDs of the nodes' QEMUs: each node container's PID 1 is QEMU (the entrypoint execs it)."""
    pids = []
    for nd in lab.nodes:
        pid = nd.pid
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        if not cmd.endswith(b"qemu-system-arm"):
            raise RuntimeError(f"{nd.name}: pid {pid} is {cmd!r}, not QEMU")
        pids.append(pid)
    return pids


def idle_sample(lab: Lab, window: float) -> dict[str, float]:
    """Per-node idle CPU (% of one core) and memory of the QEMU processes over ``window`` s."""
    pids = _qemu_pids(lab)
    cpu, host_busy = idle_cpu(pids, window)
    mem = [rss_pss_kib(p) for p in pids]
    node_rss = [_node_rss_kib(p) for p in pids]
    nproxy, proxy_kib = _proxy_rss_kib()
    return {
        "node_rss_mib_median": statistics.median(node_rss) / 1024,
        "docker_proxy_count": nproxy,
        "docker_proxy_rss_mib_total": proxy_kib / 1024,
        "nodes": len(pids),
        "cpu_pct_per_node": cpu,
        "cpu_pct_median": statistics.median(cpu),
        "cpu_pct_max": max(cpu),
        "rss_mib_median": statistics.median(m[0] for m in mem) / 1024,
        "pss_mib_median": statistics.median(m[1] for m in mem) / 1024,
        "host_busy_pct": host_busy,
    }


# ---- REPL round trip ---------------------------------------------------------------------
def repl_console(ip: str, port: int, n: int) -> list[float]:
    con = Console.connect_tcp(ip, port, timeout=10)
    try:
        con.exec("pass")  # enter raw REPL, learn the raw-paste window
        con.exec("pass")
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            con.exec("x = 1")
            out.append((time.perf_counter() - t0) * 1000)
        con.friendly()
        return out
    finally:
        con.close()


def _mpremote(ip: str, port: int, execs: int) -> float:
    argv = [str(Path(sys.executable).parent / "mpremote"), "connect", f"socket://{ip}:{port}"]
    for i in range(execs):
        argv += (["+"] if i else []) + ["exec", "x = 1"]
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"mpremote failed: {p.stderr[-500:]}")
    return dt


def repl_mpremote(ip: str, port: int, repeat: int, chain: int) -> tuple[list[float], list[float], list[float]]:
    """(single-exec invocation ms, per-exec round trip ms in a chained session, start-up ms)."""
    single, per_exec, startup = [], [], []
    for _ in range(repeat):
        one = _mpremote(ip, port, 1)
        many = _mpremote(ip, port, chain + 1)
        rtt = (many - one) / chain
        single.append(one)
        per_exec.append(rtt)
        startup.append(one - rtt)
    return single, per_exec, startup


# ---- TCP / UDP through the lab -----------------------------------------------------------
def _tcp_guest_to_host(node, host_ip: str, port: int, nbytes: int) -> float:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host_ip, port))
    srv.listen(1)
    srv.settimeout(30)
    res: dict[str, float] = {}
    t = threading.Thread(target=receive_timed, args=(srv, res))
    t.start()
    try:
        node.exec(
            f"import socket\ns = socket.socket(); s.connect(({host_ip!r}, {port})); b = bytes(8192)\n"
            f"for _ in range({nbytes // 8192}): s.write(b)\ns.close()\n",
            timeout=120,
        )
    finally:
        t.join(120)
        srv.close()
    if res.get("bytes") != nbytes:
        raise RuntimeError(f"guest->host: host got {res.get('bytes')} of {nbytes} bytes")
    return nbytes * 8 / res["seconds"] / 1e6


_GUEST_SINK = (
    "import socket\nsrv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "srv.bind(('0.0.0.0', {port})); srv.listen(1)\n"
)
_GUEST_SINK_RUN = (
    "c = srv.accept()[0]\nbuf = bytearray(8192)\nn = 0\nimport time\nt0 = None\n"
    "while True:\n    k = c.readinto(buf)\n    if t0 is None: t0 = time.ticks_us()\n"
    "    if not k:\n        break\n    n += k\n"
    "dt = time.ticks_diff(time.ticks_us(), t0)\nc.write(b'ok')\nc.close()\nsrv.close()\nprint(n, dt)\n"
)


def _tcp_host_to_guest(node, port: int, nbytes: int) -> float:
    node.exec(_GUEST_SINK.format(port=port))
    cli = socket.socket()
    cli.settimeout(60)
    res: dict[str, float] = {}

    def tx() -> None:
        cli.connect((node.ip, port))
        payload = bytes(65536)
        start = time.monotonic()
        sent = 0
        while sent < nbytes:
            k = min(len(payload), nbytes - sent)
            cli.sendall(payload[:k])
            sent += k
        cli.shutdown(socket.SHUT_WR)
        cli.recv(16)
        res["s"] = time.monotonic() - start

    t = threading.Thread(target=tx)
    t.start()
    got = node.exec(_GUEST_SINK_RUN, timeout=120).split()
    t.join(120)
    cli.close()
    if int(got[0]) != nbytes or "s" not in res:
        raise RuntimeError(f"host->guest: guest read {got} of {nbytes}")
    return nbytes * 8 / res["s"] / 1e6


def _tcp_node_to_node(src, dst, port: int, nbytes: int) -> float:
    """Timed at the receiving guest (first byte to EOF, guest clock = host clock under TCG)."""
    dst.exec(_GUEST_SINK.format(port=port))
    out: dict[str, list[str]] = {}

    def rx() -> None:
        out["r"] = dst.exec(_GUEST_SINK_RUN, timeout=120).split()

    t = threading.Thread(target=rx)
    t.start()
    time.sleep(0.05)
    src.exec(
        f"import socket\ns = socket.socket(); s.connect(({dst.ip!r}, {port})); b = bytes(8192)\n"
        f"for _ in range({nbytes // 8192}): s.write(b)\ns.close()\n",
        timeout=120,
    )
    t.join(120)
    n, us = (int(x) for x in out["r"])
    if n != nbytes:
        raise RuntimeError(f"node->node: got {n} of {nbytes}")
    return nbytes * 8 / (us / 1e6) / 1e6


def _udp_pps(node, host_ip: str, port: int, count: int) -> tuple[float, float]:
    """(datagrams/s sent by the guest, fraction received at the host), 64-byte payloads."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sink.bind((host_ip, port))
    sink.settimeout(1.0)
    secs = node.eval(
        f"(u := socket.socket(socket.AF_INET, socket.SOCK_DGRAM), p := bytes(64), t0 := time.ticks_us(), "
        f"[u.sendto(p, ({host_ip!r}, {port})) for _ in range({count})], "
        "dt := time.ticks_diff(time.ticks_us(), t0), u.close(), dt / 1e6)[-1]",
        timeout=60,
    )
    got = 0
    try:
        while True:
            sink.recv(2048)
            got += 1
    except TimeoutError:
        pass
    sink.close()
    return got / float(secs), got / count


def mmio_cost(node, n: int = 30000) -> dict[str, float]:
    """Guest-timed cost of one 32-bit read: RAM vs the LAN9118's BYTE_TEST register (MMIO)."""
    out = node.exec(
        "import machine, time, uctypes\n"
        "_b = bytearray(8); _m = machine.mem32\n"
        "def _t(a, N):\n    t0 = time.ticks_us()\n    for i in range(N):\n        _m[a]\n"
        "    return time.ticks_diff(time.ticks_us(), t0) / N\n"
        f"print(_t(uctypes.addressof(_b), {n}), _t(0x40200064, {n}))\n",
        timeout=60,
    ).split()
    ram, io = float(out[0]), float(out[1])
    return {"ram_read_us": ram, "mmio_read_us": io, "mmio_extra_us": io - ram}


class _CpuMeter:
    """CPU seconds the given processes use between start and stop, as % of one core."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def __enter__(self) -> _CpuMeter:
        self.c0 = sum(cpu_ticks(p) for p in self.pids)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        dt = time.monotonic() - self.t0
        self.pct = (sum(cpu_ticks(p) for p in self.pids) - self.c0) / CLK_TCK / dt * 100


# ---- the run -----------------------------------------------------------------------------
def run(
    repeat: int = 5,
    counts: tuple[int, ...] = (1, 2, 8, 32),
    idle_counts: tuple[int, ...] = (1, 8, 32),
    idle_window: float = 10.0,
    repl_n: int = 200,
    tcp_bytes: int = 4 << 20,
    lab_name: str = "bench",
    log: Log = _log,
) -> list[Figure]:
    figs: list[Figure] = []
    _down(lab_name)
    lab = Lab(lab_name, progress=None)
    port = lab.topology.console_port
    try:
        # -- lab up for each node count; idle accounting on the last repetition --
        up: dict[int, list[float]] = {}
        down: dict[int, list[float]] = {}
        idle: dict[int, dict[str, float]] = {}
        mem_per_node: dict[int, float] = {}
        for n in counts:
            up[n], down[n] = [], []
            for r in range(repeat):
                avail0 = mem_available_kib()
                up[n].append(_up_cli(lab_name, n))
                if r == repeat - 1 and n in idle_counts:
                    time.sleep(3.0)  # let the boot and bring-up settle
                    s = idle_sample(lab, idle_window)
                    s["mem_available_drop_mib_per_node"] = (avail0 - mem_available_kib()) / 1024 / n
                    idle[n] = s
                    mem_per_node[n] = s["mem_available_drop_mib_per_node"]
                    log(
                        f"idle {n} nodes: cpu/node median {s['cpu_pct_median']:.2f}% max {s['cpu_pct_max']:.2f}%, "
                        f"rss {s['rss_mib_median']:.1f} MiB, pss {s['pss_mib_median']:.1f} MiB, "
                        f"MemAvailable drop {s['mem_available_drop_mib_per_node']:.1f} MiB/node"
                    )
                down[n].append(_down(lab_name))
            log(f"lab up {n}: {', '.join(f'{x:.2f}' for x in up[n])} s")
        for n in counts:
            figs.append(
                Figure(
                    f"lab_up_{n}",
                    "s",
                    up[n],
                    goal="<= 5" if n == 2 else "",
                    note=f"`mplab --lab {lab_name} up --nodes {n}` (CLI, images built) from no lab to every guest "
                    "leased; `down` after each",
                    params={
                        "nodes": n,
                        "down_s": down[n],
                        "failed_attempts": [f for f in FAILURES if f.startswith(f"up --nodes {n} ")],
                    },
                )
            )
        for n, s in sorted(idle.items()):
            figs.append(
                Figure(
                    f"idle_cpu_{n}",
                    "% of a core per node",
                    s["cpu_pct_per_node"],
                    goal="< 1" if n == max(idle_counts) else "",
                    note=f"utime+stime of each QEMU over {idle_window:g} s, {n} idle leased nodes",
                    params={k: v for k, v in s.items() if k != "cpu_pct_per_node"},
                )
            )
        # memory: the per-node cost is what MemAvailable lost (QEMU + shim + docker-proxy + kernel)
        biggest = max(idle) if idle else 0
        if biggest:
            s = idle[biggest]
            # conservative: RSS (shared pages counted in full) of QEMU + shim, plus the docker-proxies
            # shared out per node; MemAvailable's drop is noisy on a host other jobs use
            cost = s["node_rss_mib_median"] + s["docker_proxy_rss_mib_total"] / biggest
            cost = max(cost, mem_per_node[biggest])
            fit_mem = int(24 * 1024 / cost) if cost > 0 else 0
            cpu = idle[biggest]["cpu_pct_median"]
            fit_cpu = int((os.cpu_count() or 1) * 100 / cpu) if cpu > 0 else 0
            figs.append(
                Figure(
                    "max_nodes_24gib",
                    "nodes",
                    [float(min(fit_mem, fit_cpu) if fit_cpu else fit_mem)],
                    goal=">= 32",
                    note=f"24 GiB / {cost:.1f} MiB per node (max of RSS of QEMU + shim + docker-proxy share, and the "
                    f"MemAvailable drop, at {biggest} nodes) = {fit_mem}; "
                    f"CPU: {os.cpu_count()} cores / {cpu:.2f}% idle per node = {fit_cpu}",
                    params={"fit_by_memory": fit_mem, "fit_by_idle_cpu": fit_cpu, "mib_per_node": cost},
                )
            )

        # -- a 2-node lab for the rest --
        lab.up(nodes=2)
        n1, n2 = lab.nodes[:2]
        for nd in (n1, n2):
            nd.exec("import socket, time")

        # REPL round trip: our Console (fresh connection), then mpremote on the same node
        n1.close()
        ours = repl_console(n1.container_ip, port, repl_n)
        log(f"repl ours: median {statistics.median(ours):.2f} ms")
        mpr_single, mpr_rtt, mpr_start = [], [], []
        if shutil.which("mpremote", path=str(Path(sys.executable).parent)):
            mpr_single, mpr_rtt, mpr_start = repl_mpremote(n1.container_ip, port, repeat, chain=20)
            log(
                f"repl mpremote: per exec {statistics.median(mpr_rtt):.2f} ms, "
                f"start-up {statistics.median(mpr_start):.0f} ms"
            )
        figs.append(
            Figure(
                "repl_rtt_console",
                "ms",
                ours,
                goal="<= 5 (median)",
                baseline="mpremote, per exec in one session (exec a + exec b ...)",
                baseline_samples=mpr_rtt,
                note=f"Console.exec('x = 1') on <container-ip>:{port}, {repl_n} samples, one TCP connection",
            )
        )
        if mpr_single:
            figs.append(
                Figure(
                    "repl_mpremote_invocation",
                    "ms",
                    mpr_single,
                    note="`mpremote connect socket://<container-ip>:5555 exec 'x = 1'`: one whole invocation",
                    params={"startup_ms": mpr_start, "chain": 20},
                )
            )
        # re-sync our console (mpremote left the friendly REPL)
        n1.close()
        n1.exec("import socket, time")

        # TCP with and without the host capture on the bridge
        host_ip = lab.host_ip
        with tempfile.TemporaryDirectory(prefix="mplab-bench-cap-") as tmp:
            for cap_on in (False, True):
                cap = lab.capture(Path(tmp) / "bench.pcap") if cap_on else None
                if cap:
                    cap.start()
                tag = "_capture" if cap_on else ""
                try:
                    g2h, h2g, n2n, cpu = [], [], [], {"g2h": [], "h2g": [], "n2n": []}
                    for r in range(repeat):
                        with _CpuMeter([n1.pid]) as m:
                            g2h.append(_tcp_guest_to_host(n1, host_ip, 7000 + r, tcp_bytes))
                        cpu["g2h"].append(m.pct)
                        with _CpuMeter([n1.pid]) as m:
                            h2g.append(_tcp_host_to_guest(n1, 7100 + r, tcp_bytes))
                        cpu["h2g"].append(m.pct)
                        with _CpuMeter([n2.pid]) as m:
                            n2n.append(_tcp_node_to_node(n2, n1, 7200 + r, tcp_bytes))
                        cpu["n2n"].append(m.pct)
                finally:
                    npk = len(cap.packets) if cap else 0
                    if cap:
                        cap.clear()  # do not spend the run writing a big pcap
                        cap.stop()
                log(
                    f"tcp{tag}: g2h {statistics.median(g2h):.1f} h2g {statistics.median(h2g):.1f} "
                    f"n2n {statistics.median(n2n):.1f} Mbit/s" + (f" ({npk} frames captured)" if cap else "")
                )
                common = f"{tcp_bytes >> 20} MiB per transfer over the lab bridge" + (
                    " while lab.capture (scapy AsyncSniffer, promiscuous, in this process) records the bridge"
                    if cap_on
                    else ""
                )
                figs += [
                    Figure(
                        f"tcp_guest_to_host_lab{tag}",
                        "Mbit/s",
                        g2h,
                        goal=">= 100",
                        note=common + "; timed at the host",
                        params={"capture": cap_on, "frames_captured": npk, "qemu_cpu_pct": cpu["g2h"]},
                    ),
                    Figure(
                        f"tcp_host_to_guest_lab{tag}",
                        "Mbit/s",
                        h2g,
                        goal=">= 100",
                        note=common + "; timed at the host",
                        params={"capture": cap_on, "qemu_cpu_pct": cpu["h2g"]},
                    ),
                    Figure(
                        f"tcp_node_to_node_lab{tag}",
                        "Mbit/s",
                        n2n,
                        note=common + "; timed at the receiving guest",
                        params={"capture": cap_on, "qemu_cpu_pct": cpu["n2n"], "qemu_cpu_of": "sender"},
                    ),
                ]
        mm = [mmio_cost(n1) for _ in range(repeat)]
        figs.append(
            Figure(
                "mmio_read_extra_us",
                "us",
                [m["mmio_extra_us"] for m in mm],
                note="guest-timed machine.mem32 read of LAN9118 BYTE_TEST minus the same read of RAM: "
                "the TCG slow path (io_readx, memory_region_dispatch, BQL) per 32-bit device access",
                params={"ram_read_us": [m["ram_read_us"] for m in mm], "mmio_read_us": [m["mmio_read_us"] for m in mm]},
            )
        )
        log(f"mmio extra per 32-bit read: {statistics.median(m['mmio_extra_us'] for m in mm):.2f} us")
        pps = [_udp_pps(n1, host_ip, 7300 + r, 2000) for r in range(repeat)]
        figs.append(
            Figure(
                "udp_guest_to_host_lab_pps",
                "datagrams/s",
                [p for p, _ in pps],
                note="2000 x 64-byte sendto from the guest to the host over the lab bridge, counted at the host",
                params={"delivered_fraction": [f for _, f in pps]},
            )
        )
    finally:
        lab.close()
        _down(lab_name)
    return figs
