"""A host-side MQTT 3.1.1 subscriber on the lab LAN (a scenario's ``mqtt_subscriber`` peer).

It connects from the host's address on the lab bridge to the lab's broker (plain MQTT on 1883,
so its side of the traffic is readable in the pcap), with a persistent session (clean session
0, a fixed client id) and QoS 1 subscriptions. It records every PUBLISH it gets (time, topic,
payload, QoS, DUP) and then PUBACKs it, so an unrecorded message is never acknowledged. When
the connection drops (a broker restart), it connects again every ``retry`` seconds and
subscribes again.

What it records is everything the broker accepted only if the broker keeps the session while
the subscriber is away: with ``x-mplab.mqtt_persistence: true`` Mosquitto writes sessions and
queued QoS 1 messages to disk when it stops and reads them when it starts, so a message that a
device publishes before the subscriber is back is queued for it, not dropped. Without
persistence, a restarted broker has forgotten the subscription, and a device that reconnects
first publishes into the void: see docs/field-bugs.md, "mqtt_subscriber".
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import LabError, LabTimeout
from .peers import connect_from, stamp

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 0x10, 0x20, 0x30, 0x40, 0x82, 0x90
PINGREQ, PINGRESP = 0xC0, 0xD0


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first: int, body: bytes) -> bytes:
    """An MQTT control packet: the first byte, the remaining length (varint), the body."""
    n, rl = len(body), bytearray()
    while True:
        d, n = n & 0x7F, n >> 7
        rl.append(d | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(rl) + body


@dataclass
class Received:
    """One PUBLISH the subscriber got."""

    t: float  # wall clock (the pcap's time base)
    topic: str
    payload: bytes
    qos: int
    dup: bool


@dataclass
class Counter:
    """What a topic's integer payloads say: the highest value, the missing ones below it."""

    received: int  # messages, duplicates included
    duplicates: int  # messages whose value came before
    highest: int
    missing: list[int] = field(default_factory=list)
    not_integers: int = 0

    def describe(self, at_least: int = 1) -> str:
        gap = ", ".join(map(str, self.missing[:20])) + (" ..." if len(self.missing) > 20 else "")
        return (
            f"{self.received} message(s), {self.duplicates} duplicate(s), values 1..{self.highest}: "
            + (f"{len(self.missing)} missing ({gap})" if self.missing else "none missing")
            + (f"; {self.not_integers} payload(s) not an integer" if self.not_integers else "")
            + (f"; fewer than {at_least} values" if self.highest < at_least else "")
        )


