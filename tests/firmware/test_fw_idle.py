"""An idle guest sleeps (WFI): under 5 % of one host core over 5 s, from /proc/<qemu>/stat.
It must still wake for the network: idle at the REPL it answers ping; blocked in recvfrom it
wakes for the datagram."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from fw_peer import background

from lab.netns import HOST_IP, Guest, ping

WINDOW = 5.0
LIMIT = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    assert "qemu" in stat[: stat.rindex(")")], f"pid {pid} is not QEMU: {stat[:60]}"
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_share(pid: int, window: float) -> float:
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def test_idle_at_repl(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    t0 = c.eval("time.ticks_ms()")
    share = cpu_share(guest.qemu_pid, WINDOW)
    assert share < LIMIT, f"idle guest used {share:.1%} of a core over {WINDOW:g}s"
    elapsed = c.eval(f"time.ticks_diff(time.ticks_ms(), {t0})")
    assert elapsed >= WINDOW * 1000, f"guest clock advanced {elapsed} ms in {WINDOW:g}s"
    ident = random.randrange(1, 0xFFFF)
    assert len(ping(guest.ns, guest.ip, ident, count=1)) == 1, guest.wire.summary()
    guest.wire.icmp(guest.ip, HOST_IP, 0, ident)


def test_idle_blocked_in_recvfrom(guest: Guest) -> None:
    c = guest.console
    assert c is not None
    port = 5006
    c.exec(f"b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nb.bind(('0.0.0.0', {port}))\nb.settimeout(30)\n")
    blocked = background(lambda: c.eval("b.recvfrom(64)", timeout=40))
    time.sleep(0.5)
    share = cpu_share(guest.qemu_pid, WINDOW)
    assert not blocked.done(), f"recvfrom returned early: {blocked.result()}"
    host = guest.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with host:
        host.bind((HOST_IP, 0))
        host.sendto(b"wake up", (guest.ip, port))
        data, sender = blocked.result(timeout=10)
        sport = host.getsockname()[1]
    c.exec("b.close()")
    assert share < LIMIT, f"guest blocked in recvfrom used {share:.1%} of a core over {WINDOW:g}s"
    assert (data, tuple(sender)) == (b"wake up", (HOST_IP, sport))
    guest.wire.udp(HOST_IP, guest.ip, port, b"wake up", sport=sport)
