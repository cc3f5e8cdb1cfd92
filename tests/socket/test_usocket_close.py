"""close(): FIN after a clean exchange, RST with unread data, EBADF after close."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from lab import packets as _w
from lab import peers as _host
from lab.snippet import run


def _open(node, host_ip: str, port: int, srv: _host.TcpServer):
    r = run(node, f"s = socket.socket()\ns.connect(({host_ip!r}, {port}))")
    assert r.ok, r
    return srv.conn()[0]


@pytest.mark.check("close", "all data read: FIN, peer sees EOF, no RST")
def test_close_fin(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _open(node, addrs.host, port, srv)
        conn.send(b"hi")
        wire.expect(TCP, src=addrs.host, sport=port, flags="PA")
        r = run(node, "d = s.recv(10)\ns.close()", "d")
        assert r.ok and r.value == b"hi", r
        assert _host.recv_until_eof(conn, 3) == b""
        conn.close()
        fin = wire.expect(TCP, flags="FA", src=node.ip, dst=addrs.host, dport=port)
        wire.expect(
            TCP,
            flags="A",
            src=node.ip,
            dport=port,
            ack=wire.expect(TCP, flags="FA", src=addrs.host, sport=port)[TCP].seq + 1,
        )
    sport = fin[TCP].sport
    assert not [p for p in _w.tcp_packets(wire.packets(), src=node.ip, sport=sport) if _w.has_flags(p, "R")]


@pytest.mark.check("close", "unread data: RST instead of FIN (lwIP, as Linux)")
def test_close_unread_rst(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn = _open(node, addrs.host, port, srv)
        conn.send(b"never read")
        wire.expect(TCP, src=addrs.host, sport=port, flags="PA")
        wire.expect(
            TCP,
            src=node.ip,
            dport=port,
            flags="A",
            ack=_w.tcp_packets(wire.packets(), src=addrs.host, sport=port)[-1][TCP].seq + 10,
        )
        r = run(node, "s.close()")
        assert r.ok, r
        rst = wire.expect(TCP, flags="RA", src=node.ip, dst=addrs.host, dport=port)
    sport = rst[TCP].sport
    assert not [p for p in _w.tcp_packets(wire.packets(), src=node.ip, sport=sport) if _w.has_flags(p, "F")]


@pytest.mark.check("close", "use after close: EBADF")
@pytest.mark.parametrize(
    "op",
    [
        "s.send(b'x')",
        "s.recv(1)",
        "s.connect(ADDR)",
        "s.listen(1)",
        "s.accept()",
        "s.write(b'x')",
        "s.read(1)",
        "s.sendto(b'x', ADDR)",
    ],
)
def test_use_after_close(node, wire, addrs, port, op):
    op = op.replace("ADDR", repr((addrs.host, port)))
    r = run(node, f"s = socket.socket()\ns.close()\n{op}")
    assert r.errno == "EBADF", r
    assert not _w.tcp_packets(wire.packets(), src=node.ip)


@pytest.mark.check("close", "bind() after close: EBADF")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip's bind() passes the NULL pcb to tcp_bind(), which returns ERR_VAL/ERR_ARG "
    "-> EIO; every other method gives EBADF, as CPython does. No upstream report found "
    "(searched micropython/micropython issues/PRs: modlwip bind after close, EIO instead of EBADF, "
    "operation on closed socket errno, tcp_bind NULL pcb)",
)
def test_bind_after_close(node, wire):
    r = run(node, "s = socket.socket()\ns.close()\ns.bind(('0.0.0.0', 1))")
    assert r.errno == "EBADF", r


@pytest.mark.check("close", "close() twice is a no-op")
def test_close_twice(node, wire):
    r = run(node, "s = socket.socket()\ns.close()\ns.close()", "1")
    assert r.ok, r
