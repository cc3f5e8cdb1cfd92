"""The short soak (issue 12), about a minute: `make soak` at a smaller scale (lab/soak.py).

TCP echo guest <-> host under 10 % loss with every message CRC-checked at both ends, then
random node kills, link flaps and guest resets in a 4-node lab, each reported with its
evidence while the other nodes keep working; `down` leaves nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import soak

pytestmark = pytest.mark.docker


def test_short_soak(tmp_path: Path) -> None:
    rep = soak.run(echo_seconds=20, chaos_seconds=30, out=tmp_path, lab_name="tsoak", log=print)
    e = rep["echo"]
    assert e["guest"]["messages"] > 0 and e["guest"]["corrupt"] == 0 and e["host"]["corrupt"] == 0, e
    assert e["host"]["messages"] == e["guest"]["messages"] and e["host"]["out_of_order"] == 0, e
    faults = rep["chaos"]["faults"]
    assert {f["kind"] for f in faults} == {"kill", "flap", "reset"}, faults
    assert all(f["ok"] for f in faults), faults
    assert rep["chaos"]["leftovers"] == []
    assert (tmp_path / "report.md").is_file()
