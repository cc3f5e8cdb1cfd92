"""socket(): creating sockets is silent on the wire; bad arguments give OSError."""

from __future__ import annotations

import time

import pytest
from scapy.layers.inet import IP

from lab import packets as _w
from lab.snippet import run


def _quiet(wire, ip: str, settle: float = 0.5) -> list:
    time.sleep(settle)  # nothing to wait for: we assert that nothing happens
    return [p for p in wire.packets() if IP in p and p[IP].src == ip]


@pytest.mark.check("socket", "STREAM/DGRAM/RAW creation sends nothing")
@pytest.mark.parametrize(
    "args",
    [
        "",
        "socket.AF_INET, socket.SOCK_STREAM",
        "socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP",
        "socket.AF_INET, socket.SOCK_DGRAM",
        "socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP",
        "socket.AF_INET, socket.SOCK_RAW, 1",
    ],
    ids=["default", "stream", "stream-tcp", "dgram", "dgram-udp", "raw-icmp"],
)
def test_create_silent(node, wire, args):
    r = run(node, f"s = socket.socket({args})\nrep = repr(s)\ns.close()", "rep")
    assert r.ok, r
    assert r.value.startswith("<socket"), r
    sent = _quiet(wire, node.ip)
    assert not sent, "socket() put packets on the wire:\n" + _w.summary(sent)


@pytest.mark.check("socket", "bad type: OSError EINVAL")
def test_bad_type(node, wire):
    r = run(node, "socket.socket(socket.AF_INET, 99)")
    assert r.errno == "EINVAL", r
    assert not _quiet(wire, node.ip, 0.2)


@pytest.mark.check("socket", "bad family: OSError EAFNOSUPPORT")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip stores the family without checking it (socket(99, 1) makes an IPv4 TCP "
    "socket); CPython/Linux raise EAFNOSUPPORT. No upstream report found (searched: modlwip "
    "socket family not checked, invalid family, EAFNOSUPPORT)",
)
def test_bad_family(node, wire):
    r = run(node, "s = socket.socket(99, socket.SOCK_STREAM)\ns.close()")
    assert r.errno == "EAFNOSUPPORT", r


@pytest.mark.check("socket", "bad proto for STREAM: OSError EPROTONOSUPPORT")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip ignores proto for STREAM/DGRAM (socket(AF_INET, SOCK_STREAM, 17) works); "
    "CPython/Linux raise EPROTONOSUPPORT. No upstream report found (searched: modlwip socket "
    "proto argument ignored, SOCK_STREAM IPPROTO_UDP, EPROTONOSUPPORT)",
)
def test_bad_proto(node, wire):
    r = run(node, "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP)\ns.close()")
    assert r.errno == "EPROTONOSUPPORT", r


@pytest.mark.check("socket", "wrong argument types: TypeError")
def test_bad_arg_type(node):
    r = run(node, "socket.socket('x')")
    assert r.kind == "exc" and r.value.startswith("TypeError"), r
