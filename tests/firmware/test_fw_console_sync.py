"""The console enters the raw REPL in step with the guest, whatever the guest is doing.

Two races a loaded host produced in CI: keys sent while the guest boots (lost, or answered
after the banner of the boot), and a guest slow to answer, which then answers every copy of a
re-sent key. Either one left a stale raw-REPL banner in the stream, and the next exec's
raw-paste handshake read it as its answer.
"""

from __future__ import annotations

import threading
import time

import pytest

from lab.console import CTRL_D
from lab.netns import Guest
from lab.qmp import Qmp


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
def test_exec_right_after_a_reset(guest: Guest, delay: float) -> None:
    """A system reset, then an exec after `delay`: the keys race the guest's boot."""
    assert guest.console is not None
    qmp = Qmp(guest.qmp_sock)
    try:
        qmp.execute("system_reset")
    finally:
        qmp.close()
    time.sleep(delay)
    guest.console.resync()
    for n in range(3):
        assert guest.console.exec(f"print({n}*7)", timeout=15.0) == f"{n * 7}\n"


def test_keys_queued_before_a_slow_boot(guest: Guest) -> None:
    """The guest is held in reset while the console sends its keys, as a loaded host holds it:
    the boot banner and first prompt come before the answers to those keys, not instead."""
    assert guest.console is not None
    qmp = Qmp(guest.qmp_sock)
    try:
        qmp.execute("stop")
        qmp.execute("system_reset")
        resume = threading.Timer(0.5, lambda: qmp.execute("cont"))
        resume.start()
        guest.console.resync()
        try:
            for n in range(3):
                assert guest.console.exec(f"print({n}+1)", timeout=15.0) == f"{n + 1}\n"
        finally:
            resume.join()
    finally:
        qmp.close()


def test_exec_after_a_guest_deaf_to_ctrl_c(guest: Guest) -> None:
    """A program that ignores Ctrl-C for longer than one Ctrl-A retry: the guest then answers
    two Ctrl-A at once, and the execs that follow must not read the second banner."""
    c = guest.console
    assert c is not None
    c.exec("pass")
    busy = (
        "import micropython, time\n"
        "micropython.kbd_intr(-1)\n"
        "t = time.ticks_ms()\n"
        "while time.ticks_diff(time.ticks_ms(), t) < 5000:\n"
        "    pass\n"
        "micropython.kbd_intr(3)\n"
    )
    c.send(busy.encode() + CTRL_D)  # plain raw REPL; not waited for
    c.resync()
    for n in range(3):
        assert c.exec(f"print('after', {n})", timeout=20.0) == f"after {n}\n"
