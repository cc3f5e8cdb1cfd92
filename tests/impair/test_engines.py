"""Delay, jitter, reorder, duplicate, corrupt, bursty loss and per-direction settings, against the
expectations tc netem meets, on the real lab with whichever engine the host gives
(``MPLAB_IMPAIR_ENGINE`` forces one). Tolerances are wide: a loaded 2-core host, a TCG guest.
Speed is not asserted here; bench/impair_bench.py measures it."""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP

from lab import Lab, Node
from lab.impair import engine, netem_available, state, userspace
from lab.netns import icmp_checksum, icmp_echo_fields, icmp_echo_request

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.docker


def mplab(lab_name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--lab", lab_name, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# ---- helpers -------------------------------------------------------------------------------
def pings(lab: Lab, ip: str, n: int = 30, interval: float = 0.1, timeout: float = 2.0) -> list[float]:
    """ICMP echo RTTs (s) from the host to ``ip`` (a raw socket: no ping binary needed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((lab.host_ip, 0))
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    done = threading.Event()

    def rx() -> None:
        s.settimeout(0.2)
        while not done.is_set():
            try:
                data, (src, _) = s.recvfrom(2048)
            except TimeoutError:
                continue
            typ, pid, seq, _ = icmp_echo_fields(data)
            if src == ip and typ == 0 and pid == ident and seq in sent and seq not in rtts:
                rtts[seq] = time.monotonic() - sent[seq]

    th = threading.Thread(target=rx, daemon=True)
    th.start()
    for seq in range(n):
        pkt = icmp_echo_request(ident, seq, b"mplab-ping" + bytes(22))
        sent[seq] = time.monotonic()
        s.sendto(pkt, (ip, 0))
        time.sleep(interval)
    time.sleep(timeout)
    done.set()
    th.join()
    s.close()
    return [rtts[k] for k in sorted(rtts)]


def guest_udp_burst(node: Node, lab: Lab, port: int, n: int, gap_ms: int, size: int = 16) -> None:
    """The guest sends datagrams b'%05d' % i (padded to ``size``) to the host's ``port``."""
    node.exec(
        f"import socket, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.connect(({lab.host_ip!r}, {port}))\n"
        f"for i in range({n}):\n    u.send(b'%05d' % i + b'.' * {size - 5})\n    time.sleep_ms({gap_ms})\n"
        "u.close()",
        timeout=60 + n * gap_ms / 1000 * 3,
    )


def wire_seqs(wire, node: Node, port: int, since: float = 0.0) -> list[tuple[float, int, int, object]]:
    """(time, seq, ip id, packet) of the guest's datagrams to ``port`` in the capture, in order."""
    out = []
    ip = node.ip  # once: each read asks dnsmasq's leases
    for p in wire.packets(since=since) if since else wire.packets():
        if p.haslayer(UDP) and p.haslayer(IP) and p[IP].src == ip and p[UDP].dport == port:
            raw = bytes(p[UDP].payload)
            try:
                out.append((float(p.time), int(raw[:5]), p[IP].id, p))
            except ValueError:
                out.append((float(p.time), -1, p[IP].id, p))  # corrupted digits
    return out


def guest_send(node: Node, lab: Lab, port: int, data: bytes) -> None:
    node.exec(
        "import socket\nw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"w.sendto({data!r}, ({lab.host_ip!r}, {port}))\nw.close()"
    )


def warm_arp(node: Node, lab: Lab, wire, host_peer) -> int:
    rx = host_peer.udp(timeout=1.0)
    port = rx.getsockname()[1]
    guest_send(node, lab, port, b"warm")
    wire.expect(UDP, dport=port, within=5.0)
    return port


def runs_of_missing(seqs: set[int], n: int) -> list[int]:
    runs, cur = [], 0
    for i in range(n):
        if i in seqs:
            if cur:
                runs.append(cur)
            cur = 0
        else:
            cur += 1
    if cur:
        runs.append(cur)
    return runs


# ---- delay and jitter ----------------------------------------------------------------------
def test_delay_and_jitter_show_in_ping_rtts(lab: Lab, node: Node) -> None:
    assert node.ip
    pings(lab, node.ip, n=3)  # ARP and the guest's first answers
    base = pings(lab, node.ip)
    with node.impair(delay="100ms", jitter="20ms", distribution="normal"):
        slow = pings(lab, node.ip)
    after = pings(lab, node.ip)
    assert len(base) >= 20 and len(slow) >= 20, (len(base), len(slow))
    added = statistics.median(slow) - statistics.median(base)
    assert 0.075 <= added <= 0.14, f"median RTT grew {added * 1000:.1f} ms with delay 100ms±20ms"
    # normal jitter of 20 ms shows as spread: the guest's own spread is added, never removed
    assert statistics.pstdev(slow) >= 0.010, f"RTT sd {statistics.pstdev(slow) * 1000:.1f} ms with jitter 20ms"
    assert statistics.median(after) < statistics.median(base) + 0.04, "the delay outlived the clear"


def test_tcp_handshake_rtt_with_different_delays_each_way(lab: Lab, node: Node, wire, host_peer) -> None:
    srv = host_peer.tcp_server()
    port = srv.getsockname()[1]
    node.impair(delay="300ms", direction="in")
    node.impair(delay="20ms", direction="out")  # the other direction keeps its 300 ms
    try:
        st = state(node)
        assert st["in"].get("delay") == "300ms" and st["out"].get("delay") == "20ms", st
        status = mplab(lab.name, "status").stdout
        assert "impairments node1: out: delay 20ms; in: delay 300ms" in status, status
        assert f"impairment engine: {engine(node)}" in status, status
        since = wire.mark()
        node.exec(f"import socket\nc = socket.socket()\nc.connect(({lab.host_ip!r}, {port}))\nc.close()", timeout=20)
        conn, _ = srv.accept()
        conn.close()
    finally:
        node.clear_impairments()
    # at the host's end of the LAN: SYN-ACK out, the guest's ACK back = 300 ms in + 20 ms out
    synack = wire.expect(TCP, src=lab.host_ip, sport=port, flags="SA", since=since)
    ack = wire.expect(
        TCP, src=node.ip, dport=port, since=since, where=lambda p: p[TCP].flags == "A" and p.time > synack.time
    )
    rtt = float(ack.time) - float(synack.time)
    assert 0.31 <= rtt <= 0.8, f"handshake RTT {rtt * 1000:.0f} ms, set 300 ms in + 20 ms out"
    assert state(node) == {"out": {}, "in": {}}


# ---- reorder, duplicate, corrupt, bursty loss ----------------------------------------------
def test_reorder_shows_as_out_of_order_sequence_numbers(lab: Lab, node: Node, wire, host_peer) -> None:
    port = warm_arp(node, lab, wire, host_peer)
    since = wire.mark()
    with node.impair(delay="50ms", reorder="30%"):
        guest_udp_burst(node, lab, port, 150, 5)
        time.sleep(0.5)
    seqs = [s for _, s, _, _ in wire_seqs(wire, node, port, since)]
    inversions = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    assert len(seqs) >= 140, f"only {len(seqs)}/150 datagrams on the wire"
    assert inversions >= 5, f"{inversions} out-of-order datagrams with reorder 30% (seqs {seqs[:40]}...)"


def test_duplicates_show_as_repeated_ip_ids(lab: Lab, node: Node, wire, host_peer) -> None:
    port = warm_arp(node, lab, wire, host_peer)
    since = wire.mark()
    with node.impair(duplicate="10%"):
        guest_udp_burst(node, lab, port, 300, 2)
        time.sleep(0.5)
    ids = [i for _, _, i, _ in wire_seqs(wire, node, port, since)]
    dups = len(ids) - len(set(ids))
    assert 10 <= dups <= 70, f"{dups} repeated IP IDs in {len(ids)} datagrams with duplicate 10% (expected ~30)"


def test_corruption_shows_as_bad_checksums_at_the_receiver(lab: Lab, node: Node, wire, host_peer) -> None:
    rx = host_peer.udp(timeout=0.5)
    port = rx.getsockname()[1]
    rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 << 20)
    guest_send(node, lab, port, b"warm")
    rx.recv(64)
    since = wire.mark()
    with node.impair(corrupt="10%"):
        guest_udp_burst(node, lab, port, 300, 2, size=64)
        time.sleep(0.5)
    got = 0
    while True:
        try:
            rx.recv(2048)
            got += 1
        except TimeoutError:
            break
    bad = 0
    frames = wire_seqs(wire, node, port, since)
    for *_, p in frames:
        raw = bytes(p[IP])
        ihl = (raw[0] & 0xF) * 4
        if icmp_checksum(raw[:ihl]) != 0:
            bad += 1
            continue
        udp = raw[ihl:]
        pseudo = raw[12:20] + struct.pack("!BBH", 0, 17, len(udp))
        if struct.unpack("!H", udp[6:8])[0] and icmp_checksum(pseudo + udp) != 0:
            bad += 1
    # the frames whose flipped bit fell outside the UDP/IP (a different dst/port) are not counted
    assert 10 <= bad <= 60, f"{bad} bad checksums in {len(frames)} frames with corrupt 10% (expected ~30)"
    # the receiver (the host's UDP socket) drops what fails its checksum
    assert got <= 300 - bad + 3, f"host socket got {got} of 300, though {bad} had bad checksums"


