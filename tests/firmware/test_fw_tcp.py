"""TCP both ways, 100 KB of pseudo-random data each way, checked by length and sha256."""

from __future__ import annotations

import random
import socket

from fw_peer import background, sha256
from scapy.all import IP, TCP

from lab.netns import HOST_IP, Guest
from lab.peers import recv_until_eof

SIZE = 100 * 1024

# Sends SIZE bytes of seeded pseudo-random data, returns (bytes sent, sha256 hex of them).
GUEST_CLIENT = """
import random, hashlib, binascii
def _send_random(addr, size, seed):
    random.seed(seed)
    h = hashlib.sha256()
    s = socket.socket()
    s.connect(addr)
    sent = 0
    while sent < size:
        chunk = bytes(random.getrandbits(8) for _ in range(min(1460, size - sent)))
        s.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
    s.close()
    return sent, binascii.hexlify(h.digest()).decode()
"""

# Accepts one connection, reads to EOF, returns (peer address, bytes read, sha256 hex).
GUEST_SERVER = """
import hashlib, binascii
def _listen(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('0.0.0.0', port))
    srv.listen(1)
    return srv
def _drain(srv):
    conn, addr = srv.accept()
    conn.settimeout(30)
    h = hashlib.sha256()
    n = 0
    buf = bytearray(2048)
    while True:
        k = conn.readinto(buf)
        if not k:
            break
        h.update(buf[:k])
        n += k
    conn.close()
    srv.close()
    return addr, n, binascii.hexlify(h.digest()).decode()
"""


def test_guest_to_host(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    c.exec(GUEST_CLIENT)
    srv = guest.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((HOST_IP, 0))
    srv.listen(1)
    srv.settimeout(15)
    port = srv.getsockname()[1]

    def serve() -> tuple[tuple[str, int], bytes]:
        conn, addr = srv.accept()
        with conn:
            return addr, recv_until_eof(conn, timeout=30.0)

    received = background(serve)
    try:
        sent, digest = c.eval(f"_send_random(({HOST_IP!r}, {port}), {SIZE}, 1234)", timeout=60)
        addr, data = received.result(timeout=30)
    finally:
        srv.close()
    assert sent == SIZE
    assert addr[0] == guest.ip
    assert len(data) == SIZE
    assert sha256(data) == digest, "host received other bytes than the guest sent"
    assert len(set(data)) > 200, "data is not pseudo-random"
    syn, _, _ = guest.wire.tcp_handshake(guest.ip, HOST_IP, port)
    assert syn[TCP].sport == addr[1]
    assert guest.wire.tcp_payload_bytes(syn, guest.ip, expect=SIZE) == SIZE


def test_host_to_guest(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    port = 8765
    c.exec(GUEST_SERVER + f"srv = _listen({port})\n")
    data = random.Random(99).randbytes(SIZE)

    def send() -> tuple[str, int]:
        s = guest.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.settimeout(30)
            s.connect((guest.ip, port))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            recv_until_eof(s, timeout=30.0)  # the guest's close
            return s.getsockname()

    sender = background(send)
    addr, n, digest = c.eval("_drain(srv)", timeout=60)
    local = sender.result(timeout=30)
    assert tuple(addr) == tuple(local), "accept() should return the host's address"
    assert n == SIZE
    assert digest == sha256(data), "guest received other bytes than the host sent"
    syn, synack, _ = guest.wire.tcp_handshake(HOST_IP, guest.ip, port)
    assert synack[IP].src == guest.ip
    assert guest.wire.tcp_payload_bytes(syn, HOST_IP, expect=SIZE) == SIZE
