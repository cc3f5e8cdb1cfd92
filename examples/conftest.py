"""What the examples' tests share: running an example's scenario in a lab of its own.

Each example's test asks for ``run_scenario(scenario, lab)`` and gets the bundle directory;
the run is `mplab repro` as a user would type it, so the test sees what the user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, str], Path]:
    """``run(scenario, lab)``: `mplab --lab LAB repro SCENARIO --out DIR`; the bundle ``DIR``."""

    def run(scenario: Path, lab: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root (capture on the lab bridge)")
        out = tmp_path_factory.mktemp(scenario.parent.name) / "bundle"
        argv = [sys.executable, "-m", "lab", "--lab", lab, "repro", str(scenario), "--no-build", "--out", str(out)]
        r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=900)
        if not (out / "verdict.json").is_file():
            pytest.fail(f"no verdict (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return out

    return run
