"""asyncio streams between two guests: an echo server on node1 (``asyncio.start_server``) and a
client on node2 (``asyncio.open_connection``), over plain TCP and over TLS, checked in both
REPLs and on the wire between the two guests' addresses.

A guest REPL blocks while a program runs, so node1's server is made in two steps: one exec
creates it (``asyncio.run(start_server(...))`` returns once the socket listens and the serving
task is queued), then a host thread runs a second exec that drives the loop until the handler
is done. node2's client runs meanwhile on node2's own console. No step depends on timing:
a connection that arrives before the loop runs waits in lwIP's backlog.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import socket
import ssl

import pytest
import tlswire as tw
from scapy.layers.inet import TCP

from lab import packets as _w
from lab import snippet

N = 3000  # bytes for readexactly: more than one segment (MSS 1460) each way
LINE = b"hello asyncio\n"
BYE = b"bye\n"
LOOP_TIMEOUT = 120  # seconds the guests' loops wait (TLS handshakes on a loaded host are slow)

_BLOB = "bytes((i * 7 + 3) % 256 for i in range({n}))"

# node1: the echo handler exercises readline, readexactly, write/drain, close/wait_closed;
# what it saw goes into `log` and `done` lets the loop stop once it has finished.
_SERVER = """\
import asyncio, ssl
asyncio.new_event_loop()  # a clean task queue, whatever an earlier (failed) test left
log = []
done = asyncio.Event()
async def echo(r, w):
    try:
        line = await r.readline()
        w.write(line)
        await w.drain()
        blob = await r.readexactly({n})
        w.write(blob)
        await w.drain()
        bye = await r.readline()
        w.write(bye)
        await w.drain()
        w.close()  # the server closes first: the client must see EOF
        await w.wait_closed()
        log.append((w.get_extra_info('peername')[0], line, blob == {blob}, bye))
    except Exception as e:
        log.append(repr(e))
    if len(log) >= {clients}:
        done.set()
sctx = None
if {tls}:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain('/node1.pem', '/node1.key')
srv = asyncio.run(asyncio.start_server(echo, '0.0.0.0', {port}, ssl=sctx))
"""

_SERVE = snippet.ASYNC_SERVE_UNTIL_DONE + "print(repr(log))\n"

# node2: the client; returns what it read and, over TLS, what the session looks like
_CLIENT = """\
import asyncio, ssl
asyncio.new_event_loop()
async def client():
    kw = {{}}
    if {tls}:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(cadata=open('/ca.pem', 'rb').read())
        kw = {{'ssl': c, 'server_hostname': 'node1.lab'}}
    r, w = await asyncio.open_connection('node1.lab', {port}, **kw)
    w.write({line!r})
    await w.drain()
    line = await r.readline()
    blob = {blob}
    w.write(blob)
    await w.drain()
    back = await r.readexactly({n})
    w.write({bye!r})
    await w.drain()
    bye = await r.readline()
    eof = await r.read(100)
    session = (w.s.cipher(), w.s.getpeercert(True)) if {tls} else None
    w.close()
    await w.wait_closed()
    return line, back == blob, bye, eof, session
print(repr(asyncio.run(asyncio.wait_for(client(), {timeout}))))
"""


class _HostTlsClient:
    """The host's half of the two-client test: handshake and first echo in ``open()``, the rest
    in ``finish()``, so its session stays open on node1 while node2's runs."""

    def __init__(self, ca_path, ip: str, port: int) -> None:
        self.ctx = ssl.create_default_context(cafile=str(ca_path))
        self.addr = (ip, port)
        self.got: list[bytes] = []
        self.t: ssl.SSLSocket | None = None

    def _readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.t.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def open(self) -> None:
        raw = socket.create_connection(self.addr, timeout=LOOP_TIMEOUT)
        self.t = self.ctx.wrap_socket(raw, server_hostname="node1.lab")
        self.t.sendall(LINE)
        self.got.append(self._readexactly(len(LINE)))

    def finish(self) -> None:
        self.t.sendall(_expected_blob())
        self.got.append(self._readexactly(N))
        self.t.sendall(BYE)
        self.got.append(self._readexactly(len(BYE)))
        self.got.append(self.t.recv(100))  # EOF: node1 closes first
        self.close()

    def close(self) -> None:
        """Idempotent; after a failure it lets node1's handler see EOF instead of waiting out its timeout."""
        if self.t is not None:
            self.t.close()
            self.t = None


