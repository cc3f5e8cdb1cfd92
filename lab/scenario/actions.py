"""The timeline's actions: one registry, each action's validation and its run side by side.

Every action is a class registered under its name (``@register``), in the style of
containerlab's node-kind registry: :meth:`Action.check` validates the step's arguments when
the file loads (errors name file, line, field and fix), :meth:`Action.run` performs the step
during a run. ``ACTIONS`` is the registry; :func:`lookup` and :func:`step_action` are the
only ways a name becomes an action, so an unknown name gives one error listing the valid ones.

Adding an action: a subclass with ``name``, ``synopsis``, ``check`` and ``run``, decorated
with ``@register``, plus its entry in docs/field-bugs.md.

Why one module of this size (~700 lines): it is the registry, one class per action with its
check and run side by side (about 25 lines each), so that an action is read and changed in
one place.
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..console import ConsoleError, ConsoleTimeout, GuestError
from ..daemons import DAEMONS
from ..errors import ConfigError, LabError
from ..impair import DIRECTIONS, check_value, make
from ..impair import FIELDS as IMPAIR_FIELDS
from ..peers import close as close_socket
from ..peers import connect_from, http_request
from ..topology import read_text
from ..util import poll_until
from . import judge
from .loader import Validator, did_you_mean, rel
from .model import VAR_RE, Check, Expect, Path_, Peer, RunState, ScenarioError, Step, StepResult, WireSpec

IMPAIR_KEYS = {*IMPAIR_FIELDS, "direction"}
STEP_META = ("id", "at", "after", "says")  # what a step may carry besides its one action
# Each injection kind's keys: (required, optional); every kind also takes `kind` and `count`.
INJECT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rst": (("client", "client_port", "server", "server_port"), ("to",)),
    "icmp_port_unreachable": (("of",), ("src",)),
    "icmp_host_unreachable": (("of",), ("src",)),
    "garp": (("ip", "mac"), ("reply",)),
    "arp_change": (("ip", "mac"), ("reply",)),
    "packet": (("hex",), ()),
}
INJECT_COMMON = ("kind", "count")
WAIT_CONSOLE_KEYS = ("node", "match")  # wait_for: {console: {...}}
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass
class CheckContext:
    """What a step's validation may look at: the file, its nodes, peers and earlier steps."""

    v: Validator
    node_names: set[str]
    peers: dict[str, Peer] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)  # step ids so far (this step's included)
    background: set[str] = field(default_factory=set)  # ids of earlier background execs

    def node(self, n: Any, at: Path_) -> str:
        s = self.v.string(n, at, "a node name such as node1")
        if s not in self.node_names:
            raise self.v.err(
                at,
                f"no node {s!r} in this topology ({len(self.node_names)} node(s))",
                f"use one of {sorted(self.node_names)}",
            )
        return s


class Action:
    """One kind of timeline step."""

    name: ClassVar[str]
    synopsis: ClassVar[str]  # its arguments, for error messages and docs
    fields: ClassVar[frozenset[str] | None] = None  # the keys its mapping may have (None: any)

    def mapping(self, c: CheckContext, a: Any, at: Path_) -> dict[str, Any]:
        """The step's arguments as a mapping with only this action's ``fields``."""
        a = c.v.mapping(a, at, self.synopsis)
        if self.fields is not None:
            c.v.keys(a, at, self.fields)
        return a

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        """Validate the step's arguments ``a`` (at ``at`` in the file): (args, expect)."""
        raise NotImplementedError

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        """Perform the step; ``a`` is its arguments with the variables substituted."""
        raise NotImplementedError


ACTIONS: dict[str, Action] = {}


def register(cls: type[Action]) -> type[Action]:
    if cls.name in ACTIONS:
        raise RuntimeError(f"action {cls.name} registered twice")
    ACTIONS[cls.name] = cls()
    return cls


