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

Why one module of this size (~700 lines): the three framings (raw, raw-paste, friendly), the
transcript and the typed errors share one read loop and its state (the pending bytes, the
mark, the reboot detection); split, each piece would reach into the others' privates.
"""

from __future__ import annotations

import ast
import codecs
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
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
RAW_RETRY = 2.0  # seconds without a raw-REPL banner before Ctrl-A goes again

# The banner a booting guest prints (cold boot, machine.reset(), a crash into the reset
# vector): "MicroPython v1.25.0 on 2025-04-15; MPS2 with Cortex-M3\r\nType "help()" ...".
BOOT_BANNER_RE = re.compile(rb'MicroPython v[^\r\n;]*; [^\r\n]*\r\nType "help\(\)" for more information\.\r\n')
# The same in a log read as text (docker logs: "\r\n" may have become "\n").
_BOOT_BANNER_TEXT_RE = re.compile(r'MicroPython v[^\r\n;]*; [^\r\n]*\r?\nType "help\(\)" for more information\.\r?\n')
_RAW_BANNER_TEXT = "raw REPL; CTRL-B to exit"
_SOFT_REBOOT_RE = re.compile(r"soft reboot\r?\n")  # what a soft reset prints before its banner
_BANNER_MAX = 200  # longest banner we look for, to find one split across reads
_ERRNO_RE = re.compile(r"^OSError: (?:\[Errno )?(-?\d+)")
_EXC_RE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def hard_boots(text: str) -> list[int]:
    """Where in console ``text`` (a node's log) a hard boot printed its banner: a cold boot,
    ``machine.reset()``, QMP ``system_reset``, a crash. A soft reset's banner is left out (it
    keeps the network up): one with "soft reboot" since the banner before, and no raw REPL
    since then (main.py may print before the banner; an exec that interrupted a main.py that
    never ended enters the raw REPL, so a banner after that is a hard boot's)."""
    out, prev = [], 0
    for m in _BOOT_BANNER_TEXT_RE.finditer(text):
        seg = text[prev : m.start()]
        soft = [x.end() for x in _SOFT_REBOOT_RE.finditer(seg)]
        if not soft or _RAW_BANNER_TEXT in seg[soft[-1] :]:
            out.append(m.start())
        prev = m.end()
    return out


class ConsoleError(LabError):
    """Base class of console errors (a LabError: the CLI prints it as one line).

    ``output`` is the guest's stdout received by the exec that failed, all of it ("\n" line
    ends; empty when the error did not happen in an exec).
    """

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ConsoleTimeout(ConsoleError):
    """The guest did not answer in time. Says what was sent and what came back."""

    def __init__(self, message: str, *, sent: str = "", tail: str = "", output: str = "") -> None:
        super().__init__(message, output=output)
        self.sent = sent
        self.tail = tail


class ConsoleClosed(ConsoleError):
    """The peer (QEMU's serial server) hung up."""


class ConsoleReset(ConsoleError):
    """The guest rebooted (its boot banner came) during an exec: ``machine.reset()``, a crash."""


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
        super().__init__(f"{where}guest raised {last or 'an exception'}\n{self.traceback}", output=stdout)


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


class _Received:
    """pexpect's logfile_read: into the transcript, and a tail of what the guest sent only
    (error messages quote the guest, not the code we sent)."""

    def __init__(self, log: _Transcript, keep: int = 4096) -> None:
        self._log = log
        self._keep = keep
        self.tail = bytearray()

    def write(self, b: bytes | str) -> None:
        if isinstance(b, str):
            b = b.encode()
        self._log.write(b)
        self.tail += b
        if len(self.tail) > 2 * self._keep:
            del self.tail[: -self._keep]

    def flush(self) -> None:
        self._log.flush()


def _show(b: bytes | str, limit: int = TAIL_CHARS) -> str:
    """Printable rendering of (the tail of) some console bytes."""
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    if len(b) > limit:
        b = "…" + b[-limit:]
    return repr(b)


def _amount(text: str) -> str:
    """How much output, for messages: "94 lines, 1234 chars"."""
    return f"{text.count(chr(10))} lines, {len(text)} chars"


def _head(code: str, limit: int = 120) -> str:
    one = code.strip().replace("\n", "⏎")
    return one if len(one) <= limit else one[:limit] + "…"


class _Stdout:
    """A guest's stdout as text, as it arrives: UTF-8 decoded across reads, "\r\n" -> "\n"."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._cr = False  # a "\r" held back: its "\n" may be in the next read
        self.parts: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> str:
        text = self._dec.decode(data, final)
        if self._cr:
            text, self._cr = "\r" + text, False
        if text.endswith("\r") and not final:
            text, self._cr = text[:-1], True
        text = text.replace("\r\n", "\n")
        if text:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.parts)


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
        data = super().read_nonblocking(size, timeout)
        # pexpect's SocketSpawn logs what it sends but not what it reads: log it here, so
        # that the transcript holds both directions.
        self._log(data, "read")
        return data


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
        self._rx = _Received(self._log)
        self._spawn.logfile_read = self._rx
        self._spawn.logfile_send = self._log
        self._mode = self._UNKNOWN
        self._raw_paste = True
        self._window = 0  # raw-paste window size, once the guest has told it
        self.closed = False
        self.resets = 0  # boot banners seen (guest reboots), in execs and between them
        # Called when an exec finds that the guest rebooted since the last one (its banner
        # came between execs), before that exec runs.
        self.on_reboot: Callable[[], None] | None = None

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
        except (pexpect.EOF, OSError):  # OSError: ECONNRESET when QEMU was killed
            self.closed = True
            raise ConsoleClosed(
                f"{self.name}: serial peer hung up (QEMU exited?) after sending {sent}; "
                f"last bytes from the guest {_show(bytes(self._rx.tail[-TAIL_CHARS:]))}"
            ) from None

    def _read_exact(self, n: int, timeout: float, sent: str) -> bytes:
        self._expect(re.compile(rb"[\s\S]{%d}" % n), timeout, sent, exact=False)
        return self._spawn.after  # type: ignore[return-value]

    def _drain(self, quiet: float = 0.0, limit: float = 1.0) -> bytes:
        """Discard pending input; with ``quiet`` > 0, until nothing arrived for that long.

        With ``quiet`` 0, only what is already here (pexpect's timeout 0 would make the socket
        non-blocking, which raises instead of timing out).
        """
        got = bytearray(self._spawn.buffer or b"")
        self._spawn.buffer = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if quiet <= 0 and not select.select([self._sock], [], [], 0)[0]:
                break
            try:
                got += self._spawn.read_nonblocking(65536, timeout=quiet if quiet > 0 else 0.01)
            except pexpect.TIMEOUT:
                break
            except (pexpect.EOF, OSError):
                self.closed = True
                raise ConsoleClosed(f"{self.name}: serial peer hung up") from None
        return bytes(got)

    # ---- raw REPL -------------------------------------------------------------------
    def enter_raw(self, timeout: float = 10.0) -> None:
        """Interrupt whatever runs and enter the raw REPL, in step with the guest.

        Keys sent while the guest boots are lost, and a slow guest answers every copy of a
        re-sent key, so neither "send once" nor "send until answered" alone is safe. Ctrl-A
        goes again each RAW_RETRY seconds without a banner; then a sync barrier, a tiny
        program whose output carries a fresh nonce, is run. The guest reads its input in
        order, so once the nonce's reply is in, every reply to earlier keys (extra banners,
        prompts, a boot banner) has come before it and is skipped: nothing stale is left to
        desync the raw-paste handshake of the next exec.
        """
        deadline = time.monotonic() + timeout
        self._send(b"\r" + CTRL_C + CTRL_C)
        self._drain(quiet=0.05, limit=1.0)
        attempts = 0
        while True:
            attempts += 1
            self._send(b"\r" + CTRL_A)
            left = deadline - time.monotonic()
            try:
                self._expect(RAW_BANNER, max(0.1, min(RAW_RETRY, left)), "Ctrl-A (enter raw REPL)")
                self._sync(deadline)
                break
            except ConsoleTimeout as e:
                if time.monotonic() >= deadline:
                    raise ConsoleTimeout(
                        f"{self.name}: the guest did not enter the raw REPL within {timeout:g}s "
                        f"({attempts} tries of Ctrl-C, Ctrl-A); got {_show(e.tail)}",
                        sent="Ctrl-A (enter raw REPL)",
                        tail=e.tail,
                    ) from None
                self._send(CTRL_C + CTRL_C)  # a program that ignored the first interrupt
        self._mode = self._RAW

    def _sync(self, deadline: float) -> None:
        """Run a nonce program by the plain raw REPL and wait for exactly its reply."""
        nonce = os.urandom(6).hex()
        # the reply joins two literals, so an echo of the code (friendly REPL) never matches
        self._send(f"print('mplab-sync','{nonce}')".encode() + CTRL_D)
        reply = f"mplab-sync {nonce}\r\n".encode() + CTRL_D + CTRL_D + b">"
        self._expect(reply, max(0.5, min(RAW_RETRY, deadline - time.monotonic())), "the raw REPL sync program")

    def exec(self, code: str, timeout: float = 10.0, on_output: Callable[[str], None] | None = None) -> str:
        """Run ``code`` on the guest, return its stdout ("\r\n" → "\n").

        ``on_output(text)`` is called with each piece of stdout as it arrives. Raises
        GuestError (guest exception), ConsoleTimeout (not done within ``timeout``; the guest
        is then interrupted with Ctrl-C), ConsoleReset (the guest rebooted) or ConsoleClosed;
        each carries ``.output``, all the stdout received before it.
        """
        parts: list[str] = []
        for text in self.exec_iter(code, timeout):
            parts.append(text)
            if on_output is not None:
                on_output(text)
        return "".join(parts)

    def exec_iter(self, code: str, timeout: float = 10.0) -> Iterator[str]:
        """Run ``code`` on the guest, yield its stdout as it arrives; raise as :meth:`exec`.

        Leaving the loop early interrupts the guest (Ctrl-C) and resyncs the console.
        """
        sent = f"exec {_head(code)!r}"
        self._check_stray(sent)
        if self._mode != self._RAW:
            # the handshake's own wait: an exec's timeout is for its program (a short
            # --timeout must not fail a fresh console on a loaded host)
            self.enter_raw(timeout=max(timeout, 10.0))
        out = _Stdout()
        finished = False
        try:
            self._start_raw(code.encode(), sent)
            err = yield from self._follow(timeout, sent, out)
            finished = True
        except ConsoleTimeout as e:
            finished = True
            self._recover()
            raise ConsoleTimeout(
                f"{e} (guest interrupted with Ctrl-C; {_amount(out.text)} of output before it)",
                sent=e.sent,
                tail=e.tail,
                output=out.text,
            ) from None
        except ConsoleError as e:
            finished = True
            if not e.output:
                e.output = out.text
            raise
        finally:
            if not finished and not self.closed:  # the caller stopped iterating
                self._recover()
        if err:
            raise GuestError(
                err.decode("utf-8", "replace").replace("\r\n", "\n"),
                code=code,
                stdout=out.text,
                name=self.name,
            )

    def _check_stray(self, sent: str) -> None:
        """Bytes that came between execs: a late prompt, prints of a background task, or the
        banner of a reboot (then the guest is in the friendly REPL, and we must re-enter raw)."""
        try:
            stray = self._drain()
        except ConsoleClosed as e:
            raise ConsoleClosed(f"{self.name}: serial peer hung up (QEMU exited?) before {sent}") from e
        if BOOT_BANNER_RE.search(stray):
            self.resets += 1
            self._mode = self._UNKNOWN
            if self.on_reboot is not None:  # e.g. Node: redo the network bring-up first
                self.on_reboot()

    def _start_raw(self, data: bytes, sent: str) -> None:
        """Send the code by raw-paste (or plain raw REPL); return when the guest runs it."""
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
            return
        if self._raw_paste:
            self._send(RAW_PASTE_REQUEST)
            i = self._expect([b"R\x01", b"R\x00", RAW_BANNER], 5.0, sent + " (raw-paste request)")
            if i == 0:
                self._raw_paste_write(data, sent)
                return
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

    def _follow(self, timeout: float, sent: str, out: _Stdout) -> Iterator[str]:
        """Read the program's stdout (yielded as it comes), stderr and the prompt after them.

        Reads what the socket has, whole, rather than pexpect's pattern search over a growing
        buffer: output of any size streams at the speed the guest writes it. One deadline
        covers stdout, stderr and the prompt. Returns the stderr bytes.
        """
        deadline = time.monotonic() + timeout
        pending = bytes(self._spawn.buffer or b"")  # came with the end-of-paste acknowledgement
        self._spawn.buffer = b""
        phase, err = 0, bytearray()  # phase 0 stdout, 1 stderr, 2 prompt
        scan = b""  # the last bytes seen, to find a boot banner split across reads
        while True:
            if pending:
                scan = scan[-_BANNER_MAX:] + pending
                if BOOT_BANNER_RE.search(scan):
                    self.resets += 1
                    self._mode = self._UNKNOWN
                    if phase == 0:
                        text = out.feed(pending, final=True)
                        if text:
                            yield text
                    raise ConsoleReset(
                        f"{self.name}: guest reset during {sent} (its boot banner came; "
                        f"{_amount(out.text)} of output before it)",
                        output=out.text,
                    )
                data, pending = pending, b""
                if phase == 0:
                    k = data.find(CTRL_D)
                    text = out.feed(data if k < 0 else data[:k], final=k >= 0)
                    if text:
                        yield text
                    if k < 0:
                        continue
                    phase, data = 1, data[k + 1 :]
                if phase == 1:
                    k = data.find(CTRL_D)
                    err += data if k < 0 else data[:k]
                    if k < 0:
                        continue
                    phase, data = 2, data[k + 1 :]
                if phase == 2:
                    k = data.find(b">")
                    if k >= 0:
                        self._spawn.buffer = data[k + 1 :]  # stray bytes after the prompt
                        return bytes(err)
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                if phase == 0 and (text := out.feed(b"", final=True)):  # a partial character, a held "\r"
                    yield text
                waiting = ("the end of stdout", "the end of stderr", "the prompt")[phase]
                got = bytes(self._rx.tail[-TAIL_CHARS:])
                last = f"last output {_show(out.text, 120)}" if out.text else f"last bytes {_show(got, 120)}"
                raise ConsoleTimeout(
                    f"{self.name}: {sent} did not finish within {timeout:g}s (waiting for {waiting}; {last})",
                    sent=sent,
                    tail=got.decode("utf-8", "replace"),
                )
            try:
                pending = self._spawn.read_nonblocking(65536, timeout=min(left, 1.0))
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError):
                self.closed = True
                if phase == 0 and (text := out.feed(b"", final=True)):
                    yield text
                raise ConsoleClosed(
                    f"{self.name}: serial peer hung up (QEMU exited?) during {sent}, "
                    f"after {_amount(out.text)} of output",
                    output=out.text,
                ) from None

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
