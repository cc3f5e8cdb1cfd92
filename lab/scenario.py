"""Scenario files: a field bug as YAML, run in a dedicated lab against a firmware, judged, bundled.

A scenario (``scenarios/*.yml``) says what the firmware is, which guest scripts to copy, which
host-side peers to start, a timeline of actions (guest code, impairments, link flaps, packet
injection, host sends) and what the bug looks like (assertions on guest output and on the
wire). ``expect: reproduces`` means: the assertions are the bug's *signature*; the verdict is

* ``reproduced``     every assertion held (the bug showed),
* ``not reproduced`` at least one did not (evidence for each one in verdict.md),
* ``error``          the scenario itself could not run (lab, firmware, a broken step).

API::

    scn = load("scenarios/udp-one-slot.yml")          # ScenarioError: "<file>:<line>: <field>: ...; fix: ..."
    fw = resolve_firmware("1.26.1")                  # builds with make -C firmware if needed
    result = run(scn, fw, out=Path("artifacts/repro/x"))
    result.verdict, result.bundle

The file format is documented in docs/field-bugs.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno as errno_mod
import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .console import ConsoleError, ConsoleTimeout, GuestError
from .errors import ConfigError, LabError, NodeError

REPRODUCED, NOT_REPRODUCED, ERROR = "reproduced", "not reproduced", "error"
EXIT_CODES = {REPRODUCED: 0, NOT_REPRODUCED: 1, ERROR: 3}
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
NODE_RE = re.compile(r"^node[1-9][0-9]?$")
VAR_RE = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")

Progress = Callable[[str], None]


class ScenarioError(ConfigError):
    """A scenario file is malformed: ``<file>:<line>: <field>: <problem>; fix: <fix>``."""


# ---- YAML with line numbers ------------------------------------------------------------
Path_ = tuple[str | int, ...]


def _yaml_with_lines(text: str, path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain data plus {field path: 1-based line}."""
    loader = yaml.SafeLoader(text)
    lines: dict[Path_, int] = {}
    try:
        root = loader.get_single_node()

        def conv(n: yaml.Node, at: Path_) -> Any:
            lines[at] = n.start_mark.line + 1
            if isinstance(n, yaml.MappingNode):
                out: dict[Any, Any] = {}
                for kn, vn in n.value:
                    k = loader.construct_object(kn, deep=True)
                    if not isinstance(k, str | int):
                        raise ScenarioError(
                            f"{path}:{kn.start_mark.line + 1}: {_fmt(at) or 'top level'}: key {k!r} is not a name; "
                            "fix: use plain `name: value` keys"
                        )
                    if k in out:
                        raise ScenarioError(
                            f"{path}:{kn.start_mark.line + 1}: {_fmt((*at, k))}: duplicate key; fix: keep one of them"
                        )
                    lines[(*at, k)] = kn.start_mark.line + 1
                    out[k] = conv(vn, (*at, k))
                    lines[(*at, k)] = kn.start_mark.line + 1
                return out
            if isinstance(n, yaml.SequenceNode):
                return [conv(x, (*at, i)) for i, x in enumerate(n.value)]
            return loader.construct_object(n, deep=True)

        data = conv(root, ()) if root is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ScenarioError(
            f"{path}:{line}: not valid YAML ({e.problem}); fix: correct the YAML syntax on that line"
        ) from None
    finally:
        loader.dispose()
    return data, lines


def _fmt(at: Path_) -> str:
    s = ""
    for p in at:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


# ---- the schema (dataclasses) ----------------------------------------------------------
@dataclass
class FileCopy:
    src: Path
    node: str
    dst: str
    line: int


@dataclass
class Peer:
    name: str
    kind: str  # udp | tcp_server | tcp_peer | dns | services
    port: int
    options: dict[str, Any]
    line: int


@dataclass
class Expect:
    """What an exec step's result must look like (part of the bug's signature)."""

    output: str | None = None  # regex searched in stdout
    exception: str | None = None  # exception type name, e.g. OSError
    errno: int | None = None
    timeout: bool | None = None  # True: the exec must hang past its timeout
    absent: str | None = None  # regex that must NOT be in stdout


@dataclass
class Step:
    index: int
    line: int
    id: str
    action: str
    args: dict[str, Any]
    at: float | None = None
    after: float = 0.0
    expect: Expect | None = None
    says: str = ""
    require: Expect | None = None  # like expect, but a miss means the scenario could not run (error)


@dataclass
class WireSpec:
    layer: str
    fields: dict[str, Any]


@dataclass
class Assertion:
    index: int
    line: int
    kind: str  # console | wire | sequence
    says: str
    args: dict[str, Any]


@dataclass
class Scenario:
    path: Path
    text: str
    name: str
    upstream: str
    description: str
    firmware: str | None
    nodes: int
    compose: Path | None
    files: list[FileCopy]
    peers: list[Peer]
    timeline: list[Step]
    assertions: list[Assertion]
    expect: str = "reproduces"
    lines: dict[Path_, int] = field(default_factory=dict, repr=False)

    @property
    def lab_name(self) -> str:
        """A lab name of <= 9 characters derived from the scenario name."""
        stem = re.sub(r"[^a-z0-9]", "", self.name)[:5] or "r"
        return stem + hashlib.sha256(self.name.encode()).hexdigest()[:4]


# ---- validation ------------------------------------------------------------------------
TOP_KEYS = {
    "name": "a short id, [a-z0-9-]",
    "upstream": "the upstream issue URL",
    "description": "what the bug is and what the pcap shows",
    "firmware": "a MicroPython version (1.25.0) or a path to a firmware.elf",
    "topology": "{nodes: N, compose: FILE}",
    "files": "guest scripts to copy: [{src: local, dst: node1:/path}]",
    "peers": "host-side peers",
    "timeline": "the steps",
    "assertions": "the bug's signature",
    "expect": "reproduces",
}
ACTIONS: dict[str, str] = {
    "exec": "{node, code | file, timeout, background, expect}",
    "impair": "{node, direction, loss, delay, jitter, distribution, correlation, duplicate, reorder, gap, rate, "
    "corrupt, limit}",
    "clear": "{node}",
    "link": "{node, up: true|false}",
    "inject": "{kind: rst (client, client_port, server, server_port, to) | icmp_port_unreachable / "
    "icmp_host_unreachable (of: {layer, fields}, src) | garp / arp_change (ip, mac) | packet (hex)}",
    "sleep": "seconds",
    "wait_for": "{console: {node, match} | wire: {layer, fields} | step: ID, timeout}",
    "send": "{peer, to, port, data, count, interval}",
    "tcp_connect": "{to, port, data, close: fin|rst|none, hold}",
    "join": "ID of a background exec",
}
STEP_KEYS = {"id", "at", "after", "says", *ACTIONS}
PEER_KINDS = {
    "udp": "a UDP socket on the host's LAN address: records datagrams; `send` steps send from it",
    "tcp_server": "a TCP listener on the host's LAN address: mode echo|sink|close|rst",
    "tcp_peer": "lab.tcp_peer's scapy TCP peer (misbehaving server)",
    "dns": "lab.inject's DnsResponder",
    "services": "one of the services container's peers: service tcp_echo|tcp_discard|udp_echo|http",
}
SERVICES = {"tcp_echo": 7, "tcp_discard": 9, "udp_echo": 7, "http": 80}
# lab.impair.FIELDS + direction (kept literal: the schema must not need the impair package)
IMPAIR_KEYS = {
    "loss",
    "delay",
    "jitter",
    "distribution",
    "correlation",
    "duplicate",
    "reorder",
    "gap",
    "rate",
    "corrupt",
    "limit",
    "direction",
}
LAYERS = ("Ether", "ARP", "IP", "ICMP", "TCP", "UDP", "DNS", "BOOTP", "DHCP", "Raw")


