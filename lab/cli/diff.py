"""mplab diff [--keep] [--out DIR] [--artifacts DIR] [--only KEY]: the guest against CPython on
Linux, same snippets, compared on the REPL and on the wire (lab/differential, docs/differential.md).

Exit code: 0 every documented difference holds, 1 one does not (listed), 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_LAB = "diff"
ROOT = Path(__file__).resolve().parents[2]  # the checkout


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="differential: guest vs CPython/Linux, reports/differential.{md,html}")
    p.add_argument("--lab", default=argparse.SUPPRESS, help=f"lab name (default: $LAB or {DEFAULT_LAB})")
    p.add_argument("--keep", action="store_true", help="leave the lab (and the Linux peer) up")
    p.add_argument("--out", type=Path, default=ROOT / "reports", help="report directory")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "differential")
    p.add_argument("--only", action="append", metavar="KEY", help="run only this scenario (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import differential  # scapy: slow to import, so only for this verb

    differential.select(args.only)  # bad input fails before any lab comes up
    return differential.main(
        args.lab or DEFAULT_LAB, keep=args.keep, out=args.out, artifacts=args.artifacts, only=args.only
    )
