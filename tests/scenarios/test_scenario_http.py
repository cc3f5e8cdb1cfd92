"""The scenario keys and actions the application examples use (no Docker): ``www:``,
``certs:``, a dns peer with ``up: false`` and the ``peer`` step that switches it, and the
``http`` step with ``lab.peers.http_request`` under it (against a real CPython HTTPS server on
the loopback, with a throw-away CA)."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import packets, pki
from lab import scenario as sc
from lab.peers import http_request

REPO = Path(__file__).resolve().parents[2]
BASE = """\
name: t-http
firmware: 1.25.0
topology: {nodes: 1}
"""
STEP = "timeline:\n  - http: {to: node1, path: /}\nassertions:\n  - console: {node: node1, match: x}\n"


def write(tmp_path: Path, extra: str, timeline: str = STEP) -> Path:
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "www" / "status.json").write_text('{"ok": true}\n')
    p = tmp_path / "s.yml"
    p.write_text(BASE + extra + timeline)
    return p


def test_the_examples_load() -> None:
    poller = sc.load(REPO / "examples" / "https-poller" / "scenario.yml")
    assert [(w.src.name, w.dst) for w in poller.www] == [("status.json", "/api/status.json")]
    dns = poller.peers[0]
    assert (dns.kind, dns.options["up"], dns.options["mode"]) == ("dns", False, "delay")
    assert [s.action for s in poller.timeline if s.action == "peer"] == ["peer", "peer"]
    mdot = sc.load(REPO / "examples" / "microdot-server" / "scenario.yml")
    assert mdot.certs == ["node1"] and [p.specs for p in mdot.packages] == [["microdot"]]
    https = [s for s in mdot.timeline if s.action == "http" and s.args.get("tls")]
    assert https and all(s.expect is not None for s in https)


def test_www_forms(tmp_path: Path) -> None:
    scn = sc.load(write(tmp_path, "www: [www/status.json, {src: www, dst: /site/}]\ncerts: [node1]\n"))
    assert [(w.src.name, w.dst) for w in scn.www] == [("status.json", "/status.json"), ("www", "/site")]
    assert scn.certs == ["node1"]


@pytest.mark.parametrize(
    ("extra", "timeline", "msg"),
    [
        ("www: [nowhere.json]\n", STEP, "www[0].src: "),
        ("www: [{src: www/status.json, dst: api/x}]\n", STEP, "is not a URL path"),
        ("www: [{src: www/status.json, dst: /a/../b}]\n", STEP, "is not a URL path"),
        ("www: [{src: www/status.json, dest: /x}]\n", STEP, "did you mean `dst`"),
        ("certs: [node2]\n", STEP, "certs[0]: no node 'node2'"),
        ("", "timeline:\n  - http: {to: node1, method: FETCH}\n", "unknown method 'FETCH'"),
        ("", "timeline:\n  - http: {to: node1, path: status}\n", "does not start with /"),
        ("", "timeline:\n  - http: {to: node1, tls: yes-please}\n", "expected true or false"),
        ("", "timeline:\n  - http: {path: /}\n", "add `to: node1`"),
        ("", "timeline:\n  - http: {to: node1, expect: {status: 200}}\n", "unknown field"),
        ("", "timeline:\n  - peer: {name: ghost, up: true}\n", "no dns peer 'ghost'"),
        (
            "peers:\n  - {name: u, kind: udp, port: 0}\n",
            "timeline:\n  - peer: {name: u, up: false}\n",
            "no dns peer 'u'",
        ),
        (
            "peers:\n  - {name: d, kind: dns, query: www.lab, mode: delay}\n",
            "timeline:\n  - peer: {name: d}\n",
            "add `up: true`",
        ),
        (
            "peers:\n  - {name: d, kind: dns, query: www.lab, mode: delay, up: later}\n",
            "timeline:\n  - peer: {name: d, up: true}\n",
            "peers[0].up: expected true or false",
        ),
    ],
)
def test_bad_input_names_file_line_field_and_fix(tmp_path: Path, extra: str, timeline: str, msg: str) -> None:
    tl = timeline + ("assertions:\n  - console: {node: node1, match: x}\n" if "assertions" not in timeline else "")
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(write(tmp_path, extra, tl))
    text = str(ei.value)
    assert msg in text and "; fix: " in text and str(tmp_path / "s.yml") in text, text


def test_a_status_code_given_as_digits_matches_the_http_layers_bytes() -> None:
    assert packets._equal(None, "Status_Code", b"200", 200)
    assert not packets._equal(None, "Status_Code", b"404", 200)


# ---- http_request against a real HTTPS server on the loopback --------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"path={self.path} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.CA.make(d, "http test CA", key="ec")
    leaf = ca.issue("node1.lab", key="ec", ips=["127.0.0.1"])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], ca.cert_path
    srv.shutdown()
    srv.server_close()


def test_http_request_verifies_the_name_against_the_ca(https_server: tuple[int, Path]) -> None:
    port, ca = https_server
    r = http_request("127.0.0.1", ("127.0.0.1", port), path="/api?x=1", host="node1.lab", cafile=ca, timeout=10)
    assert (r.version, r.status, r.body) == ("HTTP/1.0", 200, b"path=/api?x=1 host=node1.lab")
    assert r.header("content-type") == "text/plain"
    assert r.text().startswith("HTTP/1.0 200 OK\n") and r.text().endswith("\n\npath=/api?x=1 host=node1.lab")
    r = http_request("127.0.0.1", ("127.0.0.1", port), "POST", "/led", "node1.lab", b'{"on": 1}', cafile=ca)
    assert (r.status, r.body) == (201, b'{"on": 1}')
    with pytest.raises(ssl.SSLCertVerificationError, match="www.lab"):
        http_request("127.0.0.1", ("127.0.0.1", port), host="www.lab", cafile=ca, timeout=10)