class _V:
    """Validation helpers bound to one file: every error says file, line, field and fix."""

    def __init__(self, path: Path, lines: dict[Path_, int]) -> None:
        self.path = path
        self.lines = lines

    def line(self, at: Path_) -> int:
        while at and at not in self.lines:
            at = at[:-1]
        return self.lines.get(at, 1)

    def err(self, at: Path_, problem: str, fix: str) -> ScenarioError:
        return ScenarioError(f"{self.path}:{self.line(at)}: {_fmt(at) or 'top level'}: {problem}; fix: {fix}")

    def mapping(self, v: Any, at: Path_, what: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.err(at, f"expected a mapping ({what}), got {_tname(v)}", f"write it as key: value lines: {what}")
        return v

    def seq(self, v: Any, at: Path_, what: str) -> list[Any]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.err(at, f"expected a list ({what}), got {_tname(v)}", "write one `- item` per line")
        return v

    def keys(self, d: dict[str, Any], at: Path_, allowed: set[str] | dict[str, str]) -> None:
        for k in d:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), list(allowed), n=1)
                hint = f"did you mean `{near[0]}`?" if near else f"use one of: {', '.join(sorted(allowed))}"
                raise self.err((*at, k), "unknown field", f"remove it or rename it ({hint})")

    def required(self, d: dict[str, Any], at: Path_, key: str, fix: str) -> Any:
        if key not in d or d[key] is None:
            raise self.err(at, f"`{key}` is missing", fix)
        return d[key]

    def string(self, v: Any, at: Path_, fix: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.err(at, f"expected a non-empty string, got {_tname(v)}", fix)
        return v

    def number(self, v: Any, at: Path_, fix: str, minimum: float = 0.0) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or v < minimum:
            raise self.err(at, f"expected a number >= {minimum:g}, got {v!r}", fix)
        return float(v)

    def integer(self, v: Any, at: Path_, fix: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.err(at, f"expected an integer {lo}..{hi}, got {v!r}", fix)
        return v

    def boolean(self, v: Any, at: Path_, fix: str) -> bool:
        if not isinstance(v, bool):
            raise self.err(at, f"expected true or false, got {v!r}", fix)
        return v

    def regex(self, v: Any, at: Path_) -> str:
        s = self.string(v, at, "give a regular expression (Python re syntax)")
        try:
            re.compile(s)
        except re.error as e:
            raise self.err(at, f"invalid regular expression ({e})", "escape special characters with \\") from None
        return s


def _tname(v: Any) -> str:
    return {type(None): "nothing", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(v), "a list" if isinstance(v, list) else "a mapping" if isinstance(v, dict) else type(v).__name__
    )


def _errno_value(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and hasattr(errno_mod, v):
        return int(getattr(errno_mod, v))
    return None


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError (file, line, field, fix)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file; fix: pass a path such as scenarios/<name>.yml")
    text = path.read_text()
    data, lines = _yaml_with_lines(text, path)
    v = _V(path, lines)
    d = v.mapping(data, (), "name:, firmware:, timeline:, assertions: ...")
    v.keys(d, (), TOP_KEYS)
    name = v.string(v.required(d, (), "name", "add `name: <short-id>`"), ("name",), "name: my-bug")
    if not NAME_RE.match(name):
        raise v.err(("name",), f"{name!r} is not a short id", "use lower-case letters, digits and '-' (<= 48)")
    upstream = str(d.get("upstream") or "")
    if upstream and not re.match(r"^https?://", upstream):
        raise v.err(("upstream",), f"{upstream!r} is not a URL", "give the upstream issue's URL (https://...)")
    expect = d.get("expect", "reproduces")
    if expect != "reproduces":
        raise v.err(
            ("expect",), f"unknown expectation {expect!r}", "use `expect: reproduces` (the assertions = the bug)"
        )
    fw = d.get("firmware")
    if fw is not None:
        fw = v.string(str(fw), ("firmware",), "a version such as 1.25.0 or a path to firmware.elf")
        if not VERSION_RE.match(fw) and not (path.parent / fw).is_file() and not Path(fw).is_file():
            raise v.err(("firmware",), f"{fw!r} is neither a version (x.y.z) nor an existing file", "fix the path")

    topo = v.mapping(d.get("topology") or {}, ("topology",), "nodes: N, compose: FILE")
    v.keys(topo, ("topology",), {"nodes", "compose"})
    nodes = v.integer(topo.get("nodes", 1), ("topology", "nodes"), "nodes: 1..8", 1, 8)
    compose = None
    if topo.get("compose"):
        compose = _rel(path, v.string(topo["compose"], ("topology", "compose"), "a compose file path"))
        if not compose.is_file():
            raise v.err(("topology", "compose"), f"{compose} does not exist", "point to an existing compose file")
    node_names = {f"node{i}" for i in range(1, nodes + 1)}

    def node_ok(n: Any, at: Path_) -> str:
        s = v.string(n, at, "a node name such as node1")
        if s not in node_names:
            raise v.err(at, f"no node {s!r} in this topology ({nodes} node(s))", f"use one of {sorted(node_names)}")
        return s

    files: list[FileCopy] = []
    for i, f in enumerate(v.seq(d.get("files"), ("files",), "[{src: guest/x.py, dst: node1:/x.py}]")):
        at: Path_ = ("files", i)
        f = v.mapping(f, at, "src: local path, dst: node1:/path")
        v.keys(f, at, {"src", "dst"})
        src = _rel(
            path, v.string(v.required(f, at, "src", "add `src: path/relative/to/the/scenario`"), (*at, "src"), "")
        )
        if not src.is_file():
            raise v.err((*at, "src"), f"{src} does not exist", "paths are relative to the scenario file")
        dst = v.string(v.required(f, at, "dst", "add `dst: node1:/name.py`"), (*at, "dst"), "node1:/name.py")
        if ":" not in dst:
            raise v.err((*at, "dst"), f"{dst!r} is not NODE:PATH", "write it as node1:/name.py")
        nn, p = dst.split(":", 1)
        files.append(FileCopy(src, node_ok(nn, (*at, "dst")), p or "/" + src.name, v.line(at)))

    peers: list[Peer] = []
    for i, p in enumerate(v.seq(d.get("peers"), ("peers",), "[{name: sink, kind: udp, port: 9999}]")):
        at = ("peers", i)
        p = v.mapping(p, at, "name, kind, port, ...")
        pname = v.string(v.required(p, at, "name", "add `name: <id>`"), (*at, "name"), "name: sink")
        if not re.match(r"^[a-z][a-z0-9_]*$", pname) or any(x.name == pname for x in peers):
            raise v.err((*at, "name"), f"bad or duplicate peer name {pname!r}", "use a unique [a-z][a-z0-9_]* name")
        kind = v.required(p, at, "kind", f"add `kind:` ({', '.join(PEER_KINDS)})")
        if kind not in PEER_KINDS:
            raise v.err((*at, "kind"), f"unknown peer kind {kind!r}", f"use one of: {', '.join(PEER_KINDS)}")
        port = 0
        if kind == "services":
            svc = v.required(p, at, "service", f"add `service:` ({', '.join(SERVICES)})")
            if svc not in SERVICES:
                raise v.err((*at, "service"), f"unknown service {svc!r}", f"use one of: {', '.join(SERVICES)}")
            port = SERVICES[svc]
        elif "port" in p:
            port = v.integer(p["port"], (*at, "port"), "port: 1..65535 (or 0 for any)", 0, 65535)
        if kind == "tcp_server" and p.get("mode", "echo") not in ("echo", "sink", "close", "rst"):
            raise v.err((*at, "mode"), f"unknown mode {p.get('mode')!r}", "use echo, sink, close or rst")
        opts = {k: x for k, x in p.items() if k not in ("name", "kind", "port")}
        peers.append(Peer(pname, kind, port, opts, v.line(at)))
    peer_names = {p.name: p for p in peers}

    known_vars = {"host", "gateway", "services", "lab", *node_names}
    known_vars |= {f"{n}.{a}" for n in node_names for a in ("ip", "mac")}
    known_vars |= {f"peer.{p}.{a}" for p in peer_names for a in ("ip", "port")}

    def vars_ok(value: Any, at: Path_) -> None:
        if isinstance(value, str):
            for m in VAR_RE.finditer(value):
                if m.group(1) not in known_vars:
                    raise v.err(
                        at,
                        f"unknown variable ${{{m.group(1)}}}",
                        "use ${host}, ${services}, ${node1}, ${node1.mac}, ${peer.NAME.port} or ${peer.NAME.ip}",
                    )
        elif isinstance(value, dict):
            for k, x in value.items():
                vars_ok(x, (*at, k))
        elif isinstance(value, list):
            for k, x in enumerate(value):
                vars_ok(x, (*at, k))

    steps: list[Step] = []
    ids: set[str] = set()
    raw_tl = v.seq(v.required(d, (), "timeline", "add `timeline:` with at least one step"), ("timeline",), "steps")
    if not raw_tl:
        raise v.err(
            ("timeline",), "the timeline is empty", "add at least one step, e.g. `- exec: {node: node1, code: ...}`"
        )
    background: set[str] = set()
    for i, s in enumerate(raw_tl):
        at = ("timeline", i)
        s = v.mapping(s, at, "one action (" + ", ".join(ACTIONS) + ") plus optional id/at/after/says")
        v.keys(s, at, STEP_KEYS)
        acts = [k for k in s if k in ACTIONS]
        if len(acts) != 1:
            raise v.err(
                at, f"a step needs exactly one action, found {acts or 'none'}", f"use one of: {', '.join(ACTIONS)}"
            )
        act = acts[0]
        sid = str(s.get("id") or f"s{i + 1}")
        if sid in ids:
            raise v.err((*at, "id"), f"duplicate step id {sid!r}", "give each step a unique id")
        ids.add(sid)
        if "at" in s and "after" in s:
            raise v.err(
                (*at, "at"),
                "both `at` and `after`",
                "use `at` (s from the timeline start) or `after` (s after the previous step)",
            )
        at_t = v.number(s["at"], (*at, "at"), "at: seconds from the start") if "at" in s else None
        after = v.number(s.get("after", 0), (*at, "after"), "after: seconds after the previous step")
        args, exp = _check_action(v, act, s[act], (*at, act), node_ok, peer_names, ids, background)
        vars_ok(args, (*at, act))
        if act == "exec" and args.get("background"):
            background.add(sid)
        steps.append(Step(i, v.line(at), sid, act, args, at_t, after, exp, str(s.get("says") or "")))

    asserts: list[Assertion] = []
    for i, a in enumerate(v.seq(d.get("assertions"), ("assertions",), "[{console: ...}, {wire: ...}]")):
        at = ("assertions", i)
        a = v.mapping(a, at, "console: {...} | wire: {...} | sequence: {...}, says: text")
        v.keys(a, at, {"console", "wire", "sequence", "says"})
        kinds = [k for k in ("console", "wire", "sequence") if k in a]
        if len(kinds) != 1:
            raise v.err(
                at, f"an assertion needs exactly one of console/wire/sequence, found {kinds or 'none'}", "split it"
            )
        kind = kinds[0]
        args = _check_assertion(v, kind, a[kind], (*at, kind), node_ok, ids)
        vars_ok(args, (*at, kind))
        asserts.append(Assertion(i, v.line(at), kind, str(a.get("says") or ""), args))
    if not asserts and not any(s.expect for s in steps):
        raise v.err(
            ("assertions",), "no assertions and no exec `expect`", "say what the bug looks like (console or wire)"
        )
    return Scenario(
        path=path,
        text=text,
        name=name,
        upstream=upstream,
        description=str(d.get("description") or "").strip(),
        firmware=fw,
        nodes=nodes,
        compose=compose,
        files=files,
        peers=peers,
        timeline=steps,
        assertions=asserts,
        expect=expect,
        lines=lines,
    )


def _rel(scn: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else (scn.parent / q)


def _check_wire_spec(v: _V, w: Any, at: Path_) -> WireSpec:
    w = v.mapping(w, at, "layer: TCP, fields: {dport: 7}")
    v.keys(w, at, {"layer", "fields"})
    layer = v.required(w, at, "layer", f"add `layer:` ({', '.join(LAYERS)})")
    if layer not in LAYERS:
        raise v.err((*at, "layer"), f"unknown layer {layer!r}", f"use one of: {', '.join(LAYERS)}")
    fields = v.mapping(w.get("fields") or {}, (*at, "fields"), "field: value, e.g. dport: 7, flags: R")
    for k, x in fields.items():
        if k == "payload":
            v.regex(x, (*at, "fields", k))
        elif not isinstance(x, str | int) or isinstance(x, bool):
            raise v.err((*at, "fields", k), f"expected a string or a number, got {_tname(x)}", "give one value")
    return WireSpec(layer, dict(fields))


def _check_expect_spec(v: _V, e: Any, at: Path_) -> Expect:
    e = v.mapping(e, at, "output/exception/errno/timeout/absent")
    v.keys(e, at, {"output", "exception", "errno", "timeout", "absent"})
    exp = Expect(
        output=v.regex(e["output"], (*at, "output")) if "output" in e else None,
        exception=v.string(e["exception"], (*at, "exception"), "e.g. OSError") if "exception" in e else None,
        timeout=v.boolean(e["timeout"], (*at, "timeout"), "timeout: true") if "timeout" in e else None,
        absent=v.regex(e["absent"], (*at, "absent")) if "absent" in e else None,
    )
    if "errno" in e:
        exp.errno = _errno_value(e["errno"])
        if exp.errno is None:
            raise v.err((*at, "errno"), f"unknown errno {e['errno']!r}", "use a number or a name like ECONNRESET")
    return exp


def _check_action(
    v: _V,
    act: str,
    a: Any,
    at: Path_,
    node_ok: Callable[[Any, Path_], str],
    peers: dict[str, Peer],
    ids: set[str],
    background: set[str],
) -> tuple[dict[str, Any], Expect | None]:
    if act == "sleep":
        return {"seconds": v.number(a, at, "sleep: seconds")}, None
    if act == "join":
        sid = v.string(a, at, "join: <id of a background exec step>")
        if sid not in background:
            raise v.err(
                at, f"no earlier background exec with id {sid!r}", "join the id of an exec with background: true"
            )
        return {"step": sid}, None
    a = v.mapping(a, at, ACTIONS[act])
    exp = None
    if act == "exec":
        v.keys(a, at, {"node", "code", "file", "timeout", "background", "expect", "require"})
        node_ok(v.required(a, at, "node", "add `node: node1`"), (*at, "node"))
        if ("code" in a) == ("file" in a):
            raise v.err(at, "needs exactly one of `code` and `file`", "give the guest code inline or a local file")
        if "file" in a:
            f = _rel(v.path, v.string(a["file"], (*at, "file"), "a local .py file"))
            if not f.is_file():
                raise v.err((*at, "file"), f"{f} does not exist", "paths are relative to the scenario file")
            a = {**a, "code": f.read_text()}
        v.string(a["code"], (*at, "code"), "guest Python code")
        if "timeout" in a:
            v.number(a["timeout"], (*at, "timeout"), "timeout: seconds", 0.1)
        if "background" in a:
            v.boolean(a["background"], (*at, "background"), "background: true")
        if "expect" in a:
            exp = _check_expect_spec(v, a["expect"], (*at, "expect"))
        if "require" in a:
            a = {**a, "require": _check_expect_spec(v, a["require"], (*at, "require"))}
        return a, exp
    if act in ("impair", "clear", "link"):
        keys = {"node"} | (IMPAIR_KEYS if act == "impair" else {"up"} if act == "link" else set())
        v.keys(a, at, keys)
        node_ok(v.required(a, at, "node", "add `node: node1`"), (*at, "node"))
        if act == "link":
            v.boolean(v.required(a, at, "up", "add `up: false` (down) or `up: true`"), (*at, "up"), "up: false")
        if act == "impair":
            if not set(a) & IMPAIR_KEYS:
                raise v.err(at, "no impairment given", f"add one of: {', '.join(sorted(IMPAIR_KEYS))}")
            from .impair import DIRECTIONS, check_value, make

            for k in sorted(set(a) & IMPAIR_KEYS):
                a[k] = str(a[k])
                if k == "direction" and a[k] not in DIRECTIONS:
                    raise v.err((*at, k), f"invalid direction {a[k]!r}", f"use one of: {', '.join(DIRECTIONS)}")
                try:
                    if k != "direction":
                        check_value(k, a[k])
                except ConfigError as e:
                    raise v.err((*at, k), str(e), "see docs/impairments.md for the values each key takes") from None
            try:
                make(**{k: a[k] for k in IMPAIR_KEYS if k in a})
            except ConfigError as e:
                raise v.err(at, str(e), "see docs/impairments.md") from None
        return a, None
    if act == "inject":
        kinds = ("rst", "icmp_port_unreachable", "icmp_host_unreachable", "garp", "arp_change", "packet")
        k = v.required(a, at, "kind", f"add `kind:` ({', '.join(kinds)})")
        if k not in kinds:
            raise v.err((*at, "kind"), f"unknown injection {k!r}", f"use one of: {', '.join(kinds)}")
        need = {
            "rst": ("client", "client_port", "server", "server_port"),
            "icmp_port_unreachable": ("of",),
            "icmp_host_unreachable": ("of",),
            "garp": ("ip", "mac"),
            "arp_change": ("ip", "mac"),
            "packet": ("hex",),
        }[k]
        for key in need:
            v.required(a, at, key, f"inject {k} needs {', '.join(need)} (see docs/field-bugs.md)")
        if "of" in a:
            a = {**a, "of": dataclasses.asdict(_check_wire_spec(v, a["of"], (*at, "of")))}
        return a, None
    if act == "send":
        v.keys(a, at, {"peer", "to", "port", "data", "count", "interval"})
        pn = v.required(a, at, "peer", "add `peer: <name of a udp peer>`")
        if pn not in peers or peers[pn].kind != "udp":
            raise v.err((*at, "peer"), f"no udp peer {pn!r}", "declare it under peers: with kind: udp")
        v.string(v.required(a, at, "to", "add `to: node1`"), (*at, "to"), "to: node1 (or an IP)")
        v.integer(v.required(a, at, "port", "add `port: N`"), (*at, "port"), "port: 1..65535", 1, 65535)
        v.integer(a.get("count", 1), (*at, "count"), "count: 1..10000", 1, 10000)
        v.number(a.get("interval", 0), (*at, "interval"), "interval: seconds")
        return a, None
    if act == "tcp_connect":
        v.keys(a, at, {"to", "port", "data", "close", "hold", "timeout"})
        v.string(v.required(a, at, "to", "add `to: node1`"), (*at, "to"), "to: node1")
        v.integer(v.required(a, at, "port", "add `port: N`"), (*at, "port"), "port: 1..65535", 1, 65535)
        if a.get("close", "fin") not in ("fin", "rst", "none"):
            raise v.err((*at, "close"), f"unknown close {a.get('close')!r}", "use fin, rst or none")
        return a, None
    if act == "wait_for":
        v.keys(a, at, {"console", "wire", "step", "timeout"})
        got = [k for k in ("console", "wire", "step") if k in a]
        if len(got) != 1:
            raise v.err(at, "needs exactly one of console/wire/step", "wait for one thing per step")
        if "console" in a:
            c = v.mapping(a["console"], (*at, "console"), "node, match")
            v.keys(c, (*at, "console"), {"node", "match"})
            node_ok(v.required(c, (*at, "console"), "node", "add `node: node1`"), (*at, "console", "node"))
            v.regex(v.required(c, (*at, "console"), "match", "add `match: <regex>`"), (*at, "console", "match"))
        if "wire" in a:
            a = {**a, "wire": _check_wire_spec(v, a["wire"], (*at, "wire"))}
        if "step" in a and a["step"] not in background:
            raise v.err(
                (*at, "step"), f"no earlier background exec {a['step']!r}", "name an exec with background: true"
            )
        v.number(a.get("timeout", 10), (*at, "timeout"), "timeout: seconds", 0.1)
        return a, None
    raise v.err(at, f"unknown action {act}", f"use one of: {', '.join(ACTIONS)}")  # pragma: no cover


def _check_assertion(
    v: _V, kind: str, a: Any, at: Path_, node_ok: Callable[[Any, Path_], str], ids: set[str]
) -> dict[str, Any]:
    a = v.mapping(a, at, "see docs/field-bugs.md")
    if kind == "console":
        v.keys(a, at, {"node", "step", "match", "absent"})
        if "node" not in a and "step" not in a:
            raise v.err(at, "needs `node` (its console log) or `step` (an exec's output)", "add one")
        if "node" in a:
            node_ok(a["node"], (*at, "node"))
        if "step" in a and a["step"] not in ids:
            raise v.err((*at, "step"), f"no step with id {a['step']!r}", f"use one of: {', '.join(sorted(ids))}")
        if ("match" in a) == ("absent" in a):
            raise v.err(at, "needs exactly one of `match` and `absent`", "match: <regex> (present) or absent: <regex>")
        v.regex(a.get("match", a.get("absent")), (*at, "match" if "match" in a else "absent"))
        return a
    window = {"since", "until", "within"}
    for k in ("since", "until"):
        if k in a and a[k] not in ids:
            raise v.err((*at, k), f"no step with id {a[k]!r}", f"use one of: {', '.join(sorted(ids))}")
    if "within" in a:
        v.number(a["within"], (*at, "within"), "within: seconds after `since`", 0.001)
    if kind == "wire":
        v.keys(a, at, {"layer", "fields", "count", *window})
        spec = _check_wire_spec(v, {k: a[k] for k in ("layer", "fields") if k in a}, at)
        lo, hi = _count(v, a.get("count", ">=1"), (*at, "count"))
        return {**a, "spec": spec, "min": lo, "max": hi}
    v.keys(a, at, {"packets", *window})
    pk = v.seq(v.required(a, at, "packets", "add `packets:` (a list of {layer, fields})"), (*at, "packets"), "")
    if len(pk) < 2:
        raise v.err((*at, "packets"), "a sequence needs at least 2 packets", "use a wire: assertion for one packet")
    return {**a, "specs": [_check_wire_spec(v, p, (*at, "packets", i)) for i, p in enumerate(pk)]}


def _count(v: _V, c: Any, at: Path_) -> tuple[int, int | None]:
    fix = "count: 3 (exactly), '>=1', '<=2', '1..3' or 0 (none)"
    if isinstance(c, int) and not isinstance(c, bool) and c >= 0:
        return c, c
    if isinstance(c, str):
        s = c.replace(" ", "")
        if m := re.fullmatch(r">=(\d+)", s):
            return int(m.group(1)), None
        if m := re.fullmatch(r"<=(\d+)", s):
            return 0, int(m.group(1))
        if m := re.fullmatch(r"(\d+)\.\.(\d+)", s):
            return int(m.group(1)), int(m.group(2))
    raise v.err(at, f"bad count {c!r}", fix)


# ---- firmware --------------------------------------------------------------------------
@dataclass
class Firmware:
    label: str  # "1.25.0" or "custom-<sha8>"
    elf: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str((self.manifest.get("micropython") or {}).get("version") or "unknown")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def known_versions(root: Path | None = None) -> list[str]:
    mk = (root or repo_root()) / "firmware" / "sources.mk"
    if mk.is_file():
        m = re.search(r"^MICROPYTHON_VERSIONS\s*:?=\s*(.+)$", mk.read_text(), re.M)
        if m:
            return m.group(1).split()
    return []


def resolve_firmware(
    spec: str, *, base: Path | None = None, build: bool = True, progress: Progress | None = None
) -> Firmware:
    """A version (built with ``make -C firmware`` if needed) or a path to an ELF."""
    root = repo_root()
    if VERSION_RE.match(spec):
        versions = known_versions(root)
        if versions and spec not in versions:
            raise ConfigError(f"unknown firmware version {spec}: buildable versions are {', '.join(versions)}")
        out = root / "firmware" / "build"
        if versions and spec != versions[0]:
            out = out / spec
        elf = out / "firmware.elf"
        if build:
            if progress:
                progress(f"firmware {spec}: make -C firmware MICROPYTHON_VERSION={spec}")
            p = subprocess.run(
                ["make", "-C", str(root / "firmware"), f"MICROPYTHON_VERSION={spec}"],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if p.returncode != 0:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
                raise LabError(f"firmware {spec}: build failed: {tail[0]}")
        if not elf.is_file():
            raise LabError(f"firmware {spec}: {elf} missing; fix: make -C firmware MICROPYTHON_VERSION={spec}")
        man = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
        return Firmware(spec, elf, man)
    p = Path(spec)
    if not p.is_absolute() and base is not None and (base / p).is_file():
        p = base / p
    if p.is_dir():
        p = p / "firmware.elf"
    if not p.is_file():
        raise ConfigError(f"firmware {spec!r}: not a version (x.y.z) nor an existing file; fix: give a path to a .elf")
    data = p.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ConfigError(f"firmware {p}: not an ELF file; fix: give the firmware.elf your build produced")
    sha = hashlib.sha256(data).hexdigest()
    man_path = p.parent / "manifest.json"
    man: dict[str, Any] = {}
    if man_path.is_file():
        with contextlib.suppress(ValueError):
            man = json.loads(man_path.read_text())
    if man.get("sha256") != sha:
        man = {"elf": str(p.resolve()), "sha256": sha, "size": len(data), "note": "no matching manifest.json beside it"}
    return Firmware(f"custom-{sha[:8]}", p.resolve(), man)


# ---- results ---------------------------------------------------------------------------
@dataclass
class StepResult:
    id: str
    action: str
    line: int
    t_start: float = 0.0  # wall clock (pcap time base)
    t_end: float = 0.0
    output: str = ""
    exception: str = ""
    traceback: str = ""
    errno: int | None = None
    timed_out: bool = False
    error: str = ""
    note: str = ""
    done: bool = False


@dataclass
class PacketRef:
    frame: int  # 1-based frame number in the bundle's pcap
    t: float  # seconds since the capture started
    summary: str


@dataclass
class Check:
    label: str
    line: int
    says: str
    held: bool
    detail: str
    packets: list[PacketRef] = field(default_factory=list)


@dataclass
class Result:
    scenario: str
    firmware: str
    verdict: str
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""
    duration: float = 0.0
    lab: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


# ---- host-side peers -------------------------------------------------------------------
class _HostPeer:
    def __init__(self, peer: Peer, ip: str) -> None:
        self.peer = peer
        self.ip = ip
        self.port = peer.port
        self.log: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self.obj: Any = None

    def _spawn(self, fn: Callable[..., None], *a: Any) -> None:
        t = threading.Thread(target=fn, args=a, daemon=True)
        t.start()
        self._threads.append(t)

    def start(self, lab: Any) -> None:
        p = self.peer
        if p.kind == "services":
            self.ip = lab.services_ip
            return
        if p.kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.ip, p.port))
            s.settimeout(0.2)
            self._socks.append(s)
            self.port = s.getsockname()[1]
            self._spawn(self._udp_loop, s)
        elif p.kind == "tcp_server":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.ip, p.port))
            s.listen(int(p.options.get("backlog", 4)))
            s.settimeout(0.2)
            self._socks.append(s)
            self.port = s.getsockname()[1]
            self._spawn(self._tcp_accept, s)
        elif p.kind in ("tcp_peer", "dns"):
            self.obj = _external_peer(lab, p)
            self.port = int(getattr(self.obj, "port", p.port) or p.port)

    @property
    def udp_sock(self) -> socket.socket:
        return self._socks[0]

    def _udp_loop(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, addr = s.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.log.append(f"{time.time():.6f} udp from {addr[0]}:{addr[1]} {len(data)} bytes {data[:60]!r}")

    def _tcp_accept(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                c, addr = s.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(c)
            self.log.append(f"{time.time():.6f} tcp accept {addr[0]}:{addr[1]}")
            self._spawn(self._tcp_conn, c, addr)

    def _tcp_conn(self, c: socket.socket, addr: tuple[str, int]) -> None:
        mode = self.peer.options.get("mode", "echo")
        c.settimeout(0.2)
        total = 0
        limit = int(self.peer.options.get("close_after", 0) or 0)
        try:
            script = self.peer.options.get("script")
            if script:
                self._tcp_script(c, addr, script)
                return
            if mode in ("close", "rst") and not limit:
                _close(c, mode == "rst")
                self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} {mode} at once")
                return
            while not self._stop.is_set():
                try:
                    data = c.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} peer closed after {total} bytes")
                    c.close()
                    return
                total += len(data)
                if mode == "echo":
                    c.sendall(data)
                if limit and total >= limit:
                    _close(c, mode == "rst")
                    self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} {mode} after {total} bytes")
                    return
        except OSError as e:
            self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} {e}")

    def _tcp_script(self, c: socket.socket, addr: tuple[str, int], script: list[dict[str, Any]]) -> None:
        """[{at: s after accept, send: data} | {at, close: fin|rst}], reading whatever comes meanwhile."""
        t0 = time.monotonic()
        for item in script:
            while time.monotonic() - t0 < float(item.get("at", 0)):
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    data = c.recv(65536)
                    if data:
                        self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} got {data[:60]!r}")
            if "send" in item:
                c.sendall(str(item["send"]).encode())
                self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} sent {item['send']!r}")
            if "close" in item:
                _close(c, item["close"] == "rst")
                self.log.append(f"{time.time():.6f} tcp {addr[0]}:{addr[1]} {item['close']}")
                return

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(timeout=1.0)
        if self.obj is not None:
            for m in ("stop", "close", "__exit__"):
                fn = getattr(self.obj, m, None)
                if fn is not None:
                    with contextlib.suppress(Exception):
                        fn(None, None, None) if m == "__exit__" else fn()
                    break


