"""A scapy-driven TCP peer on the host's LAN address, for tests that need a misbehaving end.

::

    with TcpPeer(lab) as peer:                       # port: peer.port (random if 0)
        node.exec(f"s = socket.socket(); s.connect(({lab.host_ip!r}, {peer.port}))")
        conn = peer.accept(timeout=5)
        conn.send(b"hello")                          # in order; conn.recv(timeout) reads
        conn.send_out_of_order(b"abcdef", parts=3)   # segments sent last-first
        conn.zero_window(); conn.open_window()       # advertise rcv window 0, then again
        conn.stall(); conn.resume()                  # stop / restart ACKing and answering
        conn.fin()                                   # early FIN (before the guest is done)
        conn.rst()

``peer.connect(guest_ip, port)`` opens a connection to a guest instead. While the peer runs,
an nft rule in the lab's ``inet mplab_<lab>`` table drops the host kernel's own RSTs from
(host_ip, port) — the kernel has no socket there and would reset the guest; ``stop()`` and
``mplab down`` remove it. Frames go out with ``sendp`` on the lab bridge.
"""

from __future__ import annotations

import random
import socket
import threading
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer

from .capture import send_on, start_sniffer, stop_sniffer
from .errors import CaptureError, ConfigError, LabError
from .hostnet import bridge_mac, nft_add, nft_delete
from .topology import LanView
from .util import poll_until

