"""The two sides of a differential run: the guest (MicroPython/lwIP, through its raw REPL) and
the Linux peer (CPython, through its agent), both running a snippet with the same wrapper."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import snippet

Facts = dict[str, Any]

# ---- the two sides ----------------------------------------------------------------------

# The same wrapper as lab/snippet.py, for CPython: errno as its symbolic name,
# getaddrinfo's negative EAI_* codes as ints, an OSError without errno (socket.timeout) by type.
_WRAP_CPY = """\
import socket, time, errno
_t0 = time.monotonic()
try:
{body}
    _r = ('ok', {expr})
except OSError as _e:
    _r = ('err', errno.errorcode.get(_e.errno, _e.errno) if _e.errno is not None else type(_e).__name__)
except Exception as _e:
    _r = ('exc', type(_e).__name__ + ': ' + str(_e))
print(repr((_r, int((time.monotonic() - _t0) * 1000))))
"""


@dataclass
class Result:
    kind: str  # ok | err | exc
    value: Any
    ms: int

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def text(self) -> str:
        return f"{self.kind} {self.value!r}" if self.kind != "ok" else f"ok {self.value!r}"


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
        r = snippet.run(self.node, body, expr, timeout=timeout)
        return Result(r.kind, r.value, r.ms)


class LinuxSide(Side):
    name = "linux"

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.ip = peer.ip
        self.label = f"CPython/Linux ({peer.name})"

    def run(self, body: str = "pass", expr: str = "None", timeout: float = 15.0) -> Result:
        body = textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ")
        out = self.peer.exec(_WRAP_CPY.format(body=body, expr=expr), timeout=timeout)
        line = [ln for ln in out.strip().splitlines() if ln.startswith("((")][-1]
        (kind, value), ms = ast.literal_eval(line)
        return Result(kind, value, ms)


@dataclass
class Ctx:
    host: str  # the host's address on the lab bridge
    services: str
    port: int  # this side's ports: port .. port+9
    packets: Callable[[], list[Any]]  # the scenario's capture so far
