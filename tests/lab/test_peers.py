"""lab.peers on the loopback (no Docker): the servers, behaviours and HostPeer bookkeeping that
the host_peer fixture, scenario peers and the socket suite share."""

from __future__ import annotations

import socket
from ipaddress import ip_network

import pytest

from lab.errors import ConfigError, LabError, LabTimeout
from lab.peers import HostPeer, TcpServer, UdpPeer, recv_all, recv_until_eof, server, tcp_behaviour
from lab.util import wait_until

LO = "127.0.0.1"


def _client(port: int) -> socket.socket:
    return socket.create_connection((LO, port), timeout=5)


def test_server_keeps_connections_and_conn_times_out() -> None:
    with server(LO, 0) as srv:
        with pytest.raises(LabTimeout, match=f"a connection to {LO}:{srv.port}"):
            srv.conn(timeout=0.2)
        c = _client(srv.port)
        conn, addr = srv.conn()
        conn.sendall(b"hi")
        assert recv_all(c, 2) == b"hi" and addr == c.getsockname()
        c.close()
    assert srv.sock.fileno() == -1  # closed on exit


@pytest.mark.parametrize(
    ("mode", "close_after", "sent", "got", "logged"),
    [
        ("echo", 0, b"abc", b"abc", "peer closed after 3 bytes"),
        ("sink", 4, b"abcdef", b"", "sink after "),
        ("close", 0, b"", b"", "close at once"),
    ],
)
def test_tcp_behaviours(mode: str, close_after: int, sent: bytes, got: bytes, logged: str) -> None:
    with TcpServer(LO, handler=tcp_behaviour(mode, close_after)) as srv:
        c = _client(srv.port)
        if sent:
            c.sendall(sent)
        if mode == "echo":
            assert recv_all(c, len(sent)) == got
            c.shutdown(socket.SHUT_WR)
        else:
            assert recv_until_eof(c) == got
        wait_until(lambda: any(logged in x for x in srv.log), 5, f"{logged!r} in the log")
        c.close()
    assert any("tcp accept" in x for x in srv.log)


def test_rst_behaviour_and_script() -> None:
    with TcpServer(LO, handler=tcp_behaviour("rst")) as srv:
        c = _client(srv.port)
        with pytest.raises(ConnectionResetError):
            wait_until(lambda: c.recv(10) and False, 5, "an RST")
        c.close()
    script = [{"at": 0, "send": "hello"}, {"at": 0.2, "close": "fin"}]
    with TcpServer(LO, handler=tcp_behaviour(script=script)) as srv:
        c = _client(srv.port)
        c.sendall(b"x")
        assert recv_until_eof(c) == b"hello"
        c.close()
        assert any("got b'x'" in x for x in srv.log) and any("sent 'hello'" in x for x in srv.log)


def test_udp_peer_records() -> None:
    u = UdpPeer(LO, record=True)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"ping", (LO, u.port))
        wait_until(lambda: u.log, 5, "the datagram in the log")
        assert u.log[0].split(" ", 1)[1] == f"udp from {LO}:{s.getsockname()[1]} 4 bytes b'ping'"
        s.close()
    finally:
        u.close()


def test_host_peer_tracks_and_confines() -> None:
    hp = HostPeer(LO, ip_network("127.0.0.0/8"), "lo")
    srv = hp.server()
    plain = hp.tcp_server()
    c = hp.tcp_connect(LO, plain.getsockname()[1])
    udp = hp.udp_peer()
    with pytest.raises(ConfigError, match="192.0.2.1 is not in lab lo's subnet 127.0.0.0/8") as ei:
        hp.tcp_connect("192.0.2.1", 9)
    assert isinstance(ei.value, LabError)
    hp.close()
    assert srv.sock.fileno() == -1 and plain.fileno() == -1 and c.fileno() == -1 and udp.sock.fileno() == -1
