"""Judging: the bug's signature (console, wire and sequence assertions, exec ``expect``)
against what the run saw, each as a :class:`~lab.scenario.model.Check` with its evidence."""

from __future__ import annotations

import re
from typing import Any

from ..packets import APP_PORTS, bind_port, decoded, is_app_layer, port_layer, redissect, stream_messages
from .model import Assertion, Check, Expect, Expected, PacketRef, RunState, Step, StepResult, WireSpec


def layer(name: str) -> Any:
    """The scapy layer class of a scenario's layer name (scapy is imported on first use)."""
    from scapy.layers import dhcp, dns, inet, l2
    from scapy.packet import Raw

    from ..packets import app_layers, bind_app_ports

    bind_app_ports()
    if name in app_layers():
        return app_layers()[name]
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


def match(p: Any, spec: WireSpec) -> bool:
    """Does packet ``p`` fit ``spec`` (fields equal; ``payload`` a regex over the raw bytes)?"""
    from scapy.packet import Raw

    from ..capture import matches

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
    lay = layer(spec.layer)
    if is_app_layer(lay):
        p = _app_view(p, spec.layer, fields)
    if not matches(p, lay, fields):
        return False
    if payload is not None:
        raw = bytes(p[Raw].load) if p.haslayer(Raw) else b""
        return re.search(payload, raw.decode("latin-1"), re.S) is not None
    return True


def _app_view(p: Any, name: str, fields: dict[str, Any]) -> Any:
    """``p`` dissected with ``name``'s protocol on the spec's own port (an MQTT broker on
    1884 is still MQTT when the assertion says ``dport: 1884``)."""
    _bind_spec_ports(name, fields)
    return p if p.haslayer(layer(name)) else redissect(p)


def _bind_spec_ports(name: str, fields: dict[str, Any]) -> None:
    base = next((b for b in APP_PORTS if name.startswith(b)), None)
    for k in ("dport", "sport"):
        v = fields.get(k)
        if base is not None and (isinstance(v, int) or (isinstance(v, str) and v.isdigit())):
            bind_port(base, int(v))


def view(pk: list[Any], specs: list[WireSpec]) -> list[tuple[int, Any]]:
    """(frame index, packet) to judge ``specs`` on: with an application layer among them, TCP
    streams on its ports come as whole messages (lab.packets.app_view), each with the index of
    the segment that completed it."""
    if not any(is_app_layer(layer(s.layer)) for s in specs):
        return list(enumerate(pk))
    for s in specs:
        _bind_spec_ports(s.layer, s.fields)
    msgs = stream_messages(pk)
    rest = [(i, redissect(p)) for i, p in enumerate(pk) if not _on_app_port(p)]
    return sorted([*msgs, *rest], key=lambda ip: ip[0])


def _on_app_port(p: Any) -> bool:
    from scapy.layers.inet import TCP

    return TCP in p and (port_layer(p[TCP].dport) or port_layer(p[TCP].sport)) is not None


def decoded_seen(packets: list[Any], name: str, last: int = 3) -> str:
    """The last packets of layer ``name``, decoded (what a failed wire assertion shows)."""
    lay = layer(name)
    have = [q for q in packets if q.haslayer(lay)]
    return " | ".join(decoded(q) for q in have[-last:])


def spec_str(s: WireSpec) -> str:
    return f"{s.layer}({', '.join(f'{k}={x!r}' for k, x in s.fields.items())})"


def window_text(a: dict[str, Any]) -> str:
    parts = []
    if "since" in a:
        parts.append(f"since step {a['since']}")
    if "until" in a:
        parts.append(f"until step {a['until']} ended")
    if "within" in a:
        parts.append(f"within {a['within']}s")
    return f" ({', '.join(parts)})" if parts else ""


def check_expect(st: Step, r: StepResult, e: Expect) -> Check:
    """An exec (or http) step's result against its ``expect`` (or ``require``)."""
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
    return Check(f"step {st.id} ({st.action} expect)", st.line, st.says, held, detail)


def _window(runner: RunState, a: dict[str, Any]) -> tuple[float, float]:
    lo, hi = 0.0, float("inf")
    if "since" in a:
        lo = runner.results[a["since"]].t_start if a["since"] in runner.results else float("inf")
    if "until" in a:
        r = runner.results.get(a["until"])
        hi = (r.t_end or r.t_start) if r else 0.0
    if "within" in a:
        hi = min(hi, (lo or runner.t_cap0) + float(a["within"]))
    return lo, hi