def _close(c: socket.socket, rst: bool) -> None:
    if rst:
        import struct

        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def _external_peer(lab: Any, p: Peer) -> Any:
    """The scapy TCP peer / DNS responder of lab.tcp_peer / lab.inject, started."""
    opts = {k: x for k, x in p.options.items()}
    if p.kind == "tcp_peer":
        try:
            from . import tcp_peer as mod
        except ImportError:
            raise LabError("peer kind tcp_peer needs lab/tcp_peer.py, which is not installed") from None
        cls = getattr(mod, "TcpPeer", None) or getattr(mod, "TCPPeer", None)
    else:
        try:
            from . import inject as mod
        except ImportError:
            raise LabError("peer kind dns needs lab/inject.py, which is not installed") from None
        cls = getattr(mod, "DnsResponder", None)
    if cls is None:
        raise LabError(f"peer kind {p.kind}: no peer class in {mod.__name__}")
    if p.port and p.kind == "tcp_peer":
        opts["port"] = p.port
    if "node" in opts:
        opts["node"] = lab.node(str(opts["node"]))
    obj = cls(lab, **opts)
    if hasattr(obj, "start"):
        obj = obj.start() or obj
    elif hasattr(obj, "__enter__"):
        obj = obj.__enter__() or obj
    return obj


