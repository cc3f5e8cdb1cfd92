"""The socket module's constants and methods (spec: shared/spec/usocket.rst), and that
sockets made from the bare numbers behave as those types on the wire."""

from __future__ import annotations

import socket

from fw_peer import background

from lab.netns import HOST_IP, Guest
from lab.spec import SOCKET_CONSTANTS, SOCKET_FUNCTIONS, SOCKET_METHODS


def test_constants_functions_and_methods(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    got = c.eval(f"{{n: getattr(socket, n, None) for n in {sorted(SOCKET_CONSTANTS)!r}}}")
    assert got == SOCKET_CONSTANTS
    assert c.eval("__import__('usocket') is __import__('socket')") is True
    missing_fn = c.eval(f"[n for n in {SOCKET_FUNCTIONS!r} if not callable(getattr(socket, n, None))]")
    assert missing_fn == [], f"socket module lacks functions {missing_fn}"
    missing = c.eval(
        f"(lambda s: ([n for n in {SOCKET_METHODS!r} if not callable(getattr(s, n, None))], s.close()))"
        "(socket.socket())[0]"
    )
    assert missing == [], f"socket objects lack methods {missing}"


def test_udp_socket_from_numeric_constants(guest: Guest) -> None:
    """socket(2, 2, 17) is a UDP socket: sendto puts a datagram on the wire."""
    c = guest.console
    assert c is not None
    payload = b"mplab-numeric-udp"
    c.exec(f"s = socket.socket(2, 2, 17)\ns.sendto({payload!r}, ({HOST_IP!r}, 40001))\ns.close()")
    guest.wire.udp(guest.ip, HOST_IP, 40001, payload)


def test_tcp_socket_from_numeric_constants(guest: Guest) -> None:
    """socket(2, 1, 6) with setsockopt(4095, 4, 1) is a TCP socket: connect does a handshake."""
    c = guest.console
    assert c is not None
    srv = guest.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((HOST_IP, 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    srv.settimeout(10)
    accepted = background(srv.accept)
    try:
        peer = c.eval(
            f"(lambda s: (s.setsockopt(4095, 4, 1), s.connect(({HOST_IP!r}, {port})), s.send(b'hi'), s.close()))"
            "(socket.socket(2, 1, 6))"
        )
        assert peer == (None, None, 2, None)
        conn, _ = accepted.result(timeout=10)
        conn.close()
    finally:
        srv.close()
    guest.wire.tcp_handshake(guest.ip, HOST_IP, port)
