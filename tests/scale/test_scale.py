"""A 64-node lab comes up, every guest leased and answering, and goes down (issue 16).

64 nodes is past the /24 a lab used to be limited to: the lab gets a /23 (docs/topology.md).
`make test-scale` runs it alone; it is in `make test` too (about 1 min here, docs/scale-out.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

import pytest

from lab import Lab, Node

pytestmark = pytest.mark.docker
NODES = 64


def leftovers(lab: Lab) -> list[str]:
    left = [f"container {c.name}" for c in lab.runtime.containers(lab.name)]
    left += [f"network {n}" for n in lab.runtime.networks(lab.name)]
    link = subprocess.run(["ip", "link", "show", lab.bridge], capture_output=True, text=True, timeout=10)
    if link.returncode == 0:
        left.append(f"bridge {lab.bridge}")
    if lab.run_dir.exists():
        left.append(f"run dir {lab.run_dir}")
    return left


def test_64_nodes_up_leased_answering_and_down() -> None:
    lab = Lab(os.environ.get("MPLAB_SCALE_LAB", "tscale"), progress=None)
    lab.down()  # what a killed run left
    t0 = time.monotonic()
    try:
        nodes = lab.up(nodes=NODES)
        up_s = time.monotonic() - t0
        topo = lab.topology
        assert topo.subnet.prefixlen == 23 and len(nodes) == NODES, (topo.subnet, len(nodes))
        leases = lab.leases()
        ips = [leases.get(nd.mac) for nd in nodes]
        assert None not in ips, [nd.name for nd in nodes if nd.mac not in leases]
        assert len(set(ips)) == NODES
        assert all(topo.dhcp_start <= IPv4Address(ip) <= topo.dhcp_end for ip in ips if ip)
        assert all(IPv4Address(nd.container_ip) in topo.ip_range for nd in nodes)

        def ask(nd: Node) -> str:
            return nd.exec("print(6 * 7)", timeout=60).strip()

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(ask, nodes))
        assert answers == ["42"] * NODES
        print(f"{NODES} nodes up in {up_s:.1f} s on {topo.subnet}")
    finally:
        lab.close()
        lab.down()
    assert leftovers(lab) == []
