"""examples/microdot-server: microdot 2.x on node1, over HTTP and HTTPS, from the host.

The scenario runs in a lab of its own (``mplab repro``): microdot from PyPI (the package
cache), a node certificate from the lab CA, the app, then HTTP(S) requests from the host's
address on the lab bridge. This test reads its bundle: the verdict, the answers, the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB = "exhmdot"  # the scenario's own lab, beside any other

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def bundle(run_scenario: Callable[[Path, str], Path]) -> Path:
    return run_scenario(HERE / "scenario.yml", LAB)


def verdict(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "verdict.json").read_text())


def step(bundle: Path, sid: str) -> dict[str, Any]:
    return next(s for s in verdict(bundle)["steps"] if s["id"] == sid)


def test_the_verdict_says_reproduced_with_every_check_held(bundle: Path) -> None:
    v = verdict(bundle)
    failed = [f"{c['label']}: {c['says']}: {c['detail']}" for c in v["checks"] if not c["held"]]
    assert v["verdict"] == "reproduced" and not failed, f"{v['verdict']} {v['error']}\n" + "\n".join(failed)


def test_microdot_came_from_pypi_into_lib(bundle: Path) -> None:
    deploys = json.loads((bundle / "deploy.json").read_text())
    assert [d["kind"] for d in deploys] == ["packages", "app"], deploys
    assert "/lib/microdot/microdot.py" in deploys[0]["sent"], deploys[0]
    assert "serving http on 80, https on 443" in deploys[1]["console"], deploys[1]["console"]


def test_the_answers_are_microdots(bundle: Path) -> None:
    state = step(bundle, "state")["output"]
    assert state.startswith("HTTP/1.0 200 OK") and "application/json" in state, state
    body = json.loads(state.split("\n\n", 1)[1])
    assert body["led"] is False and body["requests"] >= 1, body
    led = json.loads(step(bundle, "led_on")["output"].split("\n\n", 1)[1])
    assert led["led"] is True and led["requests"] == body["requests"] + 1, led
    hello = json.loads(step(bundle, "hello")["output"].split("\n\n", 1)[1])
    assert hello == {"hello": "lab", "lang": "fr"}, hello
    assert step(bundle, "missing")["output"].startswith("HTTP/1.0 404"), step(bundle, "missing")


def test_https_is_verified_against_the_lab_ca(bundle: Path) -> None:
    tls = json.loads(step(bundle, "https")["output"].split("\n\n", 1)[1])
    assert tls["led"] is True, tls  # the same app and state as on port 80
    wrong = step(bundle, "https_wrong_name")
    assert wrong["exception"] == "SSLCertVerificationError" and "www.lab" in wrong["traceback"], wrong
    checks = {c["label"]: c for c in verdict(bundle)["checks"]}
    hello = next(c for c in checks.values() if c["detail"].startswith("TLSClientHello(sni='node1.lab'"))
    assert hello["held"] and len(hello["packets"]) == 1, hello
