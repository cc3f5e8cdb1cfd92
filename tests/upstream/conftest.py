"""Upstream's own tests on a lab node: one run of run-tests.py per session, one item per test.

``upstream`` (session) runs every suite test once on ``node`` (lab/upstream.py) and keeps
run-tests.py's log, its .exp/.out pairs and a summary under ``artifacts/upstream-<lab>/``. The
per-suite counts and the run time are printed at the end of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import ConsoleError, LabError, Node
from lab.pytest_plugin import artifacts_root
from lab.upstream import Result, load_skips, run

SKIP_FILE = Path(__file__).with_name("skip.yml")
_RESULT = pytest.StashKey[Result]()


@pytest.fixture(scope="session")
def upstream(node: Node, request: pytest.FixtureRequest) -> Result | str:
    """The run's Result, or the one-line error that stopped it (every item then fails with it)."""
    cfg = request.config
    tr = cfg.pluginmanager.get_plugin("terminalreporter")

    def progress(msg: str) -> None:
        if tr is not None:
            tr.write_line(msg)

    out = artifacts_root(cfg) / f"upstream-{node.lab.name}"
    try:
        res = run(node, skips=load_skips(SKIP_FILE), out_dir=out, progress=progress)
    except (LabError, ConsoleError) as e:
        return str(e).splitlines()[0]
    cfg.stash[_RESULT] = res
    return res


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    res = config.stash.get(_RESULT, None)
    if res is not None:
        terminalreporter.write_sep("-", "upstream MicroPython tests")
        terminalreporter.write_line(res.summary())
        terminalreporter.write_line(f"  artifacts: {res.out_dir}")
