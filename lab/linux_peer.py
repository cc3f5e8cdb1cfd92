"""A Linux/CPython peer inside the lab, for differential runs (docs/differential.md).

``LinuxPeer(lab).start()`` runs a container ``mplab-<lab>-linuxpeer`` from the services image
(Debian, python3) on the lab's LAN at a fixed lab address (``subnet + 3``), labelled
``mplab=1``, ``mplab.lab=<lab>``, ``mplab.role=linux-peer``. The lab's network is
``internal``; Docker still gives the container a default route via the gateway, which
``start`` deletes (and then checks): the peer reaches lab hosts only. Its resolver is the
lab's dnsmasq (``nameserver <services>``, ``search <domain>``, as a DHCP-configured Linux
host would have), never Docker's embedded DNS.

A long-lived ``python3`` agent in the container (``docker exec -i``) executes code blocks in one
global namespace, like the guest's raw REPL, so ``peer.exec(code)`` keeps state between calls
just as ``node.exec(code)`` does:

    peer = LinuxPeer(lab).start()
    peer.exec("import socket\\ns = socket.socket()\\ns.connect(('10.77.0.1', 7))")
    peer.eval("s.getsockname()")
    peer.stop()

``Lab.down`` removes the container with the rest of the lab: the runtime sweeps it by its labels.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import subprocess
import time
from typing import Any

from .daemons import NAMES
from .errors import LabError
from .topology import LanView

ROLE = "linux-peer"
_OFFSET = 3  # subnet + 3: after the gateway (+1) and services (+2)

_AGENT = r"""
import contextlib, io, json, sys, traceback
g = {"__name__": "__linuxpeer__"}
out = sys.stdout
sys.stdout = sys.stderr
for line in sys.stdin:
    req = json.loads(line)
    buf = io.StringIO()
    err = ""
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(req["code"], "<peer>", "exec"), g)
    except BaseException:
        err = traceback.format_exc()
    out.write(json.dumps({"out": buf.getvalue(), "err": err}) + "\n")
    out.flush()
"""


def container_name(lab: str) -> str:
    return f"mplab-{lab}-linuxpeer"


def peer_ip(lab: LanView) -> str:
    """The peer's fixed lab address: the first of subnet+3.. that no lab role claims."""
    topo = lab.topology
    net = ipaddress.ip_network(str(topo.subnet))
    taken = {ipaddress.ip_address(str(topo.gateway)), ipaddress.ip_address(str(topo.services_ip))}
    taken.add(net.network_address + 37)  # tests/socket: the "silent" address nobody may hold
    taken |= {ipaddress.ip_address(str(topo.service_ip(n))) for n in NAMES}  # the service daemons
    rng = ipaddress.ip_network(str(topo.ip_range))
    lo, hi = ipaddress.ip_address(str(topo.dhcp_start)), ipaddress.ip_address(str(topo.dhcp_end))
    for k in range(_OFFSET, 64):
        a = net.network_address + k
        if a not in taken and a not in rng and not lo <= a <= hi:
            return str(a)
    raise LabError(f"lab {lab.name}: no free address for the Linux peer in {net}")


class LinuxPeerError(LabError):
    pass


