"""mplab up [--nodes N]: start (or scale) the lab and bring every guest's network up."""

from __future__ import annotations

import argparse

from ._common import open_lab, positive_seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the lab (idempotent)")
    p.add_argument("--nodes", "-n", type=int, default=None, help="number of nodes (default from x-mplab.nodes)")
    p.add_argument(
        "--timeout", type=positive_seconds, default=None, help="seconds to wait for the leases (60 + 1 a node > 32)"
    )
    p.add_argument("--no-bringup", action="store_true", help="start containers only, no guest network bring-up")
    p.add_argument("--keep", action="store_true", help="on failure, leave what was made (for debugging)")
    p.add_argument("--file", dest="compose_file", default=argparse.SUPPRESS, help="compose file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    lab.up(nodes=args.nodes, timeout=args.timeout, bringup=not args.no_bringup, keep=args.keep)
    from .status import print_status

    print_status(lab)
    lab.close()
    return 0
