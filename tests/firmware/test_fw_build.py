"""The firmware build: a second `make -C firmware` is a no-op; the manifest describes the elf;
an unknown MICROPYTHON_VERSION is refused with the list of known ones."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
MANIFEST = FIRMWARE_DIR / "build" / "manifest.json"


def make(*args: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    p = subprocess.run(["make", "-C", str(FIRMWARE_DIR), *args], capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def known_versions() -> list[str]:
    text = (FIRMWARE_DIR / "sources.mk").read_text()
    m = re.search(r"^MICROPYTHON_VERSIONS\s*:?=\s*(.+)$", text, re.M)
    assert m, "sources.mk has no MICROPYTHON_VERSIONS"
    return m.group(1).split()


def test_rebuild_without_changes_is_a_noop(firmware_elf: Path) -> None:
    first, _ = make()
    assert first.returncode == 0, first.stdout + first.stderr
    mtime, manifest = firmware_elf.stat().st_mtime_ns, MANIFEST.read_bytes()
    manifest_mtime = MANIFEST.stat().st_mtime_ns
    second, _ = make()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "BUILD" not in second.stdout + second.stderr, f"second make rebuilt:\n{second.stdout}"
    assert firmware_elf.stat().st_mtime_ns == mtime, "firmware.elf was rewritten"
    assert MANIFEST.read_bytes() == manifest and MANIFEST.stat().st_mtime_ns == manifest_mtime


def test_manifest_describes_the_elf(firmware_elf: Path) -> None:
    m = json.loads(MANIFEST.read_text())
    assert m["board"] == "MPS2_AN385_LAN"
    assert m["micropython"]["version"] == known_versions()[0]
    assert m["lwip"]["version"]
    assert m["sha256"] == hashlib.sha256(firmware_elf.read_bytes()).hexdigest()


def test_unknown_version_lists_the_available_ones() -> None:
    p, _ = make("MICROPYTHON_VERSION=9.9.9", timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "9.9.9" in out
    for v in known_versions():
        assert v in out, f"error does not list {v}: {out.strip()}"
