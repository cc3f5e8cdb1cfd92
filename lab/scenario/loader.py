"""Reading a scenario file: YAML with a line number for every value, and the validation
helpers that turn a bad value into ``<file>:<line>: <field>: <problem>; fix: <fix>``."""

from __future__ import annotations

import difflib
import errno as errno_mod
import re
from pathlib import Path
from typing import Any

import yaml

from .model import Expect, Path_, ScenarioError, WireSpec

LAYERS = ("Ether", "ARP", "IP", "ICMP", "TCP", "UDP", "DNS", "BOOTP", "DHCP", "Raw")
# Above TCP/UDP (lab.packets.app_layers): named without importing scapy at load time.
APP_LAYERS = (
    "MQTT",
    "MQTTConnect",
    "MQTTConnack",
    "MQTTPublish",
    "MQTTPuback",
    "MQTTSubscribe",
    "MQTTDisconnect",
    "TLS",
    "TLSClientHello",
    "TLSServerHello",
    "TLSAlert",
    "HTTP",
    "HTTPRequest",
    "HTTPResponse",
    "NTP",
)
LAYERS = LAYERS + APP_LAYERS
EXPECT_KEYS = ("output", "absent", "exception", "errno", "timeout")  # exec `expect` / `require`
WIRE_SPEC_KEYS = ("layer", "fields")  # a packet: `of`, `wait_for.wire`, `sequence.packets[]`


def yaml_with_lines(text: str, path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain data plus {field path: 1-based line}."""
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters at once
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ScenarioError(
            f"{path}:{line}: not valid YAML (character {e.character:#x} is not allowed); fix: remove it"
        ) from None
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
                            f"{path}:{kn.start_mark.line + 1}: {fmt(at) or 'top level'}: key {k!r} is not a name; "
                            "fix: use plain `name: value` keys"
                        )
                    if k in out:
                        raise ScenarioError(
                            f"{path}:{kn.start_mark.line + 1}: {fmt((*at, k))}: duplicate key; fix: keep one of them"
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
    except yaml.reader.ReaderError as e:  # a control character further on
        line = text.count("\n", 0, e.position) + 1
        raise ScenarioError(
            f"{path}:{line}: not valid YAML (character {e.character:#x} is not allowed); fix: remove it"
        ) from None
    finally:
        loader.dispose()
    return data, lines


def fmt(at: Path_) -> str:
    """("timeline", 0, "exec") -> "timeline[0].exec"."""
    s = ""
    for p in at:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def tname(v: Any) -> str:
    return {type(None): "nothing", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(v), "a list" if isinstance(v, list) else "a mapping" if isinstance(v, dict) else type(v).__name__
    )


def errno_value(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and hasattr(errno_mod, v):
        return int(getattr(errno_mod, v))
    return None


def rel(scn: Path, p: str) -> Path:
    """``p`` relative to the scenario file's directory (absolute paths stay)."""
    q = Path(p)
    return q if q.is_absolute() else (scn.parent / q)


def did_you_mean(name: str, choices: Any) -> str:
    near = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"did you mean `{near[0]}`?" if near else ""


class Validator:
    """Validation helpers bound to one file: every error says file, line, field and fix."""

    def __init__(self, path: Path, lines: dict[Path_, int]) -> None:
        self.path = path
        self.lines = lines

    def line(self, at: Path_) -> int:
        while at and at not in self.lines:
            at = at[:-1]
        return self.lines.get(at, 1)

    def err(self, at: Path_, problem: str, fix: str) -> ScenarioError:
        return ScenarioError(f"{self.path}:{self.line(at)}: {fmt(at) or 'top level'}: {problem}; fix: {fix}")

    def mapping(self, v: Any, at: Path_, what: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.err(at, f"expected a mapping ({what}), got {tname(v)}", f"write it as key: value lines: {what}")
        return v

    def seq(self, v: Any, at: Path_, what: str) -> list[Any]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.err(at, f"expected a list ({what}), got {tname(v)}", "write one `- item` per line")
        return v

    def keys(self, d: dict[str, Any], at: Path_, allowed: set[str] | dict[str, Any]) -> None:
        for k in d:
            if k not in allowed:
                hint = did_you_mean(k, allowed) or f"use one of: {', '.join(sorted(allowed))}"
                raise self.err((*at, k), "unknown field", f"remove it or rename it ({hint})")

    def required(self, d: dict[str, Any], at: Path_, key: str, fix: str) -> Any:
        if key not in d or d[key] is None:
            raise self.err(at, f"`{key}` is missing", fix)
        return d[key]

    def string(self, v: Any, at: Path_, fix: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.err(at, f"expected a non-empty string, got {tname(v)}", fix)
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

    # ---- the value kinds that several parts of a file share -----------------------------
    def wire_spec(self, w: Any, at: Path_) -> WireSpec:
        w = self.mapping(w, at, "layer: TCP, fields: {dport: 7}")
        self.keys(w, at, set(WIRE_SPEC_KEYS))
        layer = self.required(w, at, "layer", f"add `layer:` ({', '.join(LAYERS)})")
        if layer not in LAYERS:
            raise self.err((*at, "layer"), f"unknown layer {layer!r}", f"use one of: {', '.join(LAYERS)}")
        fields = self.mapping(w.get("fields") or {}, (*at, "fields"), "field: value, e.g. dport: 7, flags: R")
        for k, x in fields.items():
            if k == "payload":
                self.regex(x, (*at, "fields", k))
            elif not isinstance(x, str | int) or isinstance(x, bool):
                raise self.err((*at, "fields", k), f"expected a string or a number, got {tname(x)}", "give one value")
        return WireSpec(layer, dict(fields))

    def expect(self, e: Any, at: Path_) -> Expect:
        e = self.mapping(e, at, "output/exception/errno/timeout/absent")
        self.keys(e, at, set(EXPECT_KEYS))
        exp = Expect(
            output=self.regex(e["output"], (*at, "output")) if "output" in e else None,
            exception=self.string(e["exception"], (*at, "exception"), "e.g. OSError") if "exception" in e else None,
            timeout=self.boolean(e["timeout"], (*at, "timeout"), "timeout: true") if "timeout" in e else None,
            absent=self.regex(e["absent"], (*at, "absent")) if "absent" in e else None,
        )
        if "errno" in e:
            exp.errno = errno_value(e["errno"])
            if exp.errno is None:
                raise self.err(
                    (*at, "errno"), f"unknown errno {e['errno']!r}", "use a number or a name like ECONNRESET"
                )
        return exp

    def count(self, c: Any, at: Path_) -> tuple[int, int | None]:
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
        raise self.err(at, f"bad count {c!r}", fix)
