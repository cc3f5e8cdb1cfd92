"""Helpers shared by the verbs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..lab import Lab


def open_lab(args: argparse.Namespace, quiet: bool = False) -> Lab:
    cf = Path(args.compose_file) if getattr(args, "compose_file", None) else None
    if quiet:
        return Lab(args.lab, compose_file=cf, progress=None)
    return Lab(args.lab, compose_file=cf)


def node_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE", help="node name, e.g. node1")


def positive_seconds(text: str) -> float:
    """argparse type of a timeout: a finite number of seconds > 0 (0, negative, nan, inf are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 30 or 2.5)") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a timeout must be a finite number of seconds > 0 (e.g. 30)")
    return v
