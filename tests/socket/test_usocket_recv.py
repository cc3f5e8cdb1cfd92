"""recv(), read(), readinto(), readline(): data across segments, FIN, RST."""

from __future__ import annotations

import socket
import time

import pytest
from scapy.layers.inet import TCP

from lab import packets as _w
from lab import peers as _host
from lab.snippet import run


def _pair(node, host_ip: str, port: int, srv: _host.TcpServer) -> socket.socket:
    r = run(node, f"s = socket.socket()\ns.settimeout(5)\ns.connect(({host_ip!r}, {port}))")
    assert r.ok, r
    conn, _ = srv.conn()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _send_segments(conn: socket.socket, parts: list[bytes]) -> None:
    for p in parts:
        conn.send(p)
        time.sleep(0.05)  # one segment each (TCP_NODELAY + a gap so they do not coalesce)


def _host_segments(wire, host_ip: str, port: int) -> list[bytes]:
    return [_w.payload_of(p) for p in _w.data_segments(wire.packets(), host_ip, port)]


@pytest.mark.check("read", "read(n) gets exactly n bytes sent in several segments")
def test_read_across_segments(node, wire, addrs, port):
    parts = [b"alpha-", b"beta-", b"gamma-", b"delta"]
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        _send_segments(conn, parts)
        r = run(node, f"d = s.read({sum(map(len, parts))})\ns.close()", "d")
    assert r.ok and r.value == b"".join(parts), r
    assert _host_segments(wire, addrs.host, port) == parts


@pytest.mark.check("recv", "recv(n) returns at most n, the rest on the next call")
def test_recv_bufsize(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        conn.send(b"0123456789")
        wire.expect(TCP, src=addrs.host, sport=port, flags="PA")
        r = run(node, "a = s.recv(4)\nb = s.recv(100)\ns.close()", "(a, b)")
    assert r.ok and r.value == (b"0123", b"456789"), r


@pytest.mark.check("recv", "peer FIN: recv() gives b''")
def test_recv_fin(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        conn.send(b"last")
        conn.shutdown(socket.SHUT_WR)
        wire.expect(TCP, flags="FA", src=addrs.host, sport=port)
        r = run(node, "a = s.recv(10)\nb = s.recv(10)\nc = s.recv(10)\ns.close()", "(a, b, c)")
    assert r.ok and r.value == (b"last", b"", b""), r


@pytest.mark.check("recv", "peer RST: recv() raises ECONNRESET")
def test_recv_rst(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        _host.rst_close(conn)
        wire.expect(TCP, flags="RA", src=addrs.host, sport=port)
        r = run(node, "try:\n    s.recv(10)\nfinally:\n    s.close()")
    assert r.errno == "ECONNRESET", r


@pytest.mark.check("readline", "readline() across segments, line by line")
def test_readline_across_segments(node, wire, addrs, port):
    parts = [b"hel", b"lo\nwor", b"ld\n", b"tail"]
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        _send_segments(conn, parts)
        conn.shutdown(socket.SHUT_WR)
        r = run(
            node, "a = s.readline()\nb = s.readline()\nc = s.readline()\nd = s.readline()\ns.close()", "(a, b, c, d)"
        )
    assert r.ok and r.value == (b"hello\n", b"world\n", b"tail", b""), r
    assert _host_segments(wire, addrs.host, port) == parts


@pytest.mark.check("readinto", "readinto(buf, nbytes) reads at most nbytes; readinto(buf) fills buf")
def test_readinto_nbytes(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        _send_segments(conn, [b"ABCD", b"EFGH", b"IJKL"])
        r = run(
            node,
            "buf = bytearray(10)\nn1 = s.readinto(buf, 5)\nb1 = bytes(buf)\n"
            "buf2 = bytearray(7)\nn2 = s.readinto(buf2)\ns.close()",
            "(n1, b1, n2, bytes(buf2))",
        )
    assert r.ok, r
    n1, b1, n2, b2 = r.value
    assert n1 == 5 and b1 == b"ABCDE" + bytes(5), r
    assert n2 == 7 and b2 == b"FGHIJKL", r


@pytest.mark.check("read", "read() with no size reads to EOF")
def test_read_all(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _pair(node, addrs.host, port, srv)
        _send_segments(conn, [b"x" * 2000, b"y" * 3000])
        conn.shutdown(socket.SHUT_WR)
        r = run(node, "d = s.read()\ns.close()", "(len(d), d[:1], d[-1:])")
    assert r.ok and r.value == (5000, b"x", b"y"), r
    wire.expect(TCP, flags="FA", src=addrs.host, sport=port)
