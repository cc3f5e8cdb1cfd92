"""The scenario keys for MQTT applications (no Docker): the `restart` action, the
`mqtt_subscriber` peer, the `mqtt` assertion, `topology.mqtt_persistence`; the subscriber's
counter check; x-mplab.mqtt_persistence. The real run is examples/mqtt-sensor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import scenario as sc
from lab.errors import ConfigError, LabError
from lab.lanservices import restart
from lab.mqtt_peer import counter, packet
from lab.runtime import ComposeRuntime
from lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
name: t-mqtt
firmware: 1.25.0
topology: {nodes: 1, mqtt_persistence: true}
peers:
  - {name: sub, kind: mqtt_subscriber, topics: [sensors/node1/count]}
timeline:
  - id: flap
    link: {node: node1, up: false}
  - id: bounce
    restart: {service: mqtt, timeout: 30}
assertions:
  - mqtt: {peer: sub, topic: sensors/node1/count, counter: complete, at_least: 5, qos: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yml"
    p.write_text(text)
    return p


def test_good_mqtt_scenario_loads(tmp_path: Path) -> None:
    scn = sc.load(write(tmp_path, GOOD))
    assert scn.mqtt_persistence is True
    assert [(p.kind, p.port, p.options["topics"]) for p in scn.peers] == [
        ("mqtt_subscriber", 1883, ["sensors/node1/count"])
    ]
    assert scn.timeline[1].action == "restart" and scn.timeline[1].args == {"service": "mqtt", "timeout": 30}
    assert scn.assertions[0].kind == "mqtt"
    assert sc.load(write(tmp_path, GOOD.replace(", mqtt_persistence: true", ""))).mqtt_persistence is None


@pytest.mark.parametrize(
    ("old", "new", "msg"),
    [
        ("service: mqtt,", "service: mqqt,", "restart.service: unknown service 'mqqt'; fix: did you mean `mqtt`?"),
        ("service: mqtt,", "", "restart: `service` is missing"),
        ("timeout: 30", "timeout: 0", "restart.timeout"),
        ("topics: [sensors/node1/count]", "topics: []", "peers[0].topics: no topics"),
        ("topics: [sensors/node1/count]", "port: 1883", "peers[0]: `topics` is missing"),
        ("kind: mqtt_subscriber", "kind: udp", "unknown field"),
        ("{peer: sub,", "{peer: nosuch,", "assertions[0].mqtt.peer: no mqtt_subscriber peer 'nosuch'"),
        ("counter: complete", "counter: strict", "unknown counter check 'strict'"),
        ("mqtt_persistence: true", "mqtt_persistence: yes please", "topology.mqtt_persistence"),
    ],
)
def test_bad_mqtt_keys_name_file_line_and_fix(tmp_path: Path, old: str, new: str, msg: str) -> None:
    assert old in GOOD
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(write(tmp_path, GOOD.replace(old, new, 1)))
    text = str(ei.value)
    assert msg in text and "; fix: " in text and "\n" not in text, text
    assert text.startswith(f"{tmp_path / 's.yml'}:"), text


def test_unknown_service_is_one_line_from_the_cli(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("service: mqtt,", "service: redis,"))
    r = subprocess.run(
        [sys.executable, "-m", "lab", "repro", "--check", str(p)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown service 'redis'" in lines[0] and "mqtt, www, ntp" in lines[0], r.stderr


def test_restart_of_an_unknown_service_fails_before_docker(tmp_path: Path) -> None:
    topo = Topology.load(lab="exmu", compose_file=REPO / "docker-compose.yml")
    with pytest.raises(LabError, match=r"unknown service 'redis'; fix: use one of mqtt, www, ntp"):
        restart(ComposeRuntime(docker="/nonexistent/docker"), topo, "redis")


def test_counter_finds_every_gap_and_counts_duplicates() -> None:
    c = counter([b"1", b"2", b"2", b"5", b"4", b"x"])
    assert (c.received, c.duplicates, c.highest, c.missing, c.not_integers) == (6, 1, 5, [3], 1)
    assert "1 missing (3)" in c.describe() and "1 payload(s) not an integer" in c.describe()
    whole = counter([str(i).encode() for i in (3, 1, 2)])
    assert whole.missing == [] and "none missing" in whole.describe(at_least=3)
    assert "fewer than 10 values" in whole.describe(at_least=10)
    assert counter([]).highest == 0


def test_mqtt_packet_remaining_length_is_a_varint() -> None:
    assert packet(0xC0, b"") == b"\xc0\x00"
    assert packet(0x30, b"x" * 200)[:3] == b"\x30\xc8\x01"  # 200 = 0x48 | 0x80, then 1


def test_x_mplab_mqtt_persistence(tmp_path: Path) -> None:
    base = (REPO / "docker-compose.yml").read_text()
    assert "mqtt_persistence: false" in base
    on = tmp_path / "on.yml"
    on.write_text(base.replace("mqtt_persistence: false", "mqtt_persistence: true", 1))
    assert Topology.load(lab="exmu", compose_file=on).env()["MPLAB_MQTT_PERSISTENCE"] == "true"
    assert Topology.load(lab="exmu", compose_file=REPO / "docker-compose.yml").env()["MPLAB_MQTT_PERSISTENCE"] == (
        "false"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(base.replace("mqtt_persistence: false", "mqtt_persistence: sometimes", 1))
    with pytest.raises(ConfigError, match=r"x-mplab.mqtt_persistence is 'sometimes', not true or false; fix: "):
        Topology.load(lab="exmu", compose_file=bad)
