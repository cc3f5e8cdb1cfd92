"""mplab status: table of nodes, containers, IPs, MACs, serial ports and state."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from ..lab import GUEST_CA, Lab
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
    _print_services(lab)
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
    by_name = {nd.name: nd for nd in lab.nodes}
    try:
        with ThreadPoolExecutor(max_workers=min(16, len(up))) as pool:  # an exec each, all at once
            states = list(pool.map(lambda r: state(by_name[r.name].impair_target()), up))
        for r, st in zip(up, states, strict=True):
            if st["out"] or st["in"]:
                print(f"impairments {r.name}: {describe_state(st)}")
        print(f"impairment engine: {engine(by_name[up[0].name].impair_target())}")
    except LabError as e:
        print(f"impairments: {e}")


def _print_services(lab: Lab) -> None:
    """One line per service daemon (docs/services.md): name, address, state; and the CA."""
    found = lab.service_containers()
    topo = lab.topology
    for name in lab.services:
        c = found.get(name)
        state = "missing" if c is None else ("up" if c.running else f"down ({c.state}, exit {c.exit_code})")
        print(f"service {name}: {topo.service_name(name)} {topo.service_ip(name)} [{topo.service_ip6(name)}] {state}")
    if lab.services:
        print(f"lab CA: {lab.ca_cert} (on each node: {GUEST_CA})")


def run(args: argparse.Namespace) -> int:
    return print_status(open_lab(args, quiet=True))
