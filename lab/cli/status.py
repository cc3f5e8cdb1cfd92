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
        svc = lab.services_container()
        if svc is not None:
            # A partial lab (e.g. an `up` killed before the nodes started): say what is there.
            print(
                f"lab {lab.name}: no nodes, but its services container {svc.name} is {svc.state}: "
                f"`mplab --lab {lab.name} up` starts the nodes, `mplab --lab {lab.name} down` removes it"
            )
            return 1
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
    """One line per impaired node (lab/impair.py reads them back from the kernel)."""
    from ..impair import describe

    for r in rows:
        if r.state == "up":
            imp = lab.node(r.name).impairments()
            if imp:
                print(f"impairments {r.name}: {describe(imp)}")


def run(args: argparse.Namespace) -> int:
    return print_status(open_lab(args, quiet=True))
