"""mplab reset NODE: hard-reset the emulated board (QMP system_reset), then network bring-up."""

from __future__ import annotations

import argparse

from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reset", help="reset a node and bring its network up again")
    node_arg(p)
    p.add_argument("--no-bringup", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    node.reset(bringup=not args.no_bringup)
    print(f"{args.node}: reset" + ("" if args.no_bringup else f", ip {node.ip}"))
    lab.close()
    return 0
