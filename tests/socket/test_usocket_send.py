"""send(), sendall(), write(): the reassembled stream, segment sizes, flow control."""

from __future__ import annotations

import threading
import time

import pytest
from scapy.layers.inet import IP, TCP

from lab import packets as _w
from lab import peers as _host
from lab.snippet import run

PATTERN = "bytes(range(256))"


def _connect(node, host_ip: str, port: int, srv: _host.TcpServer):
    r = run(node, f"s = socket.socket()\ns.connect(({host_ip!r}, {port}))", "s.write(b'') if False else 1")
    assert r.ok, r
    return srv.conn()


def _guest_port(wire, node_ip: str, host_ip: str, port: int) -> int:
    syn = wire.expect(TCP, flags="S", src=node_ip, dst=host_ip, dport=port)
    return syn[TCP].sport


@pytest.mark.check("send", "returns the count; reassembled stream equals the bytes sent")
def test_send_stream(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn, _ = _connect(node, addrs.host, port, srv)
        r = run(node, "n = s.send(b'hello, wire')", "n")
        assert r.ok and 0 < r.value <= 11, r
        got = _host.recv_all(conn, r.value)
        run(node, "s.close()")
        sport = _guest_port(wire, node.ip, addrs.host, port)
        wire.expect(TCP, flags="FA", src=node.ip, sport=sport)
    assert got == b"hello, wire"[: r.value]
    assert _w.reassemble(wire.packets(), node.ip, sport) == got


@pytest.mark.check("sendall", "16 KiB: stream equal, no segment above the MSS")
def test_sendall_segments(node, wire, addrs, port):
    n = 16 * 1024
    with _host.server(addrs.host, port) as srv:
        conn, _ = _connect(node, addrs.host, port, srv)
        r = run(node, f"d = bytes(range(256)) * {n // 256}\ns.sendall(d)")
        assert r.ok, r
        got = _host.recv_all(conn, n)
        run(node, "s.close()")
        sport = _guest_port(wire, node.ip, addrs.host, port)
        wire.expect(TCP, flags="FA", src=node.ip, sport=sport)
    assert got == bytes(range(256)) * (n // 256)
    pk = wire.packets()
    assert _w.reassemble(pk, node.ip, sport) == got
    syn = wire.expect(TCP, flags="S", src=node.ip, dport=port)
    synack = wire.expect(TCP, flags="SA", src=addrs.host, sport=port)
    mss = min(_w.tcp_options(syn)["MSS"], _w.tcp_options(synack)["MSS"])
    sizes = [len(_w.payload_of(p)) for p in _w.data_segments(pk, node.ip, sport)]
    assert max(sizes) <= mss, f"segment of {max(sizes)} bytes > MSS {mss}"
    assert max(sizes) == mss, f"bulk data never used full-sized segments: {sorted(set(sizes))}"


@pytest.mark.check("sendall", "64 KiB to a slow reader: completes, zero window on the wire, window respected")
def test_sendall_slow_reader(node, wire, addrs, port):
    n = 64 * 1024
    with _host.server(addrs.host, port, rcvbuf=4096) as srv:
        conn, _ = _connect(node, addrs.host, port, srv)
        got = bytearray()

        def slow_read() -> None:
            time.sleep(1.5)  # let the window fill and close
            conn.settimeout(20)
            while len(got) < n:
                d = conn.recv(2048)
                if not d:
                    break
                got.extend(d)
                time.sleep(0.002)

        t = threading.Thread(target=slow_read, daemon=True)
        t.start()
        r = run(node, f"d = bytes(range(256)) * {n // 256}\ns.sendall(d)", timeout=40)
        t.join(30)
        run(node, "s.close()")
    assert r.ok, r
    assert bytes(got) == bytes(range(256)) * (n // 256)
    pk = wire.packets()
    sport = _guest_port(wire, node.ip, addrs.host, port)
    assert _w.reassemble(pk, node.ip, sport) == bytes(got)
    win = _w.windows(pk, addrs.host, port)
    assert win.zero, f"host never advertised a zero window (min {win.min})"
    # the guest never sends beyond the window the host advertised
    conv = _w.conversation(pk, (node.ip, sport), (addrs.host, port))
    right_edge = None
    for p in conv:
        if p[IP].src == addrs.host and p[TCP].flags & 0x10:
            right_edge = p[TCP].ack + p[TCP].window  # no WScale: the guest does not offer it
        elif p[IP].src == node.ip and _w.payload_of(p) and right_edge is not None:
            end = p[TCP].seq + len(_w.payload_of(p))
            assert end <= right_edge + 1, f"guest overran the window: {end} > {right_edge}"


@pytest.mark.check("write", "write() returns the byte count (no short write when blocking)")
def test_write_count(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn, _ = _connect(node, addrs.host, port, srv)
        r = run(node, "n = s.write(b'x' * 3000)", "n")
        got = _host.recv_all(conn, 3000)
        run(node, "s.close()")
    assert r.ok and r.value == 3000, r
    assert got == b"x" * 3000
    sport = _guest_port(wire, node.ip, addrs.host, port)
    assert _w.reassemble(wire.packets(), node.ip, sport) == got


@pytest.mark.check("send", "send() after the peer reset the connection: ECONNRESET")
def test_send_after_rst(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        conn, _ = _connect(node, addrs.host, port, srv)
        _host.rst_close(conn)
        wire.expect(TCP, flags="RA", src=addrs.host, dst=node.ip, sport=port)
        r = run(node, "try:\n    s.send(b'x')\nfinally:\n    s.close()")
    assert r.errno == "ECONNRESET", r
