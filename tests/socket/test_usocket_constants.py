"""Module constants: the exact values spec/usocket.rst gives, and nothing on the wire."""

from __future__ import annotations

import pytest

from lab.snippet import run
from lab.spec import SOCKET_CONSTANTS


@pytest.mark.check("constants", "values as in the spec")
@pytest.mark.parametrize("name", sorted(SOCKET_CONSTANTS))
def test_constant_value(node, name):
    r = run(node, expr=f"socket.{name}")
    assert r.ok, r
    assert r.value == SOCKET_CONSTANTS[name], f"socket.{name} = {r.value}, spec says {SOCKET_CONSTANTS[name]}"


@pytest.mark.check("constants", "usocket is the same module as socket")
def test_usocket_alias(node):
    r = run(node, "import usocket", "usocket is socket or usocket.socket is socket.socket")
    assert r.ok and r.value is True, r


@pytest.mark.check("constants", "no socket.error (spec: MicroPython raises OSError)")
def test_no_socket_error(node):
    r = run(node, expr="hasattr(socket, 'error')")
    assert r.ok and r.value is False, r
