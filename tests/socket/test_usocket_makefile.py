"""makefile(): returns the socket itself; readline works on it; closing it closes the socket."""

from __future__ import annotations

import socket
import time

import pytest
from scapy.layers.inet import TCP

from lab import peers as _host
from lab.snippet import run


@pytest.mark.check("makefile", "returns the socket itself, for every mode")
def test_makefile_identity(node, wire):
    r = run(
        node,
        "s = socket.socket()\nok = s.makefile() is s and s.makefile('rb') is s and "
        "s.makefile('wb', 0) is s\ns.close()",
        "ok",
    )
    assert r.ok and r.value is True, r


@pytest.mark.check("makefile", "readline() on the file across segments; close() sends FIN")
def test_makefile_readline(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        r = run(node, f"s = socket.socket()\ns.connect(({addrs.host!r}, {port}))\nf = s.makefile('rb')")
        assert r.ok, r
        conn, _ = srv.conn()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in (b"GET ", b"/ HTTP/1.0\r", b"\nHost: x\r\n"):
            conn.send(part)
            time.sleep(0.05)
        r = run(node, "a = f.readline()\nb = f.readline()\nf.close()", "(a, b)")
        assert r.ok and r.value == (b"GET / HTTP/1.0\r\n", b"Host: x\r\n"), r
        wire.expect(TCP, flags="FA", src=node.ip, dst=addrs.host, dport=port)
        r = run(node, "try:\n    s.send(b'x')\nexcept OSError as e:\n    err = e.errno\n", "err == errno.EBADF")
    assert r.ok and r.value is True, r
