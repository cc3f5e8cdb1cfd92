"""Link impairments in the kernel: ``Impairment`` and how it is applied to a node.

``node.impair(loss="10%", delay="100ms")`` puts a tc qdisc tree on the node container's
interfaces with ``docker exec`` (docs/impairments.md):

* direction ``out`` (default): frames from the guest to the LAN. The container's ``eth0``
  egress gets ``htb`` with a ``u32`` filter on the guest's source MAC → class ``1:1``
  (rate = ``rate`` or 10gbit) → ``netem`` leaf; everything else (the lab's own console
  connection to the container's console port) goes to class ``1:2`` unimpaired.
* direction ``in``: frames from the LAN to the guest, on ``tap0`` egress (only the guest
  uses tap0, so no filter is needed).
* ``both``: the same parameters on both (a delay then adds twice to a round trip).

Kernels without ``sch_netem`` (CONFIG_NET_SCH_NETEM unset): ``loss`` falls back to an nft
rule in the lab's bridge table on the host (``numgen random``; still in the kernel), ``rate``
needs only htb; ``delay``/``jitter``/``reorder``/``duplicate``/``corrupt`` fail with one line.

Everything the lab puts into the host's nftables lives in two tables named after the lab,
``bridge mplab_<lab>`` and ``inet mplab_<lab>``; ``Lab.down`` deletes both (``host_cleanup``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError, LabError
from .hostnet import host_cleanup, nft, nft_add, nft_delete, nft_ensure, nft_rules, nft_table

# nft helpers used to live here: kept importable from lab.impair (they are lab.hostnet's now)
__all__ = ["host_cleanup", "nft", "nft_ensure", "nft_table"]

FIELDS = ("loss", "delay", "jitter", "duplicate", "reorder", "rate", "corrupt")
DIRECTIONS = ("out", "in", "both")
NETEM_ONLY = ("delay", "jitter", "duplicate", "reorder", "corrupt")
BIG_RATE = "10gbit"

_PCT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_TIME = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$", re.IGNORECASE)
_EXAMPLES = {
    "loss": "10% or 0.5%",
    "duplicate": "1%",
    "reorder": "5%",
    "corrupt": "0.1%",
    "delay": "100ms, 1.5s or 500us",
    "jitter": "20ms",
    "rate": "1mbit, 512kbit or 10mbps",
}


def _check(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"invalid {name} {value!r}: give a string like {_EXAMPLES[name]}")
    v = value.strip()
    if v.startswith("-"):
        raise ConfigError(f"invalid {name} {value!r}: must not be negative (e.g. {_EXAMPLES[name]})")
    if name in ("delay", "jitter"):
        m = _TIME.match(v)
    elif name == "rate":
        m = _RATE.match(v)
    else:
        m = _PCT.match(v)
    if m is None:
        raise ConfigError(f"invalid {name} {value!r}: use a value like {_EXAMPLES[name]} (no space before the unit)")
    if m.re is _PCT and float(m.group(1)) > 100:
        raise ConfigError(f"invalid {name} {value!r}: a percentage is at most 100%")
    if name == "rate" and float(m.group(1)) == 0:
        raise ConfigError(f"invalid rate {value!r}: must be > 0 (e.g. {_EXAMPLES['rate']})")
    return v.lower() if name == "rate" else v


@dataclass
class Impairment:
    """What to do to a node's link. Values are tc netem strings: ``loss="10%"``, ``delay="100ms"``.

    Returned by ``node.impair(...)``; as a context manager it clears the node's impairments
    on exit: ``with node.impair(loss="10%"): ...``.
    """

    loss: str | None = None
    delay: str | None = None
    jitter: str | None = None
    duplicate: str | None = None
    reorder: str | None = None
    rate: str | None = None
    corrupt: str | None = None
    direction: str = "out"
    node: Target | None = field(default=None, repr=False, compare=False)  # set by apply()

    def __post_init__(self) -> None:
        for name in FIELDS:
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _check(name, v))
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"invalid direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        if self.jitter and not self.delay:
            raise ConfigError("jitter needs a delay: add e.g. delay='100ms' (--delay 100ms)")
        if self.reorder and not self.delay:
            raise ConfigError("reorder needs a delay (netem reorders by sending some packets early): add --delay")

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in FIELDS)

    def tc_args(self) -> list[str]:
        """The netem arguments, e.g. ``["delay", "100ms", "20ms", "loss", "10%"]``."""
        a: list[str] = []
        if self.delay:
            a += ["delay", self.delay] + ([self.jitter] if self.jitter else [])
        for n in ("loss", "duplicate", "reorder", "corrupt", "rate"):
            v = getattr(self, n)
            if v:
                a += [n, v]
        return a

    def as_dict(self) -> dict[str, str]:
        d = {k: v for k, v in asdict(self).items() if k in FIELDS and v is not None}
        if d:
            d["direction"] = self.direction
        return d

    def describe(self) -> str:
        if self.empty:
            return "-"
        return f"{self.direction}: " + " ".join(f"{k} {v}" for k, v in self.as_dict().items() if k != "direction")

    def __enter__(self) -> Impairment:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.node is not None:
            clear(self.node)


def make(**kw: Any) -> Impairment:
    """``Impairment(**kw)`` with a one-line ConfigError for an unknown field."""
    bad = [k for k in kw if k not in (*FIELDS, "direction")]
    if bad:
        raise ConfigError(f"unknown impairment {', '.join(bad)}: use {', '.join(FIELDS)}, direction")
    return Impairment(**kw)


# ---- the node's side: what impairments act on --------------------------------------------------
Exec = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Target:
    """The part of a node that impairments need: its container, guest MAC and a way to run
    commands in the container (``exec(container, argv, timeout=...)``, as ``Runtime.exec``).

    ``Node.impair_target()`` makes one; every function here also takes the node itself.
    """

    lab: str
    name: str
    container: str
    mac: str
    key: str  # the container's id: the netem probe is cached per container
    run: Exec = field(repr=False, compare=False)

    def exec(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.run(self.container, argv, timeout=timeout)


def target_of(node: Target | Any) -> Target:
    """``node`` itself if it is a Target, else ``node.impair_target()`` (a ``Node``)."""
    if isinstance(node, Target):
        return node
    make_target = getattr(node, "impair_target", None)
    if make_target is None:
        raise TypeError(f"{node!r} is neither an impair.Target nor a Node")
    return make_target()


# ---- tc in the node container ----------------------------------------------------------------
_netem_ok: dict[str, bool] = {}


def netem_available(node: Target | Any) -> bool:
    """Whether the kernel has sch_netem (probed once per container on its loopback)."""
    t = target_of(node)
    key = t.key
    if key not in _netem_ok:
        p = t.exec(["sh", "-c", "tc qdisc add dev lo root netem delay 0ms && tc qdisc del dev lo root"])
        _netem_ok[key] = p.returncode == 0
    return _netem_ok[key]


def _mac_u32(mac: str) -> list[str]:
    h = mac.replace(":", "").lower()
    return ["match", "u32", f"0x{h[:8]}", "0xffffffff", "at", "-8", "match", "u16", f"0x{h[8:]}", "0xffff", "at", "-4"]


def _sh(node: Target | Any, script: str) -> None:
    t = target_of(node)
    p = t.exec(["sh", "-c", script], timeout=20)
    if p.returncode != 0:
        err = (p.stderr or p.stdout).strip().splitlines()
        raise LabError(f"{t.lab}/{t.name}: tc failed: {err[-1] if err else p.returncode}")


def _tree(dev: str, imp: Impairment, mac: str | None, netem: bool) -> list[str]:
    rate = imp.rate or BIG_RATE
    cmds = [
        f"tc qdisc replace dev {dev} root handle 1: htb default 2 r2q 10000",
        f"tc class replace dev {dev} parent 1: classid 1:1 htb rate {rate} ceil {rate}",
        f"tc class replace dev {dev} parent 1: classid 1:2 htb rate {BIG_RATE}",
    ]
    args = [a for a in imp.tc_args()] if netem else []
    if netem and imp.rate:  # htb already shapes; netem's own rate would double-count
        i = args.index("rate")
        del args[i : i + 2]
    if args:
        cmds.append(f"tc qdisc replace dev {dev} parent 1:1 handle 10: netem {' '.join(args)}")
    if mac:
        cmds.append(
            f"tc filter replace dev {dev} parent 1: protocol all prio 1 u32 {' '.join(_mac_u32(mac))} flowid 1:1"
        )
    else:
        cmds[0] = f"tc qdisc replace dev {dev} root handle 1: htb default 1 r2q 10000"
    return cmds


def apply(node: Target | Any, imp: Impairment) -> Impairment:
    """Replace the node's impairments by ``imp`` (an empty one just clears)."""
    t = target_of(node)
    clear(t)
    imp.node = t
    if imp.empty:
        return imp
    netem = netem_available(t)
    if not netem:
        missing = [n for n in NETEM_ONLY if getattr(imp, n)]
        if missing:
            raise LabError(
                f"{', '.join(missing)} {'needs' if len(missing) == 1 else 'need'} tc netem, "
                "which this kernel lacks (CONFIG_NET_SCH_NETEM); "
                "loss and rate still work (nft, htb): see docs/impairments.md"
            )
    dirs = ["out", "in"] if imp.direction == "both" else [imp.direction]
    script: list[str] = []
    for d in dirs:
        if d == "out":
            script += _tree("eth0", imp, t.mac, netem)
        else:
            script += _tree("tap0", imp, None, netem)
    if imp.rate or netem:
        _sh(t, " && ".join(script))
    if imp.loss and not netem:
        n = round(float(imp.loss.rstrip("%")) * 10000)
        for d in dirs:
            chain, match = ("pre", "ether saddr") if d == "out" else ("post", "ether daddr")
            nft_add(
                t.lab,
                "bridge",
                chain,
                # numgen's values stop at 999999: total loss is a plain drop
                f"{match} {t.mac} " + ("drop" if n >= 1000000 else f"numgen random mod 1000000 < {n} drop"),
                f"mplab-{t.lab}:impair:{t.name}:{d}:loss {imp.loss}",
            )
    return imp


