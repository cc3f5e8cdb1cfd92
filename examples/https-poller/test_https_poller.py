"""examples/https-poller: the HTTPS poller (app/main.py) while DNS is slow for a while.

The scenario runs in a lab of its own (``mplab repro``), on the real firmware and the real
services; this test reads its bundle: the verdict, and the lines the application printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB = "exhpoll"  # the scenario's own lab, beside any other
POLL = re.compile(r"^poll (\d+) (ok|timeout|error)\b(.*)$", re.M)
DNS_MS = re.compile(r"\bdns (-?\d+)ms")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def bundle(run_scenario: Callable[[Path, str], Path]) -> Path:
    return run_scenario(HERE / "scenario.yml", LAB)


def verdict(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "verdict.json").read_text())


def polls(bundle: Path) -> list[tuple[int, str, str, int]]:
    """(n, ok|timeout|error, the rest of the line, dns ms) of each line the poller printed."""
    text = (bundle / "node1.console.txt").read_text(errors="replace")
    out = []
    for n, what, rest in POLL.findall(text):
        dns = DNS_MS.search(rest)
        out.append((int(n), what, rest.strip(), int(dns.group(1)) if dns else -1))
    return out


def test_the_verdict_says_reproduced_with_every_check_held(bundle: Path) -> None:
    v = verdict(bundle)
    failed = [f"{c['label']}: {c['says']}: {c['detail']}" for c in v["checks"] if not c["held"]]
    assert v["verdict"] == "reproduced" and not failed, f"{v['verdict']} {v['error']}\n" + "\n".join(failed)


def test_the_application_timed_out_in_the_window_and_recovered(bundle: Path) -> None:
    got = polls(bundle)
    kinds = [k for _, k, _, _ in got]
    assert "timeout" in kinds, f"no poll timed out: {got}"
    first, last = kinds.index("timeout"), len(kinds) - 1 - kinds[::-1].index("timeout")
    assert "ok" in kinds[:first], f"no ok poll before the slow DNS: {got}"
    assert "ok" in kinds[last + 1 :], f"no ok poll after the slow DNS: {got}"
    assert kinds.count("timeout") >= 2, f"the slow window (about 14 s) should cost 2 or more polls: {got}"
    assert "error" not in kinds, f"a poll failed otherwise: {got}"
    assert [n for n, *_ in got] == list(range(1, len(got) + 1)), f"polls missing or repeated: {got}"


def test_the_timeouts_were_the_lookup_not_the_server(bundle: Path) -> None:
    got = polls(bundle)
    # (a poll may also time out on a very loaded host, with a fast lookup: not counted here)
    slow = [dns for _, k, _, dns in got if k == "timeout" and dns >= 3000]
    assert len(slow) >= 2, f"fewer than 2 polls timed out in a lookup of 3 s or more: {got}"
    # Every ok poll had a fast lookup, but for one at the window's end: a lookup begun in the
    # window whose retry (lwIP asks again after 1 s, 2 s) reached dnsmasq once the peer was gone.
    last_timeout = max(i for i, (_, k, _, _) in enumerate(got) if k == "timeout")
    ok = [(i, dns) for i, (_, k, _, dns) in enumerate(got) if k == "ok"]
    slow_ok = [(i, dns) for i, dns in ok if not 0 <= dns < 1000]
    assert ok and all(
        i == last_timeout + 1 and dns < 3500 for i, dns in slow_ok
    ), f"an ok poll with a slow lookup: {got}"


def test_the_wire_shows_the_slow_answers_and_tls_to_www_lab(bundle: Path) -> None:
    checks = {c["says"]: c for c in verdict(bundle)["checks"]}
    queries = next(c for s, c in checks.items() if s.startswith("in the slow window node1 asked"))
    assert queries["held"] and len(queries["packets"]) >= 3, queries
    hellos = [c for s, c in checks.items() if "TLSClientHello" in c["detail"] and "wanted >= 1" in c["detail"]]
    assert len(hellos) == 2 and all(c["held"] for c in hellos), hellos  # before and after the fault
    assert all("sni='www.lab'" in c["detail"] for c in hellos), hellos
