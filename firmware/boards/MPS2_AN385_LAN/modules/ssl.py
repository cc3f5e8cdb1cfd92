# ssl: CPython's ssl API over MicroPython's tls module (mbedTLS), as boards provide it.
# Certificates and keys are DER or PEM bytes, or paths of files on the node.
import tls
from tls import (
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    MBEDTLS_VERSION,
    PROTOCOL_TLS_CLIENT,
    PROTOCOL_TLS_SERVER,
)

try:
    from tls import PROTOCOL_DTLS_CLIENT, PROTOCOL_DTLS_SERVER
except ImportError:
    pass


def _data(x):
    if isinstance(x, str):
        with open(x, "rb") as f:
            return f.read()
    return x


class SSLContext:
    def __init__(self, protocol=None):
        if protocol is None:
            raise TypeError("SSLContext needs a protocol, e.g. ssl.PROTOCOL_TLS_CLIENT")
        self._ctx = tls.SSLContext(protocol)

    @property
    def verify_mode(self):
        return self._ctx.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        self._ctx.verify_mode = mode

    @property
    def check_hostname(self):
        return self._ctx.check_hostname

    @check_hostname.setter
    def check_hostname(self, value):
        # False keeps chain verification and SNI, and skips only the name check.
        self._ctx.check_hostname = value

    def load_cert_chain(self, certfile, keyfile=None):
        self._ctx.load_cert_chain(_data(certfile), _data(keyfile if keyfile is not None else certfile))

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile is not None:
            cadata = _data(cafile)
        if cadata is None:
            raise ValueError("load_verify_locations needs cafile or cadata")
        self._ctx.load_verify_locations(cadata)

    def get_ciphers(self):
        return self._ctx.get_ciphers()

    def set_ciphers(self, ciphers):
        self._ctx.set_ciphers(ciphers)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        return self._ctx.wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            server_hostname=server_hostname,
        )


def wrap_socket(
    sock,
    server_side=False,
    key=None,
    cert=None,
    cert_reqs=CERT_NONE,
    cadata=None,
    server_hostname=None,
    do_handshake=True,
):
    ctx = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
    if cert is not None or key is not None:
        ctx.load_cert_chain(cert, key)
    if cadata is not None:
        ctx.load_verify_locations(cadata=cadata)
    ctx.verify_mode = cert_reqs
    return ctx.wrap_socket(
        sock, server_side=server_side, do_handshake_on_connect=do_handshake, server_hostname=server_hostname
    )
