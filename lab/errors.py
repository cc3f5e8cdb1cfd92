"""Exception types of the lab library.

`LabError` and its subclasses are *user-facing*: their message is one line that says what
went wrong and how to fix it. The CLI prints it and exits 2 (bad input / bad config) or 1
(runtime failure) without a Python traceback.
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


class LabTimeout(LabError, TimeoutError):
    """Something the lab waited for did not happen within its timeout."""
