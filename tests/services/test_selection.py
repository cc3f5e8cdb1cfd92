"""x-mplab.services picks the daemons that start; a second lab beside the first has a CA of
its own; `down` leaves no daemon, key or run directory behind (docs/services.md).

This brings up a second, one-node lab (`wtgsel`) with only the NTP daemon, next to the
session's lab.
"""

from __future__ import annotations

import dataclasses

from svchelp import dns_query

from lab import Lab, guestfs
from lab.ca import LabCA, fingerprint
from lab.lab import GUEST_CA
from lab.topology import Topology

SECOND = "wtgsel"


def test_services_selects_the_daemons_and_down_removes_every_one_and_every_key(lab: Lab) -> None:
    topo = dataclasses.replace(Topology.load(lab=SECOND, compose_file=lab.topology.compose_file), services=("ntp",))
    other = Lab(topology=topo, progress=None)
    other.down()  # a clean start, whatever an earlier run left
    try:
        other.up(nodes=1, timeout=180)
        run_dir, ca = other.run_dir, other.ca_cert
        # only the daemon asked for runs, and only it has a DNS name
        assert set(other.service_containers()) == {"ntp"}
        assert dns_query(other, "ntp.lab", "A") == [str(topo.service_ip("ntp"))]
        assert dns_query(other, "mqtt.lab", "A") == []
        assert dns_query(other, "www.lab", "AAAA") == []
        # its own CA: not the first lab's, and on its node
        assert fingerprint(ca) != fingerprint(lab.ca_cert)
        assert ca.read_bytes() != lab.ca_cert.read_bytes()
        assert guestfs.get(other.nodes[0], GUEST_CA) == ca.read_bytes()
        assert sorted(p.name for p in (run_dir / "tls").iterdir()) == ["ca.pem"]  # no key for absent daemons
        keys = [LabCA(run_dir).key, run_dir / "tls" / "ca.pem"]
        assert all(k.is_file() for k in keys)
    finally:
        other.down()
    assert other.runtime.containers(SECOND) == []
    assert other.runtime.networks(SECOND) == []
    assert not run_dir.exists() and not any(k.exists() for k in keys)
    # the first lab is untouched
    assert lab.ca_cert.is_file() and set(lab.service_containers()) == set(lab.services)