def test_bursty_loss_gives_longer_runs_than_random_loss(lab: Lab, node: Node, wire, host_peer) -> None:
    port = warm_arp(node, lab, wire, host_peer)
    n = 800
    runs: dict[str, list[int]] = {}
    # gemodel p 2 % r 20 %: stationary loss p/(p+r) = 9.1 %, mean burst 1/r = 5 packets; random
    # loss at 9 % gives runs of 1/(1-0.09) = 1.1. The capture may miss a few frames of its own
    # under load (which lengthens both), so the test compares the two with room to spare.
    for name, loss in (("random", "9%"), ("gemodel", "gemodel 2% 20%")):
        since = wire.mark()
        with node.impair(loss=loss):
            guest_udp_burst(node, lab, port, n, 1)
            time.sleep(0.5)
        got = {s for _, s, _, _ in wire_seqs(wire, node, port, since)}
        runs[name] = runs_of_missing(got, n)
    lost = {k: sum(v) for k, v in runs.items()}
    mean = {k: statistics.mean(v) if v else 0.0 for k, v in runs.items()}
    longest = {k: max(v, default=0) for k, v in runs.items()}
    seen = f"lost {lost}, mean run {mean}, longest {longest}"
    assert 30 <= lost["random"] <= 150 and 20 <= lost["gemodel"] <= 220, seen
    assert mean["gemodel"] >= 2.5 and mean["gemodel"] >= 1.8 * mean["random"], seen


