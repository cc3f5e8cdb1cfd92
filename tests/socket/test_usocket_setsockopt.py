"""setsockopt(): SO_REUSEADDR's effect on UDP binds, option errors, TCP_NODELAY.
(SO_REUSEADDR against TIME_WAIT is in test_usocket_server.py.)"""

from __future__ import annotations

import pytest

from lab.snippet import run


@pytest.mark.check("setsockopt", "SO_REUSEADDR on both UDP sockets: second bind succeeds; without: EADDRINUSE")
def test_reuseaddr_udp(node, wire, port):
    r = run(
        node,
        f"a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\na.bind(('0.0.0.0', {port}))\n"
        "b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"try:\n    b.bind(('0.0.0.0', {port}))\nfinally:\n    a.close()\n    b.close()",
    )
    assert r.errno == "EADDRINUSE", r
    r = run(
        node,
        "a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"a.bind(('0.0.0.0', {port + 1}))\nb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"try:\n    b.bind(('0.0.0.0', {port + 1}))\nfinally:\n    a.close()\n    b.close()",
    )
    assert r.ok, r


@pytest.mark.check("setsockopt", "bad level: OSError")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip's setsockopt ignores the level argument (any level sets the option); "
    "CPython/Linux give ENOPROTOOPT. No upstream report found (searched: modlwip setsockopt "
    "level ignored, SOL_SOCKET/IPPROTO_IP level, ENOPROTOOPT)",
)
def test_bad_level(node):
    r = run(node, "s = socket.socket()\ntry:\n    s.setsockopt(12345, socket.SO_REUSEADDR, 1)\nfinally:\n    s.close()")
    assert r.kind == "err", r


@pytest.mark.check("setsockopt", "bad option: OSError")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip prints 'Warning: lwip.setsockopt() not implemented' and returns None for an "
    "unknown option; CPython/Linux give ENOPROTOOPT. Upstream: "
    "https://github.com/micropython/micropython/issues/2691 ('lwip setsockopt() unimplemented', "
    "closed; about the missing options, not the errno); no report of the warning-instead-of-error",
)
def test_bad_option(node):
    r = run(node, "s = socket.socket()\ntry:\n    s.setsockopt(socket.SOL_SOCKET, 9999, 1)\nfinally:\n    s.close()")
    assert r.kind == "err", r


@pytest.mark.check("setsockopt", "known options are accepted (SO_REUSEADDR, SO_BROADCAST, TCP_NODELAY)")
def test_known_options(node):
    r = run(
        node,
        "s = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
        "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\ns.close()",
        "1",
    )
    assert r.ok, r
