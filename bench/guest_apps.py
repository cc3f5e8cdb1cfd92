"""Guest application figures (issue 11): TLS handshake time guest<->host and guest<->guest for
ECDSA P-256 and RSA-2048 certificates, asyncio TCP echo round trip, heap free after
``import asyncio, ssl``, and the idle CPU of QEMU while a guest's asyncio loop waits.

Runs in a 2-node lab of its own (default name ``apps``), always taken down at the end. The
certificates come from a CA made at run time (lab/pki.py). Network hygiene: the only peers are
the two guests and the host's address on the lab bridge.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import CLK_TCK, Figure, cpu_ticks
from lab import Lab, Node, snippet
from lab.guestfs import put
from lab.pki import CA, Leaf

Log = Callable[[str], None]
KEYS = {"ec": "ECDSA P-256", "rsa": "RSA-2048"}
MSG = 32  # bytes per echo round trip


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _last_literal(out: str) -> object:
    return ast.literal_eval(out.strip().splitlines()[-1])


# ---- TLS handshakes ------------------------------------------------------------------------
_GUEST_CLIENT = """\
import ssl, socket, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cadata=open('/ca.pem', 'rb').read())
ai = socket.getaddrinfo({host!r}, {port})[0][-1]
_us = []
for _ in range({n}):
    s = socket.socket()
    s.connect(ai)
    t0 = time.ticks_us()
    t = ctx.wrap_socket(s, server_hostname={host!r})
    _us.append(time.ticks_diff(time.ticks_us(), t0))
    t.write(b'x')
    t.read(1)
    _cipher = t.cipher()
    t.close()
print(repr((_us, _cipher)))
"""


def _host_tls_server(ip: str, leaf: Leaf, n: int, timeout: float = 120.0) -> tuple[socket.socket, threading.Thread]:
    """Serve ``n`` TLS connections on (ip, ephemeral port): handshake, echo one byte, close."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, 0))
    ls.listen(2)
    ls.settimeout(timeout)

    def serve() -> None:
        for _ in range(n):
            try:
                conn, _ = ls.accept()
                conn.settimeout(timeout)
                with ctx.wrap_socket(conn, server_side=True) as t:
                    t.sendall(t.recv(1))
                    t.recv(1)  # hold the session until the guest closes it
            except (OSError, ssl.SSLError) as e:
                _log(f"host tls server: {e!r}")
                return

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return ls, th


def tls_guest_host(node: Node, host_ip: str, leaf: Leaf, n: int) -> tuple[list[float], tuple[str, str]]:
    """Guest-timed ``wrap_socket`` (the whole handshake, TCP already connected), ms, and the suite."""
    ls, th = _host_tls_server(host_ip, leaf, n)
    try:
        out = node.exec(_GUEST_CLIENT.format(host="host.lab", port=ls.getsockname()[1], n=n), timeout=60 + 30 * n)
    finally:
        th.join(60)
        ls.close()
    us, cipher = _last_literal(out)  # type: ignore[misc]
    return [u / 1000 for u in us], tuple(cipher)


_GUEST_SERVER = """\
import ssl, socket
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain('/srv.pem', '/srv.key')
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('0.0.0.0', {port}))
ls.listen(2)
"""
_GUEST_SERVE = """\
for _ in range({n}):
    c, _a = ls.accept()
    t = sctx.wrap_socket(c, server_side=True)
    t.write(t.read(1))
    t.close()
ls.close()
"""


def tls_guest_guest(server: Node, client: Node, port: int, n: int) -> tuple[list[float], tuple[str, str]]:
    """node2 -> node1 (blocking ``ssl`` server in the guest), timed at the client as above."""
    server.exec(_GUEST_SERVER.format(port=port), timeout=30)
    with cf.ThreadPoolExecutor(1) as pool:
        served = pool.submit(server.exec, _GUEST_SERVE.format(n=n), 60 + 60 * n)
        try:
            out = client.exec(_GUEST_CLIENT.format(host="node1.lab", port=port, n=n), timeout=60 + 60 * n)
        finally:
            served.result(60 + 60 * n)
    us, cipher = _last_literal(out)  # type: ignore[misc]
    return [u / 1000 for u in us], tuple(cipher)


