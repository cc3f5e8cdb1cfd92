# A device-side MQTT publish written in pieces, as umqtt.simple writes it (header, topic, payload).
import socket


def publish(host, port, topic, payload):
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    s.write(b"\x30")  # PUBLISH, QoS 0
    s.write(bytes([len(body)]))
    s.write(body[: 2 + len(t)])
    s.write(payload)
    s.close()
    return len(body)
