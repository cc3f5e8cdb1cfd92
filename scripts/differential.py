#!/usr/bin/env python3
"""Differential mode: the same socket snippets on the guest (MicroPython/lwIP) and on a Linux
peer in the lab (CPython), compared on the REPL result *and* on the wire (docs/differential.md).

    .venv/bin/python scripts/differential.py [--lab diff] [--keep] [--out reports]

Brings the lab up (1 node) unless it is up, starts the Linux peer (lab/linux_peer.py), runs
every scenario on both sides at once (different ports, one capture of the lab bridge per
scenario, kept as artifacts/differential/<scenario>.pcap), and writes
reports/differential.{json,md,html}. ``scripts/conformance.py`` renders the same data as a
section of the conformance report; ``tests/socket/test_differential.py`` runs it under pytest
and asserts the documented differences (``EXPECTED`` below).

A scenario is a function ``(side, ctx) -> (Result, facts)``: ``side`` runs the snippet (the
guest through its raw REPL, the peer through its CPython agent; both with the same wrapper),
``ctx`` gives the host address, the side's ports and the capture; ``facts`` are what the wire
showed from *that side's* address (options, windows, timings, flags, DNS queries).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests" / "socket"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

Facts = dict[str, Any]

# ---- the two sides ----------------------------------------------------------------------

# The same wrapper as lab/snippet.py, for CPython: errno as its symbolic name,
# getaddrinfo's negative EAI_* codes as ints, an OSError without errno (socket.timeout) by type.
_WRAP_CPY = """\
import socket, time, errno
_t0 = time.monotonic()
try:
{body}
    _r = ('ok', {expr})
except OSError as _e:
    _r = ('err', errno.errorcode.get(_e.errno, _e.errno) if _e.errno is not None else type(_e).__name__)
except Exception as _e:
    _r = ('exc', type(_e).__name__ + ': ' + str(_e))
