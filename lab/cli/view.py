"""mplab view FILE.pcap [--out F] [--open]: the ladder diagram of any pcap, as one HTML file.

Lanes are named after the lab's hosts when a bundle's status.json sits beside the pcap,
else after the addresses. Prints the page's path (and opens it with --open).
"""

from __future__ import annotations

import argparse
import json
import webbrowser
from pathlib import Path

from .. import ladder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="render a pcap as a ladder diagram (one self-contained HTML file)")
    p.add_argument("pcap", metavar="FILE.pcap")
    p.add_argument("--out", default=None, help="HTML file to write (default: FILE.html beside the pcap)")
    p.add_argument("--open", action="store_true", help="open the page in the desktop's browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pcap = Path(args.pcap)
    status = pcap.parent / "status.json"
    hosts = None
    if status.is_file():
        try:
            hosts = ladder.Hosts.from_status(json.loads(status.read_text()))
        except (ValueError, AttributeError):
            hosts = None
    out = ladder.write_pcap(pcap, args.out, hosts=hosts)
    print(out)
    if args.open and not webbrowser.open(out.resolve().as_uri()):
        print(f"mplab view: no browser to open here; open {out} yourself")
    return 0
