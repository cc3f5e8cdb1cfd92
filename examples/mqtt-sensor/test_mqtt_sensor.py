"""examples/mqtt-sensor: the MQTT/TLS sensor against the real lab (a QEMU guest, Mosquitto).

The scenario (scenario.yml) deploys app/ on node1, flaps its link for 5 s, restarts the broker,
and judges the wire (new TLS handshakes, the subscriber's MQTT CONNECT, QoS 1 PUBLISHes) and
the host subscriber's counter (every value 1..N at least once). Both must hold.

It fails when the sensor loses messages: set ``KEEP_UNACKED = False`` in app/main.py and the
mqtt check lists the missing values (README.md, "When it fails").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lab import scenario as sc

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenario.yml"
REPO = HERE.parents[1]
# the lab this run brings up and takes down: the scenario's own name (mqttse52b) unless set
LAB = os.environ.get("MPLAB_EXAMPLE_LAB") or None


def test_scenario_loads() -> None:
    scn = sc.load(SCENARIO)
    assert scn.mqtt_persistence is True
    assert [p.kind for p in scn.peers] == ["mqtt_subscriber"]
    assert [s.action for s in scn.timeline if s.action in ("link", "restart")] == ["link", "link", "restart"]
    assert [a.kind for a in scn.assertions].count("mqtt") == 1


@pytest.mark.docker
def test_sensor_survives_a_link_flap_and_a_broker_restart_without_losing_a_message() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (capture on the lab bridge)")
    scn = sc.load(SCENARIO)
    fw = sc.resolve_firmware(scn.firmware or sc.known_versions()[0], base=HERE, build=False)
    out = REPO / "artifacts" / "examples" / "mqtt-sensor"
    res = sc.run(scn, fw, out=out, lab_name=LAB, progress=print)
    checks = "\n".join(f"{'✓' if c.held else '✗'} {c.label}: {c.detail}" for c in res.checks)
    assert res.verdict == sc.REPRODUCED, f"verdict {res.verdict} ({res.error})\n{checks}\nbundle: {res.bundle}"
    mqtt = [c for c in res.checks if "(mqtt)" in c.label]
    assert len(mqtt) == 1 and mqtt[0].held and "none missing" in mqtt[0].detail, checks
    # the subscriber really was cut off by the restart and came back (a second session)
    sessions = re.search(r"subscriber sessions: (\d+)", mqtt[0].detail)
    assert sessions and int(sessions.group(1)) >= 2, checks
    # ... and the restarted broker still had its session: persistence was on, so no message
    # could fall between the restart and the subscriber's return (README.md, "sound check")
    log = (res.bundle / "peers.log").read_text()
    assert "session present 1, connection 2" in log, (
        f"the restarted broker forgot the subscriber's session; is the services image older than "
        f"x-mplab.mqtt_persistence? rebuild it with `make images`\n{log}"
    )