def _echo(nodes, port: int, tls: bool, second: _HostTlsClient | None = None) -> tuple[list, tuple]:
    """Run the echo: (node1's log, node2's result), both literal_eval'ed from the REPLs.
    With ``second``, node1 serves two clients: ``second`` opens its session first and
    finishes it after node2's client is done, so the two sessions overlap."""
    n1, n2 = nodes[:2]
    blob = _BLOB.format(n=N)
    clients = 2 if second else 1
    n1.exec(_SERVER.format(n=N, blob=blob, tls=tls, port=port, clients=clients), timeout=30)
    with cf.ThreadPoolExecutor(1) as pool:
        served = pool.submit(n1.exec, _SERVE.format(timeout=LOOP_TIMEOUT), LOOP_TIMEOUT + 30)
        try:
            if second:
                second.open()
            out = n2.exec(
                _CLIENT.format(tls=tls, port=port, line=LINE, blob=blob, n=N, bye=BYE, timeout=LOOP_TIMEOUT),
                timeout=LOOP_TIMEOUT + 30,
            )
            if second:
                second.finish()
        finally:
            if second:
                second.close()
            log_out = served.result(LOOP_TIMEOUT + 60)
    return ast.literal_eval(log_out.strip().splitlines()[-1]), ast.literal_eval(out.strip().splitlines()[-1])


def _expected_blob() -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(N))


def _streams(wire, n1, n2, port: int) -> tuple[list, int, bytes, bytes]:
    """(packets, node2's port, what node2 sent, what node1 sent) once node2's FIN is seen."""
    wire.expect(TCP, src=n2.ip, dst=n1.ip, dport=port, where=lambda p: _w.has_flags(p, "F"), within=30.0)
    pkts = wire.packets()
    cport = tw.client_port(pkts, n2.ip, n1.ip, port)
    return pkts, cport, _w.reassemble(pkts, n2.ip, cport, dst=n1.ip), _w.reassemble(pkts, n1.ip, port, dst=n2.ip)


def test_asyncio_echo_between_guests(nodes, wire, port):
    n1, n2 = nodes[:2]
    log, (line, blob_ok, bye, eof, _session) = _echo(nodes, port, tls=False)
    # both REPLs: the server saw node2 and every piece intact; the client got each echo and EOF
    assert log == [(n2.ip, LINE, True, BYE)], log
    assert (line, blob_ok, bye, eof) == (LINE, True, BYE, b""), (line, blob_ok, bye, eof)

    pkts, cport, up, down = _streams(wire, n1, n2, port)
    want = LINE + _expected_blob() + BYE
    assert up == want, f"node2 -> node1 carried {len(up)} bytes, want {len(want)}"
    assert down == want, f"node1 -> node2 carried {len(down)} bytes, want {len(want)}"
    conv = _w.conversation(pkts, (n1.ip, port), (n2.ip, cport))
    assert [_w.flags_of(p) for p in conv[:3]] == ["S", "SA", "A"], _w.flags_of(conv[0])
    assert len(_w.data_segments(pkts, n1.ip, port)) >= 3, "readexactly's 3000 bytes came in one segment"
    fins = [p[TCP].sport for p in conv if _w.has_flags(p, "F")]
    # server closed first (after echoing BYE), the client's FIN follows its EOF
    assert fins[:1] == [port] and cport in fins, _w.summary(conv)
    assert not [p for p in conv if _w.has_flags(p, "R")], "a reset instead of an orderly close"


