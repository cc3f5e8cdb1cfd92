"""``load()``: a scenario file, validated, into a :class:`~lab.scenario.model.Scenario`.

Every error names file, line, field and a fix. The timeline's steps are checked by the
action registry (actions.py); this module checks everything around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..packages import looks_like_path
from ..services import PORTS as SERVICES
from ..topology import read_text
from . import actions
from .loader import Validator, rel, yaml_with_lines
from .model import (
    NAME_RE,
    VAR_RE,
    VERSION_RE,
    AppDeploy,
    Assertion,
    FileCopy,
    PackageSet,
    Path_,
    Peer,
    Scenario,
    ScenarioError,
    Step,
    WwwFile,
)

TOP_KEYS = {
    "name": "a short id, [a-z0-9-]",
    "upstream": "the upstream issue URL",
    "description": "what the bug is and what the pcap shows",
    "firmware": "a MicroPython version (1.25.0) or a path to a firmware.elf",
    "topology": "{nodes: N, compose: FILE, mqtt_persistence: true|false}",
    "files": "guest scripts to copy: [{src: local, dst: node1:/path}]",
    "packages": "MicroPython packages into /lib: [spec, ...] (every node) or {node1: [spec, ...]}",
    "app": "a project tree to deploy, then soft-reset: DIR or {src: DIR, node: node1, dest: /, wait: REGEX}",
    "www": "files for the lab's web server: [{src: local file or dir, dst: /url/path}] (served at www.<domain>)",
    "certs": "nodes that get a server certificate for their lab name: [node1] (/certs/node.pem, /certs/node.key)",
    "peers": "host-side peers",
    "timeline": "the steps",
    "assertions": "the bug's signature",
    "expect": "reproduces",
}
PEER_KINDS = {
    "udp": "a UDP socket on the host's LAN address: records datagrams; `send` steps send from it",
    "tcp_server": "a TCP listener on the host's LAN address: mode echo|sink|close|rst",
    "tcp_peer": "lab.tcp_peer's scapy TCP peer (misbehaving server)",
    "dns": "lab.inject's DnsResponder",
    "services": "one of the services container's peers: service tcp_echo|tcp_discard|udp_echo|http",
    "mqtt_subscriber": "lab.mqtt_peer's MQTT subscriber on the host: topics, QoS 1, persistent session, reconnects",
}
TOPOLOGY_KEYS = ("nodes", "compose", "mqtt_persistence")
FILE_KEYS = ("src", "dst")
WWW_KEYS = ("src", "dst")
APP_KEYS = ("src", "node", "dest", "wait")
PEER_COMMON = ("name", "kind", "port")  # every peer's keys, beside its kind's PEER_OPTIONS
TCP_SERVER_MODES = ("echo", "sink", "close", "rst")
MQTT_CHECKS = ("complete",)  # the `counter:` checks of an mqtt assertion
WINDOW_KEYS = ("since", "until", "within")
# Each assertion kind's keys (an assertion also has `says`).
ASSERTION_KEYS: dict[str, tuple[str, ...]] = {
    "console": ("step", "node", "match", "absent"),
    "wire": ("layer", "fields", "count", *WINDOW_KEYS),
    "sequence": ("packets", *WINDOW_KEYS),
    "mqtt": ("peer", "topic", "counter", "at_least", "qos"),
}
ASSERTION_KINDS = tuple(ASSERTION_KEYS)


def variables(nodes: Iterable[str], peers: Iterable[str]) -> set[str]:
    """The ``${...}`` names a scenario with these nodes and peers may use."""
    out = {"host", "gateway", "services", "lab"}
    for n in nodes:
        out |= {n, f"{n}.ip", f"{n}.mac"}
    return out | {f"peer.{p}.{a}" for p in peers for a in ("ip", "port")}


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False for a name the OS refuses (too long, a NUL byte in it)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError (file, line, field, fix)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file; fix: pass a path such as scenarios/<name>.yml")
    text = read_text(path, "scenario")
    data, lines = yaml_with_lines(text, path)
    v = Validator(path, lines)
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
        fw = v.string(fw, ("firmware",), "a version such as 1.25.0 or a path to firmware.elf")
        if not VERSION_RE.match(fw) and not _is_file(path.parent / fw) and not _is_file(Path(fw)):
            raise v.err(("firmware",), f"{fw!r} is neither a version (x.y.z) nor an existing file", "fix the path")

    topo = v.mapping(d.get("topology") or {}, ("topology",), "nodes: N, compose: FILE, mqtt_persistence: true")
    v.keys(topo, ("topology",), set(TOPOLOGY_KEYS))
    persist = None
    if "mqtt_persistence" in topo:
        persist = v.boolean(topo["mqtt_persistence"], ("topology", "mqtt_persistence"), "mqtt_persistence: true")
    nodes = v.integer(topo.get("nodes", 1), ("topology", "nodes"), "nodes: 1..8", 1, 8)
    compose = None
    if topo.get("compose"):
        compose = rel(path, v.string(topo["compose"], ("topology", "compose"), "a compose file path"))
        if not _is_file(compose):
            raise v.err(("topology", "compose"), f"{compose} does not exist", "point to an existing compose file")
    node_names = {f"node{i}" for i in range(1, nodes + 1)}
    ctx = actions.CheckContext(v, node_names)
    files = _files(v, d, ctx)
    pkgs = _packages(v, d, ctx, sorted(node_names))
    app = _app(v, d, ctx)
    www = _www(v, d)
    certs = [ctx.node(n, ("certs", i)) for i, n in enumerate(v.seq(d.get("certs"), ("certs",), "[node1]"))]
    peers = _peers(v, d)
    ctx.peers = {p.name: p for p in peers}
    known_vars = variables(node_names, ctx.peers)
    steps = _timeline(v, d, ctx, known_vars)
    asserts = _assertions(v, d, ctx, known_vars)
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
        app=app,
        packages=pkgs,
        mqtt_persistence=persist,
        www=www,
        certs=certs,
    )


def _specs(v: Validator, raw: Any, at: Path_) -> list[str]:
    out = []
    for i, x in enumerate(v.seq(raw, at, "[microdot, lib/mypkg, ...]")):
        spec = v.string(x, (*at, i), "a PyPI name, a package directory or a .py file")
        if looks_like_path(spec):
            p = rel(v.path, spec)
            if not p.exists():
                raise v.err((*at, i), f"{p} does not exist", "paths are relative to the scenario file")
            spec = str(p)
        out.append(spec)
    return out


def _packages(v: Validator, d: dict[str, Any], ctx: actions.CheckContext, nodes: list[str]) -> list[PackageSet]:
    raw = d.get("packages")
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [
            PackageSet(ctx.node(n, ("packages", n)), _specs(v, x, ("packages", n)), v.line(("packages", n)))
            for n, x in raw.items()
        ]
    specs = _specs(v, raw, ("packages",))
    return [PackageSet(n, specs, v.line(("packages",))) for n in nodes]


def _app(v: Validator, d: dict[str, Any], ctx: actions.CheckContext) -> list[AppDeploy]:
    raw = d.get("app")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, a in enumerate(items):
        at: Path_ = ("app", i) if isinstance(raw, list) else ("app",)
        if isinstance(a, str):
            a = {"src": a}
        a = v.mapping(a, at, "src: DIR, node: node1, dest: /, wait: REGEX")
        v.keys(a, at, set(APP_KEYS))
        src = rel(v.path, v.string(v.required(a, at, "src", "add `src: app/`"), (*at, "src"), "a directory"))
        if not src.is_dir():
            raise v.err((*at, "src"), f"{src} is not a directory", "paths are relative to the scenario file")
        node = ctx.node(a.get("node", "node1"), (*at, "node"))
        dest = v.string(a.get("dest", "/"), (*at, "dest"), "dest: / (or /app)")
        wait = v.regex(a["wait"], (*at, "wait")) if "wait" in a else None
        out.append(AppDeploy(src, node, dest, wait, v.line(at)))
    return out


def _www(v: Validator, d: dict[str, Any]) -> list[WwwFile]:
    out: list[WwwFile] = []
    for i, f in enumerate(v.seq(d.get("www"), ("www",), "[{src: www/status.json, dst: /api/status.json}]")):
        at: Path_ = ("www", i)
        if isinstance(f, str):
            f = {"src": f}
        f = v.mapping(f, at, "src: local file or directory, dst: /url/path")
        v.keys(f, at, set(WWW_KEYS))
        raw = v.required(f, at, "src", "add `src: path/relative/to/the/scenario`")
        src = rel(v.path, v.string(raw, (*at, "src"), "src: a file or a directory"))
        if not (_is_file(src) or src.is_dir()):
            raise v.err((*at, "src"), f"{src} does not exist", "paths are relative to the scenario file")
        dst = v.string(f.get("dst", "/" + src.name), (*at, "dst"), "dst: /api/status.json")
        parts = [x for x in dst.split("/") if x]
        if not dst.startswith("/") or any(x in (".", "..") for x in parts):
            raise v.err((*at, "dst"), f"{dst!r} is not a URL path", "write it as /dir/name.json (no . or ..)")
        out.append(WwwFile(src, "/" + "/".join(parts), v.line(at)))
    return out


def _files(v: Validator, d: dict[str, Any], ctx: actions.CheckContext) -> list[FileCopy]:
    files: list[FileCopy] = []
    for i, f in enumerate(v.seq(d.get("files"), ("files",), "[{src: guest/x.py, dst: node1:/x.py}]")):
        at: Path_ = ("files", i)
        f = v.mapping(f, at, "src: local path, dst: node1:/path")
        v.keys(f, at, set(FILE_KEYS))
        src = rel(
            v.path, v.string(v.required(f, at, "src", "add `src: path/relative/to/the/scenario`"), (*at, "src"), "")
        )
        if not _is_file(src):
            raise v.err((*at, "src"), f"{src} does not exist", "paths are relative to the scenario file")
        dst = v.string(v.required(f, at, "dst", "add `dst: node1:/name.py`"), (*at, "dst"), "node1:/name.py")
        if ":" not in dst:
            raise v.err((*at, "dst"), f"{dst!r} is not NODE:PATH", "write it as node1:/name.py")
        nn, p = dst.split(":", 1)
        files.append(FileCopy(src, ctx.node(nn, (*at, "dst")), p or "/" + src.name, v.line(at)))
    return files


# The options each peer kind takes, beside name, kind and port (docs/field-bugs.md).
PEER_OPTIONS: dict[str, set[str]] = {
    "udp": set(),
    "tcp_server": {"mode", "close_after", "script", "backlog"},
    "services": {"service"},
    "dns": {"query", "mode", "delay", "address", "node", "exclusive", "up"},
    "tcp_peer": {"window", "mss", "listen"},
    "mqtt_subscriber": {"topics", "client_id"},
}


def _peers(v: Validator, d: dict[str, Any]) -> list[Peer]:
    peers: list[Peer] = []
    for i, p in enumerate(v.seq(d.get("peers"), ("peers",), "[{name: sink, kind: udp, port: 9999}]")):
        at: Path_ = ("peers", i)
        p = v.mapping(p, at, "name, kind, port, ...")
        pname = v.string(v.required(p, at, "name", "add `name: <id>`"), (*at, "name"), "name: sink")
        if not re.match(r"^[a-z][a-z0-9_]*$", pname) or any(x.name == pname for x in peers):
            raise v.err((*at, "name"), f"bad or duplicate peer name {pname!r}", "use a unique [a-z][a-z0-9_]* name")
        kind = v.required(p, at, "kind", f"add `kind:` ({', '.join(PEER_KINDS)})")
        if kind not in PEER_KINDS:
            raise v.err((*at, "kind"), f"unknown peer kind {kind!r}", f"use one of: {', '.join(PEER_KINDS)}")
        v.keys(p, at, {*PEER_COMMON, *PEER_OPTIONS[kind]})
        if kind == "dns":
            # The DNS name is `query`: `name` is the peer's own name (a dns peer could not
            # be written before: both wanted `name`).
            v.string(v.required(p, at, "query", "add `query: <DNS name to answer>`"), (*at, "query"), "query: x.lab")
        port = 0
        if kind == "mqtt_subscriber":
            topics = v.seq(v.required(p, at, "topics", "add `topics: [sensors/#]`"), (*at, "topics"), "[a/b, c/#]")
            if not topics:
                raise v.err((*at, "topics"), "no topics", "name at least one topic filter, e.g. sensors/#")
            for j, t in enumerate(topics):
                v.string(t, (*at, "topics", j), "a topic filter such as sensors/node1/count or sensors/#")
            if "client_id" in p:
                v.string(p["client_id"], (*at, "client_id"), "client_id: mplab-subscriber")
            port = 1883
        if kind == "services":
            svc = v.required(p, at, "service", f"add `service:` ({', '.join(SERVICES)})")
            if svc not in SERVICES:
                raise v.err((*at, "service"), f"unknown service {svc!r}", f"use one of: {', '.join(SERVICES)}")
            port = SERVICES[svc]
        if "port" in p and kind != "services":
            port = v.integer(p["port"], (*at, "port"), "port: 1..65535 (or 0 for any)", 0, 65535)
        if kind == "tcp_server" and p.get("mode", "echo") not in TCP_SERVER_MODES:
            raise v.err((*at, "mode"), f"unknown mode {p.get('mode')!r}", "use echo, sink, close or rst")
        if "up" in p:
            v.boolean(p["up"], (*at, "up"), "up: false (started later by a `peer` step)")
        opts = {k: x for k, x in p.items() if k not in ("name", "kind", "port")}
        peers.append(Peer(pname, kind, port, opts, v.line(at)))
    return peers


def _vars_ok(v: Validator, known: set[str], value: Any, at: Path_) -> None:
    if isinstance(value, str):
        for m in VAR_RE.finditer(value):
            if m.group(1) not in known:
                raise v.err(
                    at,
                    f"unknown variable ${{{m.group(1)}}}",
                    "use ${host}, ${services}, ${node1}, ${node1.mac}, ${peer.NAME.port} or ${peer.NAME.ip}",
                )
    elif isinstance(value, dict):
        for k, x in value.items():
            _vars_ok(v, known, x, (*at, k))
    elif isinstance(value, list):
        for k, x in enumerate(value):
            _vars_ok(v, known, x, (*at, k))


def _timeline(v: Validator, d: dict[str, Any], ctx: actions.CheckContext, known_vars: set[str]) -> list[Step]:
    steps: list[Step] = []
    raw_tl = v.seq(v.required(d, (), "timeline", "add `timeline:` with at least one step"), ("timeline",), "steps")
    if not raw_tl:
        raise v.err(
            ("timeline",), "the timeline is empty", "add at least one step, e.g. `- exec: {node: node1, code: ...}`"
        )
    for i, s in enumerate(raw_tl):
        at: Path_ = ("timeline", i)
        s = v.mapping(s, at, "one action (" + ", ".join(actions.ACTIONS) + ") plus optional id/at/after/says")
        act = actions.step_action(v, s, at)
        if "id" in s and (not isinstance(s["id"], str | int) or isinstance(s["id"], bool)):
            # YAML 1.1 reads on/off/yes/no as booleans: `id: off` was silently replaced by s<N>
            raise v.err((*at, "id"), f"a step id must be a name, got {s['id']!r}", 'quote it: id: "off"')
        sid = str(s.get("id") or f"s{i + 1}")
        if sid in ctx.ids:
            raise v.err((*at, "id"), f"duplicate step id {sid!r}", "give each step a unique id")
        ctx.ids.add(sid)
        if "at" in s and "after" in s:
            raise v.err(
                (*at, "at"),
                "both `at` and `after`",
                "use `at` (s from the timeline start) or `after` (s after the previous step)",
            )
        at_t = v.number(s["at"], (*at, "at"), "at: seconds from the start") if "at" in s else None
        after = v.number(s.get("after", 0), (*at, "after"), "after: seconds after the previous step")
        args, exp = act.check(ctx, s[act.name], (*at, act.name))
        _vars_ok(v, known_vars, args, (*at, act.name))
        if act.name == "exec" and args.get("background"):
            ctx.background.add(sid)
        steps.append(Step(i, v.line(at), sid, act.name, args, at_t, after, exp, str(s.get("says") or "")))
    return steps


def _assertions(v: Validator, d: dict[str, Any], ctx: actions.CheckContext, known_vars: set[str]) -> list[Assertion]:
    asserts: list[Assertion] = []
    for i, a in enumerate(v.seq(d.get("assertions"), ("assertions",), "[{console: ...}, {wire: ...}]")):
        at: Path_ = ("assertions", i)
        a = v.mapping(a, at, "console: {...} | wire: {...} | sequence: {...} | mqtt: {...}, says: text")
        v.keys(a, at, {*ASSERTION_KINDS, "says"})
        kinds = [k for k in ASSERTION_KINDS if k in a]
        if len(kinds) != 1:
            raise v.err(
                at,
                f"an assertion needs exactly one of {'/'.join(ASSERTION_KINDS)}, found {kinds or 'none'}",
                "split it",
            )
        kind = kinds[0]
        args = _check_assertion(ctx, kind, a[kind], (*at, kind))
        _vars_ok(v, known_vars, args, (*at, kind))
        asserts.append(Assertion(i, v.line(at), kind, str(a.get("says") or ""), args))
    return asserts


def _check_assertion(ctx: actions.CheckContext, kind: str, a: Any, at: Path_) -> dict[str, Any]:
    v, ids = ctx.v, ctx.ids
    a = v.mapping(a, at, "see docs/field-bugs.md")
    if kind == "mqtt":
        v.keys(a, at, set(ASSERTION_KEYS["mqtt"]))
        pn = v.required(a, at, "peer", "add `peer: <name of an mqtt_subscriber peer>`")
        if pn not in ctx.peers or ctx.peers[pn].kind != "mqtt_subscriber":
            raise v.err(
                (*at, "peer"), f"no mqtt_subscriber peer {pn!r}", "declare it under peers: with kind: mqtt_subscriber"
            )
        v.string(v.required(a, at, "topic", "add `topic: sensors/node1/count`"), (*at, "topic"), "a topic name")
        if a.get("counter", "complete") not in MQTT_CHECKS:
            raise v.err((*at, "counter"), f"unknown counter check {a.get('counter')!r}", "use `counter: complete`")
        v.integer(a.get("at_least", 1), (*at, "at_least"), "at_least: N (values 1..N at least)", 1, 10**6)
        if "qos" in a:
            v.integer(a["qos"], (*at, "qos"), "qos: 0, 1 or 2", 0, 2)
        return a
    if kind == "console":
        v.keys(a, at, set(ASSERTION_KEYS["console"]))
        if "node" not in a and "step" not in a:
            raise v.err(at, "needs `node` (its console log) or `step` (an exec's output)", "add one")
        if "node" in a:
            ctx.node(a["node"], (*at, "node"))
        if "step" in a and a["step"] not in ids:
            raise v.err((*at, "step"), f"no step with id {a['step']!r}", f"use one of: {', '.join(sorted(ids))}")
        if ("match" in a) == ("absent" in a):
            raise v.err(at, "needs exactly one of `match` and `absent`", "match: <regex> (present) or absent: <regex>")
        v.regex(a.get("match", a.get("absent")), (*at, "match" if "match" in a else "absent"))
        return a
    for k in ("since", "until"):
        if k in a and a[k] not in ids:
            raise v.err((*at, k), f"no step with id {a[k]!r}", f"use one of: {', '.join(sorted(ids))}")
    if "within" in a:
        v.number(a["within"], (*at, "within"), "within: seconds after `since`", 0.001)
    if kind == "wire":
        v.keys(a, at, set(ASSERTION_KEYS["wire"]))
        spec = v.wire_spec({k: a[k] for k in ("layer", "fields") if k in a}, at)
        lo, hi = v.count(a.get("count", ">=1"), (*at, "count"))
        return {**a, "spec": spec, "min": lo, "max": hi}
    v.keys(a, at, set(ASSERTION_KEYS["sequence"]))
    pk = v.seq(v.required(a, at, "packets", "add `packets:` (a list of {layer, fields})"), (*at, "packets"), "")
    if len(pk) < 2:
        raise v.err((*at, "packets"), "a sequence needs at least 2 packets", "use a wire: assertion for one packet")
    return {**a, "specs": [v.wire_spec(p, (*at, "packets", i)) for i, p in enumerate(pk)]}
