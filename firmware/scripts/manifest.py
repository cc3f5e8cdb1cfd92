#!/usr/bin/env python3
"""Write firmware/build/manifest.json: what a firmware image is and what it was built from."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path


def features(config_header: Path) -> list[str]:
    """The MICROPY_* features switched on by the board's config header."""
    pattern = re.compile(r"^#define\s+(MICROPY_\w+)\s+\(1\)", re.M)
    return sorted(set(pattern.findall(config_header.read_text())))


def modules(genhdr: Path, frozen: Path) -> list[str]:
    """The importable modules: the built-in ones (genhdr/moduledefs.h) and the frozen ones."""
    builtin = set(re.findall(r"MP_QSTR_(\w+)", (genhdr / "moduledefs.h").read_text()))
    builtin.discard("__main__")
    names = set(re.findall(r'"([\w/]+)\.py"', frozen.read_text()))
    frozen_mods = {n.removesuffix("/__init__").replace("/", ".") for n in names}
    return sorted(builtin | frozen_mods)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elf", type=Path, required=True)
    parser.add_argument("--board", required=True)
    parser.add_argument("--micropython", required=True)
    parser.add_argument("--micropython-deb", required=True)
    parser.add_argument("--lwip", required=True)
    parser.add_argument("--lwip-deb", required=True)
    parser.add_argument("--mbedtls", required=True)
    parser.add_argument("--mbedtls-deb", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument(
        "--obj-dir", type=Path, required=True, help="the build's object dir (genhdr/, frozen_content.c)"
    )
    parser.add_argument("--patch", action="append", default=[], help="an upstream patch applied (repeatable)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    manifest = {
        "board": args.board,
        "machine": "mps2-an385",
        "nic": "lan9118",
        "micropython": {
            "version": args.micropython,
            "debian_source": f"micropython {args.micropython_deb}",
            # Not stock upstream: these small patches (firmware/patches/) are applied first.
            "patches": sorted(Path(p).name for p in args.patch),
        },
        "lwip": {"version": args.lwip, "debian_source": f"lwip {args.lwip_deb}"},
        "mbedtls": {"version": args.mbedtls, "debian_source": f"mbedtls {args.mbedtls_deb}"},
        "elf": args.elf.name,
        "sha256": hashlib.sha256(args.elf.read_bytes()).hexdigest(),
        "size": args.elf.stat().st_size,
        "features": features(args.config),
        "modules": modules(args.obj_dir / "genhdr", args.obj_dir / "frozen_content.c"),
    }
    text = json.dumps(manifest, indent=2) + "\n"
    # Rewrite only on change, so an unchanged build leaves every timestamp alone.
    if not args.output.exists() or args.output.read_text() != text:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
