"""bind(), listen(backlog), accept(): server handshake, backlog, SO_REUSEADDR vs TIME_WAIT."""

from __future__ import annotations

import contextlib
import socket

import pytest
from scapy.layers.inet import TCP

from lab import packets as _w
from lab import peers as _host
from lab.snippet import run


def _client(ip: str, port: int, timeout: float = 3.0) -> socket.socket:
    c = socket.socket()
    c.settimeout(timeout)
    c.connect((ip, port))
    return c


@pytest.mark.check("accept", "host connects: handshake on the wire, accept() gives the client's ip:port")
def test_accept_handshake(node, wire, addrs, port):
    run(node, f"ls = socket.socket()\nls.bind(('0.0.0.0', {port}))\nls.listen(2)")
    c = _client(node.ip, port)
    try:
        r = run(node, "ls.settimeout(3)\nconn, peer = ls.accept()", "peer")
        assert r.ok, r
        assert tuple(r.value) == c.getsockname(), (r.value, c.getsockname())
        syn, synack, _ack = wire.expect_sequence(
            [
                (TCP, {"flags": "S", "src": addrs.host, "dst": node.ip, "dport": port}),
                (TCP, {"flags": "SA", "src": node.ip, "dst": addrs.host, "sport": port}),
                (TCP, {"flags": "A", "src": addrs.host, "dst": node.ip, "dport": port}),
            ],
            within=2.0,
        )
        assert syn[TCP].sport == c.getsockname()[1]
        assert "MSS" in _w.tcp_options(synack), synack[TCP].options
    finally:
        c.close()
        run(node, "conn.close()\nls.close()")


@pytest.mark.check("listen", "past the backlog: extra connections are reset, exactly backlog accepted")
def test_backlog(node, wire, addrs, port):
    backlog = 2
    run(node, f"ls = socket.socket()\nls.bind(('0.0.0.0', {port}))\nls.listen({backlog})")
    clients, refused = [], 0
    for _ in range(backlog + 2):
        try:
            clients.append(_client(node.ip, port, 2.0))
        except OSError:
            refused += 1
    r = run(
        node,
        "ls.settimeout(0.5)\nn = 0\nwhile True:\n    try:\n        c, _ = ls.accept()\n"
        "        c.close()\n        n += 1\n    except OSError:\n        break\nls.close()",
        "n",
    )
    for c in clients:
        c.close()
    assert r.ok and r.value == backlog, f"accepted {r.value}, backlog {backlog}"
    resets = [p for p in _w.tcp_packets(wire.packets(), src=node.ip, sport=port) if _w.has_flags(p, "R")]
    # lwIP completes the handshake, then modlwip aborts what does not fit (RST); Linux would
    # drop the SYN instead and let the client retry.
    assert len(resets) >= 2, "no RST for connections past the backlog:\n" + _w.summary(
        _w.tcp_packets(wire.packets(), dport=port) + _w.tcp_packets(wire.packets(), sport=port)
    )


def _time_wait(node, host_ip: str, port: int) -> None:
    """Guest server accepts one host connection and closes first: the guest pcb goes to
    TIME_WAIT. Both FINs on the wire."""
    run(node, f"ls = socket.socket()\nls.bind(('0.0.0.0', {port}))\nls.listen(1)")
    c = _client(node.ip, port)
    r = run(node, "ls.settimeout(3)\nconn, _ = ls.accept()\nconn.close()\nls.close()")
    assert r.ok, r
    assert _host.recv_until_eof(c, 3.0) == b""
    c.close()


@pytest.mark.check("setsockopt", "SO_REUSEADDR: rebind while the old connection is in TIME_WAIT")
def test_reuseaddr_time_wait(node, wire, addrs, port):
    _time_wait(node, addrs.host, port)
    wire.expect(TCP, flags="FA", src=node.ip, sport=port)
    wire.expect(TCP, flags="FA", src=addrs.host, dport=port)
    r = run(
        node,
        "ls = socket.socket()\nls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"ls.bind(('0.0.0.0', {port}))\nls.listen(1)\nls.close()",
    )
    assert r.ok, r


@pytest.mark.check("bind", "without SO_REUSEADDR: EADDRINUSE while in TIME_WAIT")
def test_no_reuseaddr_time_wait(node, wire, addrs, port):
    _time_wait(node, addrs.host, port)
    wire.expect(TCP, flags="FA", src=node.ip, sport=port)
    r = run(node, f"ls = socket.socket()\ntry:\n    ls.bind(('0.0.0.0', {port}))\nfinally:\n    ls.close()")
    assert r.errno == "EADDRINUSE", r


@pytest.mark.check("bind", "two listeners on one port: EADDRINUSE")
def test_bind_in_use(node, wire, port):
    r = run(
        node,
        f"a = socket.socket()\na.bind(('0.0.0.0', {port}))\na.listen(1)\nb = socket.socket()\n"
        f"try:\n    b.bind(('0.0.0.0', {port}))\nfinally:\n    a.close()\n    b.close()",
    )
    assert r.errno == "EADDRINUSE", r


@pytest.mark.check("accept", "accept() on a socket that is not listening: EINVAL")
def test_accept_not_listening(node, wire):
    r = run(node, "s = socket.socket()\ntry:\n    s.accept()\nfinally:\n    s.close()")
    assert r.errno == "EINVAL", r


@pytest.mark.check("listen", "listen() on a UDP socket: EOPNOTSUPP")
def test_listen_udp(node):
    r = run(
        node, "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    s.listen(1)\n" "finally:\n    s.close()"
    )
    assert r.errno == "EOPNOTSUPP", r


@pytest.mark.check("listen", "listen() without backlog uses a default; negative backlog is clamped")
def test_listen_default_and_negative(node, wire, addrs, port):
    r = run(
        node,
        f"a = socket.socket()\na.bind(('0.0.0.0', {port}))\na.listen()\na.close()\n"
        f"b = socket.socket()\nb.bind(('0.0.0.0', {port + 1}))\nb.listen(-5)",
    )
    assert r.ok, r
    with contextlib.closing(_client(node.ip, port + 1)):
        r = run(node, "b.settimeout(3)\nc, _ = b.accept()\nc.close()\nb.close()")
    assert r.ok, r