# ---- the runner ------------------------------------------------------------------------
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
        self.peers: dict[str, _HostPeer] = {}
        self.results: dict[str, StepResult] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.node_locks: dict[str, threading.Lock] = {}
        self.impairs: list[Any] = []
        self.vars: dict[str, str] = {}
        self.checks: list[Check] = []
        self.t_cap0 = 0.0
        self.tcp_clients: list[tuple[threading.Thread, socket.socket]] = []
        self._dissected: list[Any] = []

    # -- lifecycle
    def run(self) -> Result:
        from .lab import Lab
        from .topology import Topology

        t0 = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "scenario.yml").write_text(self.scn.text)
        (self.out / "firmware.manifest.json").write_text(json.dumps(self.fw.manifest, indent=2) + "\n")
        res = Result(self.scn.name, self.fw.label, ERROR, self.out, lab=self.lab_name)
        try:
            override = self.out / "compose.firmware.yml"
            override.write_text(
                'version: "2.4"\nservices:\n  node:\n    volumes:\n'
                f"      - {json.dumps(str(self.fw.elf.resolve()) + ':/opt/mplab/firmware.elf:ro')}\n"
            )
            topo = Topology.load(lab=self.lab_name, compose_file=self.scn.compose)
            topo = dataclasses.replace(topo, overrides=(override,))
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
            self._setup_vars()
            self.cap = self.lab.capture(self.out / "wire.pcap")  # console traffic is left out
            from scapy.config import conf

            if conf.ifaces is not None:
                conf.ifaces.reload()  # the bridge is new (same name, new ifindex) on every run
            self.cap.start()
            self.t_cap0 = self.cap.t0
            self._copy_files()
            self._start_peers()
            self._timeline()
            time.sleep(0.5)  # let the last frames arrive
            self.cap.stop()
            self._judge()
            res.verdict = REPRODUCED if all(c.held for c in self.checks) else NOT_REPRODUCED
        except Exception as e:  # any failure of the run itself is an "error" verdict, with a trace
            import traceback

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
        if isinstance(value, str):
            return VAR_RE.sub(lambda m: str(self.vars[m.group(1)]), value)
        if isinstance(value, dict):
            return {k: self.sub(x) for k, x in value.items()}
        if isinstance(value, list):
            return [self.sub(x) for x in value]
        return value

    def _copy_files(self) -> None:
        from .cli.cp import put

        for f in self.scn.files:
            self.progress(f"  copy {f.src} -> {f.node}:{f.dst}")
            put(self.lab.node(f.node), f.src.read_bytes(), f.dst)

    def _start_peers(self) -> None:
        for p in self.scn.peers:
            hp = _HostPeer(p, self.lab.host_ip)
            hp.start(self.lab)
            self.peers[p.name] = hp
            self.vars[f"peer.{p.name}.ip"] = hp.ip
            self.vars[f"peer.{p.name}.port"] = str(hp.port)
            self.progress(f"  peer {p.name}: {p.kind} on {hp.ip}:{hp.port}")

    def _teardown(self) -> None:
        for hp in self.peers.values():
            hp.stop()
        for _t, s in self.tcp_clients:
            with contextlib.suppress(OSError):
                s.close()
        for cm in self.impairs:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)
        if self.lab is None:
            return
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
        if self.peers:
            lines = []
            for name, hp in self.peers.items():
                lines += [f"[{name}] {x}" for x in hp.log]
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
                self._step(st, r)
            except _StepFailed:
                raise
            except (LabError, ConsoleError, OSError, ImportError, AttributeError, TypeError, ValueError) as e:
                r.error = f"{type(e).__name__}: {e}"
                raise _StepFailed(f"{self.scn.path}:{st.line}: step {st.id} ({st.action}) failed: {e}") from e
            if not (st.action == "exec" and st.args.get("background")):
                r.t_end = r.t_end or time.time()
                r.done = True
            self._raise_failed()
            prev = time.monotonic()
        for sid, t in self.threads.items():
            t.join(timeout=120)
            if t.is_alive():
                raise _StepFailed(f"background step {sid} still running at the end of the timeline")
        self._raise_failed()

    def _raise_failed(self) -> None:
        for st in self.scn.timeline:
            r = self.results.get(st.id)
            if r is not None and r.done and r.error:
                raise _StepFailed(f"{self.scn.path}:{st.line}: step {st.id} ({st.action}): {r.error}")

    def _step(self, st: Step, r: StepResult) -> None:
        a = self.sub(st.args)
        act = st.action
        if act == "sleep":
            time.sleep(a["seconds"])
        elif act == "exec":
            if a.get("background"):
                t = threading.Thread(target=self._exec, args=(st, a, r), daemon=True)
                self.threads[st.id] = t
                t.start()
                time.sleep(0.05)
            else:
                self._exec(st, a, r)
        elif act == "join":
            t = self.threads.get(a["step"])
            if t is not None:
                t.join(timeout=300)
        elif act == "impair":
            nd = self.lab.node(a["node"])
            kw = {k: a[k] for k in IMPAIR_KEYS if k in a}
            cm = _impair(nd, kw)
            if cm is not None:
                self.impairs.append(cm)
            r.note = ", ".join(f"{k}={x}" for k, x in kw.items())
        elif act == "clear":
            nd = self.lab.node(a["node"])
            self.impairs.clear()
            _clear_impairments(nd)
        elif act == "link":
            _link(self.lab.node(a["node"]), bool(a["up"]))
        elif act == "inject":
            r.note = _inject(self, a)
        elif act == "send":
            self._send(a, r)
        elif act == "tcp_connect":
            self._tcp_connect(a, r)
        elif act == "wait_for":
            self._wait_for(st, a, r)

    def _exec(self, st: Step, a: dict[str, Any], r: StepResult) -> None:
        nd = self.lab.node(a["node"])
        timeout = float(a.get("timeout", 10))
        with self.node_locks.setdefault(nd.name, threading.Lock()):
            r.t_start = r.t_start or time.time()
            try:
                r.output = nd.exec(a["code"], timeout=timeout)
            except GuestError as e:
                r.output = e.stdout
                r.exception = e.exc_type
                r.errno = e.errno
                r.traceback = e.traceback
            except ConsoleTimeout:
                r.timed_out = True
                r.note = f"no answer within {timeout:g}s (guest interrupted with Ctrl-C)"
            except ConsoleError as e:
                r.error = str(e).splitlines()[0]
            finally:
                r.t_end = time.time()
                r.done = True
        if st.expect is not None:
            self.checks.append(_check_expect(st, r, st.expect))
        req = a.get("require")
        if isinstance(req, Expect):
            c = _check_expect(st, r, req)
            if not c.held:
                r.error = f"require not met: {c.detail}"

    def _target(self, to: str) -> str:
        ip = self.vars.get(to, to)
        import ipaddress

        if ipaddress.ip_address(ip) not in self.lab.subnet:
            raise _StepFailed(f"{to!r} is not an address in lab {self.lab.name} ({self.lab.subnet})")
        return ip

    def _send(self, a: dict[str, Any], r: StepResult) -> None:
        hp = self.peers[a["peer"]]
        dst = (self._target(a["to"]), int(a["port"]))
        data = str(a.get("data", "x"))
        n = int(a.get("count", 1))
        for i in range(n):
            payload = data.replace("{i}", str(i)).encode()
            hp.udp_sock.sendto(payload, dst)
            if a.get("interval") and i < n - 1:
                time.sleep(float(a["interval"]))
        r.note = f"{n} datagram(s) {hp.ip}:{hp.port} -> {dst[0]}:{dst[1]}"

    def _tcp_connect(self, a: dict[str, Any], r: StepResult) -> None:
        """Connect from the host's LAN address (synchronously), send, then hold/close in the background."""
        dst = (self._target(a["to"]), int(a["port"]))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(float(a.get("timeout", 5)))
        s.bind((self.lab.host_ip, 0))
        try:
            s.connect(dst)
        except OSError as e:
            r.note = f"connect to {dst[0]}:{dst[1]}: {e}"
            s.close()
            return
        me = s.getsockname()
        r.note = f"{me[0]}:{me[1]} connected to {dst[0]}:{dst[1]}"
        if a.get("data"):
            s.sendall(str(a["data"]).encode())

        def rest() -> None:
            try:
                time.sleep(float(a.get("hold", 0)))
                how = a.get("close", "fin")
                if how == "none":
                    return
                if how == "fin":
                    with contextlib.suppress(OSError):
                        got = s.recv(4096)
                        r.note += f"; received {got[:60]!r}"
                _close(s, how == "rst")
            except OSError as e:
                r.note += f"; {e}"

        t = threading.Thread(target=rest, daemon=True)
        t.start()
        self.tcp_clients.append((t, s))

    def _wait_for(self, st: Step, a: dict[str, Any], r: StepResult) -> None:
        timeout = float(a.get("timeout", 10))
        deadline = time.monotonic() + timeout
        label = f"wait_for {st.id}"
        while True:
            ok, detail, pkts = self._probe(a)
            if ok:
                r.note = detail
                return
            if time.monotonic() >= deadline:
                r.note = f"timed out after {timeout:g}s"
                self.checks.append(
                    Check(label, st.line, st.says, False, f"{detail}: not seen within {timeout:g}s", pkts)
                )
                return
            time.sleep(0.1)

    def _probe(self, a: dict[str, Any]) -> tuple[bool, str, list[PacketRef]]:
        if "step" in a:
            r = self.results.get(a["step"])
            return bool(r and r.done), f"step {a['step']} finished", []
        if "console" in a:
            c = a["console"]
            text = self.lab.node(c["node"]).logs()
            m = re.search(c["match"], text)
            return bool(m), f"console of {c['node']} matches {c['match']!r}", []
        spec: WireSpec = a["wire"]
        pk = self._packets()
        # From the start of the step before this wait: what that step caused may already be on
        # the wire when the wait begins.
        starts = [r.t_start for r in self.results.values()]
        since = starts[-2] if len(starts) >= 2 else 0.0
        for i, p in enumerate(pk):
            if float(p.time) >= since and _match(p, spec):
                return True, f"{_spec_str(spec)} seen", [self._ref(i, p)]
        return False, _spec_str(spec), []

    def _packets(self) -> list[Any]:
        """The capture's packets, dissected with every layer loaded (kept times)."""
        _layer("IP")  # registers IP/TCP/UDP/DNS/DHCP over Ether
        from scapy.layers.l2 import Ether

        got = self.cap.packets
        done = self._dissected
        for p in got[len(done) :]:
            q = Ether(bytes(p))
            q.time = p.time
            done.append(q)
        return list(done)

    def _ref(self, i: int, p: Any) -> PacketRef:
        return PacketRef(i + 1, float(p.time) - self.t_cap0, p.summary())

    # -- judging
    def _window(self, a: dict[str, Any]) -> tuple[float, float]:
        lo, hi = 0.0, float("inf")
        if "since" in a:
            lo = self.results[a["since"]].t_start if a["since"] in self.results else float("inf")
        if "until" in a:
            r = self.results.get(a["until"])
            hi = (r.t_end or r.t_start) if r else 0.0
        if "within" in a:
            hi = min(hi, (lo or self.t_cap0) + float(a["within"]))
        return lo, hi

    def _judge(self) -> None:
        pk = self._packets()
        for asr in self.scn.assertions:
            a = self.sub(asr.args)
            label = f"assertion {asr.index + 1} ({asr.kind})"
            if asr.kind == "console":
                self.checks.append(self._judge_console(asr, a, label))
                continue
            lo, hi = self._window(a)
            win = [(i, p) for i, p in enumerate(pk) if lo <= float(p.time) <= hi]
            wtxt = _window_text(a)
            if asr.kind == "wire":
                spec = WireSpec(a["spec"].layer, self.sub(a["spec"].fields))
                got = [(i, p) for i, p in win if _match(p, spec)]
                n, mn, mx = len(got), a["min"], a["max"]
                held = n >= mn and (mx is None or n <= mx)
                want = f"{mn}" if mx == mn else f">= {mn}" if mx is None else f"{mn}..{mx}"
                detail = f"{_spec_str(spec)}{wtxt}: {n} packet(s), wanted {want}"
                refs = [self._ref(i, p) for i, p in got[:20]]
                self.checks.append(Check(label, asr.line, asr.says, held, detail, refs))
            else:
                specs = [WireSpec(s.layer, self.sub(s.fields)) for s in a["specs"]]
                found: list[PacketRef] = []
                k = 0
                for i, p in win:
                    if k < len(specs) and _match(p, specs[k]):
                        found.append(self._ref(i, p))
                        k += 1
                marks = [("✓ " if j < k else "✗ ") + _spec_str(s) for j, s in enumerate(specs)]
                detail = f"sequence{wtxt}, {k}/{len(specs)} in order: " + "; ".join(marks)
                self.checks.append(Check(label, asr.line, asr.says, k == len(specs), detail, found))

    def _judge_console(self, asr: Assertion, a: dict[str, Any], label: str) -> Check:
        if "step" in a:
            r = self.results.get(a["step"])
            text = (r.output + ("\n" + r.traceback if r.traceback else "")) if r else ""
            where = f"output of step {a['step']}"
        else:
            text = self.lab.node(a["node"]).logs()
            where = f"console log of {a['node']}"
        pat = a.get("match", a.get("absent"))
        m = re.search(pat, text, re.M)
        if "match" in a:
            detail = f"{where} matches {pat!r}: " + (repr(m.group(0)[:120]) if m else "no match")
            return Check(label, asr.line, asr.says, bool(m), detail)
        detail = f"{where} has no {pat!r}: " + (f"found {m.group(0)[:120]!r}" if m else "none found")
        return Check(label, asr.line, asr.says, not m, detail)