# ---- asyncio echo --------------------------------------------------------------------------
_ASYNC_SERVER = """\
import asyncio
asyncio.new_event_loop()
done = asyncio.Event()
async def echo(r, w):
    while True:
        d = await r.read(256)
        if not d:
            break
        w.write(d)
        await w.drain()
    w.close()
    await w.wait_closed()
    done.set()
srv = asyncio.run(asyncio.start_server(echo, '0.0.0.0', {port}))
"""
_ASYNC_SERVE = snippet.ASYNC_SERVE_UNTIL_DONE
_ASYNC_CLIENT = """\
import asyncio, time
asyncio.new_event_loop()
async def client():
    r, w = await asyncio.open_connection('node1.lab', {port})
    msg, us = bytes({size}), []
    for _ in range({n} + 5):  # 5 warm-up round trips (ARP, first segments)
        t0 = time.ticks_us()
        w.write(msg)
        await w.drain()
        await r.readexactly({size})
        us.append(time.ticks_diff(time.ticks_us(), t0))
    w.close()
    await w.wait_closed()
    return us[5:]
print(repr(asyncio.run(asyncio.wait_for(client(), {timeout}))))
"""


def _with_async_server(node: Node, port: int, timeout: float, work: Callable[[], object]) -> object:
    """Run ``work()`` while node's asyncio echo server (one client) runs in a host thread."""
    node.exec(_ASYNC_SERVER.format(port=port), timeout=30)
    with cf.ThreadPoolExecutor(1) as pool:
        served = pool.submit(node.exec, _ASYNC_SERVE.format(timeout=timeout), timeout + 30)
        try:
            return work()
        finally:
            served.result(timeout + 60)


def asyncio_echo_n2n(server: Node, client: Node, port: int, n: int) -> list[float]:
    """Round trips of MSG bytes, asyncio client on node2 -> asyncio server on node1, ms (guest-timed)."""
    code = _ASYNC_CLIENT.format(port=port, size=MSG, n=n, timeout=120)
    out = _with_async_server(server, port, 150, lambda: client.exec(code, timeout=150))
    return [u / 1000 for u in _last_literal(str(out))]  # type: ignore[union-attr]