M32 = 0xFFFFFFFF


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class TcpConn:
    """One connection of a ``TcpPeer``. Received in-order data accumulates in ``data``."""

    def __init__(self, peer: TcpPeer, remote_ip: str, remote_port: int, remote_mac: str, iss: int) -> None:
        self.peer = peer
        self.remote_ip, self.remote_port, self.remote_mac = remote_ip, remote_port, remote_mac
        self.snd_nxt = iss
        self.rcv_nxt = 0
        self.window = peer.window
        self.stalled = False
        self.data = bytearray()
        self._read = 0
        self.remote_fin = False
        self.reset = False
        self.established = threading.Event()
        self.segments: list[Packet] = []  # everything the remote sent
        self.remote_window = 0
        self.remote_ack = iss
        self._cv = threading.Condition()

    def __repr__(self) -> str:
        return f"<TcpConn {self.peer.ip}:{self.peer.port} <-> {self.remote_ip}:{self.remote_port}>"

    # ---- sending ----------------------------------------------------------------------
    def _frame(self, flags: str, seq: int | None = None, payload: bytes = b"", window: int | None = None) -> Packet:
        t = TCP(
            sport=self.peer.port,
            dport=self.remote_port,
            flags=flags,
            seq=self.snd_nxt if seq is None else seq,
            ack=self.rcv_nxt if "A" in flags else 0,
            window=self.window if window is None else window,
        )
        f = Ether(src=self.peer.mac, dst=self.remote_mac) / IP(src=self.peer.ip, dst=self.remote_ip) / t
        return f / payload if payload else f

    def _tx(self, frame: Packet) -> None:
        send_on(self.peer.lab.bridge, frame)

    def ack(self) -> None:
        self._tx(self._frame("A"))

    def send(self, data: bytes, mss: int | None = None) -> None:
        """Send ``data`` in order (segments of ``mss``, default the peer's mss), PSH on the last."""
        mss = mss or self.peer.mss
        for i in range(0, len(data), mss):
            chunk = data[i : i + mss]
            last = i + mss >= len(data)
            self._tx(self._frame("PA" if last else "A", payload=chunk))
            self.snd_nxt = (self.snd_nxt + len(chunk)) & M32

    def send_out_of_order(self, data: bytes, parts: int = 3, order: list[int] | None = None, gap: float = 0.01) -> None:
        """Split ``data`` into ``parts`` segments and send them in ``order`` (default: last first)."""
        n = max(1, -(-len(data) // parts))
        chunks = [data[i : i + n] for i in range(0, len(data), n)]
        base = self.snd_nxt
        offs = [sum(len(c) for c in chunks[:k]) for k in range(len(chunks))]
        for k in order or list(reversed(range(len(chunks)))):
            self._tx(self._frame("PA", seq=(base + offs[k]) & M32, payload=chunks[k]))
            time.sleep(gap)
        self.snd_nxt = (base + len(data)) & M32

    def zero_window(self) -> None:
        """Advertise a zero receive window from now on (and say so at once)."""
        self.window = 0
        self.ack()

    def open_window(self, window: int | None = None) -> None:
        self.window = window or self.peer.window
        self.ack()

    def stall(self) -> None:
        """Go silent: no ACKs, no answers (the data still lands in ``data``)."""
        self.stalled = True

    def resume(self) -> None:
        self.stalled = False
        self.ack()

    def fin(self) -> None:
        self._tx(self._frame("FA"))
        self.snd_nxt = (self.snd_nxt + 1) & M32

    def rst(self) -> None:
        self._tx(self._frame("R", window=0))
        self.reset = True

    # ---- receiving --------------------------------------------------------------------
    def _on(self, p: Packet) -> None:
        t = p[TCP]
        with self._cv:
            self.segments.append(p)
            if t.flags.R:
                self.reset = True
                self._cv.notify_all()
                return
            if t.flags.A:
                self.remote_ack = t.ack
                self.remote_window = t.window
                self.established.set()
            n = max(0, p[IP].len - p[IP].ihl * 4 - t.dataofs * 4)
            payload = bytes(t.payload)[:n]
            fresh = False
            if n and t.seq == self.rcv_nxt:
                room = n if self.window else 0
                self.data += payload[:room]
                self.rcv_nxt = (self.rcv_nxt + room) & M32
                fresh = True
            if t.flags.F and ((t.seq + n) & M32) == self.rcv_nxt:
                self.rcv_nxt = (self.rcv_nxt + 1) & M32
                self.remote_fin = True
                fresh = True
            self._cv.notify_all()
        if (fresh or n) and not self.stalled:
            self.ack()

    def recv(self, timeout: float = 5.0, n: int | None = None) -> bytes:
        """Unread in-order data: wait until there is some (or ``n`` bytes), FIN, RST or timeout."""

        def ready() -> bool:
            have = len(self.data) - self._read
            return bool(have and (n is None or have >= n)) or self.remote_fin or self.reset

        with self._cv:
            self._cv.wait_for(ready, timeout)
            out = bytes(self.data[self._read :])
            self._read = len(self.data)
            return out

    def wait(self, pred: str = "remote_fin", timeout: float = 5.0) -> bool:
        """Wait until ``remote_fin`` / ``reset`` is true."""
        with self._cv:
            return bool(self._cv.wait_for(lambda: getattr(self, pred), timeout))


class TcpPeer:
    """Listen on (host_ip, port) or connect from it, driven by scapy (see the module doc)."""

    def __init__(self, lab: LanView, port: int = 0, window: int = 8192, mss: int = 536, listen: bool = True) -> None:
        self.lab = lab
        self.ip = lab.host_ip
        self.port = port or _free_port(self.ip)
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"invalid port {port}")
        self.window = window
        self.mss = mss
        self.mac = bridge_mac(lab.bridge)
        self.tag = f"mplab-{lab.name}:tcp_peer:{self.port}"
        self.conns: dict[tuple[str, int], TcpConn] = {}
        self._pending: list[TcpConn] = []
        self.listening = listen
        self._lock = threading.Condition()
        self._sniffer: AsyncSniffer | None = None

    def start(self) -> TcpPeer:
        nft_add(
            self.lab.name,
            "inet",
            "out",
            f"ip saddr {self.ip} tcp sport {self.port} tcp flags & rst == rst drop",
            self.tag,
        )
        self._sniffer = start_sniffer(self.lab.bridge, self._on, f"tcp and dst host {self.ip} and dst port {self.port}")
        if self._sniffer is None:
            self.stop()
            raise CaptureError(f"tcp peer: sniffer on {self.lab.bridge} did not start")
        return self

    def stop(self) -> None:
        stop_sniffer(self._sniffer)
        self._sniffer = None
        nft_delete(self.lab.name, "inet", self.tag)

    def abandon(self) -> None:
        """Stop sniffing but leave the host's RST-drop rule, as a killed process would
        (for tests that ``mplab down`` removes it)."""
        stop_sniffer(self._sniffer)
        self._sniffer = None

    def __enter__(self) -> TcpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on(self, p: Packet) -> None:
        if not (p.haslayer(TCP) and p.haslayer(IP)) or p[IP].src == self.ip:
            return
        key = (p[IP].src, p[TCP].sport)
        c = self.conns.get(key)
        if c is not None:
            if p[TCP].flags.S and p[TCP].flags.A and not c.established.is_set():  # our connect()
                c.rcv_nxt = (p[TCP].seq + 1) & M32
                c.remote_window = p[TCP].window
                c.ack()
                c.established.set()
                return
            if p[TCP].flags.S and not p[TCP].flags.A:  # retransmitted SYN: repeat the SYN-ACK
                c._tx(c._frame("SA", seq=(c.snd_nxt - 1) & M32))
                return
            c._on(p)
            return
        if p[TCP].flags.S and not p[TCP].flags.A and self.listening:
            self._answer_syn(p)

    def _answer_syn(self, syn: Packet) -> None:
        """SYN from a guest: SYN-ACK at once (window = ``window``); accept() returns it once ACKed."""
        iss = random.getrandbits(32)
        c = TcpConn(self, syn[IP].src, syn[TCP].sport, syn[Ether].src, iss)
        c.rcv_nxt = (syn[TCP].seq + 1) & M32
        c.snd_nxt = (iss + 1) & M32
        self.conns[(c.remote_ip, c.remote_port)] = c
        c._tx(c._frame("SA", seq=iss))
        with self._lock:
            self._pending.append(c)
            self._lock.notify_all()

    def accept(self, timeout: float = 10.0) -> TcpConn:
        """The next connection a guest opened to (host_ip, port), once its handshake completed."""

        def established() -> TcpConn | None:
            with self._lock:
                for c in self._pending:
                    if c.established.is_set():
                        self._pending.remove(c)
                        return c
            return None

        c = poll_until(established, timeout, 0.05)
        if c is None:
            raise LabError(f"tcp peer {self.ip}:{self.port}: no connection within {timeout:g}s")
        return c

    def connect(self, ip: str, port: int, timeout: float = 10.0) -> TcpConn:
        """Open a connection from (host_ip, self.port) to a guest."""
        macs = {v: k for k, v in self.lab.leases().items()}
        mac = macs.get(ip)
        if mac is None:
            raise ConfigError(f"{ip} is not a guest of lab {self.lab.name} (leases: {', '.join(macs) or 'none'})")
        iss = random.getrandbits(32)
        c = TcpConn(self, ip, port, mac, iss)
        c.snd_nxt = (iss + 1) & M32  # the SYN-ACK's handler ACKs with it
        self.conns[(ip, port)] = c

        def syn() -> bool:  # (re)send the SYN each second until the SYN-ACK is in
            if c.established.is_set():
                return True
            c._tx(c._frame("S", seq=iss))
            return c.established.wait(min(1.0, timeout))

        if not poll_until(syn, timeout, 0.0):
            raise LabError(f"tcp peer: no SYN-ACK from {ip}:{port} within {timeout:g}s")
        return c