print(repr((_r, int((time.monotonic() - _t0) * 1000))))
"""


@dataclass
class Result:
    kind: str  # ok | err | exc
    value: Any
    ms: int

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def text(self) -> str:
        return f"{self.kind} {self.value!r}" if self.kind != "ok" else f"ok {self.value!r}"


class Side:
    """Where a snippet runs: ``name`` (guest | linux), ``ip`` on the lab LAN, ``run``."""

    name = ""
    label = ""
    ip = ""

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        raise NotImplementedError


class GuestSide(Side):
    name = "guest"

    def __init__(self, node: Any) -> None:
        self.node = node
        self.ip = str(node.ip)
        self.label = f"MicroPython/lwIP ({node.name})"

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        from lab.snippet import run

        r = run(self.node, body, expr, timeout=timeout)
        return Result(r.kind, r.value, r.ms)


class LinuxSide(Side):
    name = "linux"

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.ip = peer.ip
        self.label = f"CPython/Linux ({peer.name})"

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        import ast

        body = textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ")
        out = self.peer.exec(_WRAP_CPY.format(body=body, expr=expr), timeout=timeout)
        line = [ln for ln in out.strip().splitlines() if ln.startswith("((")][-1]
        (kind, value), ms = ast.literal_eval(line)
        return Result(kind, value, ms)


@dataclass
class Ctx:
    host: str  # the host's address on the lab bridge
    services: str
    port: int  # this side's ports: port .. port+9
    packets: Callable[[], list[Any]]  # the scenario's capture so far


# ---- wire facts -------------------------------------------------------------------------


def _tcp_from(ctx: Ctx, side: Side, **kw: Any) -> list[Any]:
    import sockwire as w

    return w.tcp_packets(ctx.packets(), src=side.ip, **kw)


def _wait(cond: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.02)


def _opts(p: Any) -> str:
    from scapy.layers.inet import TCP

    out = []
    for name, val in p[TCP].options:
        if name in ("NOP", "EOL"):
            continue
        out.append(f"{name}={val}" if name in ("MSS", "WScale") else name)
    return ",".join(out) or "-"


def _flags(p: Any) -> str:
    import sockwire as w

    return w.flags_of(p)


def _ip_facts(p: Any) -> Facts:
    from scapy.layers.inet import IP

    return {"ip_ttl": int(p[IP].ttl), "ip_df": bool(int(p[IP].flags) & 0x2)}


def _others(ctx: Ctx, side: Side) -> int:
    """IP packets the side sent (anything: the checks where nothing should go out)."""
    from scapy.layers.inet import IP

    return len([p for p in ctx.packets() if IP in p and p[IP].src == side.ip])


# ---- scenarios --------------------------------------------------------------------------


def sc_connect_handshake(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import sockhost as host
    from scapy.layers.inet import TCP

    port = ctx.port
    with host.server(ctx.host, port) as srv:
        r = side.run(f"s = socket.socket()\ns.connect(({ctx.host!r}, {port}))", "1")
        srv.conn()
        syn = _wait(lambda: [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) == "S"])
        ack = _wait(lambda: [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) == "A"])
        side.run("s.close()")
        _wait(lambda: [p for p in _tcp_from(ctx, side, dport=port) if "F" in _flags(p)], 2.0)
    if not syn:
        return r, {"syn": "none seen"}
    s = syn[0]
    opts = dict((k, v) for k, v in s[TCP].options if k not in ("NOP", "EOL"))
    wscale = int(opts.get("WScale", 0)) if "WScale" in opts else None
    synack = [p for p in ctx.packets() if TCP in p and p[TCP].dport == s[TCP].sport and _flags(p) == "SA"]
    host_ws = None
    if synack:
        ho = dict((k, v) for k, v in synack[0][TCP].options if k not in ("NOP", "EOL"))
        host_ws = ho.get("WScale")
    facts: Facts = {
        "syn_options": _opts(s),
        "syn_window": int(s[TCP].window),
        **_ip_facts(s),
    }
    if ack:
        raw = int(ack[0][TCP].window)
        # the window scale applies when both ends offered it in the handshake
        eff = raw << wscale if (wscale is not None and host_ws is not None) else raw
        facts["ack_window_bytes"] = eff
    return r, facts


def sc_connect_closed_port(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    port = ctx.port
    r = side.run(f"s = socket.socket()\ntry:\n    s.connect(({ctx.host!r}, {port}))\nfinally:\n    s.close()")
    # Wait for the capture to catch up: Linux returns from connect() before our sniffer thread
    # has necessarily handed over its SYN.
    ans = _wait(lambda: [p for p in ctx.packets() if _is_tcp_to(p, side.ip, port)], 1.0)
    syns = _wait(lambda: [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) == "S"], 1.0)
    return r, {
        "error": r.value if r.kind == "err" else r.text(),
        "syns_sent": len(syns),
        "answer": _flags(ans[0]) if ans else "none",
        "returned_within_1s": r.ms < 1000,
    }


def _is_tcp_to(p: Any, ip: str, sport: int) -> bool:
    from scapy.layers.inet import IP, TCP

    return IP in p and TCP in p and p[IP].dst == ip and p[TCP].sport == sport


SYN_TIMEOUT = 4.0


def sc_syn_retransmit(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import sockhost as host
    import sockwire as w
    from scapy.layers.inet import TCP

    port, t = ctx.port, SYN_TIMEOUT
    with host.silent_tcp_peer(ctx.host, port):
        r = side.run(
            f"s = socket.socket()\ns.settimeout({t})\ntry:\n    s.connect(({ctx.host!r}, {port}))\n"
            "finally:\n    s.close()",
            timeout=t + 10,
        )
    syns = [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) == "S"]
    after = [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) != "S"]
    return r, {
        "error": r.value if r.kind == "err" else r.text(),
        "elapsed_s": round(r.ms / 1000, 1),
        "syns_within_timeout": len(syns),
        "syn_gaps_s": [round(g, 1) for g in w.gaps(w.times_of(syns))],
        "same_isn": len({int(p[TCP].seq) for p in syns}) == 1 if syns else None,
        "sent_on_timeout": ",".join(_flags(p) for p in after) or "nothing",
    }


def sc_close_fin_rst(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import sockhost as host
    from scapy.layers.inet import TCP

    p1, p2 = ctx.port, ctx.port + 1
    facts: Facts = {}
    with host.server(ctx.host, p1) as s1, host.server(ctx.host, p2) as s2:
        r = side.run(
            f"a = socket.socket()\na.connect(({ctx.host!r}, {p1}))\n"
            f"b = socket.socket()\nb.connect(({ctx.host!r}, {p2}))"
        )
        ca, cb = s1.conn()[0], s2.conn()[0]
        ca.send(b"never read")
        cb.send(b"read it")

        def acked(port: int, n: int) -> bool:
            data = [p for p in ctx.packets() if _is_tcp_to(p, side.ip, port) and "P" in _flags(p)]
            return bool(data) and any(q[TCP].ack == data[0][TCP].seq + n for q in _tcp_from(ctx, side, dport=port))

        _wait(lambda: acked(p1, 10) and acked(p2, 7))
        r = side.run("d = b.recv(10)\na.close()\nb.close()", "d")
        for name, port in (("unread_close", p1), ("read_close", p2)):
            first = _wait(lambda port=port: [p for p in _tcp_from(ctx, side, dport=port) if _flags(p) not in ("A",)
                                             and "S" not in _flags(p)], 2.0)  # fmt: skip
            facts[name] = _flags(first[0]) if first else "nothing"
        time.sleep(0.2)
        for name, port in (("unread_close", p1), ("read_close", p2)):
            fl = [_flags(p) for p in _tcp_from(ctx, side, dport=port) if _flags(p) not in ("S", "A", "PA")]
            facts[f"{name}_all"] = ",".join(fl)
    return r, facts


def sc_listen_backlog(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import select
    import socket
    import struct

    from scapy.layers.inet import TCP

    port, backlog, n = ctx.port, 2, 5
    r = side.run(f"ls = socket.socket()\nls.bind(('0.0.0.0', {port}))\nls.listen({backlog})")
    clients = []
    t0 = time.monotonic()
    for _ in range(n):
        # one at a time: a burst of back-to-back SYNs loses some at the guest's NIC/lwIP (seen:
        # 2-3 of 5 dropped), which would make the guest's count depend on retransmit timing
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex((side.ip, port))
        clients.append(c)
        time.sleep(0.15)
    time.sleep(max(0.0, 1.6 - (time.monotonic() - t0)))  # past the clients' first SYN retransmit
    state = {"connected": 0, "reset": 0, "pending": 0}
    for c in clients:
        _, w, _ = select.select([], [c], [], 0)
        if not w:
            state["pending"] += 1
            continue
        err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            state["reset"] += 1
            continue
        try:
            c.recv(1, socket.MSG_PEEK)
            state["reset"] += 1  # EOF counts as closed by the server
        except BlockingIOError:
            state["connected"] += 1
        except OSError:
            state["reset"] += 1
    r = side.run(
        "ls.settimeout(1.5)\nn = 0\nwhile True:\n    try:\n        c, _ = ls.accept()\n"
        "        c.close()\n        n += 1\n    except OSError:\n        break\nls.close()",
        "n",
    )
    for c in clients:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    pk = _tcp_from(ctx, side, sport=port)
    synacks = [p for p in pk if _flags(p) == "SA"]
    host_syns = [p for p in ctx.packets() if TCP in p and p[TCP].dport == port and _flags(p) == "S"]
    rst_before_accept = {p[TCP].dport for p in pk if "R" in _flags(p)}
    return r, {
        "accepted": r.value if r.ok else r.text(),
        "clients_at_1.6s": f"{state['connected']} connected, {state['reset']} reset, {state['pending']} pending",
        "synacks_sent": len({p[TCP].dport for p in synacks}),
        "client_syn_retransmits": len(host_syns) - len({p[TCP].sport for p in host_syns}),
        "rst_to_clients": len(rst_before_accept),
        "synack_options": _opts(synacks[0]) if synacks else "-",
        "synack_window": int(synacks[0][TCP].window) if synacks else None,
    }


def sc_udp_queue(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import socket

    from scapy.layers.inet import IP, UDP

    port = ctx.port
    side.run(f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.bind(('0.0.0.0', {port}))")
    h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        h.bind((ctx.host, port + 1))
        for d in (b"one", b"two", b"three"):
            h.sendto(d, (side.ip, port))
        _wait(lambda: len([p for p in ctx.packets() if UDP in p and p[IP].dst == side.ip and p[UDP].dport == port])
              >= 3)  # fmt: skip
        r = side.run(
            "u.settimeout(0.5)\ngot = []\nwhile True:\n    try:\n        got.append(u.recvfrom(64)[0])\n"
            "    except OSError:\n        break\nu.close()",
            "got",
        )
    finally:
        h.close()
    on_wire = [p for p in ctx.packets() if UDP in p and p[IP].dst == side.ip and p[UDP].dport == port]
    return r, {
        "datagrams_on_wire": len(on_wire),
        "received": [bytes(x).decode() for x in r.value] if r.ok else r.text(),
        "sent_back": _others(ctx, side) and ",".join(sorted({p.lastlayer().name for p in ctx.packets()
                                                             if IP in p and p[IP].src == side.ip})),
    }  # fmt: skip


RECV_TIMEOUT = 0.5


def sc_recv_timeout(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    import sockhost as host
    import sockwire as w

    port, t = ctx.port, RECV_TIMEOUT
    with host.server(ctx.host, port) as srv:
        side.run(f"s = socket.socket()\ns.connect(({ctx.host!r}, {port}))")
        srv.conn()
        r = side.run(
            f"s.settimeout({t})\ns.send(b'S')\ntry:\n    s.recv(10)\nfinally:\n    s.send(b'T')\n    s.close()",
            timeout=t + 10,
        )
        _wait(lambda: [p for p in _tcp_from(ctx, side, dport=port) if "F" in _flags(p)], 2.0)
    segs = {w.payload_of(p): float(p.time) for p in _tcp_from(ctx, side, dport=port) if w.payload_of(p)}
    gap = segs[b"T"] - segs[b"S"] if b"S" in segs and b"T" in segs else math.nan
    between = [
        p
        for p in _tcp_from(ctx, side, dport=port)
        if b"S" in segs and segs[b"S"] + 0.02 < float(p.time) < segs[b"S"] + gap - 0.02
    ]
    return r, {
        "error": r.value if r.kind == "err" else r.text(),
        "wire_gap_s": round(gap, 2),
        "sent_while_waiting": len(between),
    }


def sc_getaddrinfo_unknown(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP

    name = "no-such-host-x1.lab"
    r = side.run(expr=f"socket.getaddrinfo({name!r}, 80)")
    time.sleep(0.2)
    qs = [p for p in ctx.packets() if DNS in p and IP in p and p[IP].src == side.ip and p[DNS].qr == 0]
    ans = [p for p in ctx.packets() if DNS in p and IP in p and p[IP].dst == side.ip and p[DNS].qr == 1]
    qtypes = {1: "A", 28: "AAAA"}
    qds = [q for p in qs for q in (p[DNS].qd if isinstance(p[DNS].qd, list) else [p[DNS].qd])]
    queries = sorted({f"{q.qname.decode().rstrip('.')} {qtypes.get(int(q.qtype), q.qtype)}" for q in qds})
    return r, {
        "error": r.value if r.kind == "err" else r.text(),
        "dns_server": ",".join(sorted({p[IP].dst for p in qs})) or "-",
        "queries": queries,
        "rcodes": sorted({int(p[DNS].rcode) for p in ans}),
    }


def sc_setsockopt_bad_level(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    r = side.run("s = socket.socket()\ntry:\n    s.setsockopt(12345, socket.SO_REUSEADDR, 1)\nfinally:\n    s.close()")
    return r, {"result": r.value if r.kind == "err" else r.text(), "packets_sent": _others(ctx, side)}


def sc_setsockopt_bad_option(side: Side, ctx: Ctx) -> tuple[Result, Facts]:
    r = side.run("s = socket.socket()\ntry:\n    s.setsockopt(socket.SOL_SOCKET, 9999, 1)\nfinally:\n    s.close()")
    return r, {"result": r.value if r.kind == "err" else r.text(), "packets_sent": _others(ctx, side)}


@dataclass
class Scenario:
    key: str
    title: str
    aspect: str
    fn: Callable[[Side, Ctx], tuple[Result, Facts]]
    bpf: str = "ip"


SCENARIOS = [
    Scenario("connect_handshake", "connect(): SYN options and window", "options, window", sc_connect_handshake),
    Scenario("connect_closed_port", "connect() to a closed port", "errors", sc_connect_closed_port),
    Scenario(
        "syn_retransmit",
        f"connect() to a silent peer, settimeout({SYN_TIMEOUT:g})",
        "retransmit timing",
        sc_syn_retransmit,
    ),
    Scenario("close_fin_rst", "close() with unread data / after reading it", "FIN/RST choice", sc_close_fin_rst),
    Scenario("listen_backlog", "listen(2), 5 clients 150 ms apart", "backlog, options", sc_listen_backlog),
    Scenario("udp_queue", "3 UDP datagrams queued before recvfrom()", "queueing", sc_udp_queue),
    Scenario("recv_timeout", f"recv() with settimeout({RECV_TIMEOUT:g})", "errors, timing", sc_recv_timeout),
    Scenario("getaddrinfo_unknown", "getaddrinfo() of an unknown name", "errors, DNS", sc_getaddrinfo_unknown),
    Scenario("setsockopt_bad_level", "setsockopt(12345, SO_REUSEADDR, 1)", "errors", sc_setsockopt_bad_level),
    Scenario("setsockopt_bad_option", "setsockopt(SOL_SOCKET, 9999, 1)", "errors", sc_setsockopt_bad_option),
]

# ---- expectations: the documented differences (docs/differential.md) --------------------


class Near:
    """A number within ``tol`` of ``v`` (timings)."""

    def __init__(self, v: float, tol: float) -> None:
        self.v, self.tol = v, tol

    def __call__(self, x: Any) -> bool:
        return isinstance(x, int | float) and abs(x - self.v) <= self.tol

    def __repr__(self) -> str:
        return f"{self.v:g}±{self.tol:g}"


class Gaps:
    """A list of gaps, each within ``tol`` of the expected one."""

    def __init__(self, *v: float, tol: float = 0.35) -> None:
        self.v, self.tol = v, tol

    def __call__(self, x: Any) -> bool:
        return (
            isinstance(x, list)
            and len(x) == len(self.v)
            and all(abs(a - b) <= self.tol for a, b in zip(x, self.v, strict=True))
        )

    def __repr__(self) -> str:
        return "[" + ", ".join(f"{a:g}" for a in self.v) + f"]±{self.tol:g}"


class Pred:
    """A predicate with a description (what the report shows as the expectation)."""

    def __init__(self, what: str, fn: Callable[[Any], bool]) -> None:
        self.what, self.fn = what, fn

    def __call__(self, x: Any) -> bool:
        try:
            return bool(self.fn(x))
        except Exception:
            return False

    def __repr__(self) -> str:
        return self.what


# lwIP's TCP_WND is a build option (6 x MSS in 1.25.0's port, 16 x MSS in later ones): assert
# the shape (whole MSS multiple, unscaled, <= 16 MSS), not one firmware's number.
LWIP_WND = Pred("n x 1460 <= 23360", lambda w: w % 1460 == 0 and 0 < w <= 23360)
# Linux's window scale follows tcp_rmem's max (7 with the default 6 MiB, 10 on this host).
LINUX_SYN_OPTS = Pred(
    "MSS=1460,SAckOK,Timestamp,WScale=<n>", lambda o: o.startswith("MSS=1460,SAckOK,Timestamp,WScale=")
)


def _ok(expect: Any, value: Any) -> bool:
    return bool(expect(value)) if callable(expect) else expect == value


# scenario -> fact -> (guest, linux). Only what is asserted; facts not listed are shown only.
EXPECTED: dict[str, dict[str, tuple[Any, Any]]] = {
    "connect_handshake": {
        "syn_options": ("MSS=1460", LINUX_SYN_OPTS),
        "syn_window": (LWIP_WND, 64240),
        "ip_ttl": (255, 64),
        "ip_df": (False, True),
    },
    "connect_closed_port": {
        "error": ("ECONNRESET", "ECONNREFUSED"),
        "syns_sent": (1, 1),
        "answer": ("RA", "RA"),
    },
    "syn_retransmit": {
        "error": ("ETIMEDOUT", "TimeoutError"),
        "elapsed_s": (Near(SYN_TIMEOUT, 0.5), Near(SYN_TIMEOUT, 0.5)),
        # lwIP: initial RTO 3 s counted in 500 ms slow-timer ticks (2.5..3 s seen). Linux >= 6.8: the first
        # tcp_syn_linear_timeouts (4) SYN retransmits every 1 s (older kernels: 1, 2, 4 s).
        "syns_within_timeout": (2, 4),
        "syn_gaps_s": (Gaps(2.8, tol=0.45), Gaps(1.0, 1.0, 1.0, tol=0.2)),
        "same_isn": (True, True),
    },
    "close_fin_rst": {
        "unread_close": ("RA", "RA"),
        "read_close": ("FA", "FA"),
    },
    "listen_backlog": {
        # lwIP queues `backlog` and resets the rest (after a full handshake); Linux queues
        # backlog + 1, drops further SYNs, and the clients get in by retransmitting once the
        # server accepts (accept() waits 1.5 s: past a 1 s linear or 1+2 s exponential retry)
        "clients_at_1.6s": ("2 connected, 3 reset, 0 pending", "3 connected, 0 reset, 2 pending"),
        "accepted": (2, 5),
        "rst_to_clients": (3, 0),
        "synack_options": ("MSS=1460", LINUX_SYN_OPTS),
    },
    "udp_queue": {
        "datagrams_on_wire": (3, 3),
        "received": (["one"], ["one", "two", "three"]),
    },
    "recv_timeout": {
        "error": ("ETIMEDOUT", "TimeoutError"),
        "wire_gap_s": (Near(RECV_TIMEOUT, 0.25), Near(RECV_TIMEOUT, 0.25)),
        "sent_while_waiting": (0, 0),
    },
    "getaddrinfo_unknown": {
        "error": (-2, -2),
        "queries": (
            ["no-such-host-x1.lab A"],
            [f"no-such-host-x1.lab{s} {t}" for s in ("", ".lab") for t in ("A", "AAAA")],
        ),
    },
    "setsockopt_bad_level": {
        "result": ("ok None", "ENOPROTOOPT"),
        "packets_sent": (0, 0),
    },
    "setsockopt_bad_option": {
        "result": ("ok None", "ENOPROTOOPT"),
        "packets_sent": (0, 0),
    },
}

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


# ---- rendering (also used by scripts/conformance.py) --------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=os.environ.get("LAB", "diff"), help="lab name (default: $LAB or diff)")
    ap.add_argument("--keep", action="store_true", help="leave the lab (and the Linux peer) up")
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "differential")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    a = ap.parse_args(argv)
    from lab import Lab
    from lab.linux_peer import LinuxPeer

    lab = Lab(a.lab)
    was_up = bool(lab.nodes)
    try:
        if not was_up:
            lab.up(nodes=1)
        node = lab.nodes[0]
        with LinuxPeer(lab) as peer:
            scs = [s for s in SCENARIOS if not a.only or s.key in a.only]
            print(f"differential: {node.name} {node.ip} vs {peer.name} {peer.ip} on {lab.bridge}", flush=True)
            comps = run_all(lab, node, peer, a.artifacts, scs)
            data = json.loads(to_json(comps, meta_for(node, peer)))
        write_reports(data, a.out)
    finally:
        if not a.keep and not was_up:
            lab.down()
    bad = [f"{c.key}: {p}" for c in comps for p in c.problems()]
    print(f"differential: {a.out / 'differential.md'} ({len(bad)} unexpected)")
    for b in bad:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
