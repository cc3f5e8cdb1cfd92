"""mplab capture -w FILE [--node N] [--duration S] [BPF]: sniff the lab bridge into a pcap."""

from __future__ import annotations

import argparse
import time

from ..errors import ConfigError
from ._common import open_lab


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capture", help="capture the LAN into a pcap")
    p.add_argument("-w", "--write", required=True, metavar="FILE", help="pcap file to write")
    p.add_argument("--node", default=None, help="only frames to/from this node's guest MAC")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("bpf", nargs="?", default=None, help="BPF filter, e.g. 'tcp port 7'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0")
    lab = open_lab(args, quiet=True)
    if args.node:
        lab.node(args.node)  # validates the name
    cap = lab.capture(args.write, bpf=args.bpf, node=args.node)
    cap.start()
    print(f"capturing on {lab.bridge} -> {args.write} (Ctrl-C stops)")
    try:
        if args.duration is None:
            while True:
                time.sleep(1)
        else:
            time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    path = cap.stop()
    print(f"{len(cap.packets)} packets -> {path}")
    return 0
