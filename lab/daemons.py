"""The lab's service daemons: what may be named in ``x-mplab.services`` (docs/services.md).

Data only, so that the topology can validate its ``services:`` list and place each daemon at
its address. Each daemon is a real server from Debian's packages, in a container of its own
(compose service ``<name>``, role ``mplab-services <name>``), with the DNS name
``<name>.<domain>`` and a fixed host number in the lab's /24 and its IPv6 /64.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Daemon:
    name: str  # the x-mplab.services name, the compose service and the DNS label
    host: int  # host number: subnet + host (IPv4), subnet6 + 0x<host> (IPv6: ::11 for host 11)
    ports: tuple[str, ...]  # "1883/tcp", ...
    tls_ports: tuple[int, ...]  # the ports that speak TLS with the lab CA's certificate
    package: str  # the Debian package that provides the daemon
    what: str


DAEMONS: dict[str, Daemon] = {
    d.name: d
    for d in (
        Daemon("mqtt", 11, ("1883/tcp", "8883/tcp"), (8883,), "mosquitto", "MQTT (Mosquitto); 8883 over TLS"),
        Daemon("www", 12, ("80/tcp", "443/tcp"), (443,), "nginx", "HTTP(S) (nginx): run_dir/www"),
        Daemon("ntp", 13, ("123/udp",), (), "chrony", "NTP (chrony), the host's clock as a local stratum-10 source"),
    )
}
NAMES: tuple[str, ...] = tuple(DAEMONS)
