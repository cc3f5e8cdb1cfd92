"""``Lab`` and ``Node``: the public face of a running lab.

Why one module of this size (~700 lines): a ``Node`` is a view of its ``Lab`` (the runtime,
the topology, the artifacts directory, the node cache) and ``Lab`` makes and caches ``Node``s;
apart, each module would import the other. The work both delegate lives in the parts
(runtime, console, guestfs, impair, lanservices).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from . import guestfs, hostnet, impair, lanservices
from .ca import Issued, LabCA
from .console import Console, ConsoleClosed, ConsoleError, ConsoleReset, hard_boots
from .errors import ConfigError, LabError, LabTimeout, NodeDown, NodeError
from .runtime import ContainerEvent, ContainerInfo, Runtime, Watch, runtime_from_env
from .topology import Topology, validate_nodes
from .util import wait_until

LEASES = "/var/lib/misc/dnsmasq.leases"
GUEST_CA = lanservices.GUEST_CA  # the lab CA's certificate on every node: /certs/ca.pem
GUEST_CERT = "/certs/node.pem"  # a node's own certificate (Node.install_cert), for its TLS servers
GUEST_KEY = "/certs/node.key"  # and its key
# In the node container: why the guest needs `mplab reset` (a reboot whose network bring-up
# could not be redone). Lives with the container, so every process (status) sees it.
GUEST_STATE = "/run/mplab/guest-state"
# Files staged for the guest to read by semihosting (Node.stage; in the container, not on a volume).
STAGE_DIR = "/run/mplab/stage"
REBOOTED = "it rebooted after its network bring-up: its network is down until the next exec redoes it"
NEVER_UP = "its network was never brought up"
Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


# What the bring-up prints, so that the node's console log shows when its network came up:
# a hard boot's banner after the last one means the guest rebooted since (Node.reboot_unseen).
BRINGUP_MARK = "mplab: network bring-up"
# Consoles brought up at once by `up`: a worker mostly waits on its guest's answer, so more of
# them than cores (docs/scale-out.md has the measurement at 64-256 nodes).
BRINGUP_WORKERS = 32


def up_timeout(nodes: int) -> float:
    """`up`'s default wait for every lease: 60 s, plus 1 s a node beyond 32 (the consoles of a
    big lab are brought up some at a time on a saturated host; docs/scale-out.md)."""
    return 60.0 + 1.0 * max(0, nodes - 32)


def bringup_code(node: str) -> str:
    """Guest network bring-up (docs/conventions.md)."""
    return (
        f"import network\nnetwork.hostname({node!r})\nlan = network.LAN()\nlan.active(True)\n"
        f"print({BRINGUP_MARK + ' ' + node!r})\n"
    )


def console_tail(log: str, lines: int = 8) -> str:
    """The last ``lines`` lines of a console log, indented for a message ("" if it is empty)."""
    return "\n  ".join(log.rstrip().splitlines()[-lines:])


def put_small_code(path: str, data: bytes) -> str:
    """Guest code that writes a small file (the lab CA, 0.6 KB) in the same exec as the rest: at
    256 nodes every console round trip of the bring-up counts (guestfs.put takes seven)."""
    d = path.rsplit("/", 1)[0]
    return (
        f"import os\ntry:\n    os.mkdir({d!r})\nexcept OSError:\n    pass\n"
        f"with open({path!r}, 'wb') as _f:\n    _f.write({data!r})\ndel _f\n"
    )


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
        """The node's REPL, connected on first use to <container_ip>:<x-mplab.console_port>.

        A node whose container is not running raises NodeDown at once (with its console
        tail and the fix), rather than waiting for a console that cannot answer.
        """
        if self._console is None or self._console.closed:
            if not self.info.running:
                raise self._down("")
            log = self.lab.artifacts / f"{self.name}.console.log" if self.lab.artifacts else None
            con = Console.connect_tcp(self.container_ip, self.console_port, timeout=15.0, log_path=log)
            con.name = f"{self.lab.name}/{self.name}"
            con.on_reboot = self._rebooted_between_execs
            self._console = con
            # A reboot while no console of ours was connected (a QMP system_reset from
            # outside, a machine.reset() by code nobody waited for) printed its banner only
            # to the log: bring the network back now, as an exec that saw it would have.
            if self.reboot_unseen() == REBOOTED and not self.guest_mark():
                self.lab.progress(f"{self.lab.name}/{self.name}: rebooted since its network bring-up")
                self.lab.progress(f"{self.lab.name}/{self.name}: {self._after_reset()}")
        return self._console

    def reboot_unseen(self) -> str:
        """``REBOOTED`` if the guest's console log has a hard boot's banner after the last
        network bring-up (its network is down, whatever the lease table says), ``NEVER_UP``
        if it booted and no bring-up followed at all, else ""."""
        log = self.logs(tail=400)  # the recent log; the whole one if the bring-up is not in it
        if BRINGUP_MARK not in log:
            log = self.logs()
        boots, mark = hard_boots(log), log.rfind(BRINGUP_MARK)
        if not boots or boots[-1] < mark:
            return ""
        return REBOOTED if mark >= 0 else NEVER_UP

    def exec(self, code: str, timeout: float = 10.0, on_output: Callable[[str], None] | None = None) -> str:
        """Run ``code`` on the guest; return its stdout. ``on_output(text)`` gets it as it comes.

        Errors carry ``.output``, all the stdout received: GuestError, ConsoleTimeout,
        ConsoleReset (the guest rebooted: its network bring-up is redone, or the node is
        marked as needing ``mplab reset``), NodeDown (the container died; ``mplab up``).
        """
        parts: list[str] = []
        for text in self.exec_iter(code, timeout):
            parts.append(text)
            if on_output is not None:
                on_output(text)
        return "".join(parts)

    def exec_iter(self, code: str, timeout: float = 10.0) -> Iterator[str]:
        """Run ``code`` on the guest, yield its stdout as it arrives; raise as :meth:`exec`."""
        con = self.console
        try:
            yield from con.exec_iter(code, timeout)
        except ConsoleReset as e:
            raise ConsoleReset(f"{self.name} reset during exec: {self._after_reset()}", output=e.output) from None
        except ConsoleClosed as e:
            if self.died():
                raise self._down(e.output) from None
            raise

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        """``ast.literal_eval`` of the guest's ``repr(expr)`` (Console.eval)."""
        try:
            return self.console.eval(expr, timeout=timeout)
        except ConsoleClosed as e:
            if self.died():
                raise self._down(e.output) from None
            raise

    def _down(self, output: str) -> NodeDown:
        c = self.info
        tail = console_tail(self.logs(tail=8))
        return NodeDown(
            f"{self.lab.name}/{self.name} is down (container {c.name} {c.state}, exit {c.exit_code}): "
            f"`mplab --lab {self.lab.name} up` restores it"
            + (f"; {output.count(chr(10))} lines of output came before" if output else "")
            + (f"\nconsole tail:\n  {tail}" if tail else ""),
            output=output,
        )

    def _rebooted_between_execs(self) -> None:
        """The guest rebooted while nobody was reading its console: bring its network back
        before the next exec runs (or mark it for `mplab reset`)."""
        con = self._console
        if con is not None:
            con.on_reboot = None  # the bring-up below execs too
            try:
                self._after_reset()
            finally:
                con.on_reboot = self._rebooted_between_execs

    def _after_reset(self) -> str:
        """The guest rebooted on its own: redo its network bring-up, or mark it for a reset."""
        try:
            self.console.enter_raw(timeout=15.0)
            self.bringup()
            self.wait_connected(30.0)
        except (ConsoleError, NodeError) as e:
            why = f"rebooted during an exec; network bring-up failed: {str(e).splitlines()[0]}"
            self.mark_guest(why)
            return f"network bring-up failed ({str(e).splitlines()[0]}); run `mplab reset {self.name}`"
        self.mark_guest("")
        return f"network bring-up redone, ip {self.ip}"

    def mark_guest(self, why: str) -> None:
        """Record (or clear, with "") why the guest needs ``mplab reset``; ``status`` shows it."""
        cmd = f"printf '%s\\n' {_sh_quote(why)} > {GUEST_STATE}" if why else f"rm -f {GUEST_STATE}"
        self.lab.runtime.exec(self.container, ["sh", "-c", cmd], timeout=10)

    def guest_mark(self) -> str:
        """Why the guest needs ``mplab reset`` ("" when it does not)."""
        p = self.lab.runtime.exec(self.container, ["cat", GUEST_STATE], timeout=10)
        return p.stdout.strip() if p.returncode == 0 else ""

    def refresh(self) -> None:
        for c in self.lab.runtime.containers(self.lab.name):
            if c.id == self.info.id:
                self.info = c
                return
        raise NodeError(f"{self.lab.name}/{self.name}: container {self.container} is gone")

    @property
    def pid(self) -> int:
        """The host PID of the node's QEMU (its container's PID 1); 0 if it is not running."""
        return self.lab.runtime.pid(self.container)

    def is_alive(self) -> bool:
        """The container (whose PID 1 is QEMU) still runs."""
        try:
            self.refresh()
        except NodeError:
            return False
        return self.info.running

    def died(self, grace: float = 5.0) -> bool:
        """The container is dead, or dies within ``grace`` s: a console that hung up may have
        seen QEMU exit before the engine did (the socket closes first, the state follows)."""
        try:
            wait_until(lambda: not self.is_alive(), grace, "the container's death", interval=0.1)
        except LabTimeout:
            return False
        return True

    def logs(self, tail: int | None = None) -> str:
        """The console log (everything the guest printed) and the entrypoint's messages."""
        return self.lab.runtime.logs(self.container, tail=tail)

    def stage(self, files: Mapping[str, bytes]) -> str:
        """Put ``files`` into the node's container, where the guest reads them by semihosting
        (lab.guestfs's fast channel); return that directory. Removed with the container."""
        self.lab.runtime.copy_in(self.container, STAGE_DIR, files)
        return STAGE_DIR

    def qmp(self, command: str, timeout: float = 10.0) -> str:
        p = self.lab.runtime.exec(self.container, ["mplab-qmp", command], timeout=timeout)
        if p.returncode != 0:
            raise NodeError(f"{self.lab.name}/{self.name}: QMP {command} failed: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def reset(self, bringup: bool = True, timeout: float = 30.0) -> None:
        """Hard-reset the emulated board (QMP system_reset); then redo network bring-up."""
        # Connected first, so that the banner of this reset is ours (the console resyncs past
        # it), not a reboot nobody saw (which opening the console afterwards would redo the
        # bring-up for, even with bringup=False).
        con = self.console
        self.qmp('{"execute":"system_reset"}')
        con.resync()  # the guest rebooted
        if bringup:
            self.console.enter_raw(timeout=10.0)
            self.bringup()
            self.install_ca()
            self.wait_connected(timeout)
            self.mark_guest("")
        else:
            self.mark_guest("reset with --no-bringup: its network is down")

    def bringup(self, with_ca: bool = False) -> None:
        """The guest's network bring-up; ``with_ca``: and the lab CA at ``GUEST_CA`` in the same
        exec (what ``install_ca`` does, one round trip instead of seven)."""
        code = bringup_code(self.name)
        if with_ca and self.lab.ca_cert.is_file():
            code += put_small_code(GUEST_CA, self.lab.ca_cert.read_bytes())
        # Generous: a node booting on a loaded host can take seconds to answer its console.
        self.exec(code, timeout=30.0)

    def install_ca(self) -> bool:
        """Copy the lab's CA certificate to ``GUEST_CA`` (/certs/ca.pem); False if the lab has none.

        The node's filesystem is a RAM disk (it survives a QMP reset, not a cold boot), so
        ``Lab.up`` and ``reset`` call this after every bring-up.
        """
        src = self.lab.ca_cert
        if not src.is_file():
            return False
        d = GUEST_CA.rsplit("/", 1)[0]
        self.exec(f"import os\ntry:\n    os.mkdir({d!r})\nexcept OSError:\n    pass", timeout=15.0)
        guestfs.put(self, src.read_bytes(), GUEST_CA)
        return True

    def install_cert(self) -> Issued:
        """Issue a server certificate for the node's lab name (``node1.<domain>``, with its IPv4
        and IPv6 addresses as SANs), signed by the lab CA, and copy it and its key onto the node
        at ``GUEST_CERT`` / ``GUEST_KEY`` (/certs/node.pem, /certs/node.key). The host's copies
        are in ``<run_dir>/tls/<node>/``; ``down`` removes them with the CA."""
        ca = LabCA.load(self.lab.run_dir)
        if ca is None:
            raise ConfigError(
                f"{self.lab.name}/{self.name}: the lab has no CA in {self.lab.run_dir}; "
                "fix: bring it up with `mplab up`"
            )
        ip = self.ip
        if ip is None:
            raise NodeError(f"{self.lab.name}/{self.name}: no DHCP lease yet, so no address for its certificate")
        topo = self.lab.topology
        issued = ca.issue(self.name, [f"{self.name}.{topo.domain}"], [ip, str(topo.ip6(self.name))])
        d = GUEST_CERT.rsplit("/", 1)[0]
        self.exec(f"import os\ntry:\n    os.mkdir({d!r})\nexcept OSError:\n    pass", timeout=15.0)
        guestfs.put(self, issued.cert.read_bytes(), GUEST_CERT)
        guestfs.put(self, issued.key.read_bytes(), GUEST_KEY)
        return issued

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
        rt = self.lab.runtime
        return impair.Target(
            self.lab.name, self.name, self.container, self.mac, self.info.id, rt.exec, rt.exec_detached, rt.pid
        )

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
        self.runtime = runtime or runtime_from_env()
        self.progress: Progress = progress or (lambda _msg: None)
        self.artifacts = artifacts
        self._nodes: dict[str, Node] = {}
        if topology is None:
            self._adopt_running_subnet()

    def _lab_subnet(self) -> IPv4Network | None:
        """The IPv4 subnet of the lab's network if it exists (a lab that is up)."""
        mine = set(self.runtime.networks(self.name))
        if not mine:
            return None
        for cidr, net in self.runtime.subnets_in_use().items():
            if net in mine and ":" not in cidr:
                return IPv4Network(cidr)
        return None

    def _adopt_running_subnet(self) -> None:
        """A lab already up on a bigger block than x-mplab.nodes needs (``up --nodes 100``): take
        that block's layout, so that status, capture filters and scaling see the lab as it is."""
        try:
            cur = self._lab_subnet()
        except LabError:
            return  # no engine: nothing runs, and commands that need one say so themselves
        if cur is not None and cur != self.topology.subnet and 16 <= cur.prefixlen <= 30:
            have = self.topology.with_prefix(cur.prefixlen)
            if have.subnet == cur:
                self.topology = have

    def _plan(self, n: int) -> Topology:
        """The topology for ``n`` nodes: the smallest block that holds them, or the lab's own
        if it is up on one that does; a lab up on a block too small is one line with the fix."""
        want = self.topology.sized(n)
        cur = self._lab_subnet()
        if cur is None or cur == want.subnet:
            return want
        have = self.topology.with_prefix(cur.prefixlen) if 16 <= cur.prefixlen <= 30 else None
        if have is not None and have.subnet == cur and have.capacity >= n:
            return dataclasses.replace(have, nodes=n)
        held = f"which holds {have.capacity} nodes" if have is not None and have.subnet == cur else "another plan"
        raise ConfigError(
            f"lab {self.name} is up on {cur} ({held}); {n} nodes need {want.subnet}; "
            f"fix: `mplab --lab {self.name} down`, then `mplab --lab {self.name} up --nodes {n}`"
        )

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

    # ---- service daemons and the lab CA (docs/services.md) ---------------------------
    @property
    def run_dir(self) -> Path:
        """The lab's host directory (build/labs/<lab>): ``tls/`` (CA and service certificates),
        ``ca/`` (the CA's key), ``www/`` (served by nginx at http(s)://www.<domain>/). Made at
        ``up``, removed with everything in it at ``down``."""
        return self.topology.run_dir

    @property
    def ca_cert(self) -> Path:
        """The host path of the lab CA's certificate, the file every node has at ``GUEST_CA``."""
        return lanservices.ca_cert(self.topology)

    @property
    def services(self) -> tuple[str, ...]:
        """The service daemons this lab starts (x-mplab.services): some of mqtt, www, ntp."""
        return self.topology.services

    def service_ip(self, name: str) -> str:
        """The IPv4 address of service ``name`` (its DNS name is ``<name>.<domain>``)."""
        return str(self.topology.service_ip(name))

    def service_containers(self) -> dict[str, ContainerInfo]:
        """service name -> its container, for the daemons that exist."""
        return lanservices.daemons(self.runtime.containers(self.name))

    def restart_service(self, name: str, timeout: float = 60.0) -> float:
        """Restart service daemon ``name`` (``docker restart`` of its container) and wait until
        its health check passes; the seconds it took. LabError for a service the lab lacks."""
        return lanservices.restart(self.runtime, self.topology, name, timeout, self.progress)

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
    def up(
        self, nodes: int | None = None, timeout: float | None = None, bringup: bool = True, keep: bool = False
    ) -> list[Node]:
        """Start (or scale) the lab, bring every guest's network up, wait for leases.

        If it fails, a lab that did not exist before is rolled back (``down``), unless
        ``keep``; otherwise the error says what is left and that ``mplab down`` removes it.
        """
        n = nodes if nodes is not None else self.topology.nodes
        validate_nodes(n)
        timeout = up_timeout(n) if timeout is None else timeout
        self.runtime.check()
        self.topology = self._plan(n)
        self._check_subnet_free()
        existed = bool(self.runtime.containers(self.name) or self.runtime.networks(self.name))
        try:
            return self._up(n, timeout, bringup)
        except (LabError, KeyboardInterrupt) as e:
            self.close()
            if not existed and not keep:
                try:
                    self.down()
                    note = "rolled back: the lab's containers, network and host rules are removed (--keep leaves them)"
                except LabError as e2:
                    note = (
                        f"roll-back failed ({str(e2).splitlines()[0]}): `mplab --lab {self.name} down` removes the rest"
                    )
            else:
                left = [c.name for c in self.runtime.containers(self.name)] + self.runtime.networks(self.name)
                note = (
                    f"left: {', '.join(left) or 'nothing'}; `mplab --lab {self.name} down` removes it"
                    if left
                    else "nothing of the lab is left"
                )
            if isinstance(e, LabError):
                e.args = (f"{e}\n{note}",)
            else:
                self.progress(f"lab {self.name}: interrupted; {note}")
            raise

    def _up(self, n: int, timeout: float, bringup: bool) -> list[Node]:
        self._host_net("ensure")
        t0 = time.monotonic()
        self.progress(f"lab {self.name}: starting {n} node(s) on {self.topology.subnet} (bridge {self.bridge})")
        # The CA and the daemons' certificates come first: the daemons mount them. A lab with
        # no running container gets a new CA.
        running = [c for c in self.runtime.containers(self.name) if c.running]
        daemons_up = any(c.role == "service" for c in running)
        lanservices.prepare(self.topology, fresh=not running, daemons_up=daemons_up)
        self.runtime.up(self.topology, n, self.progress)
        self.progress(f"lab {self.name}: containers up ({time.monotonic() - t0:.1f}s)")
        # Nodes kept from before (same container) keep their console: QEMU serves one client,
        # so a second connection to a node this Lab already holds would hear nothing.
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
        if self.topology.services:
            lanservices.wait_healthy(self.runtime, self.topology, timeout, self.progress)
        self.progress(f"lab {self.name}: up, {n} node(s), {time.monotonic() - t0:.1f}s")
        return nodes_

    def _host_net(self, action: str) -> None:
        """Add (``ensure``) or drop (``remove``) the lab's host firewall rule (tap-net/mplab-host-net)."""
        try:
            script = hostnet.helper("mplab-host-net")
        except LabError:
            if action == "remove":
                return  # down goes on: nothing can have been added without the helper
            raise
        hostnet.bridge_rule(script, action, self.bridge)

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
                nd.bringup(with_ca=True)
            except ConsoleError as e:
                raise NodeError(f"{self.name}/{nd.name}: bring-up failed: {e}\nconsole log:\n{nd.logs(tail=20)}") from e
            self.progress(f"  {nd.name}: REPL ok, DHCP started (mac {nd.mac})")

        # Nodes boot independently: talk to all their consoles at once (32 nodes: 20 s -> a few).
        # Each worker mostly waits on a guest, so more of them than cores: BRINGUP_WORKERS.
        pending = {nd.name: nd for nd in nodes}
        with ThreadPoolExecutor(max_workers=min(BRINGUP_WORKERS, len(nodes))) as pool:
            for future in [pool.submit(start, nd) for nd in nodes]:
                future.result()

            def all_leased() -> bool:
                # one read of the lease table, then the leased guests asked side by side (one at
                # a time, 256 nodes took 16 s per pass)
                leases = self.leases()
                have = [nd for nd in pending.values() if nd.mac in leases]
                for nd, ok in zip(have, pool.map(lambda x: x.connected(), have), strict=True):
                    if ok:
                        self.progress(f"  {nd.name}: {leases[nd.mac]} ({time.monotonic() - t0:.1f}s)")
                        del pending[nd.name]
                return not pending

            try:
                wait_until(all_leased, deadline - time.monotonic(), "every DHCP lease", interval=0.2)
            except LabTimeout:
                raise NodeError(
                    f"lab {self.name}: no DHCP lease within {timeout:g}s for {', '.join(pending)}"
                ) from None

    def watch_nodes(self, report: Callable[[str], None] | None = None) -> Watch:
        """Watch the lab's containers through the engine's events until the Watch is closed.

        A node container that dies has its console closed at once, so that an exec waiting on
        it ends with NodeDown instead of running into its timeout, and ``report`` (default:
        the lab's progress) gets one message naming the node, the exit code and its console
        tail, while the test or scenario is still running.
        """
        say = report or self.progress

        def on_event(ev: ContainerEvent) -> None:
            if ev.action not in ("die", "oom") or ev.role != "node":
                return
            nd = self._nodes.get(ev.node)
            if nd is not None:
                nd.close()
            if ev.action == "die":
                tail = console_tail(self.runtime.logs(ev.container, tail=8))
                say(
                    f"lab {self.name}: {ev.node} died (container {ev.container}, exit {ev.exit_code}); "
                    f"`mplab --lab {self.name} up` restores it" + (f"\nconsole tail:\n  {tail}" if tail else "")
                )

        return self.runtime.watch(self.name, on_event)

    def down(self) -> list[str]:
        """Remove every container and network of the lab (also after a crash)."""
        self.close()
        # The host side first: it needs no Docker, so it goes even if the daemon is down.
        swept = hostnet.host_cleanup(self.name)  # the lab's nft tables (impair/inject/tcp_peer)
        self._host_net("remove")
        self.runtime.check()
        swept += self.runtime.down(self.name, self.topology)
        swept += lanservices.remove(self.topology)  # the CA, every key, www/
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
        for c in self.service_containers().values():
            if c.ip:
                out[c.ip] = c.mac
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
        """One row per node. Each running node's guest state is read from its container, all
        nodes at once (an exec costs the daemon 50-100 ms: one after the other, 32 nodes took
        seconds)."""
        leases = self.leases()
        nodes = self.nodes

        def row(nd: Node) -> NodeStatus:
            c = nd.info
            port = f"{c.ip or '-'}:{self.topology.console_port}"
            if c.console_host_port:
                port += f" (127.0.0.1:{c.console_host_port})"
            tail = ""
            guest_down = False
            if c.running:
                mark = nd.guest_mark() or nd.reboot_unseen()
                guest_down = bool(mark)
                state = f"up, guest needs `mplab reset {nd.name}` ({mark})" if mark else "up"
            else:
                state = f"down ({c.state}, exit {c.exit_code})"
                tail = nd.logs(tail=15)
            # a dead guest, or one whose network is down, holds no address (its lease stays)
            ip = leases.get(nd.mac, "-") if c.running and not guest_down else "-"
            return NodeStatus(nd.name, c.name, state, c.ip, ip, nd.mac, port, tail)

        if not nodes:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
            return list(pool.map(row, nodes))
