"""The part of a node that impairments act on (``Target``), so that lab/impair never needs a Lab."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LabError

Exec = Callable[..., "subprocess.CompletedProcess[str]"]
ExecDetached = Callable[[str, Sequence[str]], None]
HostPid = Callable[[str], int]


@dataclass(frozen=True)
class Target:
    """The part of a node that impairments need: its container, guest MAC and ways to run
    commands in the container: ``run`` as ``Runtime.exec``, ``run_detached`` as
    ``Runtime.exec_detached`` and ``host_pid`` as ``Runtime.pid``.

    ``Node.impair_target()`` makes one; every function here also takes the node itself.
    """

    lab: str
    name: str
    container: str
    mac: str
    key: str  # the container's id
    run: Exec = field(repr=False, compare=False)
    run_detached: ExecDetached = field(repr=False, compare=False)
    host_pid: HostPid = field(repr=False, compare=False)

    def exec(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.run(self.container, argv, timeout=timeout)

    def sh(self, script: str, what: str, timeout: float = 20.0) -> str:
        """Run ``script`` with sh in the container; LabError with its last line on failure."""
        p = self.exec(["sh", "-c", script], timeout=timeout)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip().splitlines()
            raise LabError(f"{self.lab}/{self.name}: {what} failed: {err[-1] if err else p.returncode}")
        return p.stdout


def target_of(node: Target | Any) -> Target:
    """``node`` itself if it is a Target, else ``node.impair_target()`` (a ``Node``)."""
    if isinstance(node, Target):
        return node
    make_target = getattr(node, "impair_target", None)
    if make_target is None:
        raise TypeError(f"{node!r} is neither an impair.Target nor a Node")
    return make_target()
