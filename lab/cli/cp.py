"""mplab cp FILE NODE:PATH: copy a host file onto a node's filesystem (lab.guestfs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import guestfs
from ..errors import ConfigError
from ._common import open_lab

CHUNK = guestfs.CHUNK
put = guestfs.put  # the old name: lab.cli.cp.put(node, data, path)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cp", help="copy a file to a node: cp FILE NODE:PATH")
    p.add_argument("src", metavar="FILE")
    p.add_argument("dst", metavar="NODE:PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    src = Path(args.src)
    if not src.is_file():
        raise ConfigError(f"{src}: no such file")
    if ":" not in args.dst:
        raise ConfigError(f"destination {args.dst!r} must be NODE:PATH, e.g. node1:/main.py")
    name, path = args.dst.split(":", 1)
    if not path:
        path = "/" + src.name
    lab = open_lab(args, quiet=True)
    try:
        node = lab.node(name)
        guestfs.put(node, src.read_bytes(), path)
        n = guestfs.stat(node, path).size
    finally:
        lab.close()
    print(f"{src} -> {name}:{path} ({n} bytes)")
    return 0
