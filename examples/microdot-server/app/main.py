# A small web API on the device with microdot 2.x (PyPI `microdot`, installed into /lib):
# plain HTTP on port 80 and, when the node has a certificate (/certs/node.pem and its key,
# issued by the lab CA for the node's lab name), HTTPS on port 443. Both serve the same app.
import asyncio
import os
import ssl

import network
from microdot import Microdot

CERT, KEY = "/certs/node.pem", "/certs/node.key"
NAME = network.hostname()

app = Microdot()
state = {"led": False, "requests": 0}


@app.before_request
async def count(request):
    state["requests"] += 1


@app.route("/")
async def index(request):
    return f"hello from {NAME} (microdot)\n"


@app.route("/api/state")
async def get_state(request):
    return state  # a dict is sent as JSON


@app.route("/api/led", methods=["POST"])
async def set_led(request):
    body = request.json or {}
    state["led"] = bool(body.get("on"))
    return state


@app.route("/api/hello/<name>")
async def hello(request, name):
    return {"hello": name, "lang": request.args.get("lang", "en")}


def tls_context():
    try:
        os.stat(CERT)
    except OSError:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    return ctx


def on_task_error(loop, context):
    # microdot re-raises a socket error of a connection unless its errno is one of a few
    # (ECONNRESET 104, EPIPE, ...). Over TLS the errors are mbedTLS's, negative: a client that
    # rejects the certificate ends the handshake with an alert (OSError -30592) or a reset
    # (OSError -104). Without this handler asyncio prints "Task exception wasn't retrieved"
    # and a traceback for each such connection; the server itself goes on either way.
    e = context.get("exception")
    print(f"connection task ended: {type(e).__name__} {e}")


async def main():
    asyncio.get_event_loop().set_exception_handler(on_task_error)
    servers = [asyncio.create_task(app.start_server(port=80, debug=True))]
    ctx = tls_context()
    if ctx is not None:
        # A second server on the same app: microdot keeps only the last in app.server, which
        # matters for app.shutdown() only (this device serves until it is reset).
        servers.append(asyncio.create_task(app.start_server(port=443, debug=True, ssl=ctx)))
    await asyncio.sleep_ms(100)
    tls = ", https on 443" if ctx else " (no certificate, so no https)"
    print(f"{NAME}: serving http on 80{tls}")
    await asyncio.gather(*servers)


asyncio.run(main())
