"""mplab deploy NODE DIR: copy a project tree onto a node (changed files only), soft-reset (lab.deploy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import deploy
from ..errors import ConfigError
from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="copy a project tree (main.py, lib/) to a node and soft-reset it")
    node_arg(p)
    p.add_argument("dir", metavar="DIR", help="the project directory")
    p.add_argument("--dest", default="/", help="where on the node (default /)")
    p.add_argument("--no-reset", action="store_true", help="copy only; do not soft-reset")
    p.add_argument("--wait", default=None, metavar="REGEX", help="after the reset, wait for main.py to print this")
    p.add_argument("--follow", type=float, default=5.0, help="seconds to show main.py's output (default 5)")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    src = Path(args.dir)
    if not src.is_dir():
        raise ConfigError(f"{src}: no such directory (deploy takes a project tree with main.py, lib/, ...)")
    if args.follow < 0:
        raise ConfigError("--follow must be >= 0")
    lab = open_lab(args, quiet=True)
    try:
        node = lab.node(args.node)
        rep = deploy.deploy(
            node, src, args.dest, reset=not args.no_reset, progress=_progress, wait=args.wait, follow=args.follow
        )
    finally:
        lab.close()
    if rep.console:
        sys.stdout.write(rep.console.rstrip("> \n") + "\n")
    print(rep.summary())
    return 0