class _StepFailed(Exception):
    pass


def _brief(st: Step) -> str:
    a = st.args
    if st.action == "exec":
        first = str(a.get("code", "")).strip().splitlines()[:1]
        return f"{a['node']}: {first[0][:60] if first else ''}{' (background)' if a.get('background') else ''}"
    if st.action == "sleep":
        return f"{a['seconds']:g}s"
    return ", ".join(f"{k}={x}" for k, x in a.items() if not isinstance(x, WireSpec | dict))[:80]


def _window_text(a: dict[str, Any]) -> str:
    parts = []
    if "since" in a:
        parts.append(f"since step {a['since']}")
    if "until" in a:
        parts.append(f"until step {a['until']} ended")
    if "within" in a:
        parts.append(f"within {a['within']}s")
    return f" ({', '.join(parts)})" if parts else ""


def _check_expect(st: Step, r: StepResult, e: Expect) -> Check:
    bits: list[str] = []
    held = True
    got = (
        "timed out"
        if r.timed_out
        else f"raised {r.exception}" + (f" (errno {r.errno})" if r.errno is not None else "")
        if r.exception
        else f"console error: {r.error}"
        if r.error
        else "returned"
    )
    if e.timeout is not None:
        ok = r.timed_out == e.timeout
        held &= ok
        bits.append(f"{'hang' if e.timeout else 'no hang'} {'✓' if ok else '✗'}")
    if e.exception is not None:
        ok = r.exception == e.exception or r.exception.endswith("." + e.exception)
        held &= ok
        bits.append(f"{e.exception} {'✓' if ok else '✗'}")
    if e.errno is not None:
        ok = r.errno == e.errno
        held &= ok
        bits.append(f"errno {e.errno} {'✓' if ok else '✗'}")
    if e.output is not None:
        m = re.search(e.output, r.output, re.M)
        held &= bool(m)
        bits.append(f"output ~ {e.output!r} {'✓ ' + repr(m.group(0)[:80]) if m else '✗'}")
    if e.absent is not None:
        m = re.search(e.absent, r.output, re.M)
        held &= not m
        bits.append(f"no {e.absent!r} in output {'✗ ' + repr(m.group(0)[:80]) if m else '✓'}")
    out = r.output.strip().replace("\n", " | ")[:200]
    detail = f"step {st.id} {got}; " + ", ".join(bits) + (f"; stdout: {out!r}" if out else "")
    if r.traceback:
        detail += f"; {r.traceback.strip().splitlines()[-1]}"
    return Check(f"step {st.id} (exec expect)", st.line, st.says, held, detail)


