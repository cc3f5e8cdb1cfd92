"""A MicroPython REPL over a TCP serial port (QEMU ``-serial tcp:...,server``).

Raw-paste exec with flow control (falls back to the plain raw REPL), friendly-REPL
helpers, a transcript of every byte read and written, and typed errors. The framing is the
one of upstream ``tools/pyboard.py`` / ``mpremote/transport_serial.py``::

    host: Ctrl-A                       guest: "raw REPL; CTRL-B to exit\\r\\n>"
    host: "\\x05A\\x01"                  guest: "R\\x01" + u16le window   (or "R\\x00": refused)
    host: code (window-sized chunks)   guest: "\\x01" per consumed window
    host: "\\x04"                       guest: "\\x04" (end of data acknowledged)
                                       guest: stdout "\\x04" stderr "\\x04" ">"

The console stays in the raw REPL between execs, so one exec is one round trip.
"""

from __future__ import annotations

import ast
import re
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
from pexpect.socket_pexpect import SocketSpawn

from .errors import LabError
from .util import poll_until

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_PROMPT = b">>> "
CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
RAW_PASTE_REQUEST = b"\x05A\x01"
TAIL_CHARS = 400

_ERRNO_RE = re.compile(r"^OSError: (?:\[Errno )?(-?\d+)")
_EXC_RE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


class ConsoleError(LabError):
    """Base class of console errors (a LabError: the CLI prints it as one line)."""


class ConsoleTimeout(ConsoleError):
    """The guest did not answer in time. Says what was sent and what came back."""

    def __init__(self, message: str, *, sent: str = "", tail: str = "") -> None:
        super().__init__(message)
        self.sent = sent
        self.tail = tail


class ConsoleClosed(ConsoleError):
    """The peer (QEMU's serial server) hung up."""


class GuestError(ConsoleError):
    """Code run on the guest raised an exception. Keeps the guest's traceback."""

    def __init__(self, traceback: str, *, code: str = "", stdout: str = "", name: str = "") -> None:
        self.traceback = traceback.strip()
        self.code = code
        self.stdout = stdout
        last = self.traceback.splitlines()[-1] if self.traceback else ""
        m = _EXC_RE.match(last)
        self.exc_type: str = m.group(1) if m else ""
        em = _ERRNO_RE.match(last)
        self.errno: int | None = int(em.group(1)) if em else None
        where = f"{name}: " if name else ""
        super().__init__(f"{where}guest raised {last or 'an exception'}\n{self.traceback}")


@dataclass
class _Transcript:
    """File-like sink for pexpect's logfile_read/logfile_send: keeps everything."""

    data: bytearray
    path: Path | None = None

    def __post_init__(self) -> None:
        self._fh = open(self.path, "ab") if self.path else None

    def write(self, b: bytes | str) -> None:
        if isinstance(b, str):
            b = b.encode()
        self.data += b
        if self._fh:
            self._fh.write(b)

    def flush(self) -> None:
        if self._fh:
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


def _show(b: bytes | str, limit: int = TAIL_CHARS) -> str:
    """Printable rendering of (the tail of) some console bytes."""
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    if len(b) > limit:
        b = "…" + b[-limit:]
    return repr(b)


def _head(code: str, limit: int = 120) -> str:
    one = code.strip().replace("\n", "⏎")
    return one if len(one) <= limit else one[:limit] + "…"


