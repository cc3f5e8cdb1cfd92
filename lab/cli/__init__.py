"""``mplab`` command line: one module per verb (lab/cli/<verb>.py), each with
``add_parser(subparsers)`` and ``run(args) -> int``. Errors the user can fix are one line
on stderr, exit code 2 (bad input) or 1 (runtime failure), never a Python traceback (an
unexpected exception too is one line; ``MPLAB_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

from ..errors import LabError

# verb -> its module (lab/cli/<module>.py). A command imports its own verb's module alone: the
# others pull in scapy, the scenario engine and the ladder (0.3-0.6 s of every `mplab` call).
VERB_MODULES = {
    "up": "up", "down": "down", "status": "status", "console": "console", "exec": "exec_", "cp": "cp",
    "deploy": "deploy", "install": "install", "cert": "cert", "capture": "capture", "logs": "logs",
    "reset": "reset", "repro": "repro", "impair": "impair", "link": "link", "diff": "diff",
    "conformance": "conformance", "view": "view",
}  # fmt: skip


def verb_module(verb: str) -> ModuleType:
    """The module of ``verb`` (``add_parser``, ``run``)."""
    return importlib.import_module(f"{__name__}.{VERB_MODULES[verb]}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"mplab: {message} (see `mplab --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``verb``, that verb's in full and the others as bare names (the
    command line names one verb: only its module is imported)."""
    p = _Parser(prog="mplab", description="Emulated networked MicroPython devices on a Docker LAN.")
    p.add_argument("--lab", default=None, help="lab name, [a-z0-9]{1,9} (env LAB; default from the compose file)")
    p.add_argument(
        "--file",
        "-f",
        dest="compose_file",
        default=None,
        help="compose file (env MPLAB_COMPOSE_FILE; default: docker-compose.yml here or above)",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for name in VERB_MODULES:
        if verb is None or name == verb:
            verb_module(name).add_parser(sub)
        else:
            sub.add_parser(name)
    return p


def _verb_in(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` names (the first word that is one, past the global options), if any."""
    takes_value = {"--lab", "--file", "-f"}
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in takes_value:
            skip = True
        elif a.startswith("-"):
            continue
        else:
            return a if a in VERB_MODULES else None
    return None


def _value_options(p: argparse.ArgumentParser) -> set[str]:
    """Every option of every verb that takes one value (--loss, --timeout, ...)."""
    out: set[str] = set()
    parsers = [p]
    for a in getattr(p, "_actions", []):  # (a stand-in parser in tests has none)
        if isinstance(a, argparse._SubParsersAction):
            parsers += list(a.choices.values())
    for sp in parsers:
        for a in getattr(sp, "_actions", []):
            if isinstance(a, argparse._StoreAction) and a.nargs is None:
                out.update(o for o in a.option_strings if o.startswith("--"))
    return out


_NEGATIVE = re.compile(r"^-[\d.]")


def join_negative_values(argv: Sequence[str], options: set[str]) -> list[str]:
    """``--loss -5%`` -> ``--loss=-5%``: argparse takes "-5%" for an option and says "expected
    one argument"; joined, the value reaches the option's own check, which names the problem."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in options and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_verb_in(argv))
    argv = join_negative_values(argv, _value_options(parser))
    args = parser.parse_args(argv)
    args.lab_explicit = args.lab is not None  # `repro` only takes a lab named on its command line
    if args.lab is None:
        args.lab = os.environ.get("LAB") or None
    try:
        return int(args.func(args) or 0)
    except LabError as e:  # every error the library raises on purpose (lab/errors.py)
        print(f"mplab: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an unforeseen failure: still one line, unless asked
        if os.environ.get("MPLAB_DEBUG"):
            raise
        where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
        print(f"mplab {args.verb}: {type(e).__name__}: {e}{where} (MPLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
