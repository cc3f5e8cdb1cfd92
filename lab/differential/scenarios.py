"""The differential scenarios: each a function ``(side, ctx) -> (Result, facts)``, where the
facts are what the wire showed from *that side's* address (options, windows, timings, flags,
DNS queries)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import packets as w
from .. import peers as host
from ..util import poll_until
from .sides import Ctx, Facts, Result, Side

# ---- wire facts -------------------------------------------------------------------------


def _tcp_from(ctx: Ctx, side: Side, **kw: Any) -> list[Any]:
    return w.tcp_packets(ctx.packets(), src=side.ip, **kw)


def _wait(cond: Callable[[], Any], timeout: float = 3.0) -> Any:
    return poll_until(cond, timeout, 0.02)


def _opts(p: Any) -> str:
    from scapy.layers.inet import TCP

    out = []
    for name, val in p[TCP].options:
        if name in ("NOP", "EOL"):
            continue
        out.append(f"{name}={val}" if name in ("MSS", "WScale") else name)
    return ",".join(out) or "-"


def _flags(p: Any) -> str:
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
