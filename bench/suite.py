"""Wall time of the full test suite (`python -m pytest tests -q`), as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from bench.common import REPO, Figure


def run(repeat: int = 1, lab: str = "bsuite", timeout: float = 900) -> list[Figure]:
    samples, outcomes = [], []
    for _ in range(repeat):
        t0 = time.monotonic()
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "--mplab-lab", lab],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        samples.append(time.monotonic() - t0)
        tail = [ln for ln in p.stdout.splitlines() if ln.strip()][-1:] or [""]
        outcomes.append(f"exit {p.returncode}: {tail[0]}")
        m = re.search(r"in ([\d.]+)s", tail[0])
        if m is None and p.returncode not in (0, 1):
            raise RuntimeError(f"pytest exit {p.returncode}: {p.stdout[-800:]}{p.stderr[-800:]}")
    return [
        Figure(
            "test_suite_wall",
            "s",
            samples,
            goal="<= 180",
            note=f"`python -m pytest tests -q --mplab-lab {lab}`, {repeat} run(s) (the suite is too long to repeat "
            "5 times inside the 15-minute budget)",
            params={"outcomes": outcomes},
        )
    ]
