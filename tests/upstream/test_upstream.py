"""Upstream MicroPython's tests (extmod asyncio/ssl/tls/select/socket, net_hosted) on a lab node.

The items are collected from the tree of the firmware the images carry (firmware/build); the
session fixture ``upstream`` runs them all at once with upstream's run-tests.py. A failing item
shows the diff of upstream's expected output against the node's.
"""

from __future__ import annotations

import warnings

import pytest

from lab import LabError
from lab import upstream as up


def _collected() -> tuple[str, list[str]]:
    try:
        version = up.default_version()
        return version, up.collect(up.tests_dir(version))
    except LabError as e:
        return str(e), []


VERSION, TESTS = _collected()


@pytest.mark.parametrize("test", TESTS or ["<no tree>"])
def test_upstream(upstream: up.Result | str, test: str) -> None:
    if not TESTS:
        pytest.fail(VERSION, pytrace=False)  # why nothing was collected
    if isinstance(upstream, str):
        pytest.fail(upstream, pytrace=False)
    if upstream.version != VERSION:
        pytest.fail(
            f"the node runs MicroPython {upstream.version}, the items were collected from {VERSION}'s tests",
            pytrace=False,
        )
    o = upstream.outcomes.get(test)
    if o is None:
        pytest.fail(f"{test}: no outcome (see {upstream.out_dir / 'run-tests.log'})", pytrace=False)
    if o.status == "skip":
        pytest.skip(o.reason)
    if o.status == "fail":
        why = f" ({o.reason})" if o.reason else ""
        pytest.fail(f"{test}: the node's output differs from upstream's expected output{why}\n{o.diff}", pytrace=False)
    if o.status == "error":
        pytest.fail(f"{test}: {o.reason}", pytrace=False)
    if o.flaky:  # it passed on the retry: say so, with the first run's diff
        warnings.warn(f"{test}: {o.reason}\n{o.diff}", UserWarning, stacklevel=1)


def test_node_given_back(upstream: up.Result | str) -> None:
    """After run-tests.py the node is usable again by the rest of the session."""
    if isinstance(upstream, str):
        pytest.fail(upstream, pytrace=False)
    if upstream.restore_error:
        pytest.fail(upstream.restore_error, pytrace=False)
