"""Wire assertions above TCP without a lab: MQTT, TLS, HTTP, DNS and NTP packets built with
scapy, matched by lab.packets / Wire, and failures that show the decoded layer, not hex."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from scapy.contrib.mqtt import MQTT, MQTTConnect, MQTTPublish
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.http import HTTP, HTTPRequest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.ntp import NTP, NTPHeader
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet

from lab import packets as pk
from lab.capture import Wire, WireTimeout
from lab.scenario import WireSpec, match

GUEST, HOST = "10.77.0.100", "10.77.0.1"


class Frames:
    """A packet source for Wire: what a Capture holds, from bytes (as the sniffer dissects)."""

    iface = "test"
    path = Path("/dev/null")

    def __init__(self, *frames: Packet) -> None:
        self.t0 = time.time()
        self.packets = []
        for f in frames:
            p = Ether(bytes(f))
            p.time = self.t0
            self.packets.append(p)

    def write(self) -> Path:
        return self.path


def tcp(dport: int, payload: Packet, sport: int = 40000) -> Packet:
    return Ether() / IP(src=GUEST, dst=HOST) / TCP(sport=sport, dport=dport, flags="PA") / payload


def publish(topic: str, port: int = 1883, qos: int = 1) -> Packet:
    return tcp(port, MQTT(QOS=qos) / MQTTPublish(topic=topic, msgid=7, value=b"21"))


def client_hello(sni: str, port: int = 443) -> Packet:
    ext = [TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])]
    return tcp(port, TLS(msg=[TLSClientHello(ext=ext)]))


def test_mqtt_publish_topic_and_qos_on_1883() -> None:
    w = Wire(Frames(publish("wth/temp")))
    p = w.expect(MQTTPublish, topic="wth/temp", QOS=1, src=GUEST, within=0.1)
    assert p[MQTTPublish].msgid == 7
    w.expect(MQTT, type="PUBLISH", within=0.1)
    w.expect_none(MQTTPublish, topic="wth/other", within=0.05)


def test_mqtt_on_another_port_once_bound() -> None:
    w = Wire(
        Frames(publish("wth/temp", port=41883), tcp(41883, MQTT(type=1) / MQTTConnect(clientId=b"n1"), sport=40001))
    )
    pk.bind_port("MQTT", 41883)  # after the capture: Wire re-dissects
    w.expect(MQTTPublish, topic="wth/temp", within=0.1)
    w.expect(MQTTConnect, clientId="n1", within=0.1)
    w.expect_sequence([(MQTTPublish, {"topic": "wth/temp"}), (MQTTConnect, {})], within=0.1)


def test_failing_mqtt_assertion_shows_the_decoded_packet() -> None:
    w = Wire(Frames(publish("wth/temp")))
    with pytest.raises(WireTimeout) as ei:
        w.expect(MQTTPublish, topic="wth/other", within=0.1)
    msg = str(ei.value)
    assert "MQTTPublish(topic='wth/other')" in msg
    assert "MQTTPublish seen (1" in msg and "topic='wth/temp'" in msg and "QOS=At least once delivery" in msg, msg
    assert "\\x" not in msg, msg  # decoded, not hex


def test_tls_client_hello_sni() -> None:
    w = Wire(Frames(client_hello("www.lab"), client_hello("mqtt.lab", port=8883)))
    p = w.expect(TLSClientHello, sni="www.lab", dport=443, within=0.1)
    assert pk.sni_of(p) == "www.lab"
    w.expect(TLSClientHello, sni="mqtt.lab", dport=8883, within=0.1)  # 8883 is TLS in APP_PORTS
    with pytest.raises(WireTimeout) as ei:
        w.expect(TLSClientHello, sni="other.lab", within=0.1)
    assert "sni='www.lab'" in str(ei.value) and "TLSClientHello(" in str(ei.value), str(ei.value)


def test_http_request_line_dns_and_ntp() -> None:
    req = tcp(80, HTTP() / HTTPRequest(Method=b"GET", Path=b"/status", Host=b"www.lab"))
    dns = Ether() / IP(src=GUEST, dst=HOST) / UDP(sport=5353, dport=53) / DNS(rd=1, qd=DNSQR(qname="www.lab"))
    ntp = Ether() / IP(src=GUEST, dst=HOST) / UDP(sport=123, dport=123) / NTPHeader(mode=3)
    w = Wire(Frames(req, dns, ntp))
    w.expect(HTTPRequest, Method="GET", Path="/status", Host="www.lab", within=0.1)
    w.expect(DNS, qname="www.lab.", within=0.1)
    w.expect(NTP, mode=3, within=0.1)
    with pytest.raises(WireTimeout, match=r"(?s)HTTPRequest seen .*Path='/status'"):
        w.expect(HTTPRequest, Path="/other", within=0.1)


def test_scenario_wire_specs_name_app_layers() -> None:
    p = Frames(publish("wth/temp", port=41884)).packets[0]
    assert match(p, WireSpec("MQTTPublish", {"topic": "wth/temp", "dport": 41884}))  # binds its port
    assert not match(p, WireSpec("MQTTPublish", {"topic": "wth/x", "dport": 41884}))
    hello = Frames(client_hello("www.lab")).packets[0]
    assert match(hello, WireSpec("TLSClientHello", {"sni": "www.lab"}))


def test_a_message_written_in_pieces_is_one_message() -> None:
    """umqtt.simple writes a PUBLISH as header, topic, id and payload: four segments."""
    whole = bytes(MQTT(QOS=1) / MQTTPublish(topic="wth/temp", msgid=7, value=b"21"))
    cuts = [0, 2, 12, 14, len(whole)]
    segs = []
    for a, b in itertools.pairwise(cuts):
        segs.append(
            Ether() / IP(src=GUEST, dst=HOST) / TCP(sport=40002, dport=1883, seq=1000 + a, flags="PA") / whole[a:b]
        )
    segs.insert(2, segs[1])  # a retransmission on the way
    w = Wire(Frames(*segs))
    p = w.expect(MQTTPublish, topic="wth/temp", QOS=1, within=0.1)
    assert p[MQTTPublish].value == b"21"
    assert len([q for q in pk.app_view(w.packets()) if q.haslayer(MQTTPublish)]) == 1


def test_scenario_judge_view_reassembles_streams() -> None:
    from lab.scenario.judge import view

    whole = bytes(MQTT(QOS=0) / MQTTPublish(topic="wth/judge", value=b"1"))
    segs = [
        Ether() / IP(src=GUEST, dst=HOST) / TCP(sport=40003, dport=41885, seq=5, flags="PA") / whole[:3],
        Ether() / IP(src=GUEST, dst=HOST) / TCP(sport=40003, dport=41885, seq=8, flags="PA") / whole[3:],
    ]
    pkts = Frames(*segs).packets
    spec = WireSpec("MQTTPublish", {"topic": "wth/judge", "dport": 41885})
    got = [(i, p) for i, p in view(pkts, [spec]) if match(p, spec)]
    assert [i for i, _ in got] == [1]  # the frame that completed the message


def test_scenario_failure_detail_shows_decoded_layer() -> None:
    from lab.scenario.judge import decoded_seen, view

    pkts = Frames(publish("wth/temp")).packets
    spec = WireSpec("MQTTPublish", {"topic": "wth/other"})
    seen = decoded_seen([p for _, p in view(pkts, [spec])], "MQTTPublish")
    assert "topic='wth/temp'" in seen and "\\x" not in seen, seen