def _layer(name: str) -> Any:
    from scapy.layers import dhcp, dns, inet, l2
    from scapy.packet import Raw

    return {
        "Ether": l2.Ether,
        "ARP": l2.ARP,
        "IP": inet.IP,
        "ICMP": inet.ICMP,
        "TCP": inet.TCP,
        "UDP": inet.UDP,
        "DNS": dns.DNS,
        "BOOTP": dhcp.BOOTP,
        "DHCP": dhcp.DHCP,
        "Raw": Raw,
    }[name]


def _match(p: Any, spec: WireSpec) -> bool:
    from .capture import matches

    layer = _layer(spec.layer)
    fields = {}
    payload = None
    for k, x in spec.fields.items():
        if k == "payload":
            payload = str(x)
        elif k == "flags":
            fields[k] = str(x)
        elif isinstance(x, str) and x.isdigit():
            fields[k] = int(x)
        else:
            fields[k] = x
    if not matches(p, layer, fields):
        return False
    if payload is not None:
        from scapy.packet import Raw

        raw = bytes(p[Raw].load) if p.haslayer(Raw) else b""
        return re.search(payload, raw.decode("latin-1"), re.S) is not None
    return True


def _spec_str(s: WireSpec) -> str:
    return f"{s.layer}({', '.join(f'{k}={x!r}' for k, x in s.fields.items())})"


