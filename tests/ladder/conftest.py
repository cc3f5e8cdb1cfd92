"""Fixtures of the ladder tests: a headless Chromium (Debian's `chromium`, driven over the
DevTools protocol on a pipe, tests/ladder/cdp.py). Without it the browser tests skip, and fail
under CI=true, where scripts/ensure-host-packages.sh installs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cdp import Chromium, chromium_binary, unavailable


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if chromium_binary() is None:
        unavailable("the browser tests need Chromium: apt-get install chromium (scripts/ensure-host-packages.sh)")
    with Chromium() as b:
        yield b
