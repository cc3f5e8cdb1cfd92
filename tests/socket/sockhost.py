"""Host-side peers for the socket suite: plain sockets on the host's address on the lab LAN.

Only lab addresses are ever used (the host's gateway address and the guests' addresses).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator


def wait_for(cond: Callable[[], object], timeout: float, what: str, step: float = 0.01) -> object:
    """Poll ``cond`` until it is truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def family(ip: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address (it has a colon), else AF_INET."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class Server:
    """A TCP listener on the host that accepts in a thread and keeps the connections.

    ``ip`` may be IPv6 (the host's lab address ``gateway6``); ``conn()`` then gives the
    peer as CPython's 4-tuple (address, port, flowinfo, scope_id)."""

    def __init__(self, ip: str, port: int, backlog: int = 8, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(family(ip))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((ip, port))
        self.sock.listen(backlog)
        self.conns: list[tuple[socket.socket, tuple[str, int]]] = []
        self._stop = False
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                c, a = self.sock.accept()
            except OSError:
                continue
            self.conns.append((c, a))

    def conn(self, timeout: float = 5.0) -> tuple[socket.socket, tuple[str, int]]:
        wait_for(lambda: self.conns, timeout, "a connection from the guest")
        return self.conns[0]

    def close(self) -> None:
        self._stop = True
        self._t.join(1.0)
        for c, _ in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.sock.close()


@contextlib.contextmanager
def server(ip: str, port: int, **kw: object) -> Iterator[Server]:
    s = Server(ip, port, **kw)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def silent_tcp_peer(ip: str, port: int) -> Iterator[None]:
    """A lab address:port that drops SYNs: a Linux listener whose accept queue is full.

    Linux drops (does not reset) a SYN to a listener with a full accept queue, so the
    guest's SYN and its retransmissions show on the wire and nothing answers them. The
    fillers connect from the host to its own LAN address (loopback path, not on the wire).
    """
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(0)
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                f.connect((ip, port))
            fillers.append(f)
        time.sleep(0.05)
        yield
    finally:
        for f in fillers:
            f.close()
        ls.close()


def rst_close(s: socket.socket) -> None:
    """Close with SO_LINGER {on, 0}: Linux sends RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def recv_all(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    s.settimeout(timeout)
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            break
        buf += d
    return bytes(buf)


def recv_until_eof(s: socket.socket, timeout: float = 10.0) -> bytes:
    s.settimeout(timeout)
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d
