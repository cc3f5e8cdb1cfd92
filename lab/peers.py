"""Host-side peers: plain sockets on the host's address on the lab LAN, for the guests to
talk to. One set for the pytest plugin's ``host_peer`` fixture, the scenario runner's
``peers:`` and the socket suite (docs/api.md, "Scenarios and peers").

* :class:`HostPeer` -- the sockets of one test (or one scenario), all closed by ``close()``:
  ``tcp_server()`` / ``udp()`` / ``tcp_connect()`` give plain sockets, ``server()`` a
  :class:`TcpServer`, ``udp_peer()`` a :class:`UdpPeer`.
* :class:`TcpServer` -- a listener that accepts in a thread; it keeps every connection, and
  with a ``handler`` (:func:`tcp_behaviour`: echo, sink, close, rst or a script) serves each
  one in a thread of its own. ``log`` records what it saw, one timestamped line each.
* :class:`UdpPeer` -- a bound UDP socket; with ``record=True`` a thread logs each datagram.
* :func:`silent_tcp_peer` -- a lab address:port where SYNs go unanswered.
* :func:`http_request` -- one HTTP(S) request from the host's address to a guest's server
  (TLS verified against a CA file, for the name given): an :class:`HttpReply`.
* :func:`rst_close`, :func:`recv_all`, :func:`recv_until_eof` -- small socket helpers.

Only lab addresses are ever used: the host's address on the lab bridge and the guests'.
Scapy-level peers (a misbehaving TCP stack, a DNS responder) are lab.tcp_peer and lab.inject.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError
from .util import wait_until

POLL = 0.1  # s: how often the peers' threads look at their stop flag


class _LabLike(Protocol):
    name: str

    @property
    def host_ip(self) -> str: ...

    @property
    def subnet(self) -> IPv4Network: ...


def stamp(msg: str) -> str:
    """A peer log line: ``<unix time> <msg>`` (the pcap's time base)."""
    return f"{time.time():.6f} {msg}"


# ---- socket helpers --------------------------------------------------------------------
def rst_close(s: socket.socket) -> None:
    """Close with SO_LINGER {on, 0}: Linux sends RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def close(s: socket.socket, how: str = "fin") -> None:
    """Close ``s`` with a FIN (``how="fin"``) or an RST (``how="rst"``)."""
    if how == "rst":
        rst_close(s)
    else:
        s.close()


def recv_all(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    """Up to ``n`` bytes: fewer only if the peer closes first."""
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


def connect_from(src_ip: str, dst: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    """A TCP client bound on ``src_ip`` (the host's LAN address), connected to ``dst``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src_ip, 0))
        s.connect(dst)
    except OSError:
        s.close()
        raise
    return s


# ---- HTTP client ----------------------------------------------------------------------
@dataclass
class HttpReply:
    """What a server answered: status line, headers and body."""

    version: str  # "HTTP/1.1"
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def text(self) -> str:
        """The reply as text: status line, headers, a blank line, the body (UTF-8, replaced)."""
        head = [f"{self.version} {self.status} {self.reason}", *(f"{k}: {v}" for k, v in self.headers)]
        return "\n".join(head) + "\n\n" + self.body.decode("utf-8", "replace")


def http_request(
    src_ip: str,
    dst: tuple[str, int],
    method: str = "GET",
    path: str = "/",
    host: str | None = None,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    cafile: Path | str | None = None,
    server_hostname: str | None = None,
    timeout: float = 10.0,
) -> HttpReply:
    """One request from ``src_ip`` (the host's LAN address) to ``dst``; ``Connection: close``.

    With ``cafile`` it is HTTPS: the server's certificate must chain to that CA and carry
    ``server_hostname`` (default ``host``), as a verifying client would require (CPython's
    ``ssl.SSLCertVerificationError`` otherwise). Socket and TLS errors propagate as they are.
    """
    s = connect_from(src_ip, dst, timeout)
    try:
        if cafile is not None:
            ctx = ssl.create_default_context(cafile=str(cafile))
            s = ctx.wrap_socket(s, server_hostname=server_hostname or host or dst[0])
        hdrs = {"Host": host or dst[0], "Connection": "close", **(headers or {})}
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = str(len(body))
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        s.sendall(req.encode("latin-1") + body)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        data = r.read()
        return HttpReply(f"HTTP/{r.version / 10:.1f}", r.status, r.reason, list(r.getheaders()), data)
    finally:
        s.close()


# ---- TCP server ------------------------------------------------------------------------
Handler = Callable[[socket.socket, tuple[str, int], "TcpServer"], None]


def family(ip: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address (it has a colon), else AF_INET."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class TcpServer:
    """A TCP listener on the host that accepts in a thread and keeps the connections.

    With ``handler``, each accepted connection is also served by ``handler(conn, addr,
    server)`` in a thread of its own (see :func:`tcp_behaviour`); ``server.stopping`` tells
    it to finish and ``server.note(msg)`` adds to ``server.log``. ``ip`` may be IPv6 (the
    host's lab address ``gateway6``); ``conn()`` then gives the peer as CPython's 4-tuple.
    """

    def __init__(
        self,
        ip: str,
        port: int = 0,
        backlog: int = 8,
        rcvbuf: int | None = None,
        handler: Handler | None = None,
    ) -> None:
        self.sock = socket.socket(family(ip), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.sock.bind((ip, port))
            self.sock.listen(backlog)
        except OSError:
            self.sock.close()
            raise
        self.ip = ip
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[tuple[socket.socket, tuple[str, int]]] = []
        self.log: list[str] = []
        self.handler = handler
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True)]
        self._threads[0].start()

    def note(self, msg: str) -> None:
        self.log.append(stamp(msg))

    def _loop(self) -> None:
        self.sock.settimeout(POLL)
        while not self.stopping.is_set():
            try:
                c, a = self.sock.accept()
            except OSError:  # the poll timeout, or an aborted connection
                continue
            self.conns.append((c, a))
            if self.handler is not None:
                self.note(f"tcp accept {a[0]}:{a[1]}")
                t = threading.Thread(target=self._serve, args=(c, a), daemon=True)
                self._threads.append(t)
                t.start()

    def _serve(self, c: socket.socket, a: tuple[str, int]) -> None:
        assert self.handler is not None
        try:
            self.handler(c, a, self)
        except OSError as e:
            self.note(f"tcp {a[0]}:{a[1]} {e}")

    def conn(self, timeout: float = 5.0) -> tuple[socket.socket, tuple[str, int]]:
        """The first connection, waiting up to ``timeout`` s for it."""
        wait_until(lambda: self.conns, timeout, f"a connection to {self.ip}:{self.port}", interval=0.01)
        return self.conns[0]

    def close(self) -> None:
        self.stopping.set()
        for t in self._threads:
            t.join(1.0)
        for c, _ in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.sock.close()

    def __enter__(self) -> TcpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def server(ip: str, port: int, **kw: Any) -> Iterator[TcpServer]:
    """``with server(ip, port) as srv: ... srv.conn()``: a :class:`TcpServer`, closed after."""
    with TcpServer(ip, port, **kw) as s:
        yield s


def tcp_behaviour(mode: str = "echo", close_after: int = 0, script: list[dict[str, Any]] | None = None) -> Handler:
    """A :class:`TcpServer` handler that serves each connection one way.

    ``mode``: ``echo`` (send back), ``sink`` (read and drop), ``close`` / ``rst`` (close with
    FIN / RST at once, or after ``close_after`` bytes). ``script``: ``[{at: s after accept,
    send: text} | {at, close: fin|rst}]``, reading whatever comes meanwhile.
    """

    def serve(c: socket.socket, addr: tuple[str, int], srv: TcpServer) -> None:
        who = f"tcp {addr[0]}:{addr[1]}"
        c.settimeout(POLL)
        if script:
            _run_script(c, who, script, srv)
            return
        if mode in ("close", "rst") and not close_after:
            close(c, mode)
            srv.note(f"{who} {mode} at once")
            return
        total = 0
        while not srv.stopping.is_set():
            try:
                data = c.recv(65536)
            except TimeoutError:
                continue
            if not data:
                srv.note(f"{who} peer closed after {total} bytes")
                c.close()
                return
            total += len(data)
            if mode == "echo":
                c.sendall(data)
            if close_after and total >= close_after:
                close(c, "rst" if mode == "rst" else "fin")
                srv.note(f"{who} {mode} after {total} bytes")
                return

    return serve


def _run_script(c: socket.socket, who: str, script: list[dict[str, Any]], srv: TcpServer) -> None:
    t0 = time.monotonic()
    for item in script:
        while time.monotonic() - t0 < float(item.get("at", 0)):
            if srv.stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                data = c.recv(65536)
                if data:
                    srv.note(f"{who} got {data[:60]!r}")
        if "send" in item:
            c.sendall(str(item["send"]).encode())
            srv.note(f"{who} sent {item['send']!r}")
        if "close" in item:
            close(c, str(item["close"]))
            srv.note(f"{who} {item['close']}")
            return


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


# ---- UDP -------------------------------------------------------------------------------
class UdpPeer:
    """A UDP socket bound on (ip, port); with ``record``, a thread logs every datagram."""

    def __init__(self, ip: str, port: int = 0, timeout: float = 10.0, record: bool = False) -> None:
        self.sock = socket.socket(family(ip), socket.SOCK_DGRAM)
        try:
            self.sock.bind((ip, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(POLL if record else timeout)
        self.ip = ip
        self.port: int = self.sock.getsockname()[1]
        self.log: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if record:
            self._thread = threading.Thread(target=self._record, daemon=True)
            self._thread.start()

    def _record(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.log.append(stamp(f"udp from {addr[0]}:{addr[1]} {len(data)} bytes {data[:60]!r}"))

    def sendto(self, data: bytes, dst: tuple[str, int]) -> int:
        return self.sock.sendto(data, dst)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._thread is not None:
            self._thread.join(1.0)


# ---- one test's (or one scenario's) peers ------------------------------------------------
class HostPeer:
    """Sockets on the host's LAN address (the lab bridge's gateway), closed by ``close()``.

    ``HostPeer.for_lab(lab)``, or ``HostPeer(ip, subnet)`` with the host's address and the
    lab's subnet (connections go to lab addresses only).
    """

    def __init__(self, ip: str, subnet: IPv4Network | None = None, lab_name: str = "") -> None:
        self.ip = ip
        self.subnet = subnet
        self.lab_name = lab_name
        self._owned: list[Any] = []  # sockets, TcpServers, UdpPeers: anything with close()

    @classmethod
    def for_lab(cls, lab: _LabLike) -> HostPeer:
        return cls(lab.host_ip, lab.subnet, lab.name)

    def _track(self, x: Any) -> Any:
        self._owned.append(x)
        return x

    def in_lab(self, ip: str) -> bool:
        return self.subnet is None or ipaddress.ip_address(ip) in self.subnet

    def tcp_server(self, port: int = 0, backlog: int = 4, timeout: float = 10.0) -> socket.socket:
        """A listening TCP socket on (host_ip, port); ``.getsockname()[1]`` gives the port."""
        s = self._track(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        s.bind((self.ip, port))
        s.listen(backlog)
        return s

    def udp(self, port: int = 0, timeout: float = 10.0) -> socket.socket:
        """A UDP socket bound on (host_ip, port)."""
        s = self._track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.settimeout(timeout)
        s.bind((self.ip, port))
        return s

    def tcp_connect(self, ip: str, port: int, timeout: float = 10.0) -> socket.socket:
        """A TCP client from the host's LAN address to a lab address."""
        if not self.in_lab(ip):
            raise ConfigError(f"{ip} is not in lab {self.lab_name}'s subnet {self.subnet}")
        return self._track(connect_from(self.ip, (ip, port), timeout))

    def server(self, port: int = 0, **kw: Any) -> TcpServer:
        """A :class:`TcpServer` on (host_ip, port)."""
        return self._track(TcpServer(self.ip, port, **kw))

    def udp_peer(self, port: int = 0, **kw: Any) -> UdpPeer:
        """A :class:`UdpPeer` on (host_ip, port)."""
        return self._track(UdpPeer(self.ip, port, **kw))

    def close(self) -> None:
        for x in reversed(self._owned):
            with contextlib.suppress(OSError):
                x.close()
        self._owned.clear()
