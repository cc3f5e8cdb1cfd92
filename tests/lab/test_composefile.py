"""The compose file as the Engine API runtime reads it (lab/runtime/composefile.py): compose's
interpolation, the repo's file resolved for a lab, start order, and one-line errors for what
it does not read. Pure: no Docker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.runtime import composefile
from lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "env", "want"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("${A}", {}, ""),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),  # unset or empty
        ("${A-d}", {"A": ""}, ""),  # unset only
        ("${A-d}", {}, "d"),
        ("$A/$B", {"A": "1", "B": "2"}, "1/2"),
        ("$$A", {"A": "1"}, "$A"),  # $$ is a literal $
        ("a ${A-mqtt www ntp} b", {}, "a mqtt www ntp b"),
    ],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], want: str) -> None:
    assert composefile.interpolate(text, env) == want


def test_a_required_variable_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"\$\{A\} is required: give it.*fix: set A"):
        composefile.interpolate("${A:?give it}", {}, "f.yml")


def test_the_repo_file_resolves_for_a_lab() -> None:
    topo = Topology.load("cfx", REPO / "docker-compose.yml", nodes=3)
    p = composefile.load(topo)
    assert p.name == "mplab-cfx"
    (lan,) = p.networks.values()
    assert lan.name == "mplab-cfx_lan" and lan.internal and lan.enable_ipv6
    assert lan.options["com.docker.network.bridge.name"] == "mplab-cfx"
    assert {c["subnet"] for c in lan.ipam} == {str(topo.subnet), str(topo.subnet6)}
    assert lan.labels["mplab.lab"] == "cfx" and lan.labels["com.docker.compose.project"] == "mplab-cfx"
    node = p.services["node"]
    assert node.image == f"mplab/node:{topo.version}"
    assert node.ports == {f"{topo.console_port}/tcp": ("127.0.0.1", None)}
    assert node.devices == ["/dev/net/tun:/dev/net/tun"] and node.cap_add == ["NET_ADMIN"]
    assert node.stop_timeout == 2 and node.endpoints[0].network == "mplab-cfx_lan"
    mqtt = p.services["mqtt"]  # through the <<: *daemon merge key
    assert mqtt.command == ["mqtt"] and mqtt.depends_on == ("services",)
    assert mqtt.endpoints[0].ipv4_address == str(topo.service_ip("mqtt"))
    assert mqtt.binds == [f"{topo.run_dir}/tls/mqtt:/etc/mplab/tls:ro"]
    labels = p.labels("node", 2)
    assert labels["com.docker.compose.container-number"] == "2" and labels["mplab.role"] == "node"
    assert p.container_name("node", 2) == "mplab-cfx-node-2"


def test_fixed_addresses_start_first_where_a_dynamic_one_could_take_them(tmp_path: Path) -> None:
    """Docker hands out dynamic addresses from the bottom of a range: without an ip_range for
    IPv6, a node started before the daemons took one of their fixed addresses ("Address already
    in use", seen at 32 nodes). The repo's file has ranges for both families: one wave."""
    wanted = ["services", "node", "mqtt", "www", "ntp"]
    p = composefile.load(Topology.load("cfx", REPO / "docker-compose.yml"))
    assert p.start_order(wanted) == [["services"], ["node", "mqtt", "www", "ntp"]]
    f = tmp_path / "docker-compose.yml"
    text = (REPO / "docker-compose.yml").read_text()
    line = "          ip_range: ${MPLAB_IP_RANGE6:-fd6d:706c:6162:4d00::1:0/112}\n"
    assert line in text
    f.write_text(text.replace(line, ""))
    p = composefile.load(Topology.load("cfx", f, version="0.1.0"))
    assert p.start_order(wanted) == [["services"], ["mqtt", "www", "ntp"], ["node"]]


def test_a_changed_setting_changes_the_config_hash(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    shutil.copy(REPO / "docker-compose.yml", f)
    before = composefile.load(Topology.load("cfx", f, version="0.1.0")).services["node"].config_hash
    head, sep, tail = f.read_text().rpartition("stop_grace_period: 2s\n")  # the last: the node's
    f.write_text(head + "stop_grace_period: 3s\n" + tail)
    after = composefile.load(Topology.load("cfx", f, version="0.1.0")).services["node"].config_hash
    assert before != after


@pytest.mark.parametrize(
    ("edit", "msg"),
    [
        (
            (
                "    init: false\n    depends_on: [services]\n    cap_add:",
                "    init: false\n    pid: host\n    depends_on: [services]\n    cap_add:",
            ),
            "services.node.pid is not a key",
        ),
        (
            ("      - /dev/net/tun:/dev/net/tun\n", "      - /dev/net/tun:/dev/net/tun\n    volumes: [data:/data]\n"),
            "names a volume",
        ),
        (
            (
                "    networks:\n      - lan\n    stop_grace_period: 2s",
                "    networks:\n      - wan\n    stop_grace_period: 2s",
            ),
            "names 'wan', which the file does not define",
        ),
    ],
)
def test_what_the_engine_runtime_does_not_read_is_one_line(tmp_path: Path, edit: tuple[str, str], msg: str) -> None:
    f = tmp_path / "docker-compose.yml"
    text = (REPO / "docker-compose.yml").read_text()
    assert edit[0] in text, edit[0]
    f.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as ei:
        composefile.load(Topology.load("cfx", f, version="0.1.0"))
    line = str(ei.value)
    assert msg in line and "\n" not in line and "fix:" in line, line