@pytest.mark.parametrize("key", ["ec", "rsa"], ids=["p256", "rsa2048"])
def test_asyncio_tls_echo_between_guests(nodes, wire, port, pki, push, key):
    """node1 serves TLS with its own key and certificate (pushed as files), node2 verifies it
    against the lab CA: the echo works, cipher() matches the ServerHello, getpeercert(True)
    is node1's certificate on the wire, and the payload never crosses in clear."""
    n1, n2 = nodes[:2]
    leaf = pki.node1[key]
    push(n1, leaf.cert_pem, "/node1.pem")
    push(n1, leaf.key_pem, "/node1.key")
    push(n2, pki.ca.cert_pem, "/ca.pem")
    log, (line, blob_ok, bye, eof, session) = _echo(nodes, port, tls=True)
    assert log == [(n2.ip, LINE, True, BYE)], log
    assert (line, blob_ok, bye, eof) == (LINE, True, BYE, b""), (line, blob_ok, bye, eof)
    (suite, version), der = session
    assert version == "TLSv1.2" and der == leaf.der, session

    _pkts, _cport, up, down = _streams(wire, n1, n2, port)
    sent, answer = tw.flight(up), tw.flight(down)
    hello = tw.client_hello(sent.message(tw.CLIENT_HELLO) or b"")
    chosen = tw.server_hello(answer.message(tw.SERVER_HELLO) or b"")
    assert hello.sni == "node1.lab", hello.sni
    assert tw.mbedtls_name(tw.suite_name(chosen.suites[0])) == suite, (tw.suite_name(chosen.suites[0]), suite)
    assert tw.certificates(answer.message(tw.CERTIFICATE) or b"\0\0\0")[0] == der
    assert LINE not in up and BYE not in down and _expected_blob()[:64] not in up, "plaintext on the wire"


def test_asyncio_tls_two_clients(nodes, wire, lab, port, pki, push):
    """node1's asyncio TLS server holds two sessions at once: the host's (opened first and kept
    open) and node2's; both echoes are whole, and the wire has one ClientHello from each."""
    n1, n2 = nodes[:2]
    leaf = pki.node1["ec"]
    push(n1, leaf.cert_pem, "/node1.pem")
    push(n1, leaf.key_pem, "/node1.key")
    push(n2, pki.ca.cert_pem, "/ca.pem")
    host = _HostTlsClient(pki.ca.cert_path, n1.ip, port)
    log, (line, blob_ok, bye, eof, _session) = _echo(nodes, port, tls=True, second=host)
    assert (line, blob_ok, bye, eof) == (LINE, True, BYE, b""), (line, blob_ok, bye, eof)
    assert host.got == [LINE, _expected_blob(), BYE, b""], [len(g) for g in host.got]
    # node2 finished while the host's session was open; the host's entry comes last
    assert log == [(n2.ip, LINE, True, BYE), (lab.host_ip, LINE, True, BYE)], log

    wire.expect(TCP, src=lab.host_ip, dst=n1.ip, dport=port, where=lambda p: _w.has_flags(p, "F"), within=30.0)
    pkts = wire.packets()
    span = {}
    for client in (lab.host_ip, n2.ip):
        cport = tw.client_port(pkts, client, n1.ip, port)
        hello = tw.flight(_w.reassemble(pkts, client, cport, dst=n1.ip)).message(tw.CLIENT_HELLO)
        assert hello and tw.client_hello(hello).sni == "node1.lab", client
        conv = _w.conversation(pkts, (client, cport), (n1.ip, port))
        span[client] = (float(conv[0].time), max(float(p.time) for p in conv if _w.has_flags(p, "F")))
    # the overlap on the wire: the host's connection opened before node2's and closed after it
    assert span[lab.host_ip][0] < span[n2.ip][0] and span[n2.ip][1] < span[lab.host_ip][1], span
