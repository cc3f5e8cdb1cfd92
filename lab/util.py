"""Small helpers that every part of the lab may use. Imports nothing above `errors`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import LabTimeout

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call `predicate` until it returns something truthy or `timeout` seconds pass.

    Returns the last value either way (falsy on timeout), for callers to whom a timeout is an
    ordinary outcome. The predicate is always called at least once, and once more at the
    deadline, so a condition that became true during the last sleep is not missed.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return value
        time.sleep(min(interval, left))


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Like `poll_until`, but a timeout raises `LabTimeout` naming `what` ("node1's DHCP lease").

    `what` should read as the object of "timed out after N s waiting for ...".
    """
    value = poll_until(predicate, timeout, interval)
    if not value:
        raise LabTimeout(f"timed out after {timeout:g} s waiting for {what}")
    return value
