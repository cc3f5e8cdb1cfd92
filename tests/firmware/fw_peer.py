"""Host-side peers for the firmware tests; every socket here lives in the guest's namespace."""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from fw_netns import Netns
from scapy.all import ARP, Ether

T = TypeVar("T")
ETH_P_ARP = 0x0806


def background(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on its own thread (while the main thread drives the guest's REPL)."""
    pool = ThreadPoolExecutor(max_workers=1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def icmp_echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, icmp_checksum(head + payload), ident, seq) + payload


def ping(ns: Netns, dst: str, ident: int, count: int = 3, timeout: float = 3.0) -> list[tuple[int, bytes]]:
    """ICMP echo from a raw socket in ``ns``: the (seq, payload) of each reply from ``dst``."""
    s = ns.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    replies: list[tuple[int, bytes]] = []
    try:
        for seq in range(1, count + 1):
            payload = f"mplab-ping-{ident:04x}-{seq}".encode()
            s.sendto(icmp_echo_request(ident, seq, payload), (dst, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    pkt, (src, _) = s.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (pkt[0] & 0x0F) * 4
                typ, _code, _ck, rid, rseq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
                if src == dst and typ == 0 and rid == ident and rseq == seq:
                    replies.append((rseq, pkt[ihl + 8 :]))
                    break
    finally:
        s.close()
    return replies


def arp_probe(ns: Netns, ifname: str, src_ip: str, target_ip: str, timeout: float = 3.0) -> ARP | None:
    """Broadcast 'who-has target_ip' from ``ifname`` (an AF_PACKET socket in ``ns``); the ARP
    reply for it, or None."""
    s = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        s.bind((ifname, ETH_P_ARP))
        src_mac = ":".join(f"{b:02x}" for b in s.getsockname()[4][:6])
        s.send(
            bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=src_mac) / ARP(op=1, hwsrc=src_mac, psrc=src_ip, pdst=target_ip))
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame = Ether(s.recv(2048))
            except TimeoutError:
                return None
            if ARP in frame and frame[ARP].op == 2 and frame[ARP].psrc == target_ip:
                return frame[ARP]
    finally:
        s.close()
    return None


def recv_all(conn: socket.socket, timeout: float = 30.0) -> bytes:
    """Read until EOF (or fail on a stall of ``timeout``)."""
    conn.settimeout(timeout)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
