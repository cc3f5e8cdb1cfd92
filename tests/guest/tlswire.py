"""TLS 1.2 on the wire: the plaintext part of a handshake, parsed from captured TCP streams.

The streams come from ``lab.packets.reassemble`` (sequence-number reassembly of what one end
sent). A TLS 1.2 handshake is in clear until ChangeCipherSpec: ClientHello (with SNI),
ServerHello (the chosen suite), Certificate (the server's DER chain), and any alert sent
before the keys changed (a client that rejects the certificate). Only what the tests need
is parsed; a malformed stream raises ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE = 1, 2, 11
EXT_SERVER_NAME = 0
ALERTS = {0: "close_notify", 40: "handshake_failure", 42: "bad_certificate", 45: "certificate_expired",
          46: "certificate_unknown", 48: "unknown_ca", 50: "decode_error", 51: "decrypt_error",
          80: "internal_error"}  # fmt: skip

# IANA cipher suite names for the codes a TLS 1.2 mbedTLS client offers. mbedTLS names a
# suite as IANA does with '-' for '_' ("TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384").
SUITES = {
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    0xC0AF: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
}


def suite_name(code: int) -> str:
    return SUITES.get(code, f"0x{code:04X}")


def mbedtls_name(iana: str) -> str:
    """The name mbedTLS (and the guest's ``SSLSocket.cipher()``) gives an IANA suite."""
    return iana.replace("_", "-")


@dataclass
class Record:
    type: int
    version: int
    body: bytes


@dataclass
class Hello:
    """A ClientHello or ServerHello: ``suites`` is the offer (client) or the choice (server)."""

    version: int
    suites: list[int]
    extensions: dict[int, bytes] = field(default_factory=dict)

    @property
    def sni(self) -> str | None:
        """The host_name of the server_name extension (RFC 6066), None when absent."""
        data = self.extensions.get(EXT_SERVER_NAME)
        if data is None:
            return None
        (_list_len, name_type, n) = struct.unpack_from("!HBH", data)
        if name_type != 0:
            raise ValueError(f"server_name type {name_type}, not host_name")
        return data[5 : 5 + n].decode("ascii")


@dataclass
class Flight:
    """What one end sent in clear: its records, and the handshake messages before CCS."""

    records: list[Record]
    messages: list[tuple[int, bytes]]

    def message(self, kind: int) -> bytes | None:
        return next((body for t, body in self.messages if t == kind), None)

    @property
    def alerts(self) -> list[tuple[int, int]]:
        """(level, description) of every alert sent before ChangeCipherSpec (after it, they are encrypted)."""
        out = []
        for r in self.records:
            if r.type == CHANGE_CIPHER_SPEC:
                break
            if r.type == ALERT:
                out.append((r.body[0], r.body[1]))
        return out

    def count(self, kind: int) -> int:
        return sum(1 for r in self.records if r.type == kind)


def records(stream: bytes) -> list[Record]:
    """Split a TLS byte stream into records (a truncated last record is dropped)."""
    out, i = [], 0
    while i + 5 <= len(stream):
        kind, version, n = struct.unpack_from("!BHH", stream, i)
        if kind not in (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA):
            raise ValueError(f"offset {i}: byte {kind} is no TLS record type: not a TLS stream")
        if i + 5 + n > len(stream):
            break
        out.append(Record(kind, version, stream[i + 5 : i + 5 + n]))
        i += 5 + n
    return out


def flight(stream: bytes) -> Flight:
    """Records of ``stream`` and the handshake messages sent before ChangeCipherSpec
    (a message may span records, so their bodies are joined first)."""
    recs = records(stream)
    hs = bytearray()
    for r in recs:
        if r.type == CHANGE_CIPHER_SPEC:
            break
        if r.type == HANDSHAKE:
            hs += r.body
    msgs, i = [], 0
    while i + 4 <= len(hs):
        kind = hs[i]
        n = int.from_bytes(hs[i + 1 : i + 4], "big")
        msgs.append((kind, bytes(hs[i + 4 : i + 4 + n])))
        i += 4 + n
    return Flight(recs, msgs)


def _extensions(body: bytes, i: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    if i + 2 > len(body):
        return out
    end = i + 2 + struct.unpack_from("!H", body, i)[0]
    i += 2
    while i + 4 <= end:
        kind, n = struct.unpack_from("!HH", body, i)
        out[kind] = body[i + 4 : i + 4 + n]
        i += 4 + n
    return out


def client_hello(body: bytes) -> Hello:
    version = struct.unpack_from("!H", body)[0]
    i = 2 + 32
    i += 1 + body[i]  # session id
    n = struct.unpack_from("!H", body, i)[0]
    suites = list(struct.unpack_from(f"!{n // 2}H", body, i + 2))
    i += 2 + n
    i += 1 + body[i]  # compression methods
    return Hello(version, suites, _extensions(body, i))


def server_hello(body: bytes) -> Hello:
    version = struct.unpack_from("!H", body)[0]
    i = 2 + 32
    i += 1 + body[i]
    suite = struct.unpack_from("!H", body, i)[0]
    return Hello(version, [suite], _extensions(body, i + 3))


def certificates(body: bytes) -> list[bytes]:
    """The DER certificates of a Certificate message, leaf first."""
    end = 3 + int.from_bytes(body[:3], "big")
    out, i = [], 3
    while i + 3 <= end:
        n = int.from_bytes(body[i : i + 3], "big")
        out.append(body[i + 3 : i + 3 + n])
        i += 3 + n
    return out


def client_port(pkts: Iterable[Packet], client: str, server: str, port: int) -> int:
    """The source port of the first SYN ``client`` sent to ``server``:``port``."""
    for p in pkts:
        if IP not in p or TCP not in p or not int(p[TCP].flags) & 0x02:
            continue
        if p[IP].src == client and p[IP].dst == server and p[TCP].dport == port:
            return int(p[TCP].sport)
    raise AssertionError(f"no SYN {client} -> {server}:{port} on the wire")
