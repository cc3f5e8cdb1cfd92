"""Guest application suite (TLS, asyncio): fixtures on top of the lab's pytest plugin.

The lab plugin gives ``lab``, ``node``/``nodes``, ``wire`` and ``host_peer``. This file adds:

* ``pki``: a CA made at session start with the openssl CLI (lab/pki.py), a second CA the
  guests do not trust, and leaf certificates for the host and node1 (ECDSA P-256, RSA-2048),
  plus an expired and a not-yet-valid one for the host (the guest's clock is the host's);
* ``port``: guest/host ports no other test of this run uses;
* ``push``: copy bytes onto a node's filesystem with the lab's file copy (``mplab cp``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lab import Node
from lab.guestfs import put
from lab.pki import CA, DAY, Leaf

# 10 ports per test in 30000-32499: below Linux's (32768+) and lwIP's (49152+) ephemeral
# ranges, and above the socket suite's (20000-29999), so no test meets a port in use.
_ports = itertools.count(30000 + (os.getpid() % 50) * 50, 10)


@dataclass(frozen=True)
class Pki:
    ca: CA
    untrusted: CA  # the guests are never given it
    host: dict[str, Leaf]  # key kind -> leaf for host.lab
    node1: dict[str, Leaf]  # key kind -> leaf for node1.lab
    expired: Leaf  # host.lab, valid until two days ago
    not_yet_valid: Leaf  # host.lab, valid from two days on


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = CA.make(d / "ca", "mplab test CA")
    untrusted = CA.make(d / "untrusted", "untrusted CA")
    kinds = ("ec", "rsa")
    return Pki(
        ca,
        untrusted,
        {k: ca.issue("host.lab", key=k) for k in kinds},
        {k: ca.issue("node1.lab", key=k) for k in kinds},
        ca.issue("host.lab", valid=(-3 * DAY, -2 * DAY), tag="-expired"),
        ca.issue("host.lab", valid=(2 * DAY, 3 * DAY), tag="-future"),
    )


@pytest.fixture
def port() -> int:
    """A port no other test in this run uses (port..port+9 are the test's)."""
    return next(_ports)


@pytest.fixture
def push() -> Callable[[Node, bytes, str], None]:
    """push(node, data, path): write ``data`` to ``path`` on the node (lab.guestfs.put)."""

    def _push(node: Node, data: bytes, path: str) -> None:
        put(node, data, path)
        got = node.eval(f"__import__('os').stat({path!r})[6]")
        assert got == len(data), f"{node.name}:{path} has {got} bytes, pushed {len(data)}"

    return _push
