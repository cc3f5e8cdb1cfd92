# An MQTT sensor: publishes a counter every second, QoS 1, over TLS, to the lab's broker.
# The topic is named after the node (sensors/<hostname>/count). See ../README.md.
import asyncio
import ssl
import time

import network
from mqttc import MQTTClient

BROKER = "mqtt.lab"  # the lab's Mosquitto; 8883 is MQTT over TLS
PORT = 8883
CA_FILE = "/certs/ca.pem"  # the lab's CA, on every node
KEEP_UNACKED = True  # False: forget unacknowledged messages at a reconnect (loses messages)
PERIOD_S = 1


def log(msg):
    print(f"[{time.ticks_ms()}] sensor: {msg}")


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=CA_FILE)
    return ctx


async def sensor(client, topic):
    n = 0
    while True:
        n += 1
        pid = await client.publish(topic, str(n).encode(), qos=1)
        log(f"pub {n} pid {pid} queued {len(client.queue)}")
        await asyncio.sleep(PERIOD_S)


async def main():
    name = network.hostname()
    topic = f"sensors/{name}/count"
    client = MQTTClient(
        "sensor-" + name,
        BROKER,
        PORT,
        ssl=tls_context(),
        server_hostname=BROKER,
        keepalive=10,
        response_time=3,
        keep_unacked=KEEP_UNACKED,
        log=log,
    )
    log(f"up: {name} -> {BROKER}:{PORT} topic {topic}")
    conn = asyncio.create_task(client.run())  # stays connected, forever
    await sensor(client, topic)
    conn.cancel()


asyncio.run(main())
