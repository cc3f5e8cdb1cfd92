"""lab.deploy on a real guest: a project tree copied only where it changed (bytes counted at
the console, independently of the report), main.py's output after the soft reset, packages
into /lib, and wire assertions above TCP on the guest's own MQTT and TLS traffic.

The MQTT listener here is a few lines of host-side TCP that answer CONNACK and PUBACK, enough
for umqtt.simple to publish; the lab's broker is the services' part.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.contrib.mqtt import MQTT, MQTTConnack, MQTTConnect, MQTTPublish
from scapy.layers.tls.handshake import TLSClientHello

from lab import Node, guestfs, packets
from lab.capture import Wire, WireTimeout
from lab.deploy import deploy, install
from lab.packages import resolve
from lab.peers import HostPeer

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "wthpkg"
WRITE = "_mplab_f.write("  # lab.guestfs.put's one line per chunk


class Counting:
    """The node, with every exec counted: console bytes sent, and file bytes written (the
    payload of guestfs.put's write() literals): the measure the test trusts, not the report."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        self.lab = node.lab
        self.code_bytes = 0
        self.file_bytes = 0

    @property
    def console(self) -> Any:
        return self.node.console

    def exec(self, code: str, timeout: float = 10.0) -> str:
        self.code_bytes += len(code.encode())
        if code.startswith(WRITE):
            self.file_bytes += len(ast.literal_eval(code[len(WRITE) : -1]))
        return self.node.exec(code, timeout=timeout)


def _tree(root: Path, n: int) -> Path:
    (root / "lib" / "wthdep").mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(f"import wthdepmod\nprint('wth-main run', {n}, wthdepmod.V)\n")
    (root / "lib" / "wthdepmod.py").write_text("V = 'mod-1'\n" + "# filler line\n" * 100)
    (root / "lib" / "wthdep" / "__init__.py").write_text("W = 2\n")
    (root / ".hidden").write_text("not deployed\n")
    return root


def _cleanup(node: Node) -> None:
    # the soft reset dropped the REPL's `lan` (docs/conventions.md); later tests use it
    node.exec("import network\nlan = network.LAN()")
    for p in ("/main.py", "/lib/wthdepmod.py", "/lib/wthdep/__init__.py"):
        if guestfs.exists(node, p):
            guestfs.rm(node, p)
    if guestfs.exists(node, "/lib/wthdep"):
        guestfs.rmdir(node, "/lib/wthdep")


def test_deploy_sends_only_what_changed_and_runs_main(node: Node, tmp_path: Path) -> None:
    app = _tree(tmp_path / "app", 1)
    sizes = {f"/{p.relative_to(app).as_posix()}": p.stat().st_size for p in app.rglob("*.py")}
    try:
        c = Counting(node)
        lines: list[str] = []
        rep = deploy(c, app, progress=lines.append)
        assert sorted(rep.sent) == sorted(sizes) and rep.bytes_sent == sum(sizes.values())
        assert c.file_bytes == sum(sizes.values()), "what crossed the console"
        assert any("[1/3]" in ln for ln in lines) and any("[3/3]" in ln for ln in lines), lines
        assert "wth-main run 1 mod-1" in rep.console, rep.console
        assert not guestfs.exists(node, "/.hidden")

        c2 = Counting(node)
        rep2 = deploy(c2, app)
        assert rep2.bytes_sent == 0 and c2.file_bytes == 0 and rep2.sent == []
        assert sorted(rep2.unchanged) == sorted(sizes)
        assert c2.code_bytes < 2000, "one hash exec, no writes"  # the whole second deploy
        assert "wth-main run 1" in rep2.console

        (app / "main.py").write_text("import wthdepmod\nprint('wth-main run', 2, wthdepmod.V)\n")
        c3 = Counting(node)
        rep3 = deploy(c3, app)
        size = (app / "main.py").stat().st_size
        assert rep3.sent == ["/main.py"] and rep3.bytes_sent == size and c3.file_bytes == size
        assert "wth-main run 2 mod-1" in rep3.console, rep3.console
        # the console transcript has the guest's side too (lab.console logs what it reads)
        assert "wth-main run 2" in node.console.transcript
    finally:
        _cleanup(node)


def test_cli_deploy_progress_summary_and_output(node: Node, tmp_path: Path) -> None:
    app = _tree(tmp_path / "app", 3)
    node.close()  # one console client at a time: let the CLI's in
    try:
        p = subprocess.run(
            [sys.executable, "-m", "lab", "--lab", node.lab.name, "deploy", node.name, str(app)],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert "[3/3]" in p.stderr and "soft reset" in p.stderr, p.stderr
        assert "wth-main run 3 mod-1" in p.stdout and "3 file(s) sent" in p.stdout, p.stdout
    finally:
        _cleanup(node)


def _rm(node: Node, files: list[str], dirs: list[str]) -> None:
    for p in files:
        if guestfs.exists(node, p):
            guestfs.rm(node, p)
    for d in dirs:
        if guestfs.exists(node, d):
            guestfs.rmdir(node, d)


def test_install_local_and_pypi_packages(node: Node) -> None:
    pkgs = [resolve(str(FIXTURE)), resolve("micropython-umqtt.simple")]
    _rm(node, ["/lib/umqtt/simple.py"], ["/lib/umqtt"])  # left by an earlier run
    try:
        rep = install(node, pkgs)
        assert "/lib/wthpkg/util.py" in rep.sent and "/lib/umqtt/simple.py" in rep.sent
        assert rep.packages[0] == "wthpkg==0.3.1"
        out = node.exec("import wthpkg, umqtt.simple\nprint(wthpkg.greet('lab'), umqtt.simple.MQTTClient)")
        assert "hello lab" in out and "MQTTClient" in out, out
        c = Counting(node)
        again = install(c, pkgs)
        assert again.bytes_sent == 0 and c.file_bytes == 0
    finally:
        _rm(
            node,
            ["/lib/wthpkg/__init__.py", "/lib/wthpkg/util.py", "/lib/umqtt/simple.py"],
            ["/lib/wthpkg", "/lib/umqtt"],
        )


# ---- wire assertions above TCP on real guest traffic ----------------------------------------
def _read_mqtt(c: socket.socket) -> tuple[int, bytes] | None:
    h = c.recv(1)
    if not h:
        return None
    n, mult = 0, 1
    while True:
        b = c.recv(1)[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if b < 0x80:
            break
    body = b""
    while len(body) < n:
        chunk = c.recv(n - len(body))
        if not chunk:
            break
        body += chunk
    return h[0], body


def _mqtt_listener(srv: socket.socket) -> None:
    """CONNACK to CONNECT, PUBACK to a QoS 1 PUBLISH, PINGRESP to PINGREQ; until DISCONNECT."""
    srv.settimeout(30)
    c, _ = srv.accept()
    c.settimeout(30)
    with c:
        while (pkt := _read_mqtt(c)) is not None:
            kind, body = pkt
            if kind >> 4 == 1:
                c.sendall(b"\x20\x02\x00\x00")
            elif kind >> 4 == 3 and (kind >> 1) & 3 == 1:
                tlen = int.from_bytes(body[:2], "big")
                c.sendall(b"\x40\x02" + body[2 + tlen : 4 + tlen])
            elif kind >> 4 == 12:
                c.sendall(b"\xd0\x00")
            elif kind >> 4 == 14:
                return


@pytest.fixture
def umqtt(node: Node) -> Iterator[None]:
    install(node, [resolve("micropython-umqtt.simple")])
    yield
    _rm(node, ["/lib/umqtt/simple.py"], ["/lib/umqtt"])


def test_mqtt_publish_assertion(node: Node, wire: Wire, host_peer: HostPeer, umqtt: None) -> None:
    srv = host_peer.tcp_server()
    host, port = srv.getsockname()
    packets.bind_port("MQTT", port)  # a plaintext test port, not 1883
    t = threading.Thread(target=_mqtt_listener, args=(srv,), daemon=True)
    t.start()
    out = node.exec(
        "from umqtt.simple import MQTTClient\n"
        f"c = MQTTClient('wth-node', {host!r}, port={port}, keepalive=30)\n"
        "c.connect()\nc.publish(b'wth/temp', b'21', qos=1)\nc.ping()\nc.disconnect()\nprint('published')\n",
        timeout=30,
    )
    assert "published" in out
    wire.expect(MQTTConnect, clientId="wth-node", src=node.ip, within=10)
    wire.expect(MQTTConnack, retcode=0, src=host, within=10)
    p = wire.expect(MQTTPublish, topic="wth/temp", QOS=1, src=node.ip, dport=port, within=10)
    assert p[MQTTPublish].value == b"21"
    wire.expect(MQTT, type="PINGREQ", src=node.ip, within=10)
    with pytest.raises(WireTimeout) as ei:
        wire.expect(MQTTPublish, topic="wth/other", within=1)
    msg = str(ei.value)
    assert "MQTTPublish seen" in msg and "topic='wth/temp'" in msg and "value='21'" in msg, msg
    t.join(timeout=10)


def _read_one_then_hang_up(srv: socket.socket) -> threading.Thread:
    """A thread that accepts one connection on ``srv``, reads what it first sends, and closes."""

    def read() -> None:
        srv.settimeout(30)
        c, _ = srv.accept()
        with c:
            c.settimeout(10)
            c.recv(4096)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_tls_client_hello_sni_assertion(node: Node, wire: Wire, host_peer: HostPeer) -> None:
    srv = host_peer.tcp_server()
    host, port = srv.getsockname()
    packets.bind_port("TLS", port)

    t = _read_one_then_hang_up(srv)  # the ClientHello: the handshake then fails, as meant
    node.exec(
        "import socket, ssl\n"
        f"s = socket.socket()\ns.connect(({host!r}, {port}))\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\nctx.verify_mode = ssl.CERT_NONE\n"
        "try:\n    ctx.wrap_socket(s, server_hostname='www.wth.example')\n"
        "except Exception as e:\n    print('handshake ended:', e)\ns.close()\n",
        timeout=30,
    )
    p = wire.expect(TLSClientHello, sni="www.wth.example", src=node.ip, dport=port, within=10)
    assert packets.sni_of(p) == "www.wth.example"
    with pytest.raises(WireTimeout) as ei:
        wire.expect(TLSClientHello, sni="www.other.example", within=1)
    assert "sni='www.wth.example'" in str(ei.value), str(ei.value)
    t.join(timeout=10)


def test_http_dns_and_ntp_assertions_on_guest_traffic(node: Node, wire: Wire, host_peer: HostPeer) -> None:
    from scapy.layers.dns import DNS
    from scapy.layers.http import HTTPRequest
    from scapy.layers.ntp import NTP

    srv = host_peer.tcp_server()
    host, port = srv.getsockname()
    packets.bind_port("HTTP", port)

    t = _read_one_then_hang_up(srv)
    node.exec(
        "import socket, struct\n"
        "socket.getaddrinfo('node2.lab', 80)\n"
        f"s = socket.socket()\ns.connect(({host!r}, {port}))\n"
        "s.write(b'GET /status HTTP/1.1\\r\\n')\ns.write(b'Host: www.wth\\r\\n\\r\\n')\ns.close()\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.sendto(b'\\x23' + bytes(47), ({host!r}, 123))\nu.close()\n",
        timeout=30,
    )
    wire.expect(DNS, qname="node2.lab.", src=node.ip, within=10)
    wire.expect(HTTPRequest, Method="GET", Path="/status", Host="www.wth", src=node.ip, within=10)  # two writes
    wire.expect(NTP, mode=3, src=node.ip, within=10)
    t.join(timeout=10)


def test_deploy_over_a_main_that_keeps_running(node: Node, tmp_path: Path) -> None:
    app = tmp_path / "loop"
    app.mkdir()
    (app / "main.py").write_text("import time\nfor i in range(10000):\n    print('wth-tick', i)\n    time.sleep(0.2)\n")
    try:
        rep = deploy(node, app, wait=r"wth-tick 2", follow=10)
        assert "wth-tick 0" in rep.console and "wth-tick 2" in rep.console, rep.console
        (app / "main.py").write_text("print('wth-loop replaced')\n")
        rep2 = deploy(node, app)  # the hash exec interrupts the running main.py first
        assert rep2.sent == ["/main.py"] and "wth-loop replaced" in rep2.console, rep2.console
        assert node.eval("1 + 1") == 2
    finally:
        _cleanup(node)
