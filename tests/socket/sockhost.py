"""Host-side peers for the socket suite: the library's, from lab.peers (kept as a module so
``import sockhost`` in these tests and in scripts/differential.py keeps working)."""

from lab.peers import (
    HostPeer,
    TcpServer,
    UdpPeer,
    recv_all,
    recv_until_eof,
    rst_close,
    server,
    silent_tcp_peer,
)

Server = TcpServer

__all__ = [
    "HostPeer",
    "Server",
    "TcpServer",
    "UdpPeer",
    "recv_all",
    "recv_until_eof",
    "rst_close",
    "server",
    "silent_tcp_peer",
]
