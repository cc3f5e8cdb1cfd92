"""``mplab`` command line: one module per verb (lab/cli/<verb>.py), each with
``add_parser(subparsers)`` and ``run(args) -> int``. Errors the user can fix are one line
on stderr, exit code 2 (bad input) or 1 (runtime failure), never a Python traceback (an
unexpected exception too is one line; ``MPLAB_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import LabError
from . import (
    capture,
    conformance,
    console,
    cp,
    deploy,
    diff,
    down,
    exec_,
    impair,
    install,
    link,
    logs,
    repro,
    reset,
    status,
    up,
)

VERBS = [up, down, status, console, exec_, cp, deploy, install, capture, logs, reset, repro, impair, link, diff]
VERBS.append(conformance)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"mplab: {message} (see `mplab --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mplab", description="Emulated networked MicroPython devices on a Docker LAN.")
    p.add_argument("--lab", default=None, help="lab name, [a-z0-9]{1,9} (env LAB; default from the compose file)")
    p.add_argument(
        "--file",
        "-f",
        dest="compose_file",
        default=None,
        help="compose file (env MPLAB_COMPOSE_FILE; default: docker-compose.yml here or above)",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for v in VERBS:
        v.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.lab_explicit = args.lab is not None  # `repro` only takes a lab named on its command line
    if args.lab is None:
        args.lab = os.environ.get("LAB") or None
    try:
        return int(args.func(args) or 0)
    except LabError as e:  # every error the library raises on purpose (lab/errors.py)
        print(f"mplab: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an unforeseen failure: still one line, unless asked
        if os.environ.get("MPLAB_DEBUG"):
            raise
        where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
        print(f"mplab {args.verb}: {type(e).__name__}: {e}{where} (MPLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
