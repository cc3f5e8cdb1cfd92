"""mplab console NODE: interactive REPL on a node's serial port; Ctrl-] exits."""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import termios
import tty

from ..errors import ConfigError, NodeError
from ._common import node_arg, open_lab

ESCAPE = b"\x1d"  # Ctrl-]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="interactive REPL (Ctrl-] exits)")
    node_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    if not node.info.running:
        raise ConfigError(f"{args.node} is down (see `mplab status`)")
    try:
        sock = socket.create_connection((node.container_ip, node.console_port), timeout=5)
    except OSError as e:
        raise NodeError(
            f"{args.node}: cannot connect to its console {node.container_ip}:{node.console_port}: {e}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(f"connected to {args.node} ({node.container_ip}:{node.console_port}); Ctrl-] exits", file=sys.stderr)
    fd = sys.stdin.fileno()
    tty_in = os.isatty(fd)
    old = termios.tcgetattr(fd) if tty_in else None
    try:
        if tty_in:
            tty.setraw(fd)
        sock.sendall(b"\r\x02")  # leave a raw REPL a script may have left, show the banner
        while True:
            r, _, _ = select.select([sock, fd], [], [])
            if sock in r:
                data = sock.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in r:
                data = os.read(fd, 1024)
                if not data or ESCAPE in data:
                    break
                sock.sendall(data.replace(b"\n", b"\r") if not tty_in else data)
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        sock.close()
    print("\r\ndisconnected", file=sys.stderr)
    return 0
