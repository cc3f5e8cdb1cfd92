# mqttc: a small asyncio MQTT 3.1.1 client for MicroPython (publish only).
#
# What it does, and no more:
# - CONNECT over TCP or TLS (an ssl.SSLContext), CONNACK checked;
# - PUBLISH with QoS 0 or 1; a QoS 1 message stays in `queue` until its PUBACK comes, and
#   after a reconnect every one still there is sent again, with the DUP flag if it had
#   been sent before (MQTT 3.1.1 section 4.4), with its packet id;
# - PINGREQ when nothing came from the broker for keepalive/2 s;
# - a connection is dead when the broker leaves a PUBLISH or a PINGREQ unanswered for
#   `response_time` s (a link that is down gives no error, just silence), or on EOF/error;
# - reconnects with exponential backoff (1 s, 2 s, 4 s, ... up to `max_backoff`).
import asyncio
import socket
import time
from errno import EINPROGRESS

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def _packet(first, body):
    n = len(body)
    rl = bytearray()
    while True:
        d = n & 0x7F
        n >>= 7
        rl.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(rl) + body


class Message:
    def __init__(self, pid, topic, payload):
        self.pid = pid
        self.topic = topic
        self.payload = payload
        self.sent = 0  # times sent
        self.t_sent = 0  # ticks_ms of the last send


