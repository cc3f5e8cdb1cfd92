"""The two sides of a differential run: the guest (MicroPython/lwIP, through its raw REPL) and
the Linux peer (CPython, through its agent), both running a snippet with the same wrapper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import snippet

Facts = dict[str, Any]

# ---- the two sides ----------------------------------------------------------------------

# lab/snippet.py's wrapper, for CPython: errno as its symbolic name, getaddrinfo's negative
# EAI_* codes as ints, an OSError without errno (socket.timeout) by type.
_WRAP_CPY = snippet.WRAPPER.format(
    clock="time.monotonic()",
    errno="errno.errorcode.get(_e.errno, _e.errno) if _e.errno is not None else type(_e).__name__",
    elapsed="int((time.monotonic() - _t0) * 1000)",
)


Result = snippet.Result  # kind ok | err | exc, value, ms, code


class Side:
    """Where a snippet runs: ``name`` (guest | linux), ``ip`` on the lab LAN, ``run``."""

    name = ""
    label = ""
    ip = ""

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        raise NotImplementedError


class GuestSide(Side):
    name = "guest"

    def __init__(self, node: Any) -> None:
        self.node = node
        self.ip = str(node.ip)
        self.label = f"MicroPython/lwIP ({node.name})"

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        return snippet.run(self.node, body, expr, timeout=timeout)


class LinuxSide(Side):
    name = "linux"

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.ip = peer.ip
        self.label = f"CPython/Linux ({peer.name})"

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        body = snippet.indent(body)
        return snippet.parse(self.peer.exec(_WRAP_CPY.format(body=body, expr=expr), timeout=timeout), body)


@dataclass
class Ctx:
    host: str  # the host's address on the lab bridge
    services: str
    port: int  # this side's ports: port .. port+9
    packets: Callable[[], list[Any]]  # the scenario's capture so far
