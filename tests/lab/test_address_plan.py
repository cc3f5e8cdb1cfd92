"""The address plan follows the node count (pure, no Docker): the smallest aligned block that
holds the node containers and the guests' DHCP pool, laid out as the /24 is (docs/topology.md)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.topology import MAX_NODES, Topology, subnet_for

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
B16 = IPv4Network("10.77.0.0/16")


def load(lab: str, nodes: int) -> Topology:
    return Topology.load(lab, COMPOSE, nodes=nodes)


@pytest.mark.parametrize("name", ["default", "sc1", "x"])
@pytest.mark.parametrize("nodes", [1, 2, 62])
def test_a_24_lab_is_what_it_always_was(name: str, nodes: int) -> None:
    t = load(name, nodes)
    o = int(t.subnet.network_address)
    assert t.subnet.prefixlen == 24 and t.subnet == subnet_for(name, IPv4Network("10.77.0.0/24"))
    assert (int(t.gateway) - o, int(t.services_ip) - o) == (1, 2)
    assert t.ip_range == IPv4Network((o + 64, 26))
    assert (int(t.dhcp_start) - o, int(t.dhcp_end) - o) == (128, 254)
    assert t.capacity == 62


PLAN = [(63, 23), (64, 23), (126, 23), (127, 22), (128, 22), (254, 22), (256, 21)]


@pytest.mark.parametrize(("nodes", "prefix"), PLAN)
def test_the_subnet_grows_with_the_node_count(nodes: int, prefix: int) -> None:
    for name in ("default", "sc1", "bench"):
        t = load(name, nodes)
        assert t.subnet.prefixlen == prefix, (name, nodes, t.subnet)
        assert t.capacity >= nodes
        # the smallest that holds them: one size down does not
        assert t.with_prefix(prefix + 1).capacity < nodes


@pytest.mark.parametrize("name", ["default", "sc1", "bench", "x"])
@pytest.mark.parametrize("nodes", [64, 128, 256])
def test_a_bigger_block_is_laid_out_as_the_24(name: str, nodes: int) -> None:
    t = load(name, nodes)
    net, size = int(t.subnet.network_address), t.subnet.num_addresses
    assert t.subnet.subnet_of(B16) and net % size == 0  # aligned
    assert (int(t.gateway) - net, int(t.services_ip) - net) == (1, 2)
    for name in ("mqtt", "www", "ntp"):
        a = t.service_ip(name)
        assert a not in t.ip_range and not t.dhcp_start <= a <= t.dhcp_end
    # containers in the second quarter, guests in the second half, up to the last address but one
    assert t.ip_range == IPv4Network((net + size // 4, t.subnet.prefixlen + 2))
    assert int(t.dhcp_start) == net + size // 2 and int(t.dhcp_end) == net + size - 2
    assert t.ip_range.subnet_of(t.subnet) and t.dhcp_end in t.subnet
    assert t.dhcp_start not in t.ip_range and t.dhcp_end not in t.ip_range
    env = t.env()
    assert env["MPLAB_SUBNET"] == str(t.subnet) and env["MPLAB_IP_RANGE"] == str(t.ip_range)
    assert env["MPLAB_DHCP_START"] == str(t.dhcp_start) and env["MPLAB_DHCP_END"] == str(t.dhcp_end)


def test_bigger_labs_never_take_the_default_labs_24() -> None:
    home = IPv4Network("10.77.0.0/24")
    names = [f"l{i}" for i in range(300)]
    for prefix in (23, 22, 21):
        for n in names:
            s = subnet_for(n, home, prefix=prefix)
            assert s.prefixlen == prefix and s.subnet_of(B16) and not s.overlaps(home), (n, prefix, s)


def test_ipv6_prefix_stays_distinct_per_block() -> None:
    seen: dict[str, IPv4Network] = {}
    for n in ("default", "sc1", "sc2", "bench", "apps"):
        for nodes in (2, 64, 128, 256):
            t = load(n, nodes)
            other = seen.get(str(t.subnet6))
            assert other is None or other == t.subnet or other.overlaps(t.subnet), (n, nodes, t.subnet6)
            seen[str(t.subnet6)] = t.subnet


def test_scaling_composes_and_returns() -> None:
    t = load("sc1", 2)
    assert t.with_prefix(21).with_prefix(24) == t
    assert t.with_prefix(22).with_prefix(21) == t.with_prefix(21)


def test_the_measured_limit_is_one_clear_line() -> None:
    assert load("sc1", MAX_NODES).capacity >= MAX_NODES
    with pytest.raises(ConfigError) as ei:
        load("sc1", MAX_NODES + 1)
    msg = str(ei.value)
    assert "\n" not in msg and f"1..{MAX_NODES}" in msg and "measured" in msg


def test_default_lab_at_256_keeps_its_addresses() -> None:
    t = load("default", 256)
    assert t.subnet == IPv4Network("10.77.0.0/21") and t.gateway == IPv4Address("10.77.0.1")
    assert t.services_ip == IPv4Address("10.77.0.2") and str(t.subnet6) == "fd6d:706c:6162:4d00::/64"
