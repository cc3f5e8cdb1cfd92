"""``Lab`` and ``Node``: the public face of a running lab."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from . import hostnet, impair, linux_peer
from .console import Console, ConsoleError
from .errors import ConfigError, LabTimeout, NodeError
from .runtime import ComposeRuntime, ContainerInfo, Runtime
from .topology import Topology
from .util import wait_until

LEASES = "/var/lib/misc/dnsmasq.leases"
Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bringup_code(node: str) -> str:
    """Guest network bring-up (docs/conventions.md)."""
    return f"import network\nnetwork.hostname({node!r})\nlan = network.LAN()\nlan.active(True)\n"


@dataclass
class NodeStatus:
    name: str
    container: str
    state: str  # "up" | "down" | "no-repl" | ...
    container_ip: str
    ip: str
    mac: str
    serial: str  # "<container_ip>:<console_port> (127.0.0.1:<port>)"
    console_tail: str = ""


class Node:
    """One emulated device: a node container running QEMU running the firmware."""

    def __init__(self, lab: Lab, info: ContainerInfo) -> None:
        self.lab = lab
        self.info = info
        self.name = info.node_name
        self._console: Console | None = None

    def __repr__(self) -> str:
        return f"<Node {self.lab.name}/{self.name} {self.container_ip}>"

    @property
    def container(self) -> str:
        return self.info.name

    @property
    def container_ip(self) -> str:
        return self.info.ip

    @property
    def mac(self) -> str:
        return self.lab.topology.mac(self.name)

    @property
    def ip(self) -> str | None:
        """The guest's IP, from its DHCP lease (None until it has one)."""
        return self.lab.leases().get(self.mac.lower())

    @property
    def console_port(self) -> int:
        return self.lab.topology.console_port

    @property
    def console(self) -> Console:
        """The node's REPL, connected on first use to <container_ip>:<x-mplab.console_port>."""
        if self._console is None or self._console.closed:
            log = self.lab.artifacts / f"{self.name}.console.log" if self.lab.artifacts else None
            con = Console.connect_tcp(self.container_ip, self.console_port, timeout=15.0, log_path=log)
            con.name = f"{self.lab.name}/{self.name}"
            self._console = con
        return self._console

    def exec(self, code: str, timeout: float = 10.0) -> str:
        return self.console.exec(code, timeout=timeout)

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        return self.console.eval(expr, timeout=timeout)

    def refresh(self) -> None:
        for c in self.lab.runtime.containers(self.lab.name):
            if c.id == self.info.id:
                self.info = c
                return
        raise NodeError(f"{self.lab.name}/{self.name}: container {self.container} is gone")

    def is_alive(self) -> bool:
        """The container (whose PID 1 is QEMU) still runs."""
        try:
            self.refresh()
        except NodeError:
            return False
        return self.info.running

    def logs(self, tail: int | None = None) -> str:
        """The console log (everything the guest printed) and the entrypoint's messages."""
        return self.lab.runtime.logs(self.container, tail=tail)

    def qmp(self, command: str, timeout: float = 10.0) -> str:
        p = self.lab.runtime.exec(self.container, ["mplab-qmp", command], timeout=timeout)
        if p.returncode != 0:
            raise NodeError(f"{self.lab.name}/{self.name}: QMP {command} failed: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def reset(self, bringup: bool = True, timeout: float = 30.0) -> None:
        """Hard-reset the emulated board (QMP system_reset); then redo network bring-up."""
        self.qmp('{"execute":"system_reset"}')
        if self._console is not None:
            self._console.resync()  # the guest rebooted
        if bringup:
            self.console.enter_raw(timeout=10.0)
            self.bringup()
            self.wait_connected(timeout)

    def bringup(self) -> None:
        # Generous: a node booting on a loaded host can take seconds to answer its console.
        self.exec(bringup_code(self.name), timeout=30.0)

    def connected(self) -> bool:
        return bool(self.eval("lan.isconnected()", timeout=5.0))

    def wait_connected(self, timeout: float = 30.0) -> None:
        try:
            wait_until(self.connected, timeout, f"{self.lab.name}/{self.name}'s DHCP lease", interval=0.2)
        except LabTimeout:
            raise NodeError(f"{self.lab.name}/{self.name}: no DHCP lease within {timeout:g}s") from None

    def close(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None

    @property
    def console_open(self) -> Console | None:
        """The console if it is connected, else None (does not connect)."""
        return self._console if self._console is not None and not self._console.closed else None

    # ---- impairments and link (lab/impair/, docs/impairments.md) ---------------------
    def impair_target(self) -> impair.Target:
        """What lab/impair acts on: this node's container and guest MAC."""
        return impair.Target(self.lab.name, self.name, self.container, self.mac, self.info.id, self.lab.runtime.exec)

    def impair(self, **fields: Any) -> impair.Impairment:
        """Impair the node's link (tc netem, or the userspace engine where the kernel has no
        netem): ``impair(loss="10%", delay="100ms", direction="in")``.

        Replaces what the directions it names had; the other direction keeps its own.
        Returns the ``Impairment``; ``with node.impair(...):`` clears on exit.
        """
        return impair.apply(self.impair_target(), impair.make(**fields))

    def clear_impairments(self) -> None:
        impair.clear(self.impair_target())

    def impairments(self) -> dict[str, str]:
        """Active impairments read back from the engine, e.g. ``{"loss": "10%", "direction": "out"}``."""
        return impair.current(self.impair_target())

    def link(self, up: bool) -> None:
        """Carrier on/off at the guest's NIC (QMP set_link on net0): the guest sees the link go."""
        self.qmp(json.dumps({"execute": "set_link", "arguments": {"name": "net0", "up": bool(up)}}))


class Lab:
    """A lab: containers on a Docker LAN, one services container, N nodes.

    ``Lab("x").up(nodes=3)`` starts it (idempotent), ``down()`` removes everything labelled
    ``mplab.lab=x``. ``nodes`` / ``node(name)`` give the running nodes.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        compose_file: Path | None = None,
        runtime: Runtime | None = None,
        progress: Progress | None = _stderr,
        artifacts: Path | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.topology = topology or Topology.load(lab=name, compose_file=compose_file)
        self.name = self.topology.lab
        self.runtime = runtime or ComposeRuntime()
        self.progress: Progress = progress or (lambda _msg: None)
        self.artifacts = artifacts
        self._nodes: dict[str, Node] = {}

    def __repr__(self) -> str:
        return f"<Lab {self.name} {self.topology.subnet}>"

    # ---- addresses --------------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        """The host's address on the lab bridge (the compose network's gateway)."""
        return str(self.topology.gateway)

    @property
    def bridge(self) -> str:
        return self.topology.bridge

    @property
    def services_ip(self) -> str:
        return str(self.topology.services_ip)

    @property
    def gateway(self) -> str:
        return self.host_ip

    @property
    def subnet(self) -> IPv4Network:
        return self.topology.subnet

    def capture(self, path: Path | str, bpf: str | None = None, node: str | None = None, console: bool = False) -> Any:
        """A (not yet started) Capture on the lab bridge, optionally of one node's frames.

        The host's serial-console sessions to the node containers cross the same bridge; they
        are left out unless ``console`` is true, so pcaps hold the guests' traffic only.
        """
        from .capture import Capture  # scapy is slow to import: only when a capture is made

        if not console:
            topo = self.topology
            no_console = f"not (tcp port {topo.console_port} and net {topo.ip_range})"
            bpf = f"({bpf}) and {no_console}" if bpf else no_console
        return Capture(self.bridge, path, bpf=bpf, mac=self.topology.mac(node) if node else None)

    # ---- lifecycle --------------------------------------------------------------------
    def up(self, nodes: int | None = None, timeout: float = 60.0, bringup: bool = True) -> list[Node]:
        """Start (or scale) the lab, bring every guest's network up, wait for leases."""
        n = nodes if nodes is not None else self.topology.nodes
        if not 1 <= n <= 62:
            raise ConfigError(f"invalid node count {n}: use 1..62")
        self.runtime.check()
        self._check_subnet_free()
        self._host_net("ensure")
        t0 = time.monotonic()
        self.progress(f"lab {self.name}: starting {n} node(s) on {self.topology.subnet} (bridge {self.bridge})")
        self.runtime.up(self.topology, n)
        self._nodes = {}
        nodes_ = self.nodes
        if len(nodes_) != n:
            raise NodeError(f"lab {self.name}: expected {n} nodes, found {len(nodes_)} containers")
        dead = [x for x in nodes_ if not x.info.running]
        if dead:
            raise NodeError(
                f"lab {self.name}: {', '.join(x.name for x in dead)} exited at start:\n" + dead[0].logs(tail=20)
            )
        if bringup:
            self._bringup(nodes_, timeout, t0)
        self.progress(f"lab {self.name}: up, {n} node(s), {time.monotonic() - t0:.1f}s")
        return nodes_

    def _host_net(self, action: str) -> None:
        """Add (``ensure``) or drop (``remove``) the lab's host firewall rule (tap-net/mplab-host-net)."""
        hostnet.bridge_rule(self.topology.compose_file.parent / "tap-net" / "mplab-host-net", action, self.bridge)

    def _check_subnet_free(self) -> None:
        # A host route into the lab's subnet (a real LAN, a VPN) would be shadowed by the lab.
        hostnet.check_routes_free(self.name, self.topology.subnet, self.bridge)
        hostnet.check_networks_free(
            self.name, self.topology.subnet, self.runtime.subnets_in_use(), set(self.runtime.networks(self.name))
        )

    def _bringup(self, nodes: list[Node], timeout: float, t0: float) -> None:
        deadline = time.monotonic() + timeout

        def start(nd: Node) -> None:
            try:
                nd.console  # noqa: B018 (connect)
                nd.bringup()
            except ConsoleError as e:
                raise NodeError(f"{self.name}/{nd.name}: bring-up failed: {e}\nconsole log:\n{nd.logs(tail=20)}") from e
            self.progress(f"  {nd.name}: REPL ok, DHCP started (mac {nd.mac})")

        # Nodes boot independently: talk to all their consoles at once (32 nodes: 20 s -> a few).
        with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
            for future in [pool.submit(start, nd) for nd in nodes]:
                future.result()
        pending = {nd.name: nd for nd in nodes}

        def all_leased() -> bool:
            leases = self.leases()
            for name, nd in list(pending.items()):
                if nd.connected() and nd.mac in leases:
                    self.progress(f"  {name}: {leases[nd.mac]} ({time.monotonic() - t0:.1f}s)")
                    del pending[name]
            return not pending

        try:
            wait_until(all_leased, deadline - time.monotonic(), "every DHCP lease", interval=0.2)
        except LabTimeout:
            raise NodeError(f"lab {self.name}: no DHCP lease within {timeout:g}s for {', '.join(pending)}") from None

    def down(self) -> list[str]:
        """Remove every container and network of the lab (also after a crash)."""
        self.close()
        # The host side first: it needs no Docker, so it goes even if the daemon is down.
        swept = hostnet.host_cleanup(self.name)  # the lab's nft tables (impair/inject/tcp_peer)
        self._host_net("remove")
        self.runtime.check()
        swept += linux_peer.cleanup(self.name)  # before the LAN: its endpoint would keep it
        swept += self.runtime.down(self.name, self.topology)
        self.progress(f"lab {self.name}: down")
        return swept

    def close(self) -> None:
        for nd in self._nodes.values():
            nd.close()
        self._nodes = {}

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- inspection -------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """The lab's nodes (node1..nodeN), refreshed from the runtime."""
        infos = [c for c in self.runtime.containers(self.name) if c.role == "node"]
        fresh: dict[str, Node] = {}
        for c in infos:
            nd = self._nodes.get(c.node_name)
            if nd is None or nd.info.id != c.id:
                nd = Node(self, c)
            else:
                nd.info = c
            fresh[nd.name] = nd
        self._nodes = fresh
        return sorted(fresh.values(), key=lambda x: (x.info.number, x.name))

    def node(self, name: str) -> Node:
        for nd in self.nodes:
            if nd.name == name:
                return nd
        names = ", ".join(x.name for x in self.nodes) or "none: is the lab up?"
        raise ConfigError(f"lab {self.name} has no node {name!r} (nodes: {names})")

    @property
    def open_nodes(self) -> list[Node]:
        """The nodes this Lab object already knows (no runtime query), e.g. to collect consoles."""
        return list(self._nodes.values())

    def networks(self) -> list[str]:
        """The lab's container networks (the LAN)."""
        return self.runtime.networks(self.name)

    def lan_hosts(self) -> dict[str, str]:
        """IP → MAC of every lab host we can name: guests (leases), the host, services.

        Node containers are listed with an empty MAC (known to be lab hosts, MAC not needed).
        """
        out = {ip: mac for mac, ip in self.leases().items()}
        out[self.host_ip] = hostnet.bridge_mac(self.bridge)
        svc = self.services_container()
        if svc is not None:
            p = self.runtime.exec(svc.name, ["cat", "/sys/class/net/eth0/address"], timeout=10)
            if p.returncode == 0:
                out[self.services_ip] = p.stdout.strip()
        for nd in self.nodes:
            if nd.container_ip:
                out.setdefault(nd.container_ip, "")
        return out

    def services_container(self) -> ContainerInfo | None:
        for c in self.runtime.containers(self.name):
            if c.role == "services":
                return c
        return None

    def leases(self) -> dict[str, str]:
        """mac → guest IP, from dnsmasq's lease file in the services container."""
        svc = self.services_container()
        if svc is None or not svc.running:
            return {}
        p = self.runtime.exec(svc.name, ["cat", LEASES], timeout=10)
        out: dict[str, str] = {}
        for line in p.stdout.splitlines():
            f = line.split()
            if len(f) >= 3:
                out[f[1].lower()] = f[2]
        return out

    def status(self) -> list[NodeStatus]:
        leases = self.leases()
        rows = []
        for nd in self.nodes:
            c = nd.info
            port = f"{c.ip or '-'}:{self.topology.console_port}"
            if c.console_host_port:
                port += f" (127.0.0.1:{c.console_host_port})"
            tail = ""
            if c.running:
                state = "up"
            else:
                state = f"down ({c.state}, exit {c.exit_code})"
                tail = nd.logs(tail=15)
            rows.append(NodeStatus(nd.name, c.name, state, c.ip, leases.get(nd.mac, "-"), nd.mac, port, tail))
        return rows
