"""A throw-away network namespace with a TAP, and sockets that live inside it.

All traffic of the firmware tests stays in such a namespace: the guest's TAP, dnsmasq,
tcpdump and every host-side peer socket are in it. Sockets are made in the namespace
without subprocesses: a short-lived thread joins the namespace with ``setns(2)`` and creates
the socket there (a socket keeps the namespace it was created in).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def run(cmd: list[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise with its output in the message."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
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
    except (OSError, RuntimeError) as e:
        return f"cannot create a network namespace with a TAP here: {e}"
    finally:
        probe.delete()
    return None