def clear(node: Target | Any) -> None:
    """Remove every impairment of ``node`` (qdiscs back to the defaults, nft rules gone)."""
    t = target_of(node)
    t.exec(["sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null; tc qdisc del dev tap0 root 2>/dev/null"])
    nft_delete(t.lab, "bridge", f"mplab-{t.lab}:impair:{t.name}:")


_NETEM_KEYS = {"loss", "duplicate", "reorder", "corrupt", "rate"}


def _parse_netem(line: str) -> dict[str, str]:
    toks = line.split()
    out: dict[str, str] = {}
    i = toks.index("netem") + 1 if "netem" in toks else 0
    while i < len(toks):
        t = toks[i]
        if t == "delay" and i + 1 < len(toks):
            out["delay"] = toks[i + 1]
            if i + 2 < len(toks) and _TIME.match(toks[i + 2]):
                out["jitter"] = toks[i + 2]
                i += 1
            i += 2
            continue
        if t in _NETEM_KEYS and i + 1 < len(toks):
            out[t] = toks[i + 1].lower() if t == "rate" else toks[i + 1]
            if t == "loss" and toks[i + 1] == "random" and i + 2 < len(toks):
                out[t] = toks[i + 2]
                i += 1
            i += 2
            continue
        i += 1
    return out


