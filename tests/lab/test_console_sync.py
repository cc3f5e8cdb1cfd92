"""The console's raw-REPL handshake against a guest's worst timings, deterministically.

A REPL emulator (tests/lab/repl_emulator.py) plays the guest, so that a boot that outlasts the
first keys, or a guest slow to answer, happens on every run rather than on a loaded CI host
only. tests/firmware/test_fw_console_sync.py runs the same races against the real guest.
"""

from __future__ import annotations

import pytest
from repl_emulator import ReplEmulator, connect

from lab.console import Console, ConsoleTimeout


def _console(**knobs: object) -> tuple[Console, ReplEmulator]:
    sock, emu = connect(**knobs)
    return Console(sock, name="emu"), emu


def _three_execs(con: Console) -> None:
    for n in range(3):
        assert con.exec(f"print({n} * 7)", timeout=10.0) == f"{n * 7}\n"


def test_keys_lost_during_boot() -> None:
    """Keys sent before the UART is up are lost: Ctrl-A goes again until a banner comes."""
    con, emu = _console(boot_after=0.5)
    with con:
        _three_execs(con)
    assert emu.banners >= 1


def test_keys_answered_after_the_boot_banner() -> None:
    """The keys wait in the UART while the guest boots; their answers come after the boot
    banner and first prompt, each late (CI's failure: a second banner read as the raw-paste
    answer)."""
    con, emu = _console(boot_after=0.3, keep_early_input=True, answer_delay=0.15)
    with con:
        _three_execs(con)


def test_slow_guest_answers_every_copy() -> None:
    """A guest slower than the Ctrl-A retry answers each copy: the sync program's reply is the
    barrier after which no stale banner is left."""
    con, emu = _console(answer_delay=0.6)
    with con:
        _three_execs(con)
    assert emu.banners >= 2  # the retry happened, so the barrier was needed


def test_exec_after_a_reset_in_the_raw_repl() -> None:
    con, emu = _console()
    with con:
        _three_execs(con)
        before = con.resets
        emu.sock.sendall(b"\r\n" + b'MicroPython v1.25.0 on x; y\r\nType "help()" for more information.\r\n>>> ')
        emu.mode = "friendly"
        _three_execs(con)
        assert con.resets == before + 1


def test_a_guest_that_never_answers_times_out_in_one_line() -> None:
    con, _ = _console(boot_after=60)
    with con, pytest.raises(ConsoleTimeout, match=r"did not enter the raw REPL within 3s \(\d+ tries"):
        con.enter_raw(timeout=3.0)
