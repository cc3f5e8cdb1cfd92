"""A minimal QMP client over QEMU's ``-qmp unix:PATH,server=on,wait=off`` socket."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any


class QmpError(Exception):
    pass


class Qmp:
    """One QMP session: greeting, ``qmp_capabilities``, then commands. Events are skipped."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(str(path))
                break
            except OSError as e:
                self._sock.close()
                if time.monotonic() >= deadline:
                    raise QmpError(f"cannot connect to QMP socket {path}: {e}") from e
                time.sleep(0.1)
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
