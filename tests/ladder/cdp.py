"""A small client of Chromium's DevTools protocol over ``--remote-debugging-pipe`` (fd 3 in,
fd 4 out, NUL-terminated JSON): no websocket library and no port. Enough for the ladder's
browser tests: open a page, record its console errors, exceptions and network requests,
evaluate JS, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"]
FLAGS += ["--disable-extensions", "--disable-background-networking", "--disable-sync", "--mute-audio"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if (p := shutil.which(name)) is not None:
            return p
    return None


class CdpError(RuntimeError):
    pass


def unavailable(message: str) -> None:
    """Skip, or fail under CI (where every prerequisite must be present)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class Chromium:
    """One headless Chromium; ``with Chromium() as b: page = b.open(url)``."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0) -> None:
        self.binary = binary or chromium_binary()
        if self.binary is None:
            raise CdpError("no chromium on PATH (apt-get install chromium)")
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="mplab-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def fds() -> None:
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._tmp.name}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_child_r)
        os.close(from_child_w)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        want = self._id
        got = self._pump(lambda m: m.get("id") == want, self.timeout, f"the answer to {method}")
        if "error" in got:
            raise CdpError(f"{method}: {got['error']}")
        return got.get("result", {})

    def _pump(self, done: Any, timeout: float, what: str) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if "id" not in m:
                    self.events.append(m)
                if done(m):
                    return m
            left = end - time.monotonic()
            if left <= 0:
                raise CdpError(f"chromium: no {what} within {timeout:g}s")
            r, _, _ = select.select([self._r], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise CdpError(f"chromium exited while waiting for {what}")
                self._buf += chunk

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict[str, Any]:
        for m in self.events:
            if m.get("method") == method and m.get("sessionId") == session:
                return m
        return self._pump(
            lambda m: m.get("method") == method and m.get("sessionId") == session,
            timeout or self.timeout,
            f"{method} event",
        )

    def open(self, url: str, width: int = 1400, height: int = 900) -> Page:
        tid = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        for dom in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{dom}.enable", session=sid)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        self.send("Page.navigate", {"url": url}, session=sid)
        self.wait_event("Page.loadEventFired", sid)
        return Page(self, sid)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (CdpError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._tmp.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.b = browser
        self.session = session

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [m["params"] for m in self.b.events if m.get("method") == method and m.get("sessionId") == self.session]

    def evaluate(self, expr: str) -> Any:
        r = self.b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=self.session)
        if "exceptionDetails" in r:
            raise CdpError(f"evaluate {expr!r}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 10.0) -> Any:
        end = time.monotonic() + timeout
        while True:
            v = self.evaluate(expr)
            if v:
                return v
            if time.monotonic() > end:
                raise CdpError(f"{expr!r} still false after {timeout:g}s")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        shot = {"format": "png", "captureBeyondViewport": True}
        r = self.b.send("Page.captureScreenshot", shot, session=self.session)
        path.write_bytes(base64.b64decode(r["data"]))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations among them)."""
        out = [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e.get("args", []))
            for e in self._events("Runtime.consoleAPICalled")
            if e.get("type") in ("error", "assert")
        ]
        for e in self._events("Runtime.exceptionThrown"):
            d = e["exceptionDetails"]
            out.append(f"{d.get('text', '')} {d.get('exception', {}).get('description', '')}")
        logs = [e["entry"] for e in self._events("Log.entryAdded")]
        out += [x.get("text", "") for x in logs if x.get("level") == "error"]
        return out

    def requests(self) -> list[str]:
        """Every URL the page asked for (the page itself included)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]