def counter(payloads: list[bytes]) -> Counter:
    """Every value 1..highest among ``payloads`` (decimal integers), at least once?"""
    seen: set[int] = set()
    dup = bad = 0
    for p in payloads:
        try:
            v = int(p.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            bad += 1
            continue
        dup += v in seen
        seen.add(v)
    hi = max(seen, default=0)
    return Counter(len(payloads), dup, hi, [v for v in range(1, hi + 1) if v not in seen], bad)


class MqttSubscriber:
    """Subscribes to ``topics`` on ``broker``:``port`` from ``src_ip``; records what comes."""

    def __init__(
        self,
        src_ip: str,
        broker: str,
        topics: list[str],
        port: int = 1883,
        client_id: str = "mplab-subscriber",
        keepalive: int = 30,
        retry: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        if not topics:
            raise LabError("mqtt subscriber: no topics; fix: name at least one topic filter")
        self.src_ip, self.broker, self.port = src_ip, broker, port
        self.topics = list(topics)
        self.client_id, self.keepalive, self.retry, self.timeout = client_id, keepalive, retry, timeout
        self.messages: list[Received] = []
        self.log: list[str] = []
        self.connects = 0  # sessions that got their SUBACK
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.error = ""  # the last failure, for a start() that times out

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> MqttSubscriber:
        """Start the thread; return once the first subscription is acknowledged."""
        self._thread = threading.Thread(target=self._loop, name=f"mqtt-sub-{self.client_id}", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise LabTimeout(
                f"mqtt subscriber {self.client_id}: not subscribed on {self.broker}:{self.port} within "
                f"{timeout:g}s ({self.error or 'no answer'}); fix: check that the lab runs its mqtt service"
            )
        return self

    def stop(self) -> None:
        self._stop.set()
        s = self._sock
        if s is not None:
            with contextlib.suppress(OSError):
                s.close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def note(self, msg: str) -> None:
        self.log.append(stamp(msg))

    # ---- what it got -----------------------------------------------------------------
    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait(self, pred: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` s until ``pred(messages)``; False if it never held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.received()):
                return True
            time.sleep(0.1)
        return pred(self.received())

    # ---- the protocol ----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except (OSError, LabError) as e:
                if self._stop.is_set():
                    return
                if str(e) != self.error:
                    self.note(f"{self.broker}:{self.port}: {e}; reconnecting every {self.retry:g}s")
                self.error = str(e)
            finally:
                s, self._sock = self._sock, None
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            self._stop.wait(self.retry)

    def _session(self) -> None:
        s = connect_from(self.src_ip, (self.broker, self.port), self.timeout)
        self._sock = s
        body = _str("MQTT") + bytes([4, 0x00]) + self.keepalive.to_bytes(2, "big") + _str(self.client_id)
        s.sendall(packet(CONNECT, body))
        typ, data = self._read(s)
        if typ != CONNACK or len(data) != 2 or data[1] != 0:
            raise LabError(f"CONNACK refused: {data.hex()}")
        present = data[0] & 1
        subs = b"".join(_str(t) + b"\x01" for t in self.topics)
        s.sendall(packet(SUBSCRIBE, (1).to_bytes(2, "big") + subs))
        while True:  # the broker may deliver queued messages before the SUBACK
            typ, data = self._read(s)
            if typ == SUBACK:
                break
            self._handle(s, typ, data)
        if any(q == 0x80 for q in data[2:]):
            raise LabError(f"SUBSCRIBE refused: {data.hex()}")
        self.connects += 1
        self.note(f"subscribed to {', '.join(self.topics)} (session present {present}, connection {self.connects})")
        self.error = ""
        self._subscribed.set()
        last_tx = time.monotonic()
        s.settimeout(1.0)
        while not self._stop.is_set():
            if time.monotonic() - last_tx > self.keepalive / 2:
                s.sendall(packet(PINGREQ, b""))
                last_tx = time.monotonic()
            try:
                typ, data = self._read(s, first_timeout=True)
            except TimeoutError:
                continue
            if self._handle(s, typ, data):
                last_tx = time.monotonic()

    def _handle(self, s: socket.socket, typ: int, data: bytes) -> bool:
        """Record a PUBLISH and PUBACK it (True if it sent something)."""
        if typ & 0xF0 != PUBLISH:
            return False
        qos, dup = (typ >> 1) & 3, bool(typ & 0x08)
        n = int.from_bytes(data[:2], "big")
        topic = data[2 : 2 + n].decode("utf-8", "replace")
        pid = data[2 + n : 4 + n] if qos else b""
        with self._lock:
            self.messages.append(Received(time.time(), topic, bytes(data[2 + n + len(pid) :]), qos, dup))
        if qos == 1:
            s.sendall(packet(PUBACK, pid))
            return True
        return False

    def _read(self, s: socket.socket, first_timeout: bool = False) -> tuple[int, bytes]:
        """One packet: (first byte, body). A timeout before its first byte is TimeoutError
        with ``first_timeout`` (an idle connection); anywhere else, the connection's end."""
        try:
            first = self._recv(s, 1)[0]
        except TimeoutError:
            if first_timeout:
                raise
            raise OSError(f"no answer within {s.gettimeout():g}s") from None
        s.settimeout(self.timeout)
        n = shift = 0
        while True:
            d = self._recv(s, 1)[0]
            n |= (d & 0x7F) << shift
            shift += 7
            if not d & 0x80:
                break
        body = self._recv(s, n) if n else b""
        if first_timeout:
            s.settimeout(1.0)
        return (first if first & 0xF0 == PUBLISH else first & 0xF0), body

    @staticmethod
    def _recv(s: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            d = s.recv(n - len(buf))
            if not d:
                raise OSError("connection closed by the broker")
            buf += d
        return bytes(buf)