def _parse_dev(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("qdisc netem") and "parent 1:1" in line:
            out.update(_parse_netem(line))
        elif line.startswith("class htb 1:1 "):
            m = re.search(r"\brate (\S+)", line)
            if m and m.group(1).lower() != "10gbit":
                out["rate"] = m.group(1).lower()
    return out


def current(node: Target | Any) -> dict[str, str]:
    """The node's active impairments, read back from the kernel: ``{"loss": "10%", ...,
    "direction": "out"}`` ({} when none). Same keys as ``node.impair(**...)`` takes."""
    t = target_of(node)
    p = t.exec(
        ["sh", "-c", 'for d in eth0 tap0; do echo "== $d"; tc qdisc show dev $d; tc class show dev $d; done'],
    )
    per: dict[str, dict[str, str]] = {"out": {}, "in": {}}
    cur = ""
    chunks: dict[str, list[str]] = {"eth0": [], "tap0": []}
    for line in p.stdout.splitlines():
        if line.startswith("== "):
            cur = line[3:].strip()
            continue
        chunks.setdefault(cur, []).append(line)
    per["out"] = _parse_dev("\n".join(chunks["eth0"]))
    per["in"] = _parse_dev("\n".join(chunks["tap0"]))
    tag = f"mplab-{t.lab}:impair:{t.name}:"
    for r in nft_rules(t.lab, "bridge"):
        c = str(r.get("comment", ""))
        if c.startswith(tag):
            d, what = c[len(tag) :].split(":", 1)
            k, v = what.split(" ", 1)
            per.setdefault(d, {})[k] = v
    if per["out"] and per["in"]:
        res = dict(per["out"]) if per["out"] == per["in"] else {**per["in"], **per["out"]}
        res["direction"] = "both"
    elif per["out"] or per["in"]:
        d = "out" if per["out"] else "in"
        res = {**per[d], "direction": d}
    else:
        res = {}
    return res


def describe(d: dict[str, str]) -> str:
    """One line for ``mplab status``: ``out: loss 10% delay 100ms`` or ``-``."""
    if not d:
        return "-"
    return f"{d.get('direction', 'out')}: " + " ".join(
        f"{k} {d[k]}" for k in (n.name for n in fields(Impairment)) if k in d and k in FIELDS
    )