class _QuickAckSpawn(SocketSpawn):
    """SocketSpawn that re-arms TCP_QUICKACK before each read.

    QEMU's serial socket has Nagle on unless started with ``nodelay=on``: the guest's
    second small write then waits for our ACK, which Linux delays by ~40 ms. Acking at
    once removes that stall (a QEMU started with nodelay=on does not need it).
    """

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if _QUICKACK is not None:
            try:
                self.socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        got = super().read_nonblocking(size, timeout)
        # pexpect 4.9's SocketSpawn never logs what it reads (SpawnBase does): without this the
        # transcript held only what was sent, none of the guest's output.
        self._log(got, "read")
        return got


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class Console:
    """A MicroPython REPL reached over TCP.

    Create with :meth:`connect_tcp`. ``exec``/``eval`` use the raw REPL (raw-paste when the
    guest supports it); ``expect``/``sendline`` drive the friendly REPL and switch to it on
    demand. Not thread-safe: one user at a time.
    """

    _UNKNOWN, _RAW, _FRIENDLY = "unknown", "raw", "friendly"

    def __init__(self, sock: socket.socket, *, log_path: Path | None = None, name: str = "") -> None:
        self.name = name or "console"
        self._sock = sock
        self._log = _Transcript(bytearray(), log_path)
        self._spawn = _QuickAckSpawn(sock, timeout=10.0, maxread=65536, encoding=None)
        self._spawn.logfile_read = self._log
        self._spawn.logfile_send = self._log
        self._mode = self._UNKNOWN
        self._raw_paste = True
        self._window = 0  # raw-paste window size, once the guest has told it
        self.closed = False

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def connect_tcp(cls, host: str, port: int, timeout: float = 10.0, log_path: Path | None = None) -> Console:
        """Connect to a serial server, retrying until ``timeout`` (QEMU may still be starting)."""
        deadline = time.monotonic() + timeout
        errors: list[OSError] = []

        def attempt() -> socket.socket | None:
            try:
                return socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            except OSError as e:
                errors.append(e)
                return None

        sock = poll_until(attempt, timeout, interval=0.1)
        if sock is None:
            raise ConsoleTimeout(
                f"cannot connect to serial console {host}:{port} within {timeout}s: {errors[-1] if errors else '?'}",
                sent="",
                tail="",
            )
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, log_path=log_path, name=f"{host}:{port}")

    # ---- transcript -----------------------------------------------------------------
    @property
    def transcript(self) -> str:
        """Everything read and written so far (control bytes included)."""
        return self._log.data.decode("utf-8", "replace")

    def tail(self, n: int = TAIL_CHARS) -> str:
        return self._log.data[-n:].decode("utf-8", "replace")

    def mark(self) -> int:
        """The transcript's position now, to pass to :meth:`since` later."""
        return len(self._log.data)

    def since(self, mark: int = 0) -> bytes:
        """The transcript's bytes after ``mark`` (from :meth:`mark`), control bytes included."""
        return bytes(self._log.data[mark:])

    def resync(self) -> None:
        """The guest was reset behind the console's back: re-enter the raw REPL on next use."""
        self._mode = self._UNKNOWN

    def save_transcript(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(self._log.data))
        return path

    # ---- low level ------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.closed:
            raise ConsoleClosed(f"{self.name}: console is closed")
        try:
            self._spawn.send(data)
        except OSError as e:
            self.closed = True
            raise ConsoleClosed(f"{self.name}: serial connection lost while sending: {e}") from e

    def _expect(self, patterns: Any, timeout: float, sent: str, exact: bool = True) -> int:
        try:
            if exact:
                return self._spawn.expect_exact(patterns, timeout=timeout)
            return self._spawn.expect(patterns, timeout=timeout)
        except pexpect.TIMEOUT:
            got = self._spawn.buffer or b""
            raise ConsoleTimeout(
                f"{self.name}: no expected reply within {timeout:g}s after sending {sent!s}; "
                f"waiting for {_show(_pat_repr(patterns), 120)}; got {_show(got)}",
                sent=sent,
                tail=got.decode("utf-8", "replace") if isinstance(got, bytes) else str(got),
            ) from None
        except pexpect.EOF:
            self.closed = True
            raise ConsoleClosed(
                f"{self.name}: serial peer hung up (QEMU exited?) after sending {sent}; "
                f"last output {_show(self.tail())}"
            ) from None

    def _read_exact(self, n: int, timeout: float, sent: str) -> bytes:
        self._expect(re.compile(rb"[\s\S]{%d}" % n), timeout, sent, exact=False)
        return self._spawn.after  # type: ignore[return-value]

    def _drain(self, quiet: float = 0.0, limit: float = 1.0) -> bytes:
        """Discard pending input; with ``quiet`` > 0, until nothing arrived for that long."""
        got = bytearray(self._spawn.buffer or b"")
        self._spawn.buffer = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                got += self._spawn.read_nonblocking(65536, timeout=quiet)
            except pexpect.TIMEOUT:
                break
            except pexpect.EOF:
                self.closed = True
                raise ConsoleClosed(f"{self.name}: serial peer hung up") from None
        return bytes(got)

    # ---- raw REPL -------------------------------------------------------------------
    def enter_raw(self, timeout: float = 10.0) -> None:
        """Interrupt whatever runs and enter the raw REPL.

        One attempt with the whole timeout: keys are never re-sent, since a slow guest would
        answer each copy and leave stray banners to desync the raw-paste protocol.
        """
        self._send(b"\r" + CTRL_C + CTRL_C)
        self._drain(quiet=0.05, limit=1.0)
        self._send(b"\r" + CTRL_A)
        self._expect(RAW_BANNER, timeout, "Ctrl-A (enter raw REPL)")
        self._mode = self._RAW

    def exec(self, code: str, timeout: float = 10.0) -> str:
        """Run ``code`` on the guest, return its stdout ("\\r\\n" → "\\n").

        Raises GuestError (guest exception), ConsoleTimeout (no answer in ``timeout``; the
        guest is then interrupted with Ctrl-C) or ConsoleClosed.
        """
        if self._mode != self._RAW:
            self.enter_raw(timeout=timeout if timeout > 0 else 10.0)
        data = code.encode()
        sent = f"exec {_head(code)!r}"
        try:
            out, err = self._exec_raw(data, timeout, sent)
        except ConsoleTimeout as e:
            self._recover()
            raise ConsoleTimeout(f"{e} (guest interrupted with Ctrl-C)", sent=e.sent, tail=e.tail) from None
        stdout = out.decode("utf-8", "replace").replace("\r\n", "\n")
        if err:
            raise GuestError(
                err.decode("utf-8", "replace").replace("\r\n", "\n"),
                code=code,
                stdout=stdout,
                name=self.name,
            )
        return stdout

    def _exec_raw(self, data: bytes, timeout: float, sent: str) -> tuple[bytes, bytes]:
        # stray bytes (a late prompt, guest prints from a background task) would desync us
        if self._spawn.buffer:
            self._drain()
        if self._raw_paste and self._window and len(data) <= self._window:
            # Known raw-paste guest and the code fits in one window: request, code and
            # end-of-data in one write, so one exec is one round trip. Safe because the
            # guest may always take one window after the header.
            self._send(RAW_PASTE_REQUEST + data + CTRL_D)
            i = self._expect([b"R\x01", b"R\x00"], 5.0, sent + " (raw-paste request)")
            if i == 0:
                self._read_exact(2, 5.0, sent)
                while self._expect([CTRL_D, CTRL_A], 10.0, sent + " (end of raw-paste)") == 1:
                    pass
            else:  # refused after all: the guest took the code as a plain raw REPL line
                self._raw_paste = False
                self._expect(b"OK", 5.0, sent + " (raw REPL)")
            return self._follow(timeout, sent)
        if self._raw_paste:
            self._send(RAW_PASTE_REQUEST)
            i = self._expect([b"R\x01", b"R\x00", RAW_BANNER], 5.0, sent + " (raw-paste request)")
            if i == 0:
                self._raw_paste_write(data, sent)
                return self._follow(timeout, sent)
            self._raw_paste = False
            if i == 1:  # understood but refused: still in the raw REPL, prompt pending
                pass
        # plain raw REPL: the whole program, then Ctrl-D, then "OK". No flow control here, so
        # pace it as mpremote does, or a small UART buffer overflows on long programs.
        for k in range(0, len(data), 256):
            self._send(data[k : k + 256])
            time.sleep(0.01)
        self._send(CTRL_D)
        self._expect(b"OK", 5.0, sent + " (raw REPL)")
        return self._follow(timeout, sent)

    def _raw_paste_write(self, data: bytes, sent: str) -> None:
        window = struct.unpack("<H", self._read_exact(2, 5.0, sent))[0]
        self._window = window
        remain = window
        i = 0
        while i < len(data):
            while remain == 0 or (self._spawn.buffer and self._spawn.buffer[:1] == b"\x01"):
                k = self._expect([CTRL_A, CTRL_D], 10.0, sent + " (raw-paste flow control)")
                if k == 0:
                    remain += window
                else:  # guest ended the paste early (e.g. it was interrupted)
                    self._send(CTRL_D)
                    raise ConsoleError(f"{self.name}: guest aborted raw-paste of {sent}")
            chunk = data[i : i + remain]
            self._send(chunk)
            remain -= len(chunk)
            i += len(chunk)
        self._send(CTRL_D)
        # acknowledgement of end of data (window credits may precede it)
        while self._expect([CTRL_D, CTRL_A], 10.0, sent + " (end of raw-paste)") == 1:
            pass

    def _follow(self, timeout: float, sent: str) -> tuple[bytes, bytes]:
        # One deadline for the program's output, its errors and the prompt after them.
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        self._expect(CTRL_D, left(), sent)
        out = self._spawn.before
        self._expect(CTRL_D, left(), sent + " (stderr)")
        err = self._spawn.before
        self._expect(b">", left(), sent + " (prompt)")
        return out, err

    def _recover(self) -> None:
        """After a timeout: interrupt the guest and resync to a fresh raw REPL."""
        self._mode = self._UNKNOWN
        try:
            self.enter_raw(timeout=3.0)
        except ConsoleError:
            pass

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        """Evaluate ``expr`` on the guest; return ``ast.literal_eval`` of its repr."""
        text = self.exec(f"print(repr({expr}))", timeout=timeout).strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise ConsoleError(f"{self.name}: eval({expr!r}) gave {text!r}, which is not a Python literal") from e

    # ---- friendly REPL --------------------------------------------------------------
    def interrupt(self, timeout: float = 5.0) -> None:
        """Ctrl-C twice, then back to the friendly ``>>> `` prompt."""
        self._send(CTRL_C + CTRL_C)
        self._drain(quiet=0.05, limit=1.0)
        self._send(b"\r" + CTRL_B)
        self._expect(FRIENDLY_PROMPT, timeout, "Ctrl-C Ctrl-C Ctrl-B")
        self._drain(quiet=0.02, limit=0.2)
        self._mode = self._FRIENDLY

    def friendly(self, timeout: float = 5.0) -> None:
        """Leave the raw REPL (if in it) for the friendly REPL."""
        if self._mode == self._FRIENDLY:
            return
        if self._mode == self._RAW:
            self._send(b"\r" + CTRL_B)
            self._expect(FRIENDLY_PROMPT, timeout, "Ctrl-B (leave raw REPL)")
            self._drain(quiet=0.02, limit=0.2)
            self._mode = self._FRIENDLY
        else:
            self.interrupt(timeout)

    def sendline(self, text: str = "") -> None:
        """Type a line into the friendly REPL ("\\r" is Enter)."""
        self.friendly()
        self._send(text.encode() + b"\r")

    def send(self, data: bytes | str) -> None:
        """Send raw bytes, no mode switch."""
        self._send(data.encode() if isinstance(data, str) else data)
        self._mode = self._UNKNOWN if self._mode == self._RAW else self._mode

    def expect(self, pattern: str | bytes | re.Pattern[Any] | Sequence[Any], timeout: float = 10.0) -> str:
        """Wait for a regex (str/bytes/compiled) or one of a list of them; return the match."""
        pats = list(pattern) if isinstance(pattern, (list, tuple)) else [pattern]
        compiled = [_to_bytes_re(p) for p in pats]
        self._expect(compiled, timeout, f"expect({_pat_repr(pattern)})", exact=False)
        self.match_index = self._spawn.match_index if hasattr(self._spawn, "match_index") else 0
        after = self._spawn.after
        return after.decode("utf-8", "replace") if isinstance(after, bytes) else ""

    @property
    def before(self) -> str:
        b = self._spawn.before
        return b.decode("utf-8", "replace") if isinstance(b, bytes) else ""

    # ---- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        if self.closed and self._sock.fileno() < 0:
            return
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._log.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_bytes_re(p: Any) -> re.Pattern[bytes]:
    if isinstance(p, re.Pattern):
        if isinstance(p.pattern, bytes):
            return p
        return re.compile(p.pattern.encode(), p.flags & ~re.UNICODE)
    if isinstance(p, str):
        return re.compile(p.encode())
    if isinstance(p, bytes):
        return re.compile(p)
    raise TypeError(f"expect() pattern must be str, bytes or re.Pattern, not {type(p).__name__}")


def _pat_repr(p: Any) -> str:
    if isinstance(p, (list, tuple)):
        return " | ".join(_pat_repr(x) for x in p)
    if isinstance(p, re.Pattern):
        return repr(p.pattern)
    return repr(p)