def _host_echo_rtts(ip: str, port: int, n: int) -> list[float]:
    with socket.create_connection((ip, port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg, out = bytes(MSG), []
        for i in range(n + 5):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < MSG:
                chunk = s.recv(MSG - got)
                if not chunk:
                    raise RuntimeError(f"{ip}:{port}: echo server closed the connection")
                got += len(chunk)
            if i >= 5:  # warm-up round trips (ARP, first segments) are not samples
                out.append((time.perf_counter() - t0) * 1000)
        return out


def asyncio_echo_host(server: Node, port: int, n: int) -> list[float]:
    """Round trips from the host to node1's asyncio echo server, ms (host-timed)."""
    return _with_async_server(server, port, 120, lambda: _host_echo_rtts(server.ip or "", port, n))  # type: ignore[return-value]


_BLOCKING_ECHO = """\
import socket
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('0.0.0.0', {port}))
ls.listen(1)
"""
_BLOCKING_SERVE = """\
c, _a = ls.accept()
while True:
    d = c.recv(256)
    if not d:
        break
    c.write(d)
c.close()
ls.close()
"""


def blocking_echo_host(server: Node, port: int, n: int) -> list[float]:
    """Baseline: the same round trips against a blocking-socket echo loop in the guest."""
    server.exec(_BLOCKING_ECHO.format(port=port), timeout=30)
    with cf.ThreadPoolExecutor(1) as pool:
        served = pool.submit(server.exec, _BLOCKING_SERVE, 150)
        try:
            return _host_echo_rtts(server.ip or "", port, n)
        finally:
            served.result(180)


# ---- heap ----------------------------------------------------------------------------------
def heap_after_import(node: Node) -> dict[str, int]:
    """gc.mem_free() right after a hard reset + network bring-up, then after ``import asyncio, ssl``."""
    node.reset(bringup=True, timeout=60)
    out = node.exec(
        "import gc\ngc.collect()\n_a = gc.mem_free()\nimport asyncio, ssl\ngc.collect()\n_b = gc.mem_free()\n"
        # asyncio loads its submodules on first use; an SSLContext sets up mbedTLS's config
        "_u = (asyncio.start_server, asyncio.open_connection, asyncio.Event, asyncio.wait_for, asyncio.gather, "
        "ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))\ngc.collect()\n"
        "print(repr((_a, _b, gc.mem_free(), gc.mem_alloc())))",
        timeout=30,
    )
    before, after, used, alloc = _last_literal(out)  # type: ignore[misc]
    return {"before": before, "after": after, "after_first_use": used, "heap_total": used + alloc}


_TWO_SESSIONS = """\
import gc, ssl, socket
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cadata=open('/ca.pem', 'rb').read())
_ts = []
for _p in {ports}:
    s = socket.socket()
    s.connect(socket.getaddrinfo('host.lab', _p)[0][-1])
    t = ctx.wrap_socket(s, server_hostname='host.lab')
    t.write(b'x')
    t.read(1)
    _ts.append(t)
gc.collect()
_open = gc.mem_free()
for t in _ts:
    t.close()
_ts = None
gc.collect()
print(repr((_open, gc.mem_free())))
"""


def heap_two_tls(node: Node, host_ip: str, leaf: Leaf) -> tuple[int, int]:
    """(gc.mem_free() with two verified TLS sessions open, after closing them), bytes."""
    servers = [_host_tls_server(host_ip, leaf, 1) for _ in range(2)]
    try:
        out = node.exec(_TWO_SESSIONS.format(ports=[ls.getsockname()[1] for ls, _ in servers]), timeout=120)
    finally:
        for ls, th in servers:
            th.join(60)
            ls.close()
    return _last_literal(out)  # type: ignore[return-value]


# ---- idle CPU ------------------------------------------------------------------------------
_WAITING_LOOP = """\
import asyncio
asyncio.new_event_loop()
async def _idle():
    async def _cb(r, w):
        w.close()
    srv = await asyncio.start_server(_cb, '0.0.0.0', {port})
    await asyncio.sleep({seconds})  # nothing arrives: the loop waits in select.poll
    srv.close()
    await srv.wait_closed()
asyncio.run(_idle())
"""


def _cpu_pct(pid: int, window: float) -> float:
    c0, t0 = cpu_ticks(pid), time.monotonic()
    time.sleep(window)
    return (cpu_ticks(pid) - c0) / CLK_TCK / (time.monotonic() - t0) * 100


def idle_cpu(node: Node, port: int, window: float) -> tuple[float, float]:
    """(% of a core with the guest at its idle raw REPL, % while an asyncio loop waits), same node."""
    pid = node.pid
    time.sleep(1.0)  # let the last exec's work settle
    repl = _cpu_pct(pid, window)
    settle = 2.0
    with cf.ThreadPoolExecutor(1) as pool:
        loop = pool.submit(node.exec, _WAITING_LOOP.format(port=port, seconds=window + 2 * settle), window + 60)
        time.sleep(settle)
        waiting = _cpu_pct(pid, window)
        loop.result(window + 90)
    return repl, waiting


# ---- the run -------------------------------------------------------------------------------
def _push_pki(n1: Node, n2: Node, ca: CA, leaf: Leaf) -> None:
    for nd in (n1, n2):
        put(nd, ca.cert_pem, "/ca.pem")
    put(n1, leaf.cert_pem, "/srv.pem")
    put(n1, leaf.key_pem, "/srv.key")


def _tls_figures(lab: Lab, n1: Node, n2: Node, tmp: Path, repeat: int, log: Log) -> list[Figure]:
    figs: list[Figure] = []
    for key, label in KEYS.items():
        ca = CA.make(tmp / f"ca-{key}", f"mplab bench CA {key}", key=key)  # the whole chain of one kind
        host_leaf, node_leaf = ca.issue("host.lab", key=key), ca.issue("node1.lab", key=key)
        _push_pki(n1, n2, ca, node_leaf)
        gh, cipher_h = tls_guest_host(n2, lab.host_ip, host_leaf, repeat)
        two = [heap_two_tls(n2, lab.host_ip, host_leaf) for _ in range(min(repeat, 3))]
        gg, cipher_g = tls_guest_guest(n1, n2, 33000 + len(figs), repeat)
        log(f"tls {key}: guest->host {statistics.median(gh):.0f} ms, guest->guest {statistics.median(gg):.0f} ms")
        common = (
            f"{label} server certificate signed by a run-time {label} CA, verified by the client (CERT_REQUIRED, "
            "server_hostname checked); guest-timed ticks_us around wrap_socket (TCP already connected)"
        )
        figs += [
            Figure(
                f"tls_handshake_guest_host_{key}",
                "ms",
                gh,
                note=f"node2 -> CPython ssl server on the host's bridge address; {common}",
                params={"cipher": cipher_h, "server": "host (CPython ssl, OpenSSL)"},
            ),
            Figure(
                f"heap_free_two_tls_sessions_{key}",
                "KiB",
                [o / 1024 for o, _ in two],
                note=f"gc.collect(); gc.mem_free() on node2 with two verified TLS sessions ({label}) to the host open",
                params={
                    "after_close_kib": [c / 1024 for _, c in two],
                    "per_session_kib": [(c - o) / 2048 for o, c in two],
                },
            ),
            Figure(
                f"tls_handshake_guest_guest_{key}",
                "ms",
                gg,
                note=f"node2 -> blocking ssl server on node1 (key and cert pushed to its filesystem); {common}",
                params={"cipher": cipher_g, "server": "node1 (mbedTLS)"},
            ),
        ]
    return figs


def run(
    repeat: int = 5, rtt_n: int = 50, idle_window: float = 10.0, lab_name: str = "apps", log: Log = _log
) -> list[Figure]:
    figs: list[Figure] = []
    lab = Lab(lab_name, progress=None)
    lab.down()
    try:
        lab.up(nodes=2)
        n1, n2 = lab.nodes[:2]
        with tempfile.TemporaryDirectory(prefix="mplab-bench-pki-") as tmp:
            figs += _tls_figures(lab, n1, n2, Path(tmp), repeat, log)

        n2n = asyncio_echo_n2n(n1, n2, 33100, rtt_n)
        h2g = asyncio_echo_host(n1, 33101, rtt_n)
        blk = blocking_echo_host(n1, 33102, rtt_n)
        log(f"asyncio echo: n2n {statistics.median(n2n):.2f} ms, host->guest {statistics.median(h2g):.2f} ms "
            f"(blocking socket {statistics.median(blk):.2f} ms)")  # fmt: skip
        figs += [
            Figure(
                "asyncio_echo_rtt_guest_guest",
                "ms",
                n2n,
                note=f"{MSG}-byte write/drain/readexactly round trips, asyncio client on node2 -> asyncio echo server "
                f"(start_server, read/write/drain) on node1; guest-timed at the client, {rtt_n} after 5 warm-up",
            ),
            Figure(
                "asyncio_echo_rtt_host_guest",
                "ms",
                h2g,
                baseline="blocking-socket echo loop on the same guest",
                baseline_samples=blk,
                note=f"{MSG}-byte round trips from a host socket (TCP_NODELAY) to node1's asyncio echo server; "
                "host-timed (perf_counter)",
            ),
        ]

        idle = [idle_cpu(n1, 33200 + r, idle_window) for r in range(repeat)]
        log(f"idle cpu: repl {statistics.median(i[0] for i in idle):.2f}% "
            f"asyncio waiting {statistics.median(i[1] for i in idle):.2f}%")  # fmt: skip
        figs.append(
            Figure(
                "idle_cpu_asyncio_wait",
                "% of a core",
                [i[1] for i in idle],
                baseline="the same node at its idle (raw) REPL, just before",
                baseline_samples=[i[0] for i in idle],
                note=f"utime+stime of node1's QEMU over {idle_window:g} s while the guest runs asyncio.run() with a "
                "listening start_server and asyncio.sleep (no traffic): the loop waits in select.poll",
            )
        )

        heaps = [heap_after_import(n1) for _ in range(min(repeat, 3))]
        log(f"heap: {heaps[-1]}")
        figs.append(
            Figure(
                "heap_free_after_import_asyncio_ssl",
                "KiB",
                [h["after"] / 1024 for h in heaps],
                note="gc.collect(); gc.mem_free() after a hard reset (QMP system_reset) + network bring-up and "
                "`import asyncio, ssl` (both frozen); after_first_use: once start_server, open_connection, Event, "
                "wait_for, gather are looked up (asyncio imports stream/event/funcs lazily) and an SSLContext exists",
                params={
                    "before_import_kib": [h["before"] / 1024 for h in heaps],
                    "import_cost_kib": [(h["before"] - h["after"]) / 1024 for h in heaps],
                    "after_first_use_kib": [h["after_first_use"] / 1024 for h in heaps],
                    "heap_total_kib": heaps[-1]["heap_total"] / 1024,
                },
            )
        )
    finally:
        lab.close()
        lab.down()
    return figs
