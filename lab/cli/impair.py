"""mplab impair NODE [--loss 10%] [--delay 100ms] [--jitter 20ms] [--distribution normal]
[--correlation 25%] [--duplicate 1%] [--reorder 5%] [--gap 5] [--rate 1mbit] [--corrupt 0.1%]
[--limit 1000] [--direction out|in|both] | --clear [--direction D] | --show: impair a node's link
(tc netem, or the userspace engine where the kernel has no netem; docs/impairments.md)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..impair import DIRECTIONS, FIELDS, describe_state, engine, make, state
from ._common import node_arg, open_lab

_HELP = {
    "loss": "10%%, '10%% 25%%' (correlation) or 'gemodel p [r [1-h [1-k]]]'",
    "delay": "100ms",
    "jitter": "20ms (needs --delay)",
    "distribution": "uniform (default) | normal | pareto | paretonormal (needs --jitter)",
    "correlation": "the delay's correlation, 25%% (needs --jitter)",
    "duplicate": "1%%",
    "reorder": "5%% or '25%% 50%%' (needs --delay)",
    "gap": "reorder every Nth packet (needs --reorder)",
    "rate": "1mbit",
    "corrupt": "0.1%%",
    "limit": "queue limit in packets (netem's default 1000)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("impair", help="impair a node's link (delay, loss, ... per direction), or --clear")
    node_arg(p)
    for f in FIELDS:
        p.add_argument(f"--{f}", default=None, metavar="V", help=_HELP[f])
    p.add_argument(
        "--direction",
        default=None,
        choices=DIRECTIONS,
        help="out: guest→LAN (default), in: LAN→guest, both; each direction is set on its own",
    )
    p.add_argument("--clear", action="store_true", help="remove the node's impairments (--direction: only that one)")
    p.add_argument("--show", action="store_true", help="print the active impairments and the engine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    if args.clear and given:
        raise ConfigError("--clear takes no other impairment options")
    if not (given or args.clear or args.show):
        raise ConfigError("nothing to do: give e.g. --loss 10% or --delay 100ms, or --clear / --show")
    # validates before touching the lab
    imp = make(**given, direction=args.direction or "out") if given else None
    lab = open_lab(args, quiet=True)
    node = lab.node(args.node)
    target = node.impair_target()
    if args.clear:
        from ..impair import clear

        clear(target, args.direction or "both")
        print(f"{node.name}: impairments cleared" + (f" ({args.direction})" if args.direction else ""))
    elif imp is not None:
        node.impair(**imp.as_dict())
    if imp is not None or args.show:
        print(f"{node.name}: {describe_state(state(target))} (engine {engine(target)})")
    lab.close()
    return 0
