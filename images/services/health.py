#!/usr/bin/env python3
"""mplab-health [ROLE]: is this container's daemon answering? Exit 0 and "ok: ..." if so,
else exit 1 and one line saying what failed. `mplab up` runs it in each daemon's container
(docker exec) until it passes (docs/services.md). ROLE defaults to /run/mplab/role.

Each check speaks the protocol, as a client on the LAN would:
  mqtt  CONNECT -> CONNACK (accepted) on 1883, and on 8883 over TLS verified against the lab CA
        with server_hostname mqtt.<domain>
  www   GET /mplab/hello -> 200 on 80, and on 443 over TLS verified likewise (www.<domain>)
  ntp   a mode-3 request to 123/udp -> a mode-4 answer, synchronised (leap != 3), stratum 1..15
"""
import os
import socket
import ssl
import struct
import sys

TLS = "/run/mplab/tls"
DOMAIN = os.environ.get("MPLAB_DOMAIN", "lab")
TIMEOUT = 3.0


def tls(sock, name):
    ctx = ssl.create_default_context(cafile=TLS + "/ca.pem")
    return ctx.wrap_socket(sock, server_hostname=name)


def mqtt_connack(port, secure):
    s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
    try:
        if secure:
            s = tls(s, "mqtt." + DOMAIN)
        cid = b"mplab-health"
        var = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
        s.sendall(bytes([0x10, len(var)]) + var)
        ack = s.recv(4)
        if ack[:2] != b"\x20\x02" or ack[3:4] != b"\x00":
            raise OSError("no CONNACK accepted, got %r" % ack)
        s.sendall(b"\xe0\x00")  # DISCONNECT
    finally:
        s.close()


def http_hello(port, secure):
    s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
    try:
        if secure:
            s = tls(s, "www." + DOMAIN)
        s.sendall(("GET /mplab/hello HTTP/1.0\r\nHost: www.%s\r\n\r\n" % DOMAIN).encode())
        status = s.recv(64).split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise OSError("GET /mplab/hello: %r" % status)
    finally:
        s.close()


def ntp_answer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    try:
        s.sendto(b"\x23" + b"\x00" * 47, ("127.0.0.1", 123))  # LI 0, version 4, mode 3
        data = s.recv(512)
    finally:
        s.close()
    if len(data) < 48 or data[0] & 7 != 4:
        raise OSError("no mode-4 answer (%d bytes)" % len(data))
    if data[0] >> 6 == 3 or not 1 <= data[1] <= 15:
        raise OSError("unsynchronised (leap %d, stratum %d)" % (data[0] >> 6, data[1]))


CHECKS = {
    "mqtt": [("1883", lambda: mqtt_connack(1883, False)), ("8883/tls", lambda: mqtt_connack(8883, True))],
    "www": [("80", lambda: http_hello(80, False)), ("443/tls", lambda: http_hello(443, True))],
    "ntp": [("123/udp", ntp_answer)],
}


def main():
    role = sys.argv[1] if len(sys.argv) > 1 else open("/run/mplab/role").read().strip()
    if role not in CHECKS:
        print("fail: unknown role %r" % role)
        return 2
    for what, check in CHECKS[role]:
        try:
            check()
        except (OSError, ssl.SSLError, ValueError) as e:
            print("fail: %s %s: %s" % (role, what, e))
            return 1
    print("ok: %s %s" % (role, ", ".join(w for w, _ in CHECKS[role])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
