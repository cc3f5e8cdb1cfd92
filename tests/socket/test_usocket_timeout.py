"""settimeout(), setblocking(): every timeout measured on the wire; EAGAIN; blocking mode."""

from __future__ import annotations

import threading
import time

import pytest
from scapy.layers.inet import TCP

from lab import packets as _w
from lab import peers as _host
from lab.snippet import run


def _connected(node, host_ip: str, port: int, srv: _host.TcpServer):
    r = run(node, f"s = socket.socket()\ns.connect(({host_ip!r}, {port}))")
    assert r.ok, r
    return srv.conn()[0]


@pytest.mark.check("settimeout", "recv timeout of t s: ETIMEDOUT, measured between wire markers")
@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_recv_timeout_on_wire(node, wire, addrs, port, t):
    # The guest writes b"S" just before recv() and b"T" right after it times out: the gap
    # between the two segments on the wire is the timeout as the LAN sees it.
    with _host.server(addrs.host, port) as srv:
        _connected(node, addrs.host, port, srv)
        r = run(
            node,
            f"s.settimeout({t})\ns.send(b'S')\ntry:\n    s.recv(10)\nfinally:\n    s.send(b'T')\n    s.close()",
            timeout=t + 10,
        )
        sport = wire.expect(TCP, flags="S", src=node.ip, dport=port)[TCP].sport
        wire.expect(TCP, flags="FA", src=node.ip, sport=sport)
    assert r.errno == "ETIMEDOUT", r
    segs = {_w.payload_of(p): float(p.time) for p in _w.data_segments(wire.packets(), node.ip, sport)}
    assert b"S" in segs and b"T" in segs, _w.summary(wire.packets())
    measured = segs[b"T"] - segs[b"S"]
    print(f"timeout {t}s: guest {r.seconds:.3f}s, wire {measured:.3f}s")
    assert t - 0.02 <= measured <= t + 0.25, f"wire gap {measured:.3f}s for settimeout({t})"
    # nothing from the guest while it waited (no probes, no keepalives)
    mid = [
        p
        for p in _w.tcp_packets(wire.packets(), src=node.ip, sport=sport)
        if segs[b"S"] + 0.05 < float(p.time) < segs[b"T"] - 0.05
    ]
    assert not mid, _w.summary(mid)


@pytest.mark.check("setblocking", "setblocking(False): recv gives EAGAIN at once")
def test_setblocking_false(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        _connected(node, addrs.host, port, srv)
        r = run(node, "s.setblocking(False)\ntry:\n    s.recv(10)\nfinally:\n    s.close()")
    assert r.errno == "EAGAIN" and r.ms < 100, r


@pytest.mark.check("settimeout", "settimeout(0) is non-blocking: EAGAIN at once")
def test_settimeout_zero(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        _connected(node, addrs.host, port, srv)
        r = run(node, "s.settimeout(0)\ntry:\n    s.recv(10)\nfinally:\n    s.close()")
    assert r.errno == "EAGAIN" and r.ms < 100, r


@pytest.mark.check("settimeout", "settimeout(None) blocks until data comes")
@pytest.mark.parametrize("call", ["settimeout(None)", "setblocking(True)"])
def test_blocking_until_data(node, wire, addrs, port, call):
    delay = 1.5
    with _host.server(addrs.host, port) as srv:
        conn = _connected(node, addrs.host, port, srv)
        # t0 before the timer starts: the host's clock must not start after the send's.
        t0 = time.monotonic()
        threading.Timer(delay, lambda: conn.send(b"late")).start()
        r = run(node, f"s.settimeout(0.1)\ns.{call}\nd = s.recv(10)\ns.close()", "d", timeout=delay + 10)
        host_elapsed = time.monotonic() - t0
    assert r.ok and r.value == b"late", r
    # The guest's clock starts when the snippet runs, an exec round trip after the host's timer
    # did (over 0.1 s on a loaded host), so the lower bound is not `delay`: it is far enough past
    # the 0.1 s timeout that recv() can only have been blocking, not timing out.
    assert 5 * 0.1 <= r.seconds <= delay + 0.5, r
    data = wire.expect(TCP, src=addrs.host, sport=port, flags="PA")
    assert _w.payload_of(data) == b"late"
    assert host_elapsed >= delay


@pytest.mark.check("settimeout", "accept() with a timeout: ETIMEDOUT after ~t, nothing on the wire")
def test_accept_timeout(node, wire, port):
    r = run(
        node,
        f"ls = socket.socket()\nls.bind(('0.0.0.0', {port}))\nls.listen(1)\nls.settimeout(0.7)\n"
        "try:\n    ls.accept()\nfinally:\n    ls.close()",
        timeout=10,
    )
    assert r.errno == "ETIMEDOUT", r
    assert 0.68 <= r.seconds <= 0.9, r
    assert not _w.tcp_packets(wire.packets(), src=node.ip)
