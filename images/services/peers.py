#!/usr/bin/env python3
"""mplab peers: small, well-known servers for the guests to talk to.

  TCP 7   echo (RFC 862)        UDP 7  echo
  TCP 9   discard (RFC 863)
  TCP 80  HTTP:  GET /            -> HTTP_BODY (below), text/plain
                 GET /bytes/<n>   -> n bytes of b"0123456789"*, application/octet-stream
                 POST /echo       -> the request body
One line per connection/datagram on stdout (docker logs).
"""
import http.server
import os
import socketserver
import sys
import threading

# The lab's table of these ports is lab/services.py (this image cannot import the lab):
# tests/scenarios/test_scenario_schema.py checks that the two agree.
PORTS = {"tcp_echo": 7, "tcp_discard": 9, "udp_echo": 7, "http": 80}
HTTP_BODY = b"hello from mplab peer\n"
MAX_BYTES = 16 * 1024 * 1024


def log(msg):
    print("peers: " + msg, flush=True)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class DiscardTCP(socketserver.BaseRequestHandler):
    """Read to EOF; EchoTCP also sends every byte back."""

    echo = False

    def handle(self):
        n = 0
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            if self.echo:
                self.request.sendall(data)
            n += len(data)
        log("tcp %s %s:%d %d bytes" % ("echo" if self.echo else "discard", *self.client_address, n))


class EchoTCP(DiscardTCP):
    echo = True


class EchoUDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)
        log("udp echo %s:%d %d bytes" % (*self.client_address, len(data)))


class HTTP(http.server.BaseHTTPRequestHandler):
    server_version = "mplab-peer/1"
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            return self._send(200, HTTP_BODY)
        if self.path.startswith("/bytes/"):
            try:
                n = int(self.path[7:])
            except ValueError:
                n = -1
            if 0 <= n <= MAX_BYTES:
                return self._send(200, (b"0123456789" * (n // 10 + 1))[:n],
                                  "application/octet-stream")
        return self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, MAX_BYTES))
        if self.path == "/echo":
            return self._send(200, body, "application/octet-stream")
        return self._send(404, b"not found\n")

    def log_message(self, fmt, *args):
        log("http %s %s" % (self.client_address[0], fmt % args))


def main():
    host = os.environ.get("MPLAB_PEERS_BIND", "0.0.0.0")
    servers = [
        TCPServer((host, PORTS["tcp_echo"]), EchoTCP),
        TCPServer((host, PORTS["tcp_discard"]), DiscardTCP),
        socketserver.ThreadingUDPServer((host, PORTS["udp_echo"]), EchoUDP),
        http.server.ThreadingHTTPServer((host, PORTS["http"]), HTTP),
    ]
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log("listening: tcp/%(tcp_echo)d echo, tcp/%(tcp_discard)d discard, udp/%(udp_echo)d echo, "
        "tcp/%(http)d http" % PORTS)
    threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
