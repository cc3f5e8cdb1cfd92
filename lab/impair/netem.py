"""The ``netem`` engine: tc netem in the node container, where the kernel has sch_netem.

Unchanged from before the userspace engine existed, except that each direction is set and
cleared on its own (docs/impairments.md):

* direction ``out``: frames from the guest to the LAN. The container's ``eth0`` egress gets
  ``htb`` with a ``u32`` filter on the guest's source MAC → class ``1:1`` (rate = ``rate`` or
  10gbit) → ``netem`` leaf; everything else (the lab's own console connection to the
  container's console port) goes to class ``1:2`` unimpaired.
* direction ``in``: frames from the LAN to the guest, on ``tap0`` egress (only the guest uses
  tap0, so no filter is needed).
"""

from __future__ import annotations

import re

from .model import _TIME, Impairment
from .target import Target

BIG_RATE = "10gbit"
DEV = {"out": "eth0", "in": "tap0"}
_PROBE = "tc qdisc add dev lo root netem delay 0ms && tc qdisc del dev lo root"


def probe(t: Target) -> bool:
    """Whether the kernel has sch_netem (tried on the container's loopback)."""
    return t.exec(["sh", "-c", _PROBE]).returncode == 0


def _mac_u32(mac: str) -> list[str]:
    h = mac.replace(":", "").lower()
    return ["match", "u32", f"0x{h[:8]}", "0xffffffff", "at", "-8", "match", "u16", f"0x{h[8:]}", "0xffff", "at", "-4"]


def tree(dev: str, imp: Impairment, mac: str | None) -> list[str]:
    """The tc commands for one device: htb (rate) with a netem leaf."""
    rate = imp.rate or BIG_RATE
    cmds = [
        f"tc qdisc replace dev {dev} root handle 1: htb default 2 r2q 10000",
        f"tc class replace dev {dev} parent 1: classid 1:1 htb rate {rate} ceil {rate}",
        f"tc class replace dev {dev} parent 1: classid 1:2 htb rate {BIG_RATE}",
    ]
    args = imp.tc_args()
    if imp.rate:  # htb already shapes; netem's own rate would double-count
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


def apply(t: Target, direction: str, imp: Impairment) -> None:
    clear(t, direction)
    if not imp.empty:
        t.sh(" && ".join(tree(DEV[direction], imp, t.mac if direction == "out" else None)), "tc")


def clear(t: Target, direction: str) -> None:
    t.exec(["sh", "-c", f"tc qdisc del dev {DEV[direction]} root 2>/dev/null; true"])


_PCT_TOK = re.compile(r"^\d+(?:\.\d+)?%$")
_SIMPLE = {"duplicate", "reorder", "corrupt"}


def _pcts(toks: list[str], i: int, most: int) -> list[str]:
    out = []
    while i < len(toks) and len(out) < most and _PCT_TOK.match(toks[i]):
        out.append(toks[i])
        i += 1
    return out


def parse_netem(line: str) -> dict[str, str]:
    """``tc qdisc show``'s netem line → the Impairment fields it sets."""
    toks = line.split()
    out: dict[str, str] = {}
    i = toks.index("netem") + 1 if "netem" in toks else 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t == "delay" and nxt:
            out["delay"] = nxt
            i += 2
            if i < len(toks) and _TIME.match(toks[i]):
                out["jitter"] = toks[i]
                i += 1
                if i < len(toks) and _PCT_TOK.match(toks[i]):
                    out["correlation"] = toks[i]
                    i += 1
            continue
        if t == "distribution" and nxt:
            out["distribution"] = nxt
            i += 2
            continue
        if t == "loss" and nxt:
            if nxt == "gemodel":
                p = _pcts(toks, i + 2, 4)
                out["loss"] = " ".join(["gemodel", *p])
                i += 2 + len(p)
                continue
            j = i + 2 if nxt == "random" else i + 1
            p = _pcts(toks, j, 2)
            out["loss"] = " ".join(p)
            i = j + len(p)
            continue
        if t in _SIMPLE and nxt:
            p = _pcts(toks, i + 1, 2)
            out[t] = " ".join(p)
            i += 1 + len(p)
            continue
        if t in ("gap", "limit") and nxt:
            # netem always shows its limit (1000 by default) and gap 1 with a reorder
            if not (t == "limit" and nxt == "1000") and not (t == "gap" and nxt == "1"):
                out[t] = nxt
            i += 2
            continue
        if t == "rate" and nxt:
            out["rate"] = nxt.lower()
            i += 2
            continue
        i += 1
    return out


def _parse_dev(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("qdisc netem") and "parent 1:1" in line:
            out.update(parse_netem(line))
        elif line.startswith("class htb 1:1 "):
            m = re.search(r"\brate (\S+)", line)
            if m and m.group(1).lower() != BIG_RATE:
                out["rate"] = m.group(1).lower()
    return out


def state(t: Target) -> dict[str, dict[str, str]]:
    """Each direction's fields, read back from the kernel (``tc qdisc/class show``)."""
    p = t.exec(
        ["sh", "-c", 'for d in eth0 tap0; do echo "== $d"; tc qdisc show dev $d; tc class show dev $d; done'],
    )
    chunks: dict[str, list[str]] = {"eth0": [], "tap0": []}
    cur = ""
    for line in p.stdout.splitlines():
        if line.startswith("== "):
            cur = line[3:].strip()
            continue
        chunks.setdefault(cur, []).append(line)
    return {d: _parse_dev("\n".join(chunks[dev])) for d, dev in DEV.items()}
