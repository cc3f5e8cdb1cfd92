"""Container runtimes behind one interface (docs/runtime.md).

``EngineRuntime`` (the default) speaks the Docker Engine API; ``ComposeRuntime`` drives the
docker and compose CLIs. ``MPLAB_RUNTIME=engine|compose`` picks one; :func:`runtime_from_env`
is the one place that reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigError
from .base import DOCKER_DOWN_MSG, ContainerEvent, ContainerInfo, Progress, Runtime, Watch
from .compose import ComposeRuntime
from .engine import EngineRuntime

RUNTIMES: dict[str, type[Runtime]] = {"engine": EngineRuntime, "compose": ComposeRuntime}

__all__ = [
    "DOCKER_DOWN_MSG",
    "RUNTIMES",
    "ComposeRuntime",
    "ContainerEvent",
    "ContainerInfo",
    "EngineRuntime",
    "Progress",
    "Runtime",
    "Watch",
    "runtime_from_env",
]


def runtime_from_env(env: Mapping[str, str] | None = None) -> Runtime:
    """The runtime that ``MPLAB_RUNTIME`` names (``engine`` when unset)."""
    name = (env if env is not None else os.environ).get("MPLAB_RUNTIME", "") or "engine"
    cls = RUNTIMES.get(name)
    if cls is None:
        raise ConfigError(f"MPLAB_RUNTIME={name!r} is not a runtime; fix: use one of {', '.join(RUNTIMES)}")
    return cls()
