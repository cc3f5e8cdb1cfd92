"""Which firmware a scenario runs on: a MicroPython version (built with ``make -C firmware``
when needed) or a path to a firmware.elf, with its manifest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LabError
from .model import VERSION_RE, Progress


@dataclass
class Firmware:
    label: str  # "1.25.0" or "custom-<sha8>"
    elf: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str((self.manifest.get("micropython") or {}).get("version") or "unknown")


def repo_root() -> Path:
    """The checkout that holds lab/ and firmware/."""
    return Path(__file__).resolve().parents[2]


def known_versions(root: Path | None = None) -> list[str]:
    """The buildable MicroPython versions (firmware/sources.mk), the default first."""
    mk = (root or repo_root()) / "firmware" / "sources.mk"
    if mk.is_file():
        m = re.search(r"^MICROPYTHON_VERSIONS\s*:?=\s*(.+)$", mk.read_text(), re.M)
        if m:
            return m.group(1).split()
    return []


def resolve_firmware(
    spec: str,
    *,
    base: Path | None = None,
    build: bool = True,
    progress: Progress | None = None,
    check_only: bool = False,
) -> Firmware:
    """A version (built with ``make -C firmware`` if needed) or a path to an ELF.

    ``check_only``: the same checks (a known version, an existing ELF file), nothing built;
    ``repro --check`` uses it, so that it accepts exactly what a run accepts.
    """
    root = repo_root()
    if VERSION_RE.match(spec):
        versions = known_versions(root)
        if versions and spec not in versions:
            raise ConfigError(f"unknown firmware version {spec}: buildable versions are {', '.join(versions)}")
        out = root / "firmware" / "build"
        if versions and spec != versions[0]:
            out = out / spec
        elf = out / "firmware.elf"
        if check_only:
            return Firmware(spec, elf, {})
        if build:
            if progress:
                progress(f"firmware {spec}: make -C firmware MICROPYTHON_VERSION={spec}")
            p = subprocess.run(
                ["make", "-C", str(root / "firmware"), f"MICROPYTHON_VERSION={spec}"],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if p.returncode != 0:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
                raise LabError(f"firmware {spec}: build failed: {tail[0]}")
        if not elf.is_file():
            raise LabError(f"firmware {spec}: {elf} missing; fix: make -C firmware MICROPYTHON_VERSION={spec}")
        man = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
        return Firmware(spec, elf, man)
    p = Path(spec)
    if not p.is_absolute() and base is not None and (base / p).is_file():
        p = base / p
    if p.is_dir():
        p = p / "firmware.elf"
    if not p.is_file():
        raise ConfigError(f"firmware {spec!r}: not a version (x.y.z) nor an existing file; fix: give a path to a .elf")
    data = p.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ConfigError(f"firmware {p}: not an ELF file; fix: give the firmware.elf your build produced")
    sha = hashlib.sha256(data).hexdigest()
    man_path = p.parent / "manifest.json"
    man: dict[str, Any] = {}
    if man_path.is_file():
        with contextlib.suppress(ValueError):
            man = json.loads(man_path.read_text())
    if man.get("sha256") != sha:
        man = {"elf": str(p.resolve()), "sha256": sha, "size": len(data), "note": "no matching manifest.json beside it"}
    return Firmware(f"custom-{sha[:8]}", p.resolve(), man)