def test_rate_paces_the_guests_datagrams_on_the_wire(lab: Lab, node: Node, wire, host_peer) -> None:
    port = warm_arp(node, lab, wire, host_peer)
    since = wire.mark()
    with node.impair(rate="256kbit"):
        guest_udp_burst(node, lab, port, 30, 0, size=1000)  # as fast as the guest can
        time.sleep(1.5)
    got = wire_seqs(wire, node, port, since)
    assert len(got) == 30, f"{len(got)}/30 datagrams (the default limit of 1000 packets drops none)"
    span = got[-1][0] - got[0][0]
    kbit = 29 * (1000 + 28 + 14) * 8 / span / 1000
    assert 180 <= kbit <= 300, f"{kbit:.0f} kbit/s on the wire with rate 256kbit (span {span * 1000:.0f} ms)"


# ---- a change mid-transfer -----------------------------------------------------------------
def test_change_mid_transfer_shows_in_pcap(lab: Lab, node: Node, wire, host_peer) -> None:
    port = warm_arp(node, lab, wire, host_peer)
    ip = node.ip
    since = wire.mark()
    node.impair(delay="20ms")
    changed: list[float] = []

    def change() -> None:  # docker exec only: the console stays with the sending guest
        wire.expect(UDP, src=ip, dport=port, since=since, within=30)  # the transfer is under way
        time.sleep(1.0)
        changed.append(time.time())
        node.impair(delay="250ms")

    changer = threading.Thread(target=change, daemon=True)
    changer.start()
    try:
        guest_udp_burst(node, lab, port, 160, 30)  # about 5 s
        changer.join(30)
        time.sleep(0.6)
    finally:
        node.clear_impairments()
    assert changed, "the change did not happen"
    got = wire_seqs(wire, node, port, since)
    seqs = [s for _, s, _, _ in got]
    gaps = [(a[0], b[0] - a[0]) for a, b in itertools.pairwise(got)]
    # before the change, datagrams arrive about every 30 ms; at the change the new 250 ms hold
    # opens one long gap in the capture (~ +230 ms), then the stream goes on at its old pace
    before = [g for t, g in gaps if t < changed[0]]
    after = [g for t, g in gaps if t >= changed[0]]
    assert before and after, (len(before), len(after))
    assert max(before) < 0.15, f"a {max(before) * 1000:.0f} ms gap before the change"
    assert max(after) >= 0.15, f"no gap of >= 150 ms after the change: {max(after) * 1000:.0f} ms at most"
    assert statistics.median(after) < 0.1, statistics.median(after)
    assert seqs == sorted(seqs), "a fixed delay must not reorder"
    if engine(node) == "userspace":  # the engine keeps its held packets across a change (SIGHUP)
        assert len(seqs) >= 158, f"{len(seqs)}/160 arrived across the change"


