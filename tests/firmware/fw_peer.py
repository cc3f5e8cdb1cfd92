"""Small helpers of the firmware tests (the namespace's host peers are lab.netns.ping/arp_probe)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def background(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on its own thread (while the main thread drives the guest's REPL)."""
    pool = ThreadPoolExecutor(max_workers=1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
