"""A throw-away network namespace with a TAP, and a guest booted in it: the firmware tests'
runtime, with no Docker (tests/firmware, docs/firmware.md).

All traffic stays in the namespace: the guest's TAP, dnsmasq, tcpdump and every host-side
peer socket are in it. Sockets are made in the namespace without subprocesses: a short-lived
thread joins the namespace with ``setns(2)`` and creates the socket there (a socket keeps the
namespace it was created in)::

    g = NetnsGuest(elf=Path("firmware/build/firmware.elf"), workdir=tmp)
    g.start()                                # namespace, dnsmasq, tcpdump, QEMU, DHCP lease
    g.console.exec("print(lan.ifconfig())")  # lab.console.Console on the serial socket
    g.wire.dhcp("ack", g.mac)                # lab.capture.Wire over tcpdump's pcap
    ping(g.ns, g.ip, ident=1)                # host peers inside the namespace
    g.stop()

Host side of the namespace: ``tap0`` = 10.250.0.1/24, dnsmasq (DHCP + DNS for ``.lab``,
``peer.lab`` = 10.250.0.1, no router option, no upstream), tcpdump writing ``tap0.pcap``.
The guest's serial REPL is a unix socket, its QMP another one (lab.qmp.Qmp).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .capture import PcapFile, Wire
from .console import Console
from .errors import LabError
from .util import poll_until

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class NetnsError(LabError):
    """A host command of the namespace harness failed (the message has its output)."""


class BootError(NetnsError):
    """The guest did not come up; the message says how far it got."""


def run(cmd: list[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise with its output in the message."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p


class Netns:
    """A named network namespace (``ip netns add``), deleted by :meth:`delete`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = NETNS_DIR / name

    def create(self) -> None:
        run(["ip", "netns", "add", self.name])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])

    def add_tap(self, ifname: str, addr_cidr: str) -> None:
        run(["ip", "netns", "exec", self.name, "ip", "tuntap", "add", ifname, "mode", "tap"])
        run(["ip", "-n", self.name, "addr", "add", addr_cidr, "dev", ifname])
        run(["ip", "-n", self.name, "link", "set", ifname, "up"])

    def cmd(self, *argv: str) -> list[str]:
        """argv prefixed so that it runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running process in the namespace, stdout+stderr to ``log``."""
        fh = open(log, "wb")  # owned by the child from now on
        try:
            return subprocess.Popen(self.cmd(*argv), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            fh.close()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a fresh thread that has joined this namespace; return its result."""
        box: dict[str, object] = {}

        def body() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({self.path}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                box["value"] = fn()
            except BaseException as e:  # re-raised in the caller
                box["error"] = e

        t = threading.Thread(target=body, name=f"netns-{self.name}", daemon=True)
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        """A socket that lives in this namespace."""
        return self.call(lambda: socket.socket(family, kind, proto))

    def delete(self) -> None:
        if self.path.exists():
            run(["ip", "netns", "delete", self.name], check=False)


def netns_supported() -> str | None:
    """None if this process may create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "the firmware tests need root (network namespaces, TAP devices): run them as root"
    probe = Netns(f"mplabfw-probe-{os.getpid()}")
    try:
        probe.create()
        probe.add_tap("tap0", "10.250.255.1/30")
        probe.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except (OSError, LabError) as e:
        return f"cannot create a network namespace with a TAP here: {e}"
    finally:
        probe.delete()
    return None


# ---- the guest ---------------------------------------------------------------------------------
HOST_IP = "10.250.0.1"
PREFIX = "10.250.0"
DHCP_FIRST, DHCP_LAST = f"{PREFIX}.100", f"{PREFIX}.150"
GUEST_MAC = "02:6d:70:aa:bb:01"
GUEST_HOSTNAME = "node7"
TAP = "tap0"

_counter = itertools.count()


@dataclass
class NetnsGuest:
    """One guest booted under QEMU in a fresh namespace, and the host side of that namespace."""

    elf: Path
    workdir: Path
    mac: str = GUEST_MAC
    hostname: str = GUEST_HOSTNAME
    ns: Netns = field(init=False)
    console: Console | None = None
    ip: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ns = Netns(f"mplabfw-{os.getpid()}-{next(_counter)}")
        self.workdir.mkdir(parents=True, exist_ok=True)

    # ---- paths --------------------------------------------------------------------
    @property
    def pcap(self) -> Path:
        return self.workdir / "tap0.pcap"

    @property
    def console_log(self) -> Path:
        """Everything the guest printed (QEMU's chardev logfile)."""
        return self.workdir / "console.log"

    @property
    def dnsmasq_log(self) -> Path:
        return self.workdir / "dnsmasq.log"

    @property
    def serial_sock(self) -> Path:
        return self.workdir / "serial.sock"

    @property
    def qmp_sock(self) -> Path:
        return self.workdir / "qmp.sock"

    @property
    def qemu_pid(self) -> int:
        return self.procs["qemu"].pid

    @property
    def wire(self) -> Wire:
        """Assertions on tcpdump's capture of the TAP (a lab.capture.Wire over the pcap)."""
        return Wire(PcapFile(self.pcap, iface=TAP))

    # ---- bring-up -----------------------------------------------------------------
    def start(self, lease_timeout: float = 30.0) -> None:
        """Namespace, TAP, dnsmasq, tcpdump, QEMU, REPL, then DHCP until a lease is bound."""
        self.ns.create()
        self.ns.add_tap(TAP, f"{HOST_IP}/24")
        self._start_dnsmasq()
        self._start_tcpdump()
        self._start_qemu()
        self.console = Console(self._connect_serial(), log_path=self.workdir / "repl.transcript", name="guest")
        # Input sent before the REPL is up is lost: wait for its first prompt.
        self._wait(
            lambda: ">>> " in self.console_log.read_text(errors="replace"),
            15.0,
            "the guest printed no REPL prompt",
            "qemu",
        )
        self.console.exec("pass", timeout=15.0)
        self.bring_up(lease_timeout)

    def _start_dnsmasq(self) -> None:
        w = self.workdir
        self.procs["dnsmasq"] = self.ns.popen(
            [
                "dnsmasq",
                "--keep-in-foreground",
                f"--interface={TAP}",
                "--bind-interfaces",
                f"--dhcp-range={DHCP_FIRST},{DHCP_LAST},1h",
                "--no-resolv",
                "--no-hosts",
                "--no-ping",
                "--domain=lab",
                "--local=/lab/",
                f"--host-record=peer.lab,{HOST_IP}",
                "--dhcp-option=3",
                "--log-dhcp",
                "--log-queries",
                f"--log-facility={self.dnsmasq_log}",
                f"--pid-file={w / 'dnsmasq.pid'}",
                f"--dhcp-leasefile={w / 'dnsmasq.leases'}",
                "--dhcp-authoritative",
                "--user=root",
            ],
            w / "dnsmasq.out",
        )
        self._wait(
            lambda: self.dnsmasq_log.exists() and "started" in self.dnsmasq_log.read_text(),
            5.0,
            "dnsmasq did not start",
            "dnsmasq",
        )

    def _start_tcpdump(self) -> None:
        out = self.workdir / "tcpdump.out"
        self.procs["tcpdump"] = self.ns.popen(
            ["tcpdump", "-i", TAP, "--immediate-mode", "-U", "-n", "-s", "0", "-Z", "root", "-w", str(self.pcap)], out
        )
        self._wait(lambda: "listening on" in out.read_text(), 10.0, "tcpdump did not start", "tcpdump")

    def _start_qemu(self) -> None:
        self.procs["qemu"] = self.ns.popen(
            [
                "qemu-system-arm",
                "-machine",
                "mps2-an385",
                "-display",
                "none",
                "-monitor",
                "none",
                "-semihosting",
                "-kernel",
                str(self.elf),
                "-nic",
                f"tap,ifname={TAP},script=no,downscript=no,model=lan9118,mac={self.mac}",
                "-chardev",
                f"socket,id=con,path={self.serial_sock},server=on,wait=off,logfile={self.console_log}",
                "-serial",
                "chardev:con",
                "-qmp",
                f"unix:{self.qmp_sock},server=on,wait=off",
            ],
            self.workdir / "qemu.out",
        )
        self._wait(self.serial_sock.exists, 10.0, "QEMU did not open its serial socket", "qemu")

    def _connect_serial(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.serial_sock))
        return s

    def bring_up(self, lease_timeout: float = 30.0) -> None:
        """The lab's bring-up: hostname, LAN().active(True), wait for isconnected()."""
        assert self.console is not None
        self.console.exec(
            f"import network, socket, time\nnetwork.hostname({self.hostname!r})\n"
            "lan = network.LAN()\nlan.active(True)\n"
            "def _wait_connected(want, ms):\n"
            "    t0 = time.ticks_ms()\n"
            "    while lan.isconnected() != want and time.ticks_diff(time.ticks_ms(), t0) < ms:\n"
            "        time.sleep_ms(50)\n"
            "    return lan.isconnected() == want\n"
        )
        if not self.wait_connected(True, lease_timeout):
            raise BootError(
                f"no DHCP lease within {lease_timeout:g}s: lan.status()={self.console.eval('lan.status()')}, "
                f"ifconfig={self.console.eval('lan.ifconfig()')}"
            )
        self.ip = self.console.eval("lan.ifconfig()[0]")

    def wait_connected(self, want: bool, timeout: float) -> bool:
        """Wait on the guest until ``lan.isconnected() == want``; False on timeout."""
        assert self.console is not None
        return bool(self.console.eval(f"_wait_connected({want}, {int(timeout * 1000)})", timeout=timeout + 10.0))

    def _wait(self, cond: Callable[[], Any], timeout: float, what: str, proc: str) -> None:
        def ready() -> bool:
            p = self.procs.get(proc)
            if p is not None and p.poll() is not None:
                raise BootError(f"{what}: {proc} exited {p.returncode} (see {self.workdir})")
            try:
                return bool(cond())
            except OSError:
                return False

        if not poll_until(ready, timeout, 0.05):
            raise BootError(f"{what} within {timeout:g}s (see {self.workdir})")

    # ---- teardown -----------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything that was started, then delete the namespace. Never raises."""
        if self.console is not None:
            with contextlib.suppress(Exception):  # teardown goes on regardless
                self.console.close()
        for name in ("qemu", "tcpdump", "dnsmasq"):  # tcpdump after QEMU: the pcap ends with the guest
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGINT if name == "tcpdump" else signal.SIGTERM)
            try:
                p.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5.0)
        self.ns.delete()

    def save_artifacts(self, dest: Path) -> None:
        """Copy the console log, pcap and the other logs of this guest to ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        for f in self.workdir.iterdir():
            if f.is_file() and not f.is_socket():
                shutil.copy2(f, dest / f.name)


Guest = NetnsGuest  # the firmware tests' name


# ---- host peers inside the namespace ---------------------------------------------------------------
ETH_P_ARP = 0x0806


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


def icmp_echo_fields(pkt: bytes) -> tuple[int, int, int, bytes]:
    """(type, id, seq, payload) of the ICMP echo message in an IPv4 datagram read from a raw socket."""
    ihl = (pkt[0] & 0x0F) * 4
    typ, _code, _ck, ident, seq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
    return typ, ident, seq, pkt[ihl + 8 :]


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
                typ, rid, rseq, data = icmp_echo_fields(pkt)
                if src == dst and typ == 0 and rid == ident and rseq == seq:
                    replies.append((rseq, data))
                    break
    finally:
        s.close()
    return replies


def arp_probe(ns: Netns, ifname: str, src_ip: str, target_ip: str, timeout: float = 3.0) -> Any:
    """Broadcast 'who-has target_ip' from ``ifname`` (an AF_PACKET socket in ``ns``); the ARP
    reply for it, or None."""
    s = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        s.bind((ifname, ETH_P_ARP))
        src_mac = ":".join(f"{b:02x}" for b in s.getsockname()[4][:6])
        from scapy.layers.l2 import ARP, Ether  # scapy: slow to import, only here

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
