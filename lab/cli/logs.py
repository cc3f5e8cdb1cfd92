"""mplab logs NODE: the node's console log (docker logs)."""

from __future__ import annotations

import argparse
import sys

from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="show a node's console log")
    node_arg(p)
    p.add_argument("--tail", type=int, default=None, help="only the last N lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args, quiet=True)
    sys.stdout.write(lab.node(args.node).logs(tail=args.tail))
    return 0
