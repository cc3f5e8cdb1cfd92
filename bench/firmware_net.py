"""Firmware network figures on a private TAP LAN (no Docker): lease time, TCP and UDP rates.

Uses the firmware tests' netns harness (tests/firmware/fw_guest.py): QEMU on a TAP in a fresh
network namespace with dnsmasq; the host-side sockets live in that namespace.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import REPO, Figure, receive_timed

sys.path.insert(0, str(REPO / "tests" / "firmware"))

from fw_guest import HOST_IP, Guest

TCP_BYTES = 4 * 1024 * 1024
CHUNK = 8192


def _lease_times(guest: Guest, repeat: int) -> list[float]:
    assert guest.console is not None
    samples = []
    for _ in range(repeat):
        ms = guest.console.eval(
            "(lan.active(False), time.sleep_ms(100), lan.active(True), "
            "_t0 := time.ticks_ms(), _wait_connected(True, 10000), "
            "time.ticks_diff(time.ticks_ms(), _t0))[-1]",
            timeout=20,
        )
        samples.append(float(ms))
    return samples


def _tcp_guest_to_host(guest: Guest, port: int) -> float:
    """Mbit/s of one 4 MiB transfer, timed at the receiver (the host)."""
    assert guest.console is not None
    server = guest.ns.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST_IP, port))
    server.listen(1)
    result: dict[str, float] = {}
    t = threading.Thread(target=receive_timed, args=(server, result))
    t.start()
    guest.console.exec(
        f"s = socket.socket(); s.connect(({HOST_IP!r}, {port})); b = bytes({CHUNK})\n"
        f"for _ in range({TCP_BYTES // CHUNK}): s.write(b)\n"
        "s.close()\n",
        timeout=120,
    )
    t.join(120)
    server.close()
    if result.get("bytes") != TCP_BYTES:
        raise RuntimeError(f"guest->host: host received {result.get('bytes')} of {TCP_BYTES} bytes")
    return TCP_BYTES * 8 / result["seconds"] / 1e6


def _tcp_host_to_guest(guest: Guest, port: int) -> float:
    assert guest.console is not None
    guest.console.exec(
        f"srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"srv.bind(('0.0.0.0', {port})); srv.listen(1)\n"
    )
    client = guest.ns.socket()
    client.settimeout(60)
    done = threading.Event()
    elapsed: dict[str, float] = {}

    def send() -> None:
        client.connect((guest.ip, port))
        payload = bytes(CHUNK)
        start = time.monotonic()
        for _ in range(TCP_BYTES // CHUNK):
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        client.recv(16)  # the guest's count, once it has read everything
        elapsed["seconds"] = time.monotonic() - start
        done.set()

    t = threading.Thread(target=send)
    t.start()
    got = int(
        guest.console.exec(
            "c = srv.accept()[0]\nbuf = bytearray(8192)\nn = 0\n"
            "while True:\n    k = c.readinto(buf)\n    if not k:\n        break\n    n += k\n"
            "c.write(b'ok')\nc.close()\nsrv.close()\nprint(n)\n",
            timeout=120,
        )
    )
    t.join(120)
    client.close()
    if got != TCP_BYTES or not done.is_set():
        raise RuntimeError(f"host->guest: guest read {got} of {TCP_BYTES} bytes")
    return TCP_BYTES * 8 / elapsed["seconds"] / 1e6


def _udp_pps(guest: Guest, port: int, count: int = 2000) -> float:
    """Datagrams per second the guest sends (64-byte payloads), counted at the host."""
    assert guest.console is not None
    sink = guest.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST_IP, port))
    sink.settimeout(2.0)
    seconds = guest.console.eval(
        f"(u := socket.socket(socket.AF_INET, socket.SOCK_DGRAM), p := bytes(64), t0 := time.ticks_us(), "
        f"[u.sendto(p, ({HOST_IP!r}, {port})) for _ in range({count})], "
        "dt := time.ticks_diff(time.ticks_us(), t0), u.close(), dt / 1e6)[-1]",
        timeout=60,
    )
    received = 0
    try:
        while True:
            sink.recv(2048)
            received += 1
    except TimeoutError:
        pass
    sink.close()
    return received / float(seconds)


def run(repeat: int = 5) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="mplab-bench-fw-") as tmp:
        guest = Guest(elf=REPO / "firmware/build/firmware.elf", workdir=Path(tmp))
        try:
            guest.start()
            lease = _lease_times(guest, repeat)
            up = [_tcp_guest_to_host(guest, 6000 + i) for i in range(repeat)]
            down = [_tcp_host_to_guest(guest, 6100 + i) for i in range(repeat)]
            pps = [_udp_pps(guest, 6200 + i) for i in range(repeat)]
        finally:
            guest.stop()
    return [
        Figure("lease_time", "ms", lease, goal="", note="LAN.active(True) to isconnected(), dnsmasq on the TAP"),
        Figure("tcp_guest_to_host_tap", "Mbit/s", up, goal=">= 100", note="4 MiB, s.write(8 KiB) loop, TAP in netns"),
        Figure("tcp_host_to_guest_tap", "Mbit/s", down, goal=">= 100", note="4 MiB, readinto(8 KiB) loop"),
        Figure("udp_guest_to_host_pps", "datagrams/s", pps, note="2000 x 64-byte sendto, counted at the host"),
    ]
