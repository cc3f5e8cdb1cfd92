"""mplab exec NODE CODE | -f FILE: run code on a node, print its output.

Exit 0 on success; 1 with the guest traceback on stderr when the guest raises.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console import GuestError
from ..errors import ConfigError
from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run Python code on a node")
    node_arg(p)
    p.add_argument("code", nargs="?", help="code to run")
    p.add_argument("-f", "--file", dest="code_file", help="run this file instead")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.code is None) == (args.code_file is None):
        raise ConfigError("exec needs CODE or -f FILE (exactly one)")
    if args.code_file:
        f = Path(args.code_file)
        if not f.is_file():
            raise ConfigError(f"{f}: no such file")
        code = f.read_text()
    else:
        code = args.code
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    try:
        out = node.exec(code, timeout=args.timeout)
    except GuestError as e:
        sys.stdout.write(e.stdout)
        print(e.traceback, file=sys.stderr)
        return 1
    finally:
        lab.close()
    sys.stdout.write(out)
    return 0
