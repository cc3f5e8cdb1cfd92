"""Host-side helpers of the service tests."""

from __future__ import annotations

import ast
import secrets
import socket

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP

from lab import Lab, Node
from lab.packets import payload_of


def tcp_payload(p: object) -> bytes:
    """The TCP payload of an IPv4 packet, else b""."""
    return payload_of(p) if IP in p and TCP in p else b""


def run(node: Node, code: str, timeout: float = 60.0) -> object:
    return ast.literal_eval(node.exec(code, timeout=timeout).strip())


def dns_query(lab: Lab, name: str, qtype: str) -> list[str]:
    """Ask the lab's dnsmasq from the host: the answers' addresses (empty for NXDOMAIN)."""
    q = DNS(id=secrets.randbelow(65536), rd=1, qd=DNSQR(qname=name, qtype=qtype))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(bytes(q), (lab.services_ip, 53))
        r = DNS(s.recv(2048))
    return [str(r.an[i].rdata) for i in range(r.ancount)]