def judge(runner: RunState) -> list[Check]:
    """Every assertion of the scenario, judged on the run's packets, results and consoles."""
    checks: list[Check] = []
    pk = runner.packets()
    for asr in runner.scn.assertions:
        a = runner.sub(asr.args)
        label = f"assertion {asr.index + 1} ({asr.kind})"
        if asr.kind == "console":
            checks.append(_judge_console(runner, asr, a, label))
            continue
        if asr.kind == "mqtt":
            checks.append(_judge_mqtt(runner, asr, a, label))
            continue
        lo, hi = _window(runner, a)
        if asr.kind == "wire":
            specs = [WireSpec(a["spec"].layer, runner.sub(a["spec"].fields))]
        else:
            specs = [WireSpec(s.layer, runner.sub(s.fields)) for s in a["specs"]]
        win = [(i, p) for i, p in view(pk, specs) if lo <= float(p.time) <= hi]
        wtxt = window_text(a)
        if asr.kind == "wire":
            spec = specs[0]
            got = [(i, p) for i, p in win if match(p, spec)]
            n, mn, mx = len(got), a["min"], a["max"]
            held = n >= mn and (mx is None or n <= mx)
            want = f"{mn}" if mx == mn else f">= {mn}" if mx is None else f"{mn}..{mx}"
            detail = f"{spec_str(spec)}{wtxt}: {n} packet(s), wanted {want}"
            if not held and spec.layer not in ("Ether", "IP", "TCP", "UDP", "Raw"):
                seen = decoded_seen([p for _, p in win], spec.layer)
                detail += f"; {spec.layer} seen: {seen}" if seen else f"; no {spec.layer} at all in the window"
            refs = [runner.ref(i, p) for i, p in got[:20]]
            miss = _expected(runner, spec, lo, refs) if n < mn else None
            checks.append(Check(label, asr.line, asr.says, held, detail, refs, miss))
        else:
            found = []
            k = 0
            for i, p in win:
                if k < len(specs) and match(p, specs[k]):
                    found.append(runner.ref(i, p))
                    k += 1
            marks = [("✓ " if j < k else "✗ ") + spec_str(s) for j, s in enumerate(specs)]
            detail = f"sequence{wtxt}, {k}/{len(specs)} in order: " + "; ".join(marks)
            miss = _expected(runner, specs[k], lo, found) if k < len(specs) else None
            checks.append(Check(label, asr.line, asr.says, k == len(specs), detail, found, miss))
    return checks


def _judge_mqtt(runner: RunState, asr: Assertion, a: dict[str, Any], label: str) -> Check:
    """What an mqtt_subscriber peer received on ``topic``: every counter value 1..N at least once."""
    from ..mqtt_peer import counter

    sub = runner.peers[a["peer"]].obj
    got = sub.received(str(a["topic"]))
    c = counter([m.payload for m in got])
    at_least = int(a.get("at_least", 1))
    held = not c.missing and not c.not_integers and c.highest >= at_least
    detail = f"{a['peer']} on {a['topic']!r}: {c.describe(at_least)}"
    if "qos" in a:
        bad = [m for m in got if m.qos != int(a["qos"])]
        held &= not bad
        detail += f"; {len(bad)} not QoS {a['qos']}" if bad else f"; all QoS {a['qos']}"
    detail += f"; subscriber sessions: {sub.connects}"
    return Check(label, asr.line, asr.says, held, detail)


def _expected(runner: RunState, spec: WireSpec, lo: float, found: list[PacketRef]) -> Expected:
    """The missing packet of ``spec``: right after the last one that matched, else at the
    window's start (the ladder draws it there)."""
    t = found[-1].t if found else max(lo, runner.t_cap0) - runner.t_cap0
    src, dst = spec.fields.get("src"), spec.fields.get("dst")
    return Expected(round(t, 6), spec_str(spec), str(src) if src else None, str(dst) if dst else None)


def _judge_console(runner: RunState, asr: Assertion, a: dict[str, Any], label: str) -> Check:
    if "step" in a:
        r = runner.results.get(a["step"])
        text = (r.output + ("\n" + r.traceback if r.traceback else "")) if r else ""
        where = f"output of step {a['step']}"
    else:
        text = runner.lab.node(a["node"]).logs()
        where = f"console log of {a['node']}"
    pat = a.get("match", a.get("absent"))
    m = re.search(pat, text, re.M)
    if "match" in a:
        detail = f"{where} matches {pat!r}: " + (repr(m.group(0)[:120]) if m else "no match")
        return Check(label, asr.line, asr.says, bool(m), detail)
    detail = f"{where} has no {pat!r}: " + (f"found {m.group(0)[:120]!r}" if m else "none found")
    return Check(label, asr.line, asr.says, not m, detail)
