"""The impairment model: one ``Impairment`` for both engines (docs/impairments.md).

Values are tc netem's own strings, so that the netem engine passes them through unchanged and
the userspace engine reads the same syntax: ``loss="10%"``, ``loss="10% 25%"`` (with
correlation), ``loss="gemodel 1% 30%"``, ``delay="100ms"``, ``jitter="20ms"``,
``distribution="normal"``, ``reorder="5% 50%"``, ``gap="5"``, ``limit="1000"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .target import Target

# the order `describe` prints them in (the existing "loss 5% rate 2mbit" lines keep theirs)
FIELDS = (
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
)
DIRECTIONS = ("out", "in", "both")
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")

_PCT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_TIME = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$", re.IGNORECASE)
_INT = re.compile(r"^\d+$")
_EXAMPLES = {
    "loss": "10%, 10% 25% (with correlation) or gemodel 1% 30%",
    "duplicate": "1% or 1% 25%",
    "reorder": "5% or 25% 50%",
    "corrupt": "0.1%",
    "delay": "100ms, 1.5s or 500us",
    "jitter": "20ms",
    "correlation": "25%",
    "distribution": " | ".join(DISTRIBUTIONS),
    "gap": "5",
    "limit": "1000",
    "rate": "1mbit, 512kbit or 10mbps",
}
_TIME_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_BPS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


def _bad(name: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"invalid {name} {value!r}: {why} (e.g. {_EXAMPLES[name]})")


def _pct(name: str, value: Any, tok: str) -> float:
    m = _PCT.match(tok)
    if m is None:
        raise _bad(name, value, "use a percentage like 10% (no space before the unit)")
    p = float(m.group(1))
    if p > 100:
        raise _bad(name, value, "a percentage is at most 100%")
    return p


def check_value(name: str, value: Any) -> str:
    """``value`` normalised (``"10%"``), or a one-line ConfigError naming ``name``."""
    if name not in _EXAMPLES:
        raise ConfigError(f"unknown impairment {name}: use {', '.join(FIELDS)}, direction")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"invalid {name} {value!r}: give a string like {_EXAMPLES[name]}")
    v = " ".join(str(value).split())
    if v.startswith("-"):
        raise _bad(name, value, "must not be negative")
    if name in ("delay", "jitter"):
        if _TIME.match(v) is None:
            raise _bad(name, value, "use a time with its unit (no space before it)")
        return v
    if name == "rate":
        m = _RATE.match(v)
        if m is None:
            raise _bad(name, value, "use a rate with its unit (no space before it)")
        if float(m.group(1)) == 0:
            raise _bad(name, value, "must be > 0")
        return v.lower()
    if name in ("gap", "limit"):
        if _INT.match(v) is None or int(v) == 0:
            raise _bad(name, value, "a whole number of packets, > 0")
        return str(int(v))
    if name == "distribution":
        if v not in DISTRIBUTIONS:
            raise _bad(name, value, "an unknown distribution")
        return v
    toks = v.split()
    if name == "correlation":
        if len(toks) != 1:
            raise _bad(name, value, "one percentage")
        _pct(name, value, toks[0])
        return v
    if name == "loss" and toks and toks[0] == "random":
        toks = toks[1:]  # netem's own spelling of the default model
    if name == "loss" and toks and toks[0] == "gemodel":
        if not 2 <= len(toks) <= 5:
            raise _bad(name, value, "gemodel takes 1 to 4 percentages: p [r [1-h [1-k]]]")
        for t in toks[1:]:
            _pct(name, value, t)
        return " ".join(toks)
    if not 1 <= len(toks) <= 2:
        raise _bad(name, value, "a percentage and at most a correlation")
    for t in toks:
        _pct(name, value, t)
    return " ".join(toks)


def seconds(t: str) -> float:
    m = _TIME.match(t)
    assert m is not None
    return float(m.group(1)) * _TIME_S[m.group(2)]


def bits_per_second(r: str) -> float:
    m = _RATE.match(r)
    assert m is not None
    return float(m.group(1)) * _RATE_BPS[m.group(2).lower()]


def fraction(p: str) -> float:
    """``"10%"`` → 0.1"""
    return float(p.rstrip("%")) / 100


@dataclass
class Impairment:
    """What to do to a node's link, in tc netem's terms: ``loss="10%"``, ``delay="100ms"``.

    ``direction`` is ``out`` (guest → LAN, default), ``in`` or ``both``. Returned by
    ``node.impair(...)``; as a context manager it clears the node's impairments on exit:
    ``with node.impair(loss="10%"): ...``.
    """

    loss: str | None = None
    delay: str | None = None
    jitter: str | None = None
    distribution: str | None = None
    correlation: str | None = None
    duplicate: str | None = None
    reorder: str | None = None
    gap: str | None = None
    rate: str | None = None
    corrupt: str | None = None
    limit: str | None = None
    direction: str = "out"
    node: Target | None = field(default=None, repr=False, compare=False)  # set by apply()
    # lab.impair.clear, set by apply(): the model does not import the engines
    on_exit: Callable[[Target], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in FIELDS:
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, check_value(name, v))
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"invalid direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        if self.jitter and not self.delay:
            raise ConfigError("jitter needs a delay: add e.g. delay='100ms' (--delay 100ms)")
        if self.reorder and not self.delay:
            raise ConfigError("reorder needs a delay (netem reorders by sending some packets early): add --delay")
        for k in ("distribution", "correlation"):
            if getattr(self, k) and not self.jitter:
                raise ConfigError(f"{k} shapes the jitter: add --jitter (e.g. --delay 100ms --jitter 20ms)")
        if self.gap and not self.reorder:
            raise ConfigError("gap needs a reorder: add e.g. --reorder 25%")

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in FIELDS)

    @property
    def directions(self) -> list[str]:
        return ["out", "in"] if self.direction == "both" else [self.direction]

    def tc_args(self) -> list[str]:
        """The netem arguments, e.g. ``["delay", "100ms", "20ms", "loss", "10%"]``."""
        a: list[str] = []
        if self.delay:
            a += ["delay", self.delay]
            if self.jitter:
                a.append(self.jitter)
                if self.correlation:
                    a.append(self.correlation)
                # uniform is the kernel's own default: there is no uniform.dist to load
                if self.distribution and self.distribution != "uniform":
                    a += ["distribution", self.distribution]
        if self.loss:
            a += ["loss", *(self.loss.split() if self.loss.startswith("gemodel") else ["random", *self.loss.split()])]
        for n in ("duplicate", "reorder", "corrupt"):
            v = getattr(self, n)
            if v:
                a += [n, *v.split()]
                if n == "reorder" and self.gap:
                    a += ["gap", self.gap]
        if self.rate:
            a += ["rate", self.rate]
        if self.limit:
            a += ["limit", self.limit]
        return a

    def values(self) -> dict[str, str]:
        """The set fields only, without the direction."""
        return {k: v for k in FIELDS if (v := getattr(self, k)) is not None}

    def as_dict(self) -> dict[str, str]:
        d = self.values()
        if d:
            d["direction"] = self.direction
        return d

    def describe(self) -> str:
        if self.empty:
            return "-"
        return f"{self.direction}: {describe_values(self.values())}"

    def __enter__(self) -> Impairment:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.node is not None and self.on_exit is not None:
            self.on_exit(self.node)


def describe_values(d: dict[str, str]) -> str:
    """``loss 10% delay 100ms`` in FIELDS order."""
    return " ".join(f"{k} {d[k]}" for k in FIELDS if k in d)


def make(**kw: Any) -> Impairment:
    """``Impairment(**kw)`` with a one-line ConfigError for an unknown field."""
    bad = [k for k in kw if k not in (*FIELDS, "direction")]
    if bad:
        raise ConfigError(f"unknown impairment {', '.join(bad)}: use {', '.join(FIELDS)}, direction")
    return Impairment(**kw)
