"""A MicroPython REPL emulator on one end of a socketpair, for the console's protocol tests.

It is not a guest: it checks lab.console's state machine against timings a real guest shows
only on a loaded host, deterministically. It speaks the framing of MicroPython's
shared/runtime/pyexec.c: the friendly REPL, the raw REPL (Ctrl-A, Ctrl-B, Ctrl-C clears the
line, Ctrl-D runs it and answers "OK"), and raw-paste ("\\x05A\\x01", "R\\x01" + window, one
"\\x01" per window consumed, Ctrl-D acknowledged with "\\x04"). Programs run on the host's
Python with stdout captured; the tests send only tiny ones.

Timing knobs: ``boot_after`` seconds before the boot banner and first prompt, in which input is
dropped (the UART is not up yet) or, with ``keep_early_input``, kept and read after the prompt
(a UART that buffered it); ``answer_delay`` seconds before each answer to a control key
(a slow guest: answers keep their order, each later than the one before).
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import traceback
from collections.abc import Callable

BANNER = b'MicroPython v1.25.0 on 2026-12-02; emulator with Cortex-M3\r\nType "help()" for more information.\r\n'
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
WINDOW = 256


def run_python(code: str) -> bytes:
    """Run ``code``; the bytes a guest sends after it: stdout, \\x04, traceback, \\x04, '>'."""
    out = io.StringIO()
    err = ""
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<stdin>", "exec"), {})  # the test's own programs
    except Exception:  # a guest prints any exception as a traceback
        err = traceback.format_exc(limit=0)
    return (out.getvalue().replace("\n", "\r\n") + "\x04" + err.replace("\n", "\r\n") + "\x04>").encode()


class ReplEmulator(threading.Thread):
    """The guest end of ``sock``; stops when the host closes its end."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        boot_after: float = 0.0,
        answer_delay: float = 0.0,
        keep_early_input: bool = False,
        on_exec: Callable[[str], bytes | None] | None = None,
        hang_up_after_reply: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.boot_after = boot_after
        self.answer_delay = answer_delay
        self.keep_early_input = keep_early_input
        self.on_exec = on_exec  # returns the reply to a program, or None for run_python's
        self.hang_up_after_reply = hang_up_after_reply  # close once on_exec gave a reply
        self.mode = "friendly"
        self.line = bytearray()
        self.paste: bytearray | None = None
        self.banners = 0  # raw-REPL banners sent

    def run(self) -> None:
        try:
            self._boot()
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return
                for b in data:
                    self._byte(b)
        except OSError:
            return
        finally:
            self.sock.close()

    # ---- behaviour ---------------------------------------------------------------------
    def _boot(self) -> None:
        if self.keep_early_input:
            time.sleep(self.boot_after)  # input waits in the socket
        else:
            end = time.monotonic() + self.boot_after
            self.sock.setblocking(False)
            while time.monotonic() < end:  # the UART is not up: what comes now is lost
                with contextlib.suppress(BlockingIOError):
                    if self.sock.recv(4096) == b"":
                        raise OSError("host closed")
                time.sleep(0.005)
            self.sock.setblocking(True)
        self.sock.sendall(BANNER + b">>> ")

    def _answer(self, data: bytes) -> None:
        if self.answer_delay:
            time.sleep(self.answer_delay)
        self.sock.sendall(data)

    def _reply(self, prefix: bytes, code: str) -> None:
        reply = self.on_exec(code) if self.on_exec is not None else None
        self.sock.sendall(prefix + (run_python(code) if reply is None else reply))
        if reply is not None and self.hang_up_after_reply:
            raise OSError("hung up")  # run() closes the socket

    def _byte(self, b: int) -> None:
        if self.paste is not None:
            if b == 4:
                code, self.paste = bytes(self.paste), None
                self._reply(b"\x04", code.decode())
                return
            self.paste.append(b)
            if len(self.paste) % WINDOW == 0:
                self.sock.sendall(b"\x01")
            return
        if self.mode == "friendly":
            if b == 1:
                self.mode, self.line = "raw", bytearray()
                self.banners += 1
                self._answer(b"\r\n" + RAW_BANNER)
            elif b in (3, 13):
                self.line = bytearray()
                self._answer(b"\r\n>>> ")
            else:
                self.line.append(b)
                self.sock.sendall(bytes([b]))  # echo
            return
        # raw REPL; "\x05A\x01" at a line's start enters raw-paste (pyexec reads those bytes
        # itself, so the \x01 there is no Ctrl-A)
        if self.line == b"\x05A" and b == 1:
            self.line = bytearray()
            self.paste = bytearray()
            self.sock.sendall(b"R\x01" + WINDOW.to_bytes(2, "little") + b"\x01")
        elif b == 1:
            self.line = bytearray()
            self.banners += 1
            self._answer(RAW_BANNER)
        elif b == 2:
            self.mode = "friendly"
            self._answer(b"\r\n>>> ")
        elif b == 3:
            self.line = bytearray()
        elif b == 4:
            code, self.line = bytes(self.line), bytearray()
            self._reply(b"OK", code.decode())
        else:
            self.line.append(b)


def connect(**knobs: object) -> tuple[socket.socket, ReplEmulator]:
    """A host socket and a started emulator on the other end."""
    host, guest = socket.socketpair()
    emu = ReplEmulator(guest, **knobs)  # type: ignore[arg-type]
    emu.start()
    return host, emu
