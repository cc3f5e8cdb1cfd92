"""Boot the firmware under QEMU on a TAP in a fresh network namespace.

Host side of the namespace: ``tap0`` = 10.250.0.1/24, dnsmasq (DHCP + DNS for ``.lab``,
``peer.lab`` = 10.250.0.1, no router option, no upstream), tcpdump writing ``tap0.pcap``.
The guest's serial REPL is a unix socket (reached with :class:`lab.console.Console`), its QMP
another one. Everything is torn down by :meth:`Guest.stop`, whatever state it got to.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fw_netns import Netns
from fw_wire import Wire

from lab.console import Console

HOST_IP = "10.250.0.1"
PREFIX = "10.250.0"
DHCP_FIRST, DHCP_LAST = f"{PREFIX}.100", f"{PREFIX}.150"
GUEST_MAC = "02:6d:70:aa:bb:01"
GUEST_HOSTNAME = "node7"
TAP = "tap0"

_counter = itertools.count()


class BootError(Exception):
    """The guest did not come up; the message says how far it got."""


@dataclass
class Guest:
    """One booted guest and the host side of its namespace."""

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
        return Wire(self.pcap)

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

    def _wait(self, cond: object, timeout: float, what: str, proc: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs.get(proc)
            if p is not None and p.poll() is not None:
                raise BootError(f"{what}: {proc} exited {p.returncode} (see {self.workdir})")
            try:
                if cond():  # type: ignore[operator]
                    return
            except OSError:
                pass
            time.sleep(0.05)
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