class MQTTClient:
    def __init__(
        self,
        client_id,
        server,
        port=8883,
        ssl=None,
        server_hostname=None,
        keepalive=10,
        response_time=4,
        conn_timeout=10,
        clean_session=False,
        keep_unacked=True,
        max_backoff=8,
        max_queue=300,
        log=print,
    ):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.ssl = ssl
        self.server_hostname = server_hostname or server
        self.keepalive = keepalive
        self.response_time = response_time
        self.conn_timeout = conn_timeout
        self.clean_session = clean_session
        # False: forget unacknowledged messages at a reconnect, and drop what is published
        # while offline (what a naive client does: the example's "lose messages" switch)
        self.keep_unacked = keep_unacked
        self.max_backoff = max_backoff
        self.max_queue = max_queue
        self.log = log
        self.queue = []  # QoS 1 messages not yet acknowledged, oldest first
        self.connected = False
        self.connects = 0
        self._pid = 0
        self._sock = None
        self._stream = None
        self._ai = None  # the broker's getaddrinfo entry
        self._fails = 0  # connects in a row that failed
        self._lock = asyncio.Lock()
        self._dead = asyncio.Event()
        self._t_rx = 0  # ticks_ms of the last packet from the broker
        self._t_ping = None  # ticks_ms of an unanswered PINGREQ

    # ---- the public API ------------------------------------------------------------------
    async def publish(self, topic, payload, qos=1):
        """Queue (QoS 1) and send now if connected. Returns the packet id (0 for QoS 0)."""
        if qos == 0:
            if self.connected:
                await self._send_publish(Message(0, topic, payload), qos=0)
            return 0
        if not self.connected and not self.keep_unacked:
            self.log(f"offline: dropped {payload!r}")
            return 0
        self._pid = self._pid % 65535 + 1
        m = Message(self._pid, topic, payload)
        self.queue.append(m)
        if len(self.queue) > self.max_queue:
            old = self.queue.pop(0)
            self.log(f"queue full: dropped pid {old.pid}")
        if self.connected:
            await self._send_publish(m)
        return m.pid

    async def run(self):
        """Stay connected, forever: connect, resend, watch the connection, back off, again."""
        backoff = 1
        while True:
            try:
                await self._connect()
            except Exception as e:  # refused, unreachable, timed out, bad certificate, ...
                self._close()
                self.log(f"connect failed: {e!r}; retry in {backoff} s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 1
            reader = asyncio.create_task(self._reader())  # cancelled below
            try:
                await self._resend()
                await self._watch()
            except Exception as e:
                self.log(f"connection lost: {e!r}")
            reader.cancel()
            self._close()
            if not self.keep_unacked and self.queue:
                self.log(f"forgetting {len(self.queue)} unacknowledged message(s)")
                self.queue = []
            await asyncio.sleep(backoff)

    # ---- connection ----------------------------------------------------------------------
    async def _connect(self):
        self._dead = asyncio.Event()
        # Resolved once and kept: a lookup blocks the whole loop, and while the link is down it
        # takes the resolver's full timeout. Three failed connects in a row look it up again.
        if self._ai is None or self._fails >= 3:
            self._ai = None
            self._ai = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0]
            self._fails = 0
        ai = self._ai
        self._fails += 1
        s = socket.socket(ai[0], ai[1], ai[2])
        self._sock = s
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.args[0] != EINPROGRESS:
                raise
        if self.ssl is not None:
            s = self.ssl.wrap_socket(s, server_hostname=self.server_hostname, do_handshake_on_connect=False)
            s.setblocking(False)
            self._sock = s
        self._stream = asyncio.StreamWriter(s, {})
        flags = 0x02 if self.clean_session else 0x00
        body = _str("MQTT") + bytes([4, flags]) + self.keepalive.to_bytes(2, "big") + _str(self.client_id)
        await asyncio.wait_for(self._write(_packet(CONNECT, body)), self.conn_timeout)
        typ, data = await asyncio.wait_for(self._read_packet(), self.conn_timeout)
        if typ != CONNACK or len(data) != 2 or data[1] != 0:
            raise OSError(f"CONNACK refused: {data!r}")
        self.connected = True
        self._fails = 0
        self.connects += 1
        self._t_rx = time.ticks_ms()
        self._t_ping = None
        present = data[0] & 1
        self.log(f"connected to {self.server}:{self.port} (session present {present})")

    def _close(self):
        self.connected = False
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._stream = None

    async def _resend(self):
        for m in list(self.queue):
            if m in self.queue and self.connected:
                await self._send_publish(m)

    async def _watch(self):
        """Return when the connection is dead: EOF from the reader, or an answer overdue."""
        while not self._dead.is_set():
            await asyncio.sleep_ms(250)
            now = time.ticks_ms()
            limit = self.response_time * 1000
            oldest = [m for m in self.queue if m.sent][:1]
            if oldest and time.ticks_diff(now, oldest[0].t_sent) > limit:
                raise OSError(f"no PUBACK for pid {oldest[0].pid} within {self.response_time} s")
            if self._t_ping is not None and time.ticks_diff(now, self._t_ping) > limit:
                raise OSError(f"no PINGRESP within {self.response_time} s")
            if self._t_ping is None and time.ticks_diff(now, self._t_rx) > self.keepalive * 500:
                self._t_ping = now
                await self._write(_packet(PINGREQ, b""))
        raise OSError("connection closed")

    # ---- packets -------------------------------------------------------------------------
    async def _send_publish(self, m, qos=1):
        first = PUBLISH | (qos << 1) | (0x08 if m.sent and qos else 0)
        body = _str(m.topic) + (m.pid.to_bytes(2, "big") if qos else b"") + m.payload
        m.t_sent = time.ticks_ms()
        try:
            await self._write(_packet(first, body))
            m.sent += 1  # handed to the socket: the next send of it carries DUP
        except Exception as e:  # the connection is gone; the message stays queued
            self.log(f"send pid {m.pid}: {e!r}")
            self._dead.set()

    async def _write(self, data):
        async with self._lock:
            st = self._stream
            if st is None:
                raise OSError("not connected")
            st.write(data)
            await st.drain()

    async def _read_packet(self):
        st = self._stream
        first = (await st.readexactly(1))[0]
        n, shift = 0, 0
        while True:
            d = (await st.readexactly(1))[0]
            n |= (d & 0x7F) << shift
            shift += 7
            if not d & 0x80:
                break
        return first & 0xF0, (await st.readexactly(n) if n else b"")

    async def _reader(self):
        try:
            while True:
                typ, data = await self._read_packet()
                self._t_rx = time.ticks_ms()
                if typ == PUBACK:
                    pid = int.from_bytes(data[:2], "big")
                    self.queue = [m for m in self.queue if m.pid != pid]
                elif typ == PINGRESP:
                    self._t_ping = None
        except Exception as e:  # EOFError (the broker closed), OSError (reset)
            self.log(f"read: {e!r}")
        self._dead.set()
