"""mplab cert NODE: a server certificate for the node's lab name from the lab CA, with its key,
onto the node (/certs/node.pem, /certs/node.key), for a TLS server on the node."""

from __future__ import annotations

import argparse

from ..lab import GUEST_CERT, GUEST_KEY
from ._common import node_arg, open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cert", help="issue a certificate for a node's lab name and put it and its key on the node")
    node_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    issued = node.install_cert()
    name = f"{node.name}.{lab.topology.domain}"
    print(f"{node.name}: certificate for {name} ({node.ip}) -> {node.name}:{GUEST_CERT}, key -> {GUEST_KEY}")
    print(f"  host copies: {issued.cert}, {issued.key}; verify with the lab CA {lab.ca_cert}")
    lab.close()
    return 0