# ---- the other engineers' APIs (impairments, injection), looked up at run time ----------
def _impair(node: Any, kw: dict[str, str]) -> Any:
    fn = getattr(node, "impair", None)
    if fn is None:
        try:
            from . import impair as mod
        except ImportError:
            raise LabError("impair steps need lab/impair.py (node.impair), which is not installed") from None
        fn = lambda **k: mod.impair(node, **k)  # noqa: E731
    cm = fn(**kw)
    if hasattr(cm, "__enter__"):
        cm.__enter__()
    return cm


def _clear_impairments(node: Any) -> None:
    fn = getattr(node, "clear_impairments", None)
    if fn is None:
        from . import impair as mod

        mod.clear(node)
    else:
        fn()


def _link(node: Any, up: bool) -> None:
    fn = getattr(node, "link", None)
    if fn is not None:
        fn(up)
        return
    node.qmp(json.dumps({"execute": "set_link", "arguments": {"name": "net0", "up": up}}))


def _inject(runner: Runner, a: dict[str, Any]) -> str:
    """Build the packet with lab/inject.py's helpers and put it on the bridge."""
    try:
        from . import inject as mod
    except ImportError:
        raise LabError("inject steps need lab/inject.py, which is not installed") from None
    lab = runner.lab
    kind = a["kind"]

    def ip_of(x: Any) -> str:
        return str(runner.vars.get(str(x), x))

    if kind == "rst":
        cport = int(a["client_port"])
        if cport == 0:  # the client's ephemeral port: from the latest segment of that connection
            spec = WireSpec(
                "TCP", {"src": ip_of(a["client"]), "dst": ip_of(a["server"]), "dport": int(a["server_port"])}
            )
            seen = [p for p in runner._packets() if _match(p, spec)]
            if not seen:
                raise LabError(f"inject rst: no captured segment {_spec_str(spec)}")
            cport = int(seen[-1].sport)
        pkt = mod.tcp_rst_for(
            runner._packets(),
            ip_of(a["client"]),
            cport,
            ip_of(a["server"]),
            int(a["server_port"]),
            to=str(a.get("to", "client")),
        )
    elif kind in ("icmp_port_unreachable", "icmp_host_unreachable"):
        spec = WireSpec(str(a["of"]["layer"]), dict(a["of"].get("fields") or {}))
        orig = [p for p in runner._packets() if _match(p, spec)]
        if not orig:
            raise LabError(f"inject {kind}: no captured packet {_spec_str(spec)} to quote")
        pkt = getattr(mod, kind)(orig[-1], src=ip_of(a["src"]) if a.get("src") else None)
    elif kind in ("garp", "arp_change"):
        pkt = mod.gratuitous_arp(ip_of(a["ip"]), str(a["mac"]), reply=bool(a.get("reply", True)))
    else:
        from scapy.layers.l2 import Ether

        pkt = Ether(bytes.fromhex(str(a["hex"])))
    mod.inject(lab, pkt, count=int(a.get("count", 1)))
    return f"injected {kind}: {pkt.summary()}"