def unknown_fix(name: str) -> str:
    """The fix for an unknown action name: a near match, and every valid action."""
    hint = did_you_mean(name, [*ACTIONS, *STEP_META])
    return (f"{hint} " if hint else "") + (
        f"the actions are: {', '.join(ACTIONS)} (a step may also have {', '.join(STEP_META)})"
    )


def lookup(name: str) -> Action:
    """The action called ``name``; ScenarioError listing the valid ones if there is none."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise ScenarioError(f"unknown action {name!r}; fix: {unknown_fix(name)}") from None


def step_action(v: Validator, s: dict[str, Any], at: Path_) -> Action:
    """The one action of timeline step ``s``."""
    for k in s:
        if k not in STEP_META and k not in ACTIONS:
            raise v.err((*at, k), f"unknown action {k!r}", unknown_fix(str(k)))
    acts = [k for k in s if k in ACTIONS]
    if len(acts) != 1:
        raise v.err(at, f"a step needs exactly one action, found {acts or 'none'}", f"use one of: {', '.join(ACTIONS)}")
    return ACTIONS[acts[0]]


def _is_var(x: Any) -> bool:
    """A value that is a ``${variable}`` (checked at load, substituted at run time)."""
    return isinstance(x, str) and VAR_RE.fullmatch(x.strip()) is not None


def _node_arg(c: CheckContext, a: dict[str, Any], at: Path_) -> None:
    c.node(c.v.required(a, at, "node", "add `node: node1`"), (*at, "node"))


# ---- guest code ------------------------------------------------------------------------
@register
class Exec(Action):
    name = "exec"
    synopsis = "{node, code | file, timeout, background, expect}"
    fields = frozenset({"node", "code", "file", "timeout", "background", "expect", "require"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        _node_arg(c, a, at)
        if ("code" in a) == ("file" in a):
            raise v.err(at, "needs exactly one of `code` and `file`", "give the guest code inline or a local file")
        if "file" in a:
            f = rel(v.path, v.string(a["file"], (*at, "file"), "a local .py file"))
            if not f.is_file():
                raise v.err((*at, "file"), f"{f} does not exist", "paths are relative to the scenario file")
            a = {**a, "code": read_text(f, "code file")}
        v.string(a["code"], (*at, "code"), "guest Python code")
        if "timeout" in a:
            v.number(a["timeout"], (*at, "timeout"), "timeout: seconds", 0.1)
        if "background" in a:
            v.boolean(a["background"], (*at, "background"), "background: true")
        exp = v.expect(a["expect"], (*at, "expect")) if "expect" in a else None
        if "require" in a:
            a = {**a, "require": v.expect(a["require"], (*at, "require"))}
        return a, exp

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        if not a.get("background"):
            _exec(r, st, a, res)
            return
        t = threading.Thread(target=_exec, args=(r, st, a, res), daemon=True)
        r.threads[st.id] = t
        t.start()
        time.sleep(0.05)  # let it take the node's lock before the next step


def _exec(r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
    nd = r.lab.node(a["node"])
    timeout = float(a.get("timeout", 10))
    with r.node_locks.setdefault(nd.name, threading.Lock()):
        res.t_start = res.t_start or time.time()
        try:
            res.output = nd.exec(a["code"], timeout=timeout)
        except GuestError as e:
            res.output = e.stdout
            res.exception = e.exc_type
            res.errno = e.errno
            res.traceback = e.traceback
        except ConsoleTimeout:
            res.timed_out = True
            res.note = f"no answer within {timeout:g}s (guest interrupted with Ctrl-C)"
        except (ConsoleError, LabError) as e:  # a reset, a lost console, a dead node (NodeDown)
            res.output = getattr(e, "output", "") or res.output
            res.error = str(e).splitlines()[0]
        finally:
            res.t_end = time.time()
            res.done = True
    _judge_expectations(r, st, a, res)


def _judge_expectations(r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
    """A step's ``expect`` becomes a check; an unmet ``require`` makes the step an error."""
    if st.expect is not None:
        r.checks.append(judge.check_expect(st, res, st.expect))
    req = a.get("require")
    if isinstance(req, Expect):
        chk = judge.check_expect(st, res, req)
        if not chk.held:
            res.error = f"require not met: {chk.detail}"


