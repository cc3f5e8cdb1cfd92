# An HTTPS poller, as a device would run it: every PERIOD seconds it fetches a JSON status
# from www.lab over TLS (verified against the lab CA), with a deadline for the whole poll,
# and prints one line per poll:
#   poll 1 ok 200 425ms dns 11ms status=ok
#   poll 2 timeout 5028ms (limit 3500ms) dns 5025ms
#   poll 9 error OSError -2 6540ms dns -1ms
import asyncio
import json
import socket
import ssl
import time

HOST = "www.lab"
PORT = 443
PATH = "/api/status.json"
PERIOD = 3  # s between the starts of two polls
TIMEOUT = 3.5  # s for the whole poll: lookup, connect, handshake, request, reply
CA = "/certs/ca.pem"  # the lab CA, on every node


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=CA)
    return ctx


async def fetch(ctx, marks):
    t = time.ticks_ms()
    # open_connection would look the name up too; doing it here first lets the poller say
    # how long the lookup took. It blocks the whole loop (MicroPython's getaddrinfo does).
    addr = socket.getaddrinfo(HOST, PORT, 0, socket.SOCK_STREAM)[0][-1]
    marks["dns"] = time.ticks_diff(time.ticks_ms(), t)
    ip = addr[0]
    r, w = await asyncio.open_connection(ip, PORT, ssl=ctx, server_hostname=HOST)
    try:
        w.write(f"GET {PATH} HTTP/1.0\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        await w.drain()
        data = b""
        while True:
            chunk = await r.read(1024)
            if not chunk:
                break
            data += chunk
    finally:
        w.close()
        await w.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def poll(ctx, n):
    marks = {}
    t = time.ticks_ms()
    try:
        status, doc = await asyncio.wait_for(fetch(ctx, marks), TIMEOUT)
        ms = time.ticks_diff(time.ticks_ms(), t)
        print(f"poll {n} ok {status} {ms}ms dns {marks.get('dns', -1)}ms status={doc.get('status')}")
    except asyncio.TimeoutError:  # noqa: UP041 (MicroPython's asyncio has its own TimeoutError)
        ms = time.ticks_diff(time.ticks_ms(), t)
        print(f"poll {n} timeout {ms}ms (limit {int(TIMEOUT * 1000)}ms) dns {marks.get('dns', -1)}ms")
    except Exception as e:  # a device keeps polling whatever one poll did
        ms = time.ticks_diff(time.ticks_ms(), t)
        print(f"poll {n} error {type(e).__name__} {e} {ms}ms dns {marks.get('dns', -1)}ms")


async def main():
    ctx = context()
    print(f"poller: https://{HOST}{PATH} every {PERIOD}s, timeout {TIMEOUT}s")
    n = 0
    while True:
        n += 1
        t = time.ticks_ms()
        await poll(ctx, n)
        await asyncio.sleep_ms(max(0, PERIOD * 1000 - time.ticks_diff(time.ticks_ms(), t)))


asyncio.run(main())
