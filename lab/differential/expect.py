"""The documented differences between the guest and Linux (docs/differential.md), and the
comparison of one scenario's facts against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .scenarios import RECV_TIMEOUT, SYN_TIMEOUT

# ---- expectations: the documented differences (docs/differential.md) --------------------


class Near:
    """A number within ``tol`` of ``v`` (timings)."""

    def __init__(self, v: float, tol: float) -> None:
        self.v, self.tol = v, tol

    def __call__(self, x: Any) -> bool:
        return isinstance(x, int | float) and abs(x - self.v) <= self.tol

    def __repr__(self) -> str:
        return f"{self.v:g}±{self.tol:g}"


class Gaps:
    """A list of gaps, each within ``tol`` of the expected one."""

    def __init__(self, *v: float, tol: float = 0.35) -> None:
        self.v, self.tol = v, tol

    def __call__(self, x: Any) -> bool:
        return (
            isinstance(x, list)
            and len(x) == len(self.v)
            and all(abs(a - b) <= self.tol for a, b in zip(x, self.v, strict=True))
        )

    def __repr__(self) -> str:
        return "[" + ", ".join(f"{a:g}" for a in self.v) + f"]±{self.tol:g}"


class Pred:
    """A predicate with a description (what the report shows as the expectation)."""

    def __init__(self, what: str, fn: Callable[[Any], bool]) -> None:
        self.what, self.fn = what, fn

    def __call__(self, x: Any) -> bool:
        try:
            return bool(self.fn(x))
        except Exception:
            return False

    def __repr__(self) -> str:
        return self.what


# lwIP's TCP_WND is a build option (6 x MSS in 1.25.0's port, 16 x MSS in later ones): assert
# the shape (whole MSS multiple, unscaled, <= 16 MSS), not one firmware's number.
LWIP_WND = Pred("n x 1460 <= 23360", lambda w: w % 1460 == 0 and 0 < w <= 23360)
# Linux's window scale follows tcp_rmem's max (7 with the default 6 MiB, 10 on this host).
LINUX_SYN_OPTS = Pred(
    "MSS=1460,SAckOK,Timestamp,WScale=<n>", lambda o: o.startswith("MSS=1460,SAckOK,Timestamp,WScale=")
)


def _ok(expect: Any, value: Any) -> bool:
    return bool(expect(value)) if callable(expect) else expect == value


# scenario -> fact -> (guest, linux). Only what is asserted; facts not listed are shown only.
EXPECTED: dict[str, dict[str, tuple[Any, Any]]] = {
    "connect_handshake": {
        "syn_options": ("MSS=1460", LINUX_SYN_OPTS),
        "syn_window": (LWIP_WND, 64240),
        "ip_ttl": (255, 64),
        "ip_df": (False, True),
    },
    "connect_closed_port": {
        "error": ("ECONNRESET", "ECONNREFUSED"),
        "syns_sent": (1, 1),
        "answer": ("RA", "RA"),
    },
    "syn_retransmit": {
        "error": ("ETIMEDOUT", "TimeoutError"),
        "elapsed_s": (Near(SYN_TIMEOUT, 0.5), Near(SYN_TIMEOUT, 0.5)),
        # lwIP: initial RTO 3 s counted in 500 ms slow-timer ticks (2.5..3 s seen). Linux >= 6.8: the first
        # tcp_syn_linear_timeouts (4) SYN retransmits every 1 s (older kernels: 1, 2, 4 s).
        "syns_within_timeout": (2, 4),
        "syn_gaps_s": (Gaps(2.8, tol=0.45), Gaps(1.0, 1.0, 1.0, tol=0.2)),
        "same_isn": (True, True),
    },
    "close_fin_rst": {
        "unread_close": ("RA", "RA"),
        "read_close": ("FA", "FA"),
    },
    "listen_backlog": {
        # lwIP queues `backlog` and resets the rest (after a full handshake); Linux queues
        # backlog + 1, drops further SYNs, and the clients get in by retransmitting once the
        # server accepts (accept() waits 1.5 s: past a 1 s linear or 1+2 s exponential retry)
        "clients_at_1.6s": ("2 connected, 3 reset, 0 pending", "3 connected, 0 reset, 2 pending"),
        "accepted": (2, 5),
        "rst_to_clients": (3, 0),
        "synack_options": ("MSS=1460", LINUX_SYN_OPTS),
    },
    "udp_queue": {
        "datagrams_on_wire": (3, 3),
        "received": (["one"], ["one", "two", "three"]),
    },
    "recv_timeout": {
        "error": ("ETIMEDOUT", "TimeoutError"),
        "wire_gap_s": (Near(RECV_TIMEOUT, 0.25), Near(RECV_TIMEOUT, 0.25)),
        "sent_while_waiting": (0, 0),
    },
    "getaddrinfo_unknown": {
        "error": (-2, -2),
        "queries": (
            ["no-such-host-x1.lab A"],
            [f"no-such-host-x1.lab{s} {t}" for s in ("", ".lab") for t in ("A", "AAAA")],
        ),
    },
    "setsockopt_bad_level": {
        "result": ("ok None", "ENOPROTOOPT"),
        "packets_sent": (0, 0),
    },
    "setsockopt_bad_option": {
        "result": ("ok None", "ENOPROTOOPT"),
        "packets_sent": (0, 0),
    },
}
