"""mplab impair NODE [--loss 10%] [--delay 100ms] [--jitter 20ms] [--duplicate 1%] [--reorder 5%]
[--rate 1mbit] [--corrupt 0.1%] [--direction out|in|both] | --clear | --show: tc netem on a node's link."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..impair import DIRECTIONS, FIELDS, describe, make
from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("impair", help="impair a node's link (tc netem), or --clear")
    node_arg(p)
    for f in FIELDS:
        p.add_argument(f"--{f}", default=None, metavar="V")
    p.add_argument("--direction", default="out", choices=DIRECTIONS, help="out: guest→LAN (default), in, both")
    p.add_argument("--clear", action="store_true", help="remove the node's impairments")
    p.add_argument("--show", action="store_true", help="print the active impairments")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    if args.clear and given:
        raise ConfigError("--clear takes no other impairment options")
    if not (given or args.clear or args.show):
        raise ConfigError("nothing to do: give e.g. --loss 10% or --delay 100ms, or --clear / --show")
    imp = make(**given, direction=args.direction) if given else None  # validates before touching the lab
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    if args.clear:
        node.clear_impairments()
        print(f"{node.name}: impairments cleared")
    elif imp is not None:
        node.impair(**imp.as_dict())
    if imp is not None or args.show:
        print(f"{node.name}: {describe(node.impairments())}")
    lab.close()
    return 0