@register
class Join(Action):
    name = "join"
    synopsis = "ID of a background exec"

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        sid = c.v.string(a, at, "join: <id of a background exec step>")
        if sid not in c.background:
            raise c.v.err(
                at, f"no earlier background exec with id {sid!r}", "join the id of an exec with background: true"
            )
        return {"step": sid}, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        t = r.threads.get(a["step"])
        if t is not None:
            t.join(timeout=300)


@register
class Sleep(Action):
    name = "sleep"
    synopsis = "seconds"

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        return {"seconds": c.v.number(a, at, "sleep: seconds")}, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        time.sleep(a["seconds"])


# ---- the link (lab.impair through the Node API) ----------------------------------------
@register
class Impair(Action):
    name = "impair"
    synopsis = "{node, direction, " + ", ".join(IMPAIR_FIELDS) + "}"
    fields = frozenset({"node"} | IMPAIR_KEYS)

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        a = self.mapping(c, a, at)
        _node_arg(c, a, at)
        if not set(a) & set(IMPAIR_FIELDS):
            raise c.v.err(at, "no impairment given", f"add one of: {', '.join(IMPAIR_FIELDS)}")
        a = {k: (x if k == "node" else str(x)) for k, x in a.items()}
        # The model's own checks, so a bad value is the schema's file:line:field error.
        for k in sorted(set(a) & IMPAIR_KEYS):
            if k == "direction":
                if a[k] not in DIRECTIONS:
                    raise c.v.err((*at, k), f"invalid direction {a[k]!r}", f"use one of: {', '.join(DIRECTIONS)}")
                continue
            try:
                check_value(k, a[k])
            except ConfigError as e:
                raise c.v.err((*at, k), str(e), "see docs/impairments.md for the values each key takes") from None
        try:
            make(**{k: a[k] for k in IMPAIR_KEYS if k in a})
        except ConfigError as e:
            raise c.v.err(at, str(e), "see docs/impairments.md") from None
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        kw = {k: a[k] for k in IMPAIR_KEYS if k in a}
        r.lab.node(a["node"]).impair(**kw)
        r.impaired.add(a["node"])
        res.note = ", ".join(f"{k}={x}" for k, x in kw.items())


