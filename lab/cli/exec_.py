"""mplab exec NODE CODE | -f FILE: run code on a node, print its output as it arrives.

Exit 0 on success; 1 with the guest traceback on stderr when the guest raises. On a timeout,
a reset, a lost console or a dead node the output printed so far stays on stdout and the
error follows as one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console import GuestError
from ..errors import ConfigError, LabError
from ..topology import read_text
from ._common import node_arg, open_lab, positive_seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run Python code on a node")
    node_arg(p)
    p.add_argument("code", nargs="?", help="code to run")
    p.add_argument("-f", "--file", dest="code_file", help="run this file instead")
    p.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.code is None) == (args.code_file is None):
        raise ConfigError("exec needs CODE or -f FILE (exactly one)")
    if args.code_file:
        f = Path(args.code_file)
        if not f.is_file():
            raise ConfigError(f"{f}: no such file")
        code = read_text(f, "code file")
    else:
        code = args.code
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    ended = [True]  # the last output ended a line (an error message then starts on its own)

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        ended[0] = text.endswith("\n")

    try:
        node.exec(code, timeout=args.timeout, on_output=show)
    except GuestError as e:
        print(e.traceback, file=sys.stderr)
        return 1
    except LabError:
        if not ended[0]:
            sys.stdout.write("\n")
        sys.stdout.flush()
        raise  # one line on stderr (lab/cli/__init__.py), after the output
    finally:
        lab.close()
    return 0
