"""socket.connect(): handshake, refusal, timeouts against a silent peer, non-blocking."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from lab import packets as _tcp
from lab import peers as _host
from lab.snippet import run

pytestmark = pytest.mark.usefixtures("wire")


@pytest.mark.check("connect", "SYN (MSS, window) / SYN-ACK / ACK to a listening peer")
def test_connect_handshake(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        r = run(node, f"s = socket.socket()\ns.connect(({addrs.host!r}, {port}))", "1")
        assert r.ok, r
        conn, peer = srv.conn()
        syn, synack, ack = wire.expect_sequence(
            [
                (TCP, {"flags": "S", "src": node.ip, "dst": addrs.host, "dport": port}),
                (TCP, {"flags": "SA", "src": addrs.host, "dst": node.ip, "sport": port}),
                (TCP, {"flags": "A", "src": node.ip, "dst": addrs.host, "dport": port}),
            ],
            within=2.0,
        )
        run(node, "s.close()")
    # the peer the host saw is the guest, from the port in its SYN
    assert peer == (node.ip, syn[TCP].sport)
    assert 1024 <= syn[TCP].sport <= 65535
    opts = _tcp.tcp_options(syn)
    assert "MSS" in opts, f"SYN without MSS option: {syn[TCP].options}"
    assert 536 <= opts["MSS"] <= 1460, opts  # fits the 1500-byte Ethernet MTU
    assert syn[TCP].window > 0
    assert synack[TCP].ack == syn[TCP].seq + 1
    assert ack[TCP].seq == syn[TCP].seq + 1 and ack[TCP].ack == synack[TCP].seq + 1


@pytest.mark.check("connect", "closed port: RST back, OSError at once")
def test_connect_closed_port_rst(node, wire, addrs, port):
    r = run(node, f"s = socket.socket()\ntry:\n    s.connect(({addrs.host!r}, {port}))\nfinally:\n    s.close()")
    assert r.kind == "err", r
    assert r.ms < 1000, r
    wire.expect(TCP, flags="S", src=node.ip, dst=addrs.host, dport=port)
    wire.expect(TCP, flags="RA", src=addrs.host, dst=node.ip, sport=port)


@pytest.mark.check("connect", "closed port: errno ECONNREFUSED")
@pytest.mark.xfail(
    strict=True,
    reason="modlwip maps lwIP's ERR_RST in SYN_SENT to ECONNRESET, CPython/Linux give "
    "ECONNREFUSED (extmod/modlwip.c _lwip_tcp_error stores ERR_RST for every state). No modlwip "
    "report found (searched: modlwip connect refused ECONNRESET ECONNREFUSED); the same errno was "
    "reported upstream only for the esp32 port's modsocket, in the comments of "
    "https://github.com/micropython/micropython/pull/5788",
)
def test_connect_closed_port_errno(node, wire, addrs, port):
    r = run(node, f"s = socket.socket()\ntry:\n    s.connect(({addrs.host!r}, {port}))\nfinally:\n    s.close()")
    wire.expect(TCP, flags="RA", src=addrs.host, dst=node.ip, sport=port)
    assert r.errno == "ECONNREFUSED", r


@pytest.mark.check("connect", "silent peer + settimeout(t): fails after ~t, SYN retransmits")
def test_connect_timeout_silent_peer(node, wire, addrs, port):
    t = 4.0
    with _host.silent_tcp_peer(addrs.host, port):
        r = run(
            node,
            f"s = socket.socket()\ns.settimeout({t})\ntry:\n    s.connect(({addrs.host!r}, {port}))\n"
            "finally:\n    s.close()",
            timeout=t + 10,
        )
    assert r.errno == "ETIMEDOUT", r
    assert t - 0.05 <= r.seconds <= t + 0.5, r
    syns = [
        p
        for p in _tcp.tcp_packets(wire.packets(), src=node.ip, dst=addrs.host, dport=port)
        if _tcp.has_flags(p, "S", exact=True)
    ]
    assert len(syns) >= 2, "no SYN retransmission within the timeout:\n" + _tcp.summary(syns)
    assert len({p[TCP].seq for p in syns}) == 1, "retransmitted SYNs must reuse the ISN"
    gaps = _tcp.gaps(_tcp.times_of(syns))
    print(f"SYN retransmit gaps (s): {gaps}")
    # lwIP: initial RTO 3 s (sa=0, sv=6 ticks of 500 ms), doubling per retransmit
    assert 2.5 <= gaps[0] <= 3.6, gaps
    # nothing from the host answered
    assert not [p for p in _tcp.tcp_packets(wire.packets(), src=addrs.host, dst=node.ip, sport=port)]


@pytest.mark.check("connect", "non-blocking to a silent peer: EINPROGRESS, SYN sent")
def test_connect_nonblocking_einprogress(node, wire, addrs, port):
    with _host.silent_tcp_peer(addrs.host, port):
        r = run(
            node,
            f"s = socket.socket()\ns.setblocking(False)\ntry:\n    s.connect(({addrs.host!r}, {port}))\n"
            "finally:\n    s.close()",
        )
        assert r.errno == "EINPROGRESS", r
        assert r.ms < 500, r
        wire.expect(TCP, flags="S", src=node.ip, dst=addrs.host, dport=port)


@pytest.mark.check("connect", "non-blocking to a listening peer: EINPROGRESS (no wait)")
@pytest.mark.xfail(
    strict=False,  # racy by nature: whether the SYN-ACK beats the first WFI wake-up
    reason="modlwip's connect() polls once (poll_sockets sleeps in WFI until the next event) "
    "before checking timeout 0, so on a fast LAN the SYN-ACK is in and connect() returns "
    "None (seen in about half the runs); CPython/Linux always give EINPROGRESS. No upstream "
    "report found (searched: modlwip non-blocking connect EINPROGRESS returns None / connected "
    "immediately; nearest, a different errno: https://github.com/micropython/micropython/issues/2930)",
)
def test_connect_nonblocking_fast_peer(node, wire, addrs, port):
    with _host.server(addrs.host, port):
        r = run(
            node,
            f"s = socket.socket()\ns.setblocking(False)\ntry:\n    s.connect(({addrs.host!r}, {port}))\n"
            "finally:\n    s.close()",
        )
        wire.expect(TCP, flags="SA", src=addrs.host, dst=node.ip, sport=port)
        assert r.errno == "EINPROGRESS", r


@pytest.mark.check("connect", "second connect on a connected socket: EISCONN")
def test_connect_twice_eisconn(node, wire, addrs, port):
    with _host.server(addrs.host, port) as srv:
        r = run(
            node,
            f"s = socket.socket()\ns.connect(({addrs.host!r}, {port}))\ntry:\n"
            f"    s.connect(({addrs.host!r}, {port}))\nfinally:\n    s.close()",
        )
        srv.conn()
    assert r.errno == "EISCONN", r
    syns = [p for p in _tcp.tcp_packets(wire.packets(), src=node.ip, dport=port) if _tcp.has_flags(p, "S")]
    assert len(syns) == 1, "the second connect() must not send a SYN:\n" + _tcp.summary(syns)
