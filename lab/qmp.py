"""A minimal QMP client over QEMU's ``-qmp unix:PATH,server=on,wait=off`` socket (the firmware
tests' guests; a lab node's QMP is reached with ``Node.qmp``, through mplab-qmp in its container)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from .errors import LabError
from .util import poll_until


class QmpError(LabError):
    pass


class Qmp:
    """One QMP session: greeting, ``qmp_capabilities``, then commands. Events are skipped."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        errors: list[OSError] = []

        def attempt() -> socket.socket | None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(str(path))
                return s
            except OSError as e:
                s.close()
                errors.append(e)
                return None

        sock = poll_until(attempt, timeout, 0.1)
        if sock is None:
            raise QmpError(f"cannot connect to QMP socket {path}: {errors[-1] if errors else 'timed out'}")
        self._sock = sock
        self._buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"no QMP greeting on {path}: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QmpError("QMP peer closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise QmpError(f"{command} {arguments}: {reply['error']}")
            return reply.get("return")

    def hmp(self, line: str) -> str:
        """A human-monitor command (e.g. ``info network``), its text output."""
        return str(self.execute("human-monitor-command", **{"command-line": line}))

    def close(self) -> None:
        self._sock.close()
