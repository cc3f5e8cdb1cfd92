"""mplab install NODE PKG...: MicroPython packages (directories, .py files, PyPI names) into
the node's /lib (lab.packages resolves them, lab.deploy.install copies what changed)."""

from __future__ import annotations

import argparse
import sys

from .. import deploy, packages
from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("install", help="install MicroPython packages into a node's /lib")
    node_arg(p)
    p.add_argument("pkgs", nargs="+", metavar="PKG", help="a package directory, a .py file or a PyPI name")
    p.add_argument("--target", default="/lib", help="install directory on the node (default /lib)")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # Resolve first (pip, host side): a bad name fails before the lab is touched.
    pkgs = packages.resolve_all(args.pkgs, progress=_progress)
    lab = open_lab(args, quiet=True)
    try:
        rep = deploy.install(lab.node(args.node), pkgs, args.target, progress=_progress)
    finally:
        lab.close()
    print(f"installed {', '.join(rep.packages)} into {args.node}:{args.target}")
    print(rep.summary())
    return 0
