"""mplab down: remove every container and network of the lab (works after a crash)."""

from __future__ import annotations

import argparse

from ._common import open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("down", help="remove the lab and everything labelled with it")
    p.add_argument("--file", dest="compose_file", default=argparse.SUPPRESS, help="compose file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    swept = lab.down()
    for s in swept:
        print(f"removed {s}")
    return 0
