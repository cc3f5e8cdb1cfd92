"""mplab cp FILE NODE:PATH: copy a host file onto a node's filesystem (via exec, in chunks)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..lab import Node
from ._common import open_lab

CHUNK = 192  # bytes of file per exec; its repr fits one raw-paste window or two


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cp", help="copy a file to a node: cp FILE NODE:PATH")
    p.add_argument("src", metavar="FILE")
    p.add_argument("dst", metavar="NODE:PATH")
    p.set_defaults(func=run)


def put(node: Node, data: bytes, path: str) -> None:
    node.exec(f"_f = open({path!r}, 'wb')")
    try:
        for i in range(0, len(data), CHUNK):
            node.exec(f"_f.write({data[i : i + CHUNK]!r})")
    finally:
        node.exec("_f.close()\ndel _f")


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
    node = lab.node(name)
    data = src.read_bytes()
    put(node, data, path)
    n = node.eval(f"__import__('os').stat({path!r})[6]")
    lab.close()
    print(f"{src} -> {name}:{path} ({n} bytes)")
    return 0
