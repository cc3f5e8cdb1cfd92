"""mplab status: table of nodes, containers, IPs, MACs, serial ports and state."""

from __future__ import annotations

import argparse

from ..lab import Lab
from ._common import open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the lab's nodes")
    p.set_defaults(func=run)


def print_status(lab: Lab) -> int:
    rows = lab.status()
    if not rows:
        print(f"lab {lab.name}: not running (no containers labelled mplab.lab={lab.name})")
        return 1
    head = ("NODE", "CONTAINER", "IP", "MAC", "SERIAL", "STATE")
    table = [head] + [(r.name, r.container, r.ip, r.mac, r.serial, r.state) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    print(f"lab {lab.name}: subnet {lab.subnet}, host {lab.host_ip} on bridge {lab.bridge}")
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    _print_impairments(lab, rows)
    down = 0
    for r in rows:
        if r.console_tail:
            down += 1
            print(f"\n{r.name} is down; console tail:")
            print("  " + "\n  ".join(r.console_tail.rstrip().splitlines()))
    return 1 if down else 0


def _print_impairments(lab: Lab, rows: list) -> None:
    """One line per impaired node, both directions (lab/impair reads them back from the
    engine), then the engine in use."""
    from ..errors import LabError
    from ..impair import describe_state, engine, state

    up = [r for r in rows if r.state == "up"]
    if not up:
        return
    try:
        for r in up:
            st = state(lab.node(r.name).impair_target())
            if st["out"] or st["in"]:
                print(f"impairments {r.name}: {describe_state(st)}")
        print(f"impairment engine: {engine(lab.node(up[0].name).impair_target())}")
    except LabError as e:
        print(f"impairments: {e}")


def run(args: argparse.Namespace) -> int:
    return print_status(open_lab(args, quiet=True))
