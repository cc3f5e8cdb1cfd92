"""Helpers shared by the verbs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..lab import Lab


def open_lab(args: argparse.Namespace, quiet: bool = False) -> Lab:
    cf = Path(args.compose_file) if getattr(args, "compose_file", None) else None
    if quiet:
        return Lab(args.lab, compose_file=cf, progress=None)
    return Lab(args.lab, compose_file=cf)


def node_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE", help="node name, e.g. node1")
