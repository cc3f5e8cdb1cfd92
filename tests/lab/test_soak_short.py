"""The short soak (issue 12), about a minute: `make soak` at a smaller scale (lab/soak.py).

TCP echo guest <-> host with every message CRC-checked at both ends, once under 10 % loss and
once under delay and jitter both ways (netem, or the userspace engine where the kernel has
none), then random node kills, link flaps and guest resets in a 4-node lab, each reported
with its evidence while the other nodes keep working; `down` leaves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import soak

pytestmark = pytest.mark.docker
LAB = os.environ.get("MPLAB_TEST_SOAK_LAB", "tsoak")


def test_short_soak(tmp_path: Path) -> None:
    rep = soak.run(echo_seconds=10, delay_seconds=10, chaos_seconds=30, out=tmp_path, lab_name=LAB, log=print)
    phases = {e["phase"]: e for e in rep["echo"]}
    assert list(phases) == ["loss", "delay"], rep["echo"]
    for e in rep["echo"]:
        assert e["guest"]["messages"] > 0 and e["guest"]["corrupt"] == 0 and e["host"]["corrupt"] == 0, e
        assert e["host"]["messages"] == e["guest"]["messages"] and e["host"]["out_of_order"] == 0, e
        assert e["host"]["bytes"] == e["guest"]["bytes"] == e["guest"]["messages"] * e["message_bytes"], e
        assert e["ok"], e
    assert phases["loss"]["impairment"] == {"loss": "10%"}
    # The delay was in force: 50 ms each way is at least ~100 ms per round trip (a lower
    # bound: a loaded host only makes it longer).
    assert phases["delay"]["impairment"]["jitter"] and phases["delay"]["mean_round_trip_ms"] >= 80, phases["delay"]
    faults = rep["chaos"]["faults"]
    assert {f["kind"] for f in faults} == {"kill", "flap", "reset"}, faults
    assert all(f["ok"] for f in faults), faults
    assert rep["chaos"]["leftovers"] == []
    md = (tmp_path / "report.md").read_text()
    assert "echo (loss)" in md and "echo (delay)" in md and "delay 50ms, jitter 20ms" in md, md
