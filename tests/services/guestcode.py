"""Guest code for the service tests: small clients written as a device application would.

Each function returns MicroPython source for ``node.exec``; the snippet prints one
``repr`` for ``ast.literal_eval`` on the host. The guest has ``socket`` and ``ssl``
(mbedTLS) but no umqtt or ntptime (micropython-lib is not in the firmware), so the MQTT and
NTP exchanges are spelled out in bytes.
"""

from __future__ import annotations

from lab.lab import GUEST_CA


def _family(v6: bool) -> str:
    return "socket.AF_INET6" if v6 else "socket.AF_INET"


def _connect(host: str, port: int, tls_name: str | None, v6: bool = False) -> str:
    """Source that leaves ``s``: a socket to host:port (its AAAA record with ``v6``), wrapped in
    TLS verified against the lab CA for ``tls_name`` when it is given."""
    code = (
        "import socket, ssl\n"
        f"a = socket.getaddrinfo({host!r}, {port}, {_family(v6)})[0][-1]\n"
        f"s = socket.socket({_family(v6)}, socket.SOCK_STREAM)\n"
        "s.settimeout(10)\n"
        "s.connect(a)\n"
    )
    if tls_name is not None:
        code += (
            "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
            "ctx.verify_mode = ssl.CERT_REQUIRED\n"
            f"ctx.load_verify_locations(cafile={GUEST_CA!r})\n"
            f"s = ctx.wrap_socket(s, server_hostname={tls_name!r})\n"
        )
    return code


def mqtt_connack(host: str, port: int, client_id: str, tls_name: str | None = None, v6: bool = False) -> str:
    """MQTT 3.1.1 CONNECT (clean session, keepalive 60) and the 4-byte CONNACK, as bytes."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    connect = bytes([0x10, len(var)]) + var
    return (
        _connect(host, port, tls_name, v6)
        + f"s.write({connect!r})\n"
        + "ack = b''\n"
        + "while len(ack) < 4:\n"
        + "    b = s.read(4 - len(ack))\n"
        + "    if not b:\n"
        + "        break\n"
        + "    ack += b\n"
        + "s.write(b'\\xe0\\x00')\n"  # DISCONNECT
        + "s.close()\n"
        + "print(repr(ack))\n"
    )


def http_get(host: str, port: int, path: str, host_header: str, tls_name: str | None = None, v6: bool = False) -> str:
    """An HTTP/1.0 GET; prints the whole response (bytes)."""
    req = f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n".encode()
    return (
        _connect(host, port, tls_name, v6)
        + f"s.write({req!r})\n"
        + "r = b''\n"
        + "while True:\n"
        + "    b = s.read(512)\n"
        + "    if not b:\n"
        + "        break\n"
        + "    r += b\n"
        + "s.close()\n"
        + "print(repr(r))\n"
    )


def tls_error(host: str, port: int, tls_name: str) -> str:
    """Try a verified TLS handshake; prints (exception type, message) or ('ok', '')."""
    return (
        "import socket, ssl\n"
        f"a = socket.getaddrinfo({host!r}, {port})[0][-1]\n"
        "s = socket.socket()\n"
        "s.settimeout(10)\n"
        "s.connect(a)\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "ctx.verify_mode = ssl.CERT_REQUIRED\n"
        f"ctx.load_verify_locations(cafile={GUEST_CA!r})\n"
        "try:\n"
        f"    t = ctx.wrap_socket(s, server_hostname={tls_name!r})\n"
        "    t.close()\n"
        "    r = ('ok', '')\n"
        "except Exception as e:\n"
        "    s.close()\n"
        "    r = (type(e).__name__, str(e))\n"
        "print(repr(r))\n"
    )


def ntp_query(host: str, v6: bool = False, bind6: bool = True) -> str:
    """A raw SNTP client: a 48-byte mode-3 request to host:123; prints
    (leap, version, mode, stratum, transmit seconds, transmit fraction), NTP era 0. Integers
    only: the board's float is single precision, too coarse for a Unix time."""
    return (
        "import socket, struct\n"
        f"a = socket.getaddrinfo({host!r}, 123, {_family(v6)})[0][-1]\n"
        f"s = socket.socket({_family(v6)}, socket.SOCK_DGRAM)\n"
        # The firmware's unbound AF_INET6 UDP socket fails sendto/connect with EINVAL (an
        # explicit bind to :: works; test_services.py keeps a strict xfail on it).
        + ("s.bind(('::', 0))\n" if v6 and bind6 else "")
        + "s.settimeout(5)\n"
        "s.sendto(b'\\x23' + bytes(47), a)\n"  # LI 0, VN 4, mode 3 (client)
        "d = s.recv(64)\n"
        "s.close()\n"
        "sec, frac = struct.unpack('>II', d[40:48])\n"  # transmit timestamp
        "print(repr((d[0] >> 6, (d[0] >> 3) & 7, d[0] & 7, d[1], sec, frac)))\n"
    )
