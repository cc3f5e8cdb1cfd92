"""mplab link NODE up|down: carrier on/off at the guest's NIC (QMP set_link)."""

from __future__ import annotations

import argparse

from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="take a node's link down or up (the guest sees carrier loss)")
    node_arg(p)
    p.add_argument("state", choices=("up", "down"), metavar="up|down")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    node.link(args.state == "up")
    print(f"{node.name}: link {args.state}")
    lab.close()
    return 0
