"""Socket conformance suite: shared fixtures on top of the lab's pytest plugin.

The lab plugin gives ``lab`` (session), ``node``/``nodes``, ``wire`` and ``host_peer``. This
file adds what only this suite needs:

* the ``check(method, name)`` marker, recorded as JUnit properties for the conformance
  report (lab/conformance.py, `mplab conformance`);
* ``port``: a fresh port per test (tests never share a port, so TIME_WAIT and stale
  listeners of one test cannot leak into another);
* ``addrs``: the lab addresses the tests may use (host, services, an address nobody holds);
* ``addrs6``: the same for IPv6 (the lab's ULA /64), once the host's address is usable.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# 10 ports per test, below both lwIP's (49152+) and Linux's (32768+) ephemeral ranges: a test port
# must never meet a port a guest or the host picked for an earlier connection (EADDRINUSE).
_ports = itertools.count(20000 + (os.getpid() % 100) * 100, 10)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(method, name): the usocket method and the check a test covers")


@pytest.fixture(autouse=True)
def _record_check(request: pytest.FixtureRequest, record_property: Any) -> None:
    m = request.node.get_closest_marker("check")
    if m is not None:
        method, name = m.args[0], m.args[1]
        record_property("method", method)
        record_property("check", name)
    xf = request.node.get_closest_marker("xfail")
    if xf is not None:
        record_property("deviation", xf.kwargs.get("reason", ""))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.stash[_CALL] = rep
    return rep


_CALL = pytest.StashKey[pytest.TestReport]()


@pytest.fixture(autouse=True)
def _keep_evidence(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep the pcap of deviations (xfail/xpass) -- and of every test with
    MPLAB_KEEP_PCAPS=1 -- under artifacts/conformance/<test id>/ for the report. (The lab
    plugin keeps failures' pcaps and console logs itself, under artifacts/<test id>/.)"""
    if "wire" not in request.node.fixturenames:
        yield
        return
    wire = request.getfixturevalue("wire")
    yield
    rep = request.node.stash.get(_CALL, None)
    deviation = rep is not None and hasattr(rep, "wasxfail")
    if not (deviation or os.environ.get("MPLAB_KEEP_PCAPS") == "1") or (rep is not None and rep.failed):
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.replace("::", "__")).strip("_")[:150]
    root = Path(request.config.getoption("--mplab-artifacts", "artifacts")).resolve()
    dst = root / "conformance" / safe / "wire.pcap"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wire.capture.write(), dst)


@pytest.fixture
def port() -> int:
    """A port no other test in this run uses (port..port+9 are the test's)."""
    return next(_ports)


@dataclass(frozen=True)
class Addrs:
    host: str  # the host's address on the lab bridge (the gateway)
    services: str  # dnsmasq + peers
    silent: str  # in the lab subnet, held by nobody (ARP goes unanswered)
    broadcast: str  # the subnet's directed broadcast
    network: ipaddress.IPv4Network


@pytest.fixture(scope="session")
def addrs(lab: Any) -> Addrs:
    net = ipaddress.ip_network(str(lab.topology.subnet))
    host = str(lab.host_ip)
    services = str(lab.services_ip)
    # below the node IPAM range (.64/26) and the guest DHCP pool (.128-.254): nobody holds it
    silent = str(net.network_address + 37)
    return Addrs(host, services, silent, str(net.broadcast_address), net)


@dataclass(frozen=True)
class Addrs6:
    host: str  # the host's IPv6 address on the lab bridge (topology.gateway6)
    services: str  # the services container's fixed IPv6 address
    network: ipaddress.IPv6Network  # the lab's ULA /64 (router advertisements from dnsmasq)
    lab: Any

    def node(self, name: str) -> str:
        """``name``'s SLAAC address (from its MAC), as scapy prints it (compressed, lower case)."""
        return str(self.lab.topology.ip6(name))


def _bindable(ip: str) -> bool:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
        return True
    except OSError:  # EADDRNOTAVAIL while Linux's DAD still holds the address "tentative"
        return False
    finally:
        s.close()


@pytest.fixture(scope="session")
def addrs6(lab: Any) -> Addrs6:
    """The lab's IPv6 addresses. Docker puts gateway6 on the bridge when the lab network is
    made, and Linux runs DAD on it first (about 1 s "tentative", bind() fails with
    EADDRNOTAVAIL): wait until the host can bind it."""
    from lab.util import wait_until

    topo = lab.topology
    host = str(topo.gateway6)
    wait_until(lambda: _bindable(host), 30.0, f"the host's IPv6 address {host} on {lab.bridge} (DAD)")
    return Addrs6(host, str(topo.services_ip6), topo.subnet6, lab)
