"""A one-connection TLS server on the host's lab address, run in a thread (CPython ``ssl``).

::

    with TlsServer(lab.host_ip, leaf, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256") as srv:
        ... guest connects to (host.lab, srv.port) ...
    srv.result.cipher, srv.result.error, srv.result.echoed

It accepts one connection, does the server handshake, then echoes what it reads until the
client closes. The listening socket is bound to the bridge address only: nothing else can
reach it and it reaches nothing.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass

from lab.pki import Leaf


@dataclass
class Result:
    cipher: tuple[str, str, int] | None = None
    version: str | None = None
    error: str | None = None  # repr of the handshake's exception (the guest's alert shows here)
    echoed: bytes = b""


class TlsServer:
    def __init__(self, ip: str, leaf: Leaf, ciphers: str | None = None, timeout: float = 90.0) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
        if ciphers:
            self.ctx.set_ciphers(ciphers)  # TLS 1.2 suites only (the guest offers no 1.3)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(1)
        self.sock.settimeout(timeout)
        self.port: int = self.sock.getsockname()[1]
        self.timeout = timeout
        self.result = Result()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError as e:
            self.result.error = repr(e)
            return
        conn.settimeout(self.timeout)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as t:
                self.result.cipher, self.result.version = t.cipher(), t.version()
                while data := t.recv(4096):
                    self.result.echoed += data
                    t.sendall(data)
        except (OSError, ssl.SSLError) as e:
            self.result.error = repr(e)
        finally:
            conn.close()

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # the test failed: do not wait for a guest that will not come
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            except OSError:
                pass
        self._thread.join(self.timeout)
        self.sock.close()
