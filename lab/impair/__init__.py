"""Link impairments: one model (``Impairment``), two engines (docs/impairments.md).

``node.impair(delay="100ms", jitter="20ms", direction="in")`` sets one direction of the
node's link and leaves the other as it was; ``direction="both"`` sets both the same.

* ``netem`` (lab/impair/netem.py): tc netem in the node container, where the kernel has
  sch_netem, the usual case on users' machines;
* ``userspace`` (lab/impair/userspace.py): an NFQUEUE delayer in the node container's own
  datapath, for kernels without netem (trimmed cloud/CI kernels, this project's CI VM).

The engine is probed once per host (the kernel is the host's, whatever container asks) and
cached per boot; ``MPLAB_IMPAIR_ENGINE=netem|userspace`` forces one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LabError
from ..hostnet import host_cleanup, nft, nft_delete, nft_ensure, nft_rules, nft_table
from . import netem, userspace
from .model import DIRECTIONS, DISTRIBUTIONS, FIELDS, Impairment, check_value, describe_values, make
from .target import Exec, Target, target_of

__all__ = [
    "DIRECTIONS",
    "DISTRIBUTIONS",
    "ENGINES",
    "ENV",
    "FIELDS",
    "Exec",
    "Impairment",
    "Target",
    "apply",
    "check_value",
    "clear",
    "current",
    "describe",
    "describe_state",
    "engine",
    "host_cleanup",
    "make",
    "netem_available",
    "nft",
    "nft_ensure",
    "nft_rules",
    "nft_table",
    "state",
    "target_of",
]

ENGINES = ("netem", "userspace")
ENV = "MPLAB_IMPAIR_ENGINE"
_MODULES = {"netem": netem, "userspace": userspace}
_probed: dict[str, bool] = {}


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _cache_file() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/run") / "mplab" / f"netem-probe.{_boot_id()}"


def netem_available(node: Target | Any) -> bool:
    """Whether the kernel has sch_netem: probed once per host boot (in a node container, whose
    kernel is the host's), remembered in this process and in /run/mplab/netem-probe.<boot id>."""
    key = _boot_id()
    if key in _probed:
        return _probed[key]
    f = _cache_file()
    try:
        _probed[key] = f.read_text().strip() == "yes"
        return _probed[key]
    except OSError:
        pass
    _probed[key] = netem.probe(target_of(node))
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("yes\n" if _probed[key] else "no\n")
    except OSError:
        pass  # a read-only /run only costs a probe per process
    return _probed[key]


def engine(node: Target | Any) -> str:
    """``netem`` or ``userspace``: forced by MPLAB_IMPAIR_ENGINE, else netem where the kernel has it."""
    forced = os.environ.get(ENV, "").strip()
    if forced and forced not in ENGINES:
        raise ConfigError(f"{ENV}={forced!r}: use one of {', '.join(ENGINES)} (or unset it to choose by the kernel)")
    if forced == "userspace":
        return "userspace"
    if netem_available(node):
        return "netem"
    if forced == "netem":
        raise LabError(
            f"{ENV}=netem, but this kernel lacks tc netem (CONFIG_NET_SCH_NETEM); "
            "unset it to use the userspace engine: see docs/impairments.md"
        )
    return "userspace"


def apply(node: Target | Any, imp: Impairment) -> Impairment:
    """Set ``imp`` on the directions it names (``both``: each the same); the other direction
    keeps what it had. An empty Impairment clears those directions."""
    t = target_of(node)
    mod = _MODULES[engine(t)]
    imp.node, imp.on_exit = t, clear
    if mod is userspace:
        userspace.check(imp)
    for d in imp.directions:
        mod.apply(t, d, imp)
    return imp


def clear(node: Target | Any, direction: str = "both") -> None:
    """Remove the node's impairments (of one direction, or both), whichever engine set them."""
    t = target_of(node)
    dirs = ["out", "in"] if direction == "both" else [direction]
    name = engine(t)
    for d in dirs:
        _MODULES[name].clear(t, d)
    # rules of the kernel-only fallback this lab used before the userspace engine (host nft)
    nft_delete(t.lab, "bridge", f"mplab-{t.lab}:impair:{t.name}:")


def state(node: Target | Any) -> dict[str, dict[str, str]]:
    """``{"out": {...}, "in": {...}}``: each direction's fields as the engine holds them."""
    t = target_of(node)
    return _MODULES[engine(t)].state(t)


def flatten(st: dict[str, dict[str, str]]) -> dict[str, str]:
    """One dict with the keys ``impair()`` takes: ``{"loss": "10%", "direction": "out"}``; {} when
    none. Directions set differently give ``{"direction": "split", "out": "...", "in": "..."}``."""
    out, inn = st.get("out", {}), st.get("in", {})
    if out and inn:
        if out == inn:
            return {**out, "direction": "both"}
        return {"direction": "split", "out": describe_values(out), "in": describe_values(inn)}
    if out or inn:
        d = "out" if out else "in"
        return {**(out or inn), "direction": d}
    return {}


def current(node: Target | Any) -> dict[str, str]:
    """The node's active impairments, read back from the engine: ``{"loss": "10%", ...,
    "direction": "out"}`` ({} when none). Same keys as ``node.impair(**...)`` takes."""
    return flatten(state(node))


def describe(d: dict[str, str]) -> str:
    """One line for ``mplab status``: ``out: loss 10% delay 100ms``, ``out: ...; in: ...`` or ``-``."""
    if not d:
        return "-"
    if d.get("direction") == "split":
        return f"out: {d['out']}; in: {d['in']}"
    return f"{d.get('direction', 'out')}: {describe_values(d)}"


def describe_state(st: dict[str, dict[str, str]]) -> str:
    return describe(flatten(st))
