"""The guest socket API that shared/spec/usocket.rst documents, as data: one copy for every
test that checks a firmware against it."""

from __future__ import annotations

# Constants and their documented values (lwIP's numbers, not Linux's).
SOCKET_CONSTANTS: dict[str, int] = {
    "AF_INET": 2,
    "AF_INET6": 10,
    "SOCK_STREAM": 1,
    "SOCK_DGRAM": 2,
    "SOCK_RAW": 3,
    "SO_REUSEADDR": 4,
    "IPPROTO_TCP": 6,
    "IPPROTO_UDP": 17,
    "SOL_SOCKET": 4095,
}
SOCKET_FUNCTIONS: list[str] = ["socket", "getaddrinfo"]
SOCKET_METHODS: list[str] = [
    "close",
    "bind",
    "listen",
    "accept",
    "connect",
    "send",
    "sendall",
    "recv",
    "sendto",
    "recvfrom",
    "setsockopt",
    "settimeout",
    "setblocking",
    "makefile",
    "read",
    "readinto",
    "readline",
    "write",
]
