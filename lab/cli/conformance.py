"""mplab conformance [--junit FILE] [--out DIR] [-- PYTEST ARGS]: run the socket conformance
suite (tests/socket) and write reports/conformance.{md,html} (lab/conformance.py).

Exit code: pytest's (0 all passed or deviated as documented); 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import conformance

DEFAULT_LAB = "conf"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="socket conformance suite and report, reports/conformance.{md,html}")
    p.add_argument("--lab", default=argparse.SUPPRESS, help=f"lab name (default: $LAB or {DEFAULT_LAB})")
    p.add_argument("--junit", type=Path, help="render this JUnit XML instead of running the suite")
    p.add_argument("--out", type=Path, default=conformance.ROOT / "reports", help="report directory")
    p.add_argument("--artifacts", type=Path, default=conformance.ROOT / "artifacts")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return conformance.main(
        args.lab or DEFAULT_LAB,
        junit=args.junit,
        out=args.out,
        artifacts=args.artifacts,
        pytest_args=args.pytest_args,
    )
