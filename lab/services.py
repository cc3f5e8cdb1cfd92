"""What the services container serves to the guests: the lab's one table of its peers' ports.

The services image (images/services/peers.py) runs these servers; it cannot import the lab,
so its own ``PORTS`` table must equal this one (tests/scenarios/test_scenario_schema.py checks
that). Everything in the lab that needs a service's port (scenario ``kind: services`` peers,
docs) reads it from here.

The lab's real service daemons (Mosquitto, nginx, chrony: ``mqtt.lab``, ``www.lab``,
``ntp.lab``, each in a container of its own) are another table: lab/daemons.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    proto: str  # tcp | udp
    port: int
    what: str


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service("tcp_echo", "tcp", 7, "echo (RFC 862)"),
        Service("tcp_discard", "tcp", 9, "discard (RFC 863)"),
        Service("udp_echo", "udp", 7, "echo (RFC 862)"),
        Service("http", "tcp", 80, "HTTP: GET /, GET /bytes/<n>, POST /echo"),
    )
}
PORTS: dict[str, int] = {name: s.port for name, s in SERVICES.items()}