@register
class Clear(Action):
    name = "clear"
    synopsis = "{node}"
    fields = frozenset({"node"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        a = self.mapping(c, a, at)
        _node_arg(c, a, at)
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        r.lab.node(a["node"]).clear_impairments()
        r.impaired.discard(a["node"])


@register
class Link(Action):
    name = "link"
    synopsis = "{node, up: true|false}"
    fields = frozenset({"node", "up"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        a = self.mapping(c, a, at)
        _node_arg(c, a, at)
        c.v.boolean(c.v.required(a, at, "up", "add `up: false` (down) or `up: true`"), (*at, "up"), "up: false")
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        r.lab.node(a["node"]).link(bool(a["up"]))


# ---- the lab's service daemons (lab.lanservices through the Lab API) ------------------
@register
class Restart(Action):
    name = "restart"
    synopsis = "{service: " + "|".join(DAEMONS) + ", timeout}"
    fields = frozenset({"service", "timeout"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        a = self.mapping(c, a, at)
        svc = c.v.required(a, at, "service", f"add `service: mqtt` (one of {', '.join(DAEMONS)})")
        if svc not in DAEMONS:
            hint = did_you_mean(str(svc), list(DAEMONS))
            raise c.v.err(
                (*at, "service"),
                f"unknown service {svc!r}",
                (f"{hint} " if hint else "") + f"the lab's services are: {', '.join(DAEMONS)}",
            )
        if "timeout" in a:
            c.v.number(a["timeout"], (*at, "timeout"), "timeout: seconds until it is healthy again", 1)
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        """``docker restart`` of the daemon's container, then its health check until it passes."""
        took = r.lab.restart_service(str(a["service"]), timeout=float(a.get("timeout", 60)))
        res.note = f"{a['service']} restarted, healthy again after {took:.1f}s"


# ---- packets (lab.inject) --------------------------------------------------------------
@register
class Inject(Action):
    name = "inject"
    synopsis = (
        "{kind: rst (client, client_port, server, server_port, to) | icmp_port_unreachable / "
        "icmp_host_unreachable (of: {layer, fields}, src) | garp / arp_change (ip, mac, reply) | packet (hex); count}"
    )

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        k = v.required(a, at, "kind", f"add `kind:` ({', '.join(INJECT_KINDS)})")
        if k not in INJECT_KINDS:
            hint = did_you_mean(str(k), INJECT_KINDS)
            raise v.err(
                (*at, "kind"),
                f"unknown injection {k!r}",
                f"{hint + ' ' if hint else ''}use one of: {', '.join(INJECT_KINDS)}",
            )
        need, optional = INJECT_KINDS[k]
        v.keys(a, at, {*INJECT_COMMON, *need, *optional})
        for key in need:
            v.required(a, at, key, f"inject {k} needs {', '.join(need)} (see docs/field-bugs.md)")
        if "count" in a:
            v.integer(a["count"], (*at, "count"), "count: 1..1000", 1, 1000)
        if "client_port" in a and not _is_var(a["client_port"]):
            v.integer(a["client_port"], (*at, "client_port"), "client_port: 0 (from the capture) or 1..65535", 0, 65535)
        if "server_port" in a and not _is_var(a["server_port"]):
            v.integer(a["server_port"], (*at, "server_port"), "server_port: 1..65535", 1, 65535)
        if a.get("to", "client") not in ("client", "server"):
            raise v.err((*at, "to"), f"unknown end {a['to']!r}", "to: client (the default) or server")
        if "reply" in a:
            v.boolean(a["reply"], (*at, "reply"), "reply: true (an ARP reply, the default) or false (a request)")
        if "mac" in a and not _is_var(a["mac"]) and not MAC_RE.match(str(a["mac"])):
            raise v.err((*at, "mac"), f"{a['mac']!r} is not a MAC address", "write it as 02:00:00:00:00:01")
        if "hex" in a:
            h = re.sub(r"\s", "", str(a["hex"]))
            try:
                frame = bytes.fromhex(h)
            except ValueError:
                raise v.err((*at, "hex"), "not hexadecimal", "give the whole Ethernet frame as hex digits") from None
            if len(frame) < 14:
                raise v.err(
                    (*at, "hex"), f"{len(frame)} bytes is no Ethernet frame", "give at least 14 bytes"
                ) from None
            a = {**a, "hex": h}
        if "of" in a:
            a = {**a, "of": dataclasses.asdict(v.wire_spec(a["of"], (*at, "of")))}
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        """Build the packet with lab.inject's helpers and put it on the bridge."""
        from .. import inject

        kind = a["kind"]

        def ip_of(x: Any) -> str:
            return str(r.vars.get(str(x), x))

        def latest(spec: WireSpec, missing: str) -> Any:
            seen = [p for p in r.packets() if judge.match(p, spec)]
            if not seen:
                raise LabError(f"inject {kind}: " + missing.format(judge.spec_str(spec)))
            return seen[-1]

        if kind == "rst":
            cport = int(a["client_port"])
            if cport == 0:  # the client's ephemeral port: from the latest segment of that connection
                spec = WireSpec(
                    "TCP", {"src": ip_of(a["client"]), "dst": ip_of(a["server"]), "dport": int(a["server_port"])}
                )
                cport = int(latest(spec, "no captured segment {}").sport)
            pkt = inject.tcp_rst_for(
                r.packets(),
                ip_of(a["client"]),
                cport,
                ip_of(a["server"]),
                int(a["server_port"]),
                to=str(a.get("to", "client")),
            )
        elif kind in ("icmp_port_unreachable", "icmp_host_unreachable"):
            orig = latest(
                WireSpec(str(a["of"]["layer"]), dict(a["of"].get("fields") or {})), "no captured packet {} to quote"
            )
            make = inject.icmp_port_unreachable if kind == "icmp_port_unreachable" else inject.icmp_host_unreachable
            pkt = make(orig, src=ip_of(a["src"]) if a.get("src") else None)
        elif kind in ("garp", "arp_change"):
            pkt = inject.gratuitous_arp(ip_of(a["ip"]), str(a["mac"]), reply=bool(a.get("reply", True)))
        else:
            from scapy.layers.l2 import Ether

            pkt = Ether(bytes.fromhex(str(a["hex"])))
        inject.inject(r.lab, pkt, count=int(a.get("count", 1)))
        res.note = f"injected {kind}: {pkt.summary()}"


# ---- the host's side (lab.peers) -------------------------------------------------------
def _to_port(v: Validator, a: dict[str, Any], at: Path_, to_fix: str) -> None:
    """A host action's destination: ``to`` (a node or an address) and ``port``."""
    v.string(v.required(a, at, "to", "add `to: node1`"), (*at, "to"), to_fix)
    v.integer(v.required(a, at, "port", "add `port: N`"), (*at, "port"), "port: 1..65535", 1, 65535)


@register
class Send(Action):
    name = "send"
    synopsis = "{peer, to, port, data, count, interval}"
    fields = frozenset({"peer", "to", "port", "data", "count", "interval"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        pn = v.required(a, at, "peer", "add `peer: <name of a udp peer>`")
        if pn not in c.peers or c.peers[pn].kind != "udp":
            raise v.err((*at, "peer"), f"no udp peer {pn!r}", "declare it under peers: with kind: udp")
        _to_port(v, a, at, "to: node1 (or an IP)")
        v.integer(a.get("count", 1), (*at, "count"), "count: 1..10000", 1, 10000)
        v.number(a.get("interval", 0), (*at, "interval"), "interval: seconds")
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        hp = r.peers[a["peer"]]
        dst = (r.target(a["to"]), int(a["port"]))
        data = str(a.get("data", "x"))
        n = int(a.get("count", 1))
        for i in range(n):
            hp.udp.sendto(data.replace("{i}", str(i)).encode(), dst)
            if a.get("interval") and i < n - 1:
                time.sleep(float(a["interval"]))
        res.note = f"{n} datagram(s) {hp.ip}:{hp.port} -> {dst[0]}:{dst[1]}"


@register
class TcpConnect(Action):
    name = "tcp_connect"
    synopsis = "{to, port, data, close: fin|rst|none, hold}"
    fields = frozenset({"to", "port", "data", "close", "hold", "timeout"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        _to_port(v, a, at, "to: node1")
        if a.get("close", "fin") not in ("fin", "rst", "none"):
            raise v.err((*at, "close"), f"unknown close {a.get('close')!r}", "use fin, rst or none")
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        """Connect from the host's LAN address (synchronously), send, then hold/close in the background."""
        dst = (r.target(a["to"]), int(a["port"]))
        try:
            s = connect_from(r.lab.host_ip, dst, float(a.get("timeout", 5)))
        except OSError as e:
            res.note = f"connect to {dst[0]}:{dst[1]}: {e}"
            return
        me = s.getsockname()
        res.note = f"{me[0]}:{me[1]} connected to {dst[0]}:{dst[1]}"
        if a.get("data"):
            s.sendall(str(a["data"]).encode())
        t = threading.Thread(target=_hold_then_close, args=(s, a, res), daemon=True)
        t.start()
        r.tcp_clients.append((t, s))


def _hold_then_close(s: socket.socket, a: dict[str, Any], res: StepResult) -> None:
    try:
        time.sleep(float(a.get("hold", 0)))
        how = a.get("close", "fin")
        if how == "none":
            return
        if how == "fin":
            try:
                got = s.recv(4096)
                res.note += f"; received {got[:60]!r}"
            except OSError:
                pass
        close_socket(s, how)
    except OSError as e:
        res.note += f"; {e}"


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@register
class Http(Action):
    name = "http"
    synopsis = "{to, port, path, method, host, body, headers, tls, timeout, expect, require}"
    fields = frozenset(
        {"to", "port", "path", "method", "host", "body", "headers", "tls", "timeout", "expect", "require"}
    )

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        v.string(v.required(a, at, "to", "add `to: node1`"), (*at, "to"), "to: node1 (or an IP)")
        if "tls" in a:
            v.boolean(a["tls"], (*at, "tls"), "tls: true (HTTPS, verified against the lab CA)")
        if "port" in a:
            v.integer(a["port"], (*at, "port"), "port: 1..65535", 1, 65535)
        path = v.string(a.get("path", "/"), (*at, "path"), "path: /status")
        if not path.startswith("/"):
            raise v.err((*at, "path"), f"{path!r} does not start with /", "write it as /status")
        m = v.string(a.get("method", "GET"), (*at, "method"), "method: GET")
        if m.upper() not in HTTP_METHODS:
            raise v.err((*at, "method"), f"unknown method {m!r}", f"use one of: {', '.join(HTTP_METHODS)}")
        if "host" in a:
            v.string(a["host"], (*at, "host"), "host: node1.lab")
        if "body" in a:
            v.string(a["body"], (*at, "body"), "body: '{\"on\": true}'")
        if "headers" in a:
            hd = v.mapping(a["headers"], (*at, "headers"), "headers: {Content-Type: application/json}")
            for k, x in hd.items():
                v.string(x, (*at, "headers", k), "a header's value is a string")
        if "timeout" in a:
            v.number(a["timeout"], (*at, "timeout"), "timeout: seconds", 0.1)
        exp = v.expect(a["expect"], (*at, "expect")) if "expect" in a else None
        if "require" in a:
            a = {**a, "require": v.expect(a["require"], (*at, "require"))}
        return a, exp

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        """One request from the host's LAN address; the reply's text is the step's output, a
        failure (refused, timed out, TLS verification) its exception."""
        tls = bool(a.get("tls", False))
        to = str(a["to"])
        ip = r.target(to)
        port = int(a.get("port", 443 if tls else 80))
        host = str(a.get("host") or (f"{to}.{r.lab.topology.domain}" if to in r.vars and to != ip else ip))
        res.t_start = time.time()
        try:
            reply = http_request(
                r.lab.host_ip,
                (ip, port),
                method=str(a.get("method", "GET")).upper(),
                path=str(a.get("path", "/")),
                host=host,
                body=str(a.get("body", "")).encode(),
                headers={str(k): str(x) for k, x in (a.get("headers") or {}).items()},
                cafile=r.lab.ca_cert if tls else None,
                timeout=float(a.get("timeout", 10)),
            )
            res.output = reply.text()
            res.note = f"{'https' if tls else 'http'}://{host}:{port}{a.get('path', '/')} -> {reply.status}"
        except (OSError, http.client.HTTPException) as e:  # ssl.SSLError is an OSError
            res.exception = type(e).__name__
            res.errno = getattr(e, "errno", None) if isinstance(getattr(e, "errno", None), int) else None
            res.traceback = f"{type(e).__name__}: {e}"
            res.note = f"{host}:{port}: {type(e).__name__}: {e}"
        res.t_end = time.time()
        _judge_expectations(r, st, a, res)


@register
class PeerSwitch(Action):
    name = "peer"
    synopsis = "{name, up: true|false} (a dns peer)"
    fields = frozenset({"name", "up"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        pn = v.required(a, at, "name", "add `name: <a dns peer>`")
        if pn not in c.peers or c.peers[pn].kind != "dns":
            raise v.err((*at, "name"), f"no dns peer {pn!r}", "declare it under peers: with kind: dns")
        v.boolean(v.required(a, at, "up", "add `up: true` (start) or `up: false` (stop)"), (*at, "up"), "up: true")
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        sp = r.peers[a["name"]]
        if a["up"] and not sp.running:
            sp.start(r.lab)
        elif not a["up"] and sp.running:
            sp.stop()
        res.note = f"peer {a['name']} {'up' if a['up'] else 'down'}"


# ---- waiting ---------------------------------------------------------------------------
@register
class WaitFor(Action):
    name = "wait_for"
    synopsis = "{console: {node, match} | wire: {layer, fields} | step: ID, timeout}"
    fields = frozenset({"console", "wire", "step", "timeout"})

    def check(self, c: CheckContext, a: Any, at: Path_) -> tuple[dict[str, Any], Expect | None]:
        v = c.v
        a = self.mapping(c, a, at)
        got = [k for k in ("console", "wire", "step") if k in a]
        if len(got) != 1:
            raise v.err(at, "needs exactly one of console/wire/step", "wait for one thing per step")
        if "console" in a:
            con = v.mapping(a["console"], (*at, "console"), "node, match")
            v.keys(con, (*at, "console"), set(WAIT_CONSOLE_KEYS))
            _node_arg(c, con, (*at, "console"))
            v.regex(v.required(con, (*at, "console"), "match", "add `match: <regex>`"), (*at, "console", "match"))
        if "wire" in a:
            # kept a mapping, so that the variables in it are checked at load and substituted
            # at run time like every other argument (a WireSpec was neither: issue 12)
            a = {**a, "wire": dataclasses.asdict(v.wire_spec(a["wire"], (*at, "wire")))}
        if "step" in a and a["step"] not in c.background:
            raise v.err(
                (*at, "step"), f"no earlier background exec {a['step']!r}", "name an exec with background: true"
            )
        v.number(a.get("timeout", 10), (*at, "timeout"), "timeout: seconds", 0.1)
        return a, None

    def run(self, r: RunState, st: Step, a: dict[str, Any], res: StepResult) -> None:
        timeout = float(a.get("timeout", 10))
        last: list[tuple[bool, str, list[Any]]] = []

        def seen() -> bool:
            last[:] = [_probe(r, a)]
            return last[0][0]

        # A timeout is an outcome here (a failed check with its evidence), not an error.
        ok = poll_until(seen, timeout, interval=0.1)
        _ok, detail, pkts = last[0]
        if ok:
            res.note = detail
            return
        res.note = f"timed out after {timeout:g}s"
        r.checks.append(
            Check(f"wait_for {st.id}", st.line, st.says, False, f"{detail}: not seen within {timeout:g}s", pkts)
        )


def _probe(r: RunState, a: dict[str, Any]) -> tuple[bool, str, list[Any]]:
    if "step" in a:
        sr = r.results.get(a["step"])
        return bool(sr and sr.done), f"step {a['step']} finished", []
    if "console" in a:
        c = a["console"]
        m = re.search(c["match"], r.lab.node(c["node"]).logs())
        return bool(m), f"console of {c['node']} matches {c['match']!r}", []
    spec = WireSpec(str(a["wire"]["layer"]), dict(a["wire"].get("fields") or {}))
    # From the start of the step before this wait: what that step caused may already be on
    # the wire when the wait begins.
    starts = [sr.t_start for sr in r.results.values()]
    since = starts[-2] if len(starts) >= 2 else 0.0
    for i, p in enumerate(r.packets()):
        if float(p.time) >= since and judge.match(p, spec):
            return True, f"{judge.spec_str(spec)} seen", [r.ref(i, p)]
    return False, judge.spec_str(spec), []