class LinuxPeer:
    """A CPython on Linux, on the lab's LAN (container ``mplab-<lab>-linuxpeer``)."""

    def __init__(self, lab: LanView, image: str | None = None, docker: str = "docker") -> None:
        self.lab = lab
        self.docker = docker
        self.image = image or f"mplab/services:{lab.topology.version}"
        self.name = container_name(lab.name)
        self.ip = peer_ip(lab)
        self._agent: subprocess.Popen[bytes] | None = None
        self._buf = b""

    def __repr__(self) -> str:
        return f"<LinuxPeer {self.name} {self.ip}>"

    # ---- lifecycle ----------------------------------------------------------------------
    def _network(self) -> str:
        nets = self.lab.networks()
        if not nets:
            raise LinuxPeerError(f"lab {self.lab.name} has no network: is it up?")
        return nets[0]

    def docker_cli(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` on the host (LinuxPeerError with docker's message unless ``check=False``)."""
        p = subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise LinuxPeerError(f"docker {args[0]} {self.name}: {(p.stderr or p.stdout).strip()}")
        return p

    def running(self) -> bool:
        p = self.docker_cli("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return p.returncode == 0 and p.stdout.strip() == "true"

    def start(self) -> LinuxPeer:
        """Start the container (idempotent) and the agent; check it has no route off the lab."""
        if not self.running():
            self.docker_cli("rm", "-f", self.name, check=False)
            lab = self.lab.name
            svc = str(self.lab.topology.services_ip)
            resolv = f"nameserver {svc}\\nsearch {self.lab.topology.domain}\\n"
            self.docker_cli(
                "run", "-d", "--name", self.name,
                "--label", "mplab=1", "--label", f"mplab.lab={lab}", "--label", f"mplab.role={ROLE}",
                "--network", self._network(), "--ip", self.ip,
                "--dns", svc,  # even Docker's embedded DNS would only forward inside the lab
                "--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
                "--sysctl", "net.ipv6.conf.default.disable_ipv6=1",
                "--cap-drop", "ALL", "--stop-timeout", "1",
                "--entrypoint", "sh", self.image,
                "-c", f"printf '{resolv}' > /etc/resolv.conf && exec sleep infinity",
            )  # fmt: skip
        # Docker gives containers on an internal network a default route via the gateway (the
        # host, which drops forwarding for internal networks): remove it, so the peer has no
        # route off the lab at all. The container has no capabilities, so the host does it in
        # the container's network namespace (the lab already needs root for captures).
        routes = self.docker_cli("exec", self.name, "ip", "-4", "route").stdout
        if "default" in routes:
            pid = self.docker_cli("inspect", "-f", "{{.State.Pid}}", self.name).stdout.strip()
            p = subprocess.run(
                ["nsenter", "-t", pid, "-n", "ip", "-4", "route", "del", "default"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if p.returncode != 0:
                self.stop()
                raise LinuxPeerError(f"{self.name}: cannot delete its default route: {p.stderr.strip()}")
            routes = self.docker_cli("exec", self.name, "ip", "-4", "route").stdout
        if "default" in routes:
            self.stop()
            raise LinuxPeerError(f"{self.name} has a default route (the LAN must be internal):\n{routes}")
        self._start_agent()
        return self

    def _start_agent(self) -> None:
        self._stop_agent()
        self._agent = subprocess.Popen(
            [self.docker, "exec", "-i", self.name, "python3", "-u", "-c", _AGENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buf = b""

    def _stop_agent(self) -> None:
        a, self._agent = self._agent, None
        if a is None:
            return
        with contextlib.suppress(OSError):
            a.stdin.close()  # type: ignore[union-attr]
        try:
            a.wait(2)
        except subprocess.TimeoutExpired:
            a.kill()
            a.wait()

    def stop(self) -> None:
        """Stop the agent and remove the container."""
        self._stop_agent()
        self.docker_cli("rm", "-f", self.name, check=False)

    def __enter__(self) -> LinuxPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- code ---------------------------------------------------------------------------
    def exec(self, code: str, timeout: float = 10.0) -> str:
        """Run ``code`` in the agent's namespace; return what it printed.

        A Python exception in the code raises LinuxPeerError with the traceback; on timeout the
        agent is restarted (its state is lost) and LinuxPeerError is raised.
        """
        if self._agent is None or self._agent.poll() is not None:
            self._start_agent()
        a = self._agent
        assert a is not None and a.stdin is not None and a.stdout is not None
        a.stdin.write(json.dumps({"code": code}).encode() + b"\n")
        a.stdin.flush()
        fd = a.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._stop_agent()
                raise LinuxPeerError(f"{self.name}: no answer within {timeout:g}s to:\n{code}")
            chunk = os.read(fd, 65536)
            if not chunk:
                self._stop_agent()
                raise LinuxPeerError(f"{self.name}: agent exited while running:\n{code}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        rep = json.loads(line)
        if rep["err"]:
            raise LinuxPeerError(f"{self.name}: {rep['err']}")
        return str(rep["out"])

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        import ast

        return ast.literal_eval(self.exec(f"print(repr({expr}))", timeout=timeout).strip())
