"""Run a snippet on a node's REPL and get back a structured result: its value, or the errno of
the OSError it raised, and the guest-measured duration::

    r = snippet.run(node, "s = socket.socket()\ns.connect(('10.77.0.1', 9))", "s.getpeername()")
    r.ok, r.value, r.errno, r.ms

Everything goes through ``node.exec``; the snippet runs in the guest's global namespace, so
later calls can use names an earlier call made.
"""

from __future__ import annotations

import ast
import textwrap
import weakref
from dataclasses import dataclass
from typing import Any

# Guest code: serve the asyncio server ``srv`` that an earlier exec made (``srv =
# asyncio.run(asyncio.start_server(...))``) until that exec's event ``done`` is set, for
# ``{timeout}`` seconds at most, then close it. The guest tests and the bench share it.
ASYNC_SERVE_UNTIL_DONE = """\
async def _main():
    try:
        await asyncio.wait_for(done.wait(), {timeout})
    finally:
        srv.close()
        await srv.wait_closed()
asyncio.run(_main())
"""

# The wrapper, for a Python with its own clock and errno convention: `{{body}}`/`{{expr}}` stay
# for format(), the three slots are filled per interpreter.
WRAPPER = """\
import socket, time, errno
_t0 = {clock}
try:
{{body}}
    _r = ('ok', {{expr}})
except OSError as _e:
    _r = ('err', {errno})
except Exception as _e:
    _r = ('exc', type(_e).__name__ + ': ' + str(_e))
print(repr((_r, {elapsed})))
"""

# MicroPython: errno as the int (errno_name turns it into a name on the host)
_WRAP = WRAPPER.format(
    clock="time.ticks_ms()",
    errno="_e.errno if isinstance(_e.errno, int) else _e.args[0]",
    elapsed="time.ticks_diff(time.ticks_ms(), _t0)",
)


@dataclass
class Result:
    """What a guest snippet did: ``kind`` is ok | err | exc."""

    kind: str
    value: Any
    ms: int
    code: str

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def errno(self) -> str | int | None:
        """Symbolic name of the guest's errno ("ECONNRESET"), or the raw int when the
        guest has no name for it (getaddrinfo's negative lwIP codes)."""
        return self.value if self.kind == "err" else None

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0

    def text(self) -> str:
        """``ok 3`` / ``err 'ECONNRESET'`` / ``exc "ValueError: ..."``: one line for reports."""
        return f"{self.kind} {self.value!r}"

    def __repr__(self) -> str:
        return f"<guest {self.kind} {self.value!r} in {self.ms} ms; code: {self.code.strip()!r}>"


def indent(body: str) -> str:
    """``body`` dedented and indented into the wrapper's ``try:`` block."""
    return textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ")


def parse(out: str, body: str) -> Result:
    """The Result a wrapped snippet printed: its last ``((kind, value), ms)`` line."""
    line = [ln for ln in out.strip().splitlines() if ln.startswith("((")][-1]
    (kind, value), ms = ast.literal_eval(line)
    return Result(kind, value, ms, body)


def run(node: Any, body: str = "pass", expr: str = "None", timeout: float = 15.0, errno_names: bool = True) -> Result:
    """Run ``body`` then evaluate ``expr`` (must repr as a literal) on the guest.

    With ``errno_names`` an error's value is its symbolic name ("ECONNRESET"), else the int.
    """
    body = indent(body)
    r = parse(node.exec(_WRAP.format(body=body, expr=expr), timeout=timeout), body)
    if r.kind == "err" and errno_names:
        r.value = errno_name(node, r.value)
    return r


# newlib's numbering (the firmware is built against newlib, MICROPY_USE_INTERNAL_ERRNO=0):
# names the guest's errno module does not export.
_NEWLIB = {
    13: "EACCES",
    106: "EAFNOSUPPORT",
    121: "EDESTADDRREQ",
    122: "EMSGSIZE",
    123: "EPROTONOSUPPORT",
    127: "EISCONN",
    128: "ENOTCONN",
}


def errno_name(node: Any, n: int) -> str | int:
    """Symbolic name of a guest errno ("ECONNRESET"); negative lwIP/DNS codes stay ints."""
    if n < 0:
        return n
    names = _errno_names.get(node)  # asked once per node
    if names is None:
        table = node.eval("(lambda m: {getattr(m, k): k for k in dir(m) if k[0] == 'E'})(__import__('errno'))")
        names = _errno_names[node] = {**_NEWLIB, **table}
    return names.get(n, n)


# node -> its guest's errno names; forgotten with the node
_errno_names: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()
