"""mplab repro SCENARIO.yml [--firmware 1.25.0,1.26.1] [--keep] [--out DIR]: reproduce a field bug.

Brings up a dedicated lab (its name derived from the scenario; `mplab --lab X repro` overrides
it), runs the scenario's timeline with a capture on the bridge, judges the assertions (the
bug's signature) and writes a bundle per firmware. Always takes its lab down (unless --keep).

Exit code: 0 reproduced, 1 not reproduced, 2 bad input, 3 error (for several firmwares: the
first firmware's verdict; the table shows all of them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import scenario as sc
from ..errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="run a scenario file (field bug) and write an evidence bundle")
    p.add_argument("scenario", metavar="SCENARIO.yml")
    p.add_argument(
        "--firmware",
        default=None,
        help="comma-separated MicroPython versions and/or firmware.elf paths (default: the scenario's firmware)",
    )
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    p.add_argument("--out", default=None, help="bundle directory (several firmwares: one subdirectory each)")
    p.add_argument("--check", action="store_true", help="only validate the scenario file")
    p.add_argument("--no-build", action="store_true", help="do not run make for a version's firmware")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    scn = sc.load(args.scenario)
    specs = [s.strip() for s in (args.firmware or "").split(",") if s.strip()]
    if not specs:
        specs = [scn.firmware or (sc.known_versions() or ["1.25.0"])[0]]
    if args.check:
        # the run's own firmware checks (known version, an ELF file), without building
        for s in specs:
            sc.resolve_firmware(s, base=scn.path.parent, check_only=True)
        print(f"{scn.path}: ok ({len(scn.timeline)} steps, {len(scn.assertions)} assertions, lab {scn.lab_name})")
        return 0
    if args.keep and len(specs) > 1:
        raise ConfigError("--keep works with one firmware only (each version gets a fresh lab)")
    # resolve every firmware first: bad input fails before any lab comes up
    fws = [sc.resolve_firmware(s, base=scn.path.parent, build=not args.no_build, progress=_progress) for s in specs]
    results: list[sc.Result] = []
    for fw in fws:
        if args.out:
            out = Path(args.out) if len(fws) == 1 else Path(args.out) / f"{scn.name}-{fw.label}"
        else:
            out = sc.bundle_dir(scn, fw)
        _progress(f"repro {scn.name} on firmware {fw.label} ({fw.elf}) -> {out}")
        # A lab from $LAB is the user's own running lab: repro takes its lab down first, so it
        # only uses one named with --lab, else the scenario's own.
        lab_name = args.lab if getattr(args, "lab_explicit", False) else None
        r = sc.run(scn, fw, out, lab_name=lab_name, keep=args.keep, progress=_progress)
        results.append(r)
        print(f"{scn.name} on {fw.label}: {r.verdict.upper()}" + (f" ({r.error})" if r.error else ""))
        for c in r.checks:
            print(f"  {'✓' if c.held else '✗'} {c.label}: {c.detail}")
        print(f"  bundle: {r.bundle}/verdict.md")
    if len(results) > 1:
        print()
        print(format_table(results))
    return results[0].exit_code


def format_table(results: list[sc.Result]) -> str:
    head = ("FIRMWARE", "VERDICT", "CHECKS", "BUNDLE")
    rows = [head] + [
        (r.firmware, r.verdict, f"{sum(c.held for c in r.checks)}/{len(r.checks)} held", str(r.bundle)) for r in results
    ]
    w = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(x) for c, x in zip(row, w, strict=True)).rstrip() for row in rows)
