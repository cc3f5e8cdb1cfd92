"""Host-side TCP peers the differential scenarios use: plain sockets on the host's lab address.

MERGE NOTE: these are tests/socket/sockhost.py's ``server`` and ``silent_tcp_peer``, which
part A of issue 10 moves into lab/peers.py. At the merge this module becomes
``from ..peers import server, silent_tcp_peer`` (one set of host peers).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from ..util import wait_until


class Server:
    """A TCP listener on the host that accepts in a thread and keeps the connections."""

    def __init__(self, ip: str, port: int, backlog: int = 8) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        wait_until(lambda: self.conns, timeout, "a connection from the guest", interval=0.01)
        return self.conns[0]

    def close(self) -> None:
        self._stop = True
        self._t.join(1.0)
        for c, _ in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.sock.close()


@contextlib.contextmanager
def server(ip: str, port: int) -> Iterator[Server]:
    s = Server(ip, port)
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def silent_tcp_peer(ip: str, port: int) -> Iterator[None]:
    """A lab address:port that drops SYNs: a Linux listener whose accept queue is full."""
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
