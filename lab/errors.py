"""Exception types of the lab library: one hierarchy under `LabError`.

`LabError` and its subclasses are *user-facing*: their message says what went wrong and how
to fix it (one line, except a guest traceback). The CLI prints it and exits 2 (bad input /
bad config) or 1 (runtime failure) without a Python traceback::

    LabError
    ├── ConfigError          bad input: lab name, compose file, node name, CLI argument (exit 2)
    ├── RuntimeUnavailable   Docker / compose cannot be used
    ├── NodeError            a node is missing, down, or did not come up
    │   └── NodeDown         its container is not running (carries the exec's output)
    ├── LabTimeout           something waited for did not happen in time (also a TimeoutError)
    ├── CaptureError         a packet capture could not start (no root, no bridge)
    ├── console.ConsoleError the REPL: ConsoleTimeout, ConsoleClosed, GuestError (guest traceback)
    └── linux_peer.LinuxPeerError
"""

from __future__ import annotations


class LabError(Exception):
    """Base class of every error the lab library raises on purpose."""

    exit_code = 1


class ConfigError(LabError):
    """Bad user input: a lab name, a compose file, a node name, a CLI argument."""

    exit_code = 2


class RuntimeUnavailable(LabError):
    """The container runtime (Docker daemon, compose) cannot be used."""


class NodeError(LabError):
    """A node is missing, down, or did not come up."""


class NodeDown(NodeError):
    """A node's container is not running (or died during an exec). ``mplab up`` restores it.

    ``output``: the guest stdout received by the exec it interrupted, all of it.
    """

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class LabTimeout(LabError, TimeoutError):
    """Something the lab waited for did not happen within its timeout."""


class CaptureError(LabError):
    """A packet capture (or a sniffer of a peer or responder) could not start."""
