"""The socket suite's wire helpers are the library's: ``lab.packets`` (kept importable here)."""

from lab.packets import *  # noqa: F403
from lab.packets import FLAG_BITS, Window  # noqa: F401