# ---- bundle ----------------------------------------------------------------------------
def write_verdict(runner: Runner, res: Result) -> None:
    scn = runner.scn
    out = res.bundle
    data = {
        "scenario": scn.name,
        "upstream": scn.upstream,
        "firmware": {
            "label": runner.fw.label,
            "version": runner.fw.version,
            "elf": str(runner.fw.elf),
            "sha256": runner.fw.manifest.get("sha256", ""),
        },
        "lab": res.lab,
        "verdict": res.verdict,
        "exit_code": res.exit_code,
        "error": res.error,
        "duration_s": round(res.duration, 2),
        "pcap": "wire.pcap" if (out / "wire.pcap").is_file() else None,
        "checks": [dataclasses.asdict(c) for c in res.checks],
        "steps": [
            {
                **dataclasses.asdict(s),
                "t_start": _rel_t(s.t_start, runner.t_cap0),
                "t_end": _rel_t(s.t_end, runner.t_cap0),
            }
            for s in res.steps
        ],
    }
    (out / "verdict.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    L: list[str] = []
    L.append(f"# {scn.name} on firmware {runner.fw.label}: **{res.verdict.upper()}**\n")
    if scn.upstream:
        L.append(f"Upstream: {scn.upstream}\n")
    if scn.description:
        L.append(scn.description + "\n")
    meaning = {
        REPRODUCED: "every assertion of the bug's signature held: the bug shows on this firmware.",
        NOT_REPRODUCED: "at least one assertion of the bug's signature did not hold (✗ below): "
        "the bug did not show on this firmware.",
        ERROR: f"the scenario could not run: {res.error}",
    }
    L.append(f"Verdict: **{res.verdict}** — {meaning[res.verdict]}\n")
    fw = runner.fw
    L.append(f"- firmware: `{fw.elf}` (MicroPython {fw.version}, sha256 {str(fw.manifest.get('sha256', ''))[:16]}…)")
    L.append(f"- lab: `{res.lab}`, run time {res.duration:.1f}s, scenario `{scn.path}`")
    L.append(
        "- times below are seconds since the capture started = the time column of `wire.pcap` "
        "(Wireshark: View > Time Display Format > Seconds Since Beginning of Capture); "
        "`#N` is the frame number in `wire.pcap`\n"
    )
    L.append("## Assertions\n")
    if not res.checks:
        L.append("(none evaluated)\n")
    for c in res.checks:
        L.append(
            f"- {'✓ held' if c.held else '✗ did not hold'} — {c.label}, {scn.path.name}:{c.line}"
            + (f": *{c.says}*" if c.says else "")
        )
        L.append(f"  - {c.detail}")
        for p in c.packets[:10]:
            L.append(f"  - `#{p.frame}` t={p.t:.3f}s {p.summary}")
        if len(c.packets) > 10:
            L.append(f"  - … {len(c.packets) - 10} more")
    L.append("\n## Timeline\n")
    L.append("| step | action | start | end | result |")
    L.append("|---|---|---|---|---|")
    for s in res.steps:
        if s.timed_out:
            what = s.note
        elif s.exception:
            what = f"raised {s.exception}" + (f" errno {s.errno}" if s.errno is not None else "")
        else:
            what = s.error or s.note or (s.output.strip().replace("\n", " ⏎ ")[:100] if s.output else "ok")
        L.append(
            f"| {s.id} (line {s.line}) | {s.action} | {_rel_t(s.t_start, runner.t_cap0)} | "
            f"{_rel_t(s.t_end, runner.t_cap0)} | {what.replace('|', '/')} |"
        )
    L.append("\n## Files\n")
    for name, what in (
        ("wire.pcap", "everything on the lab bridge except the host's REPL traffic (tcp port 5555)"),
        ("nodeN.console.txt", "each node's console (docker logs: everything the guest printed)"),
        ("repl/nodeN.console.log", "the REPL transcript of the runner"),
        ("status.json", "lab status at the end (nodes, IPs, MACs, state)"),
        ("firmware.manifest.json", "the firmware's manifest"),
        ("scenario.yml", "the scenario as run"),
        ("peers.log", "what the host-side peers saw"),
        ("verdict.json", "this verdict, machine-readable"),
    ):
        L.append(f"- `{name}`: {what}")
    (out / "verdict.md").write_text("\n".join(L) + "\n")


def _rel_t(t: float, t0: float) -> str:
    return f"{t - t0:.3f}" if t and t0 else "-"


def bundle_dir(scn: Scenario, fw: Firmware, root: Path | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return (root or Path("artifacts/repro")) / f"{scn.name}-{fw.label}-{stamp}"


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
