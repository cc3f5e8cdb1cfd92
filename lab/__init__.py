"""mplab: emulated networked MicroPython devices on a Docker LAN.

Public API: :class:`Lab`, :class:`Node`, :class:`Console`, :class:`Capture`, :class:`Wire`,
:class:`Topology`, and the error types (all under :class:`LabError`). See docs/api.md.
"""

from .console import Console, ConsoleClosed, ConsoleError, ConsoleReset, ConsoleTimeout, GuestError
from .errors import CaptureError, ConfigError, LabError, LabTimeout, NodeDown, NodeError, RuntimeUnavailable
from .lab import Lab, Node, NodeStatus
from .runtime import ComposeRuntime, ContainerEvent, ContainerInfo, EngineRuntime, Runtime, runtime_from_env
from .topology import Topology, guest_mac, validate_lab_name

__all__ = [
    "Capture",
    "CaptureError",
    "ComposeRuntime",
    "ConfigError",
    "Console",
    "ConsoleClosed",
    "ConsoleError",
    "ConsoleReset",
    "ConsoleTimeout",
    "ContainerEvent",
    "ContainerInfo",
    "EngineRuntime",
    "GuestError",
    "Lab",
    "LabError",
    "LabTimeout",
    "Node",
    "NodeDown",
    "NodeError",
    "NodeStatus",
    "Runtime",
    "RuntimeUnavailable",
    "Topology",
    "Wire",
    "guest_mac",
    "runtime_from_env",
    "validate_lab_name",
]


def __getattr__(name: str) -> object:
    # scapy is slow to import: load the capture module only when it is asked for
    if name in ("Capture", "Wire"):
        from . import capture

        return getattr(capture, name)
    raise AttributeError(name)