# ---- engine choice, cleanup ----------------------------------------------------------------
def test_forced_engine_errors_are_one_line(lab: Lab) -> None:
    r = mplab(lab.name, "impair", "node1", "--delay", "10ms", env={"MPLAB_IMPAIR_ENGINE": "ebpf"})
    assert r.returncode == 2 and "MPLAB_IMPAIR_ENGINE='ebpf'" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    if not netem_available(lab.node("node1")):
        r = mplab(lab.name, "impair", "node1", "--delay", "10ms", env={"MPLAB_IMPAIR_ENGINE": "netem"})
        assert r.returncode == 1 and "lacks tc netem" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    r = mplab(lab.name, "impair", "node1", "--show")
    assert r.returncode == 0 and f"(engine {engine(lab.node('node1'))})" in r.stdout, r


def _engine_kill(node: Node) -> None:
    t = node.impair_target()
    t.sh(
        'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = mplab-netem ] '
        "&& kill -KILL ${p#/proc/}; done; true",
        "kill",
    )


def test_clear_leaves_nothing_even_after_the_engine_is_killed(lab: Lab, node: Node, host_peer) -> None:
    if engine(node) != "userspace":
        pytest.skip("the netem engine runs no process: tests/impair/test_impair.py covers its cleanup")
    t = node.impair_target()
    node.impair(delay="30ms", duplicate="1%", direction="both")
    left = userspace.leftovers(t)
    assert any("NFQUEUE" in x for x in left) and any("process" in x for x in left), left
    _engine_kill(node)
    # --queue-bypass: with the engine gone the guest's traffic flows, unimpaired
    rx = host_peer.udp(timeout=5.0)
    guest_send(node, lab, rx.getsockname()[1], b"alive")
    assert rx.recv(64) == b"alive"
    assert node.impairments() == {}  # no engine: nothing reported as active
    node.clear_impairments()
    assert userspace.leftovers(t) == []
    # and again with the engine alive
    node.impair(delay="10ms", reorder="5%", direction="in")
    node.clear_impairments()
    assert userspace.leftovers(t) == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_down_leaves_nothing_after_sigkill_of_the_lab_process() -> None:
    name = f"{os.environ.get('LAB', 'imp')[:5]}kd"
    lab = Lab(name, progress=None)
    lab.down()
    pids: list[int] = []
    try:
        lab.up(nodes=1)
        # a process that impairs both ways, then dies by SIGKILL before it can clean anything up
        code = (
            "import os, signal\nfrom lab import Lab\n"
            f"n = Lab({name!r}, progress=None).node('node1')\n"
            "n.impair(delay='50ms', duplicate='1%', direction='both')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode == -9, p.stderr
        nd = lab.node("node1")
        pids = userspace._host_pids(nd.impair_target())
        if engine(nd) == "userspace":
            assert len(pids) == 2, userspace.leftovers(nd.impair_target())  # one engine per direction
    finally:
        lab.down()
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and _comm(p) == "mplab-netem"]
    assert not alive, f"mplab-netem {alive} survived down"
    ps = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=mplab.lab={name}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
    assert f"mplab_{name}" not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", f"mplab-{name}"], capture_output=True).returncode != 0
