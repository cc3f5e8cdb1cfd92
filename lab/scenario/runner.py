"""Running a scenario: a dedicated lab on the chosen firmware, a capture on its bridge, the
files and host peers, the timeline (each step run by its action in actions.py), then the
judgement (judge.py) and the bundle (bundle.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .. import deploy, guestfs, packages
from ..console import ConsoleError
from ..errors import LabError, NodeError
from ..lab import Lab
from ..peers import HostPeer, tcp_behaviour
from ..topology import Topology
from . import actions, judge
from .bundle import bundle_dir, write_verdict
from .firmware import Firmware
from .model import (
    ERROR,
    NOT_REPRODUCED,
    REPRODUCED,
    VAR_RE,
    Check,
    PacketRef,
    Peer,
    Progress,
    Result,
    Scenario,
    Step,
    StepFailed,
    StepResult,
    WireSpec,
)


class ScenarioPeer:
    """One entry of a scenario's ``peers:``, started: lab.peers sockets, or the services
    container, or lab.tcp_peer's / lab.inject's scapy peers."""

    def __init__(self, peer: Peer, host: HostPeer) -> None:
        self.peer = peer
        self.host = host
        self.ip = host.ip
        self.port = peer.port
        self.obj: Any = None  # what serves: a UdpPeer, a TcpServer, a TcpPeer, a DnsResponder
        self.running = False  # started and not stopped (a `peer` step switches a dns peer)

    def setup(self, lab: Lab) -> None:
        """Make the peer's object without starting it: a dns peer with ``up: false`` is started
        by a ``peer`` step of the timeline (and may be stopped and started again)."""
        if self.peer.kind == "dns":
            from ..inject import DnsResponder

            o = self.peer.options
            kw = {k: x for k, x in o.items() if k not in ("query", "up")}
            if "node" in kw:
                kw["node"] = lab.node(str(kw["node"]))
            self.obj = DnsResponder(lab, str(o["query"]), **kw)

    def start(self, lab: Lab) -> ScenarioPeer:
        p, o = self.peer, self.peer.options
        self.running = True
        if p.kind == "services":
            self.ip = lab.services_ip  # the port is the service's (lab.services), set by load()
        elif p.kind == "udp":
            self.obj = self.host.udp_peer(p.port, record=True)
        elif p.kind == "tcp_server":
            handler = tcp_behaviour(str(o.get("mode", "echo")), int(o.get("close_after", 0) or 0), o.get("script"))
            self.obj = self.host.server(p.port, backlog=int(o.get("backlog", 4)), handler=handler)
        elif p.kind == "tcp_peer":
            from ..tcp_peer import TcpPeer

            kw = {k: x for k, x in o.items()}
            if p.port:
                kw["port"] = p.port
            self.obj = TcpPeer(lab, **kw).start()
        elif p.kind == "mqtt_subscriber":
            from ..mqtt_peer import MqttSubscriber

            topics = [str(t) for t in o["topics"]]
            cid = str(o.get("client_id") or f"mplab-{lab.name}-{p.name}")
            self.ip = lab.service_ip("mqtt")
            self.obj = MqttSubscriber(self.host.ip, self.ip, topics, port=p.port or 1883, client_id=cid).start()
        elif p.kind == "dns":
            if self.obj is None:
                self.setup(lab)
            self.obj.start()
        self.port = int(getattr(self.obj, "port", 0) or self.port)
        return self

    @property
    def udp(self) -> Any:
        """The UdpPeer of a ``kind: udp`` peer (``send`` steps send from it)."""
        return self.obj

    @property
    def log(self) -> list[str]:
        if self.peer.kind == "dns" and self.obj is not None:
            o = self.obj
            return [f"dns {o.mode} for {o.name}: {len(o.seen)} query(ies) seen, {len(o.sent)} answer(s) sent"]
        return list(getattr(self.obj, "log", None) or [])

    def stop(self) -> None:
        self.running = False
        if self.peer.kind in ("tcp_peer", "dns", "mqtt_subscriber") and self.obj is not None:
            with contextlib.suppress(Exception):
                self.obj.stop()


def _noop(_m: str) -> None:
    pass


class Runner:
    """Runs one scenario against one firmware and writes its bundle."""

    def __init__(
        self,
        scn: Scenario,
        fw: Firmware,
        out: Path,
        *,
        lab_name: str | None = None,
        keep: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.scn = scn
        self.fw = fw
        self.out = out
        self.lab_name = lab_name or scn.lab_name
        self.keep = keep
        self.progress: Progress = progress or _noop
        self.lab: Any = None
        self.cap: Any = None
        self.host: HostPeer | None = None
        self.peers: dict[str, ScenarioPeer] = {}
        self.results: dict[str, StepResult] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.node_locks: dict[str, threading.Lock] = {}
        self.impaired: set[str] = set()  # nodes with impairments to clear at the end
        self.vars: dict[str, str] = {}
        self.checks: list[Check] = []
        self.t_cap0 = 0.0
        self.tcp_clients: list[tuple[threading.Thread, socket.socket]] = []
        self._dissected: list[Any] = []
        self._pkgs: dict[str, list[packages.Package]] = {}
        self.deploys: list[dict[str, Any]] = []  # what app:/packages: did, for the bundle

    # -- lifecycle
    def run(self) -> Result:
        t0 = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "scenario.yml").write_text(self.scn.text)
        (self.out / "firmware.manifest.json").write_text(json.dumps(self.fw.manifest, indent=2) + "\n")
        res = Result(self.scn.name, self.fw.label, ERROR, self.out, lab=self.lab_name)
        try:
            # pip runs here, on the host and before the lab: a bad package name is an error
            # verdict at once, and the lab's own network never reaches off the machine.
            self._pkgs = {ps.node: packages.resolve_all(ps.specs, progress=self.progress) for ps in self.scn.packages}
            self._up()
            self._setup_vars()
            self.cap = self.lab.capture(self.out / "wire.pcap")  # console traffic is left out
            from scapy.config import conf

            if conf.ifaces is not None:
                conf.ifaces.reload()  # the bridge is new (same name, new ifindex) on every run
            self.cap.start()
            self.t_cap0 = self.cap.t0
            self._copy_www()
            self._copy_files()
            self._install_certs()
            self._install_packages()
            self._start_peers()
            self._deploy_apps()  # last: its soft reset starts main.py, which may talk to the peers
            self._timeline()
            time.sleep(0.5)  # let the last frames arrive
            self.cap.stop()
            self.checks += judge.judge(self)
            res.verdict = REPRODUCED if all(c.held for c in self.checks) else NOT_REPRODUCED
        except Exception as e:  # any failure of the run itself is an "error" verdict, with a trace
            res.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            res.verdict = ERROR
            (self.out / "error.txt").write_text(traceback.format_exc())
        finally:
            with contextlib.suppress(Exception):
                if self.cap is not None and self.cap.running:
                    self.cap.stop()
            self._collect()
            self._teardown()
        res.checks = self.checks
        res.steps = [self.results[s.id] for s in self.scn.timeline if s.id in self.results]
        res.duration = time.monotonic() - t0
        write_verdict(self, res)
        return res

    def _up(self) -> None:
        override = self.out / "compose.firmware.yml"
        override.write_text(
            'version: "2.4"\nservices:\n  node:\n    volumes:\n'
            f"      - {json.dumps(str(self.fw.elf.resolve()) + ':/opt/mplab/firmware.elf:ro')}\n"
        )
        topo = Topology.load(lab=self.lab_name, compose_file=self.scn.compose)
        topo = dataclasses.replace(topo, overrides=(override,))
        if self.scn.mqtt_persistence is not None:
            topo = dataclasses.replace(topo, mqtt_persistence=self.scn.mqtt_persistence)
        (self.out / "repl").mkdir(exist_ok=True)
        self.lab = Lab(topology=topo, progress=self.progress, artifacts=self.out / "repl")
        self.lab.runtime.check()
        self.lab.down()  # a dedicated lab: start from nothing
        try:
            self.lab.up(nodes=self.scn.nodes)
        except NodeError as e:  # a guest that missed its bring-up: one fresh try
            self.progress(f"lab {self.lab_name}: {str(e).splitlines()[0]}; retrying once from scratch")
            self.lab.down()
            self.lab.up(nodes=self.scn.nodes)

    def _setup_vars(self) -> None:
        lab = self.lab
        self.vars = {"host": lab.host_ip, "gateway": lab.gateway, "services": lab.services_ip, "lab": lab.name}
        for nd in lab.nodes:
            ip = nd.ip or ""
            self.vars[nd.name] = ip
            self.vars[f"{nd.name}.ip"] = ip
            self.vars[f"{nd.name}.mac"] = nd.mac
            self.node_locks[nd.name] = threading.Lock()

    def sub(self, value: Any) -> Any:
        """``value`` with every ``${var}`` replaced."""
        if isinstance(value, str):
            return VAR_RE.sub(lambda m: str(self.vars[m.group(1)]), value)
        if isinstance(value, dict):
            return {k: self.sub(x) for k, x in value.items()}
        if isinstance(value, list):
            return [self.sub(x) for x in value]
        return value

    def _copy_files(self) -> None:
        for f in self.scn.files:
            self.progress(f"  copy {f.src} -> {f.node}:{f.dst}")
            guestfs.put(self.lab.node(f.node), f.src.read_bytes(), f.dst)

    def _copy_www(self) -> None:
        """``www:``: into the lab's web root, which nginx serves at http(s)://www.<domain>/."""
        root = self.lab.run_dir / "www"
        for w in self.scn.www:
            dst = root / w.dst.lstrip("/")
            self.progress(f"  www {w.src} -> {w.dst}")
            if w.src.is_dir():
                shutil.copytree(w.src, dst, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(w.src, dst)

    def _install_certs(self) -> None:
        for name in self.scn.certs:
            issued = self.lab.node(name).install_cert()
            self.progress(f"  cert {name}: {issued.cert.name} for its lab name -> {name}:/certs/node.pem, node.key")

    def _install_packages(self) -> None:
        for node, pkgs in self._pkgs.items():
            rep = deploy.install(self.lab.node(node), pkgs, progress=self.progress)
            self.progress(f"  {rep.summary()}")
            self.deploys.append({"kind": "packages", **deploy.describe(rep)})

    def _deploy_apps(self) -> None:
        for a in self.scn.app:
            # With `wait`, up to 30 s for main.py's line: it returns at the match, and a big
            # library (microdot is 60 KB of source) compiles slowly on a loaded host.
            follow = 30.0 if a.wait else 5.0
            rep = deploy.deploy(
                self.lab.node(a.node), a.src, a.dest, progress=self.progress, wait=a.wait, follow=follow
            )
            self.progress(f"  {rep.summary()}")
            self.deploys.append({"kind": "app", "src": str(a.src), **deploy.describe(rep), "console": rep.console})

    def _start_peers(self) -> None:
        self.host = HostPeer.for_lab(self.lab)
        for p in self.scn.peers:
            sp = ScenarioPeer(p, self.host)
            self.peers[p.name] = sp  # registered first: stopped at teardown even if start fails
            sp.setup(self.lab)
            if p.options.get("up", True):
                sp.start(self.lab)
            self.vars[f"peer.{p.name}.ip"] = sp.ip
            self.vars[f"peer.{p.name}.port"] = str(sp.port)
            down = "" if sp.running else " (down until a `peer` step starts it)"
            self.progress(f"  peer {p.name}: {p.kind} on {sp.ip}:{sp.port}{down}")

    def _teardown(self) -> None:
        for sp in self.peers.values():
            sp.stop()
        if self.host is not None:
            self.host.close()
        for _t, s in self.tcp_clients:
            with contextlib.suppress(OSError):
                s.close()
        if self.lab is None:
            return
        for name in sorted(self.impaired):
            with contextlib.suppress(LabError):
                self.lab.node(name).clear_impairments()
        if self.keep:
            self.progress(f"lab {self.lab.name} kept (--keep): take it down with `mplab --lab {self.lab.name} down`")
            self.lab.close()
            return
        try:
            self.lab.down()
        except LabError as e:
            self.progress(f"lab {self.lab.name}: down failed: {e}")

    def _collect(self) -> None:
        if self.lab is None:
            return
        with contextlib.suppress(Exception):
            rows = self.lab.status()
            (self.out / "status.json").write_text(
                json.dumps(
                    {
                        "lab": self.lab.name,
                        "subnet": str(self.lab.subnet),
                        "host": self.lab.host_ip,
                        "services": self.lab.services_ip,
                        "macs": _lan_macs(self.lab),
                        "bridge": self.lab.bridge,
                        "nodes": [dataclasses.asdict(r) for r in rows],
                    },
                    indent=2,
                )
                + "\n"
            )
        with contextlib.suppress(Exception):
            for nd in self.lab.nodes:
                (self.out / f"{nd.name}.console.txt").write_text(nd.logs())
        if self.deploys:
            (self.out / "deploy.json").write_text(json.dumps(self.deploys, indent=2) + "\n")
        if self.peers:
            lines = []
            for name, sp in self.peers.items():
                lines += [f"[{name}] {x}" for x in sp.log]
            (self.out / "peers.log").write_text("\n".join(lines) + "\n")

    # -- the timeline
    def _timeline(self) -> None:
        t0 = time.monotonic()
        prev = t0
        self.progress(f"  timeline: {len(self.scn.timeline)} step(s)")
        for st in self.scn.timeline:
            target = t0 + st.at if st.at is not None else prev + st.after
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            r = StepResult(st.id, st.action, st.line)
            self.results[st.id] = r
            r.t_start = time.time()
            self.progress(f"  [{r.t_start - self.t_cap0:7.3f}s] {st.id}: {st.action} {_brief(st)}")
            try:
                actions.lookup(st.action).run(self, st, self.sub(st.args), r)
            except StepFailed:
                raise
            except (LabError, ConsoleError, OSError, ImportError, AttributeError, TypeError, ValueError) as e:
                r.error = f"{type(e).__name__}: {e}"
                raise StepFailed(f"{self.scn.path}:{st.line}: step {st.id} ({st.action}) failed: {e}") from e
            if not (st.action == "exec" and st.args.get("background")):
                r.t_end = r.t_end or time.time()
                r.done = True
            self._raise_failed()
            prev = time.monotonic()
        for sid, t in self.threads.items():
            t.join(timeout=120)
            if t.is_alive():
                raise StepFailed(f"background step {sid} still running at the end of the timeline")
        self._raise_failed()

    def _raise_failed(self) -> None:
        for st in self.scn.timeline:
            r = self.results.get(st.id)
            if r is not None and r.done and r.error:
                raise StepFailed(f"{self.scn.path}:{st.line}: step {st.id} ({st.action}): {r.error}")

    # -- what the actions and the judge use
    def target(self, to: str) -> str:
        """A step's ``to:`` (a node name or an IP) as an address in the lab's subnet."""
        ip = self.vars.get(to, to)
        if ipaddress.ip_address(ip) not in self.lab.subnet:
            raise StepFailed(f"{to!r} is not an address in lab {self.lab.name} ({self.lab.subnet})")
        return ip

    def packets(self) -> list[Any]:
        """The capture's packets, dissected with every layer loaded (kept times)."""
        judge.layer("IP")  # registers IP/TCP/UDP/DNS/DHCP over Ether
        from scapy.layers.l2 import Ether

        got = self.cap.packets
        done = self._dissected
        for p in got[len(done) :]:
            q = Ether(bytes(p))
            q.time = p.time
            done.append(q)
        return list(done)

    def ref(self, i: int, p: Any) -> PacketRef:
        """Packet ``i`` of :meth:`packets` as it is in the bundle's pcap."""
        return PacketRef(i + 1, float(p.time) - self.t_cap0, p.summary())


def _lan_macs(lab: Lab) -> dict[str, str]:
    """IP -> MAC of the lab's hosts (the ladder names IPv6 and link-local frames by MAC)."""
    try:
        return lab.lan_hosts()
    except (LabError, OSError):
        return {}


def _brief(st: Step) -> str:
    a = st.args
    if st.action == "exec":
        first = str(a.get("code", "")).strip().splitlines()[:1]
        return f"{a['node']}: {first[0][:60] if first else ''}{' (background)' if a.get('background') else ''}"
    if st.action == "sleep":
        return f"{a['seconds']:g}s"
    return ", ".join(f"{k}={x}" for k, x in a.items() if not isinstance(x, WireSpec | dict))[:80]


def run(
    scn: Scenario,
    fw: Firmware,
    out: Path | None = None,
    *,
    lab_name: str | None = None,
    keep: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Run ``scn`` against ``fw``; write the bundle to ``out`` (default artifacts/repro/...)."""
    out = out or bundle_dir(scn, fw)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    return Runner(scn, fw, out, lab_name=lab_name, keep=keep, progress=progress).run()
