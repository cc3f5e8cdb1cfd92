"""The runtime contract (issue 16), on every runtime this machine has: the Engine API runtime
(the default), and the compose CLI runtime under Compose v2 and under v1.

Each test runs the real daemon and real guests: up (idempotent, and scaling), down leaving
nothing, down after a SIGKILLed up, two labs side by side, a dead node reported through the
engine's events with its console tail, and a lab made by one runtime taken down by another.
In CI every runtime must be present (a missing one fails: setup installs both composes);
elsewhere a missing compose skips its runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from test_lab_docker import extra_lab, leftovers

from lab import Lab, NodeDown
from lab.runtime import ComposeRuntime, EngineRuntime, Runtime
from lab.runtime.compose import compose_versions

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]

# name → (short tag for lab names, environment that selects it)
RUNTIMES: dict[str, tuple[str, dict[str, str]]] = {
    "engine": ("e", {"MPLAB_RUNTIME": "engine"}),
    "compose-v2": ("c", {"MPLAB_RUNTIME": "compose", "MPLAB_COMPOSE": "docker compose"}),
    "compose-v1": ("o", {"MPLAB_RUNTIME": "compose", "MPLAB_COMPOSE": "docker-compose"}),
}


def _available(name: str) -> str:
    """'' if runtime ``name`` can run here, else why not."""
    have = compose_versions()
    if name == "compose-v2" and "v2" not in have:
        return "no Compose v2 (`docker compose`)"
    if name == "compose-v1" and "v1" not in have:
        return "no Compose v1 (`docker-compose` 1.x)"
    return ""


@pytest.fixture(params=list(RUNTIMES))
def runtime_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = request.param
    why = _available(name)
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run every runtime (scripts/ensure-host-packages.sh installs both composes)")
        pytest.skip(why)
    for k, v in RUNTIMES[name][1].items():
        monkeypatch.setenv(k, v)
    return name


def make_runtime(name: str) -> Runtime:
    env = RUNTIMES[name][1]
    return EngineRuntime() if env["MPLAB_RUNTIME"] == "engine" else ComposeRuntime()


def lab_name(runtime: str, what: str) -> str:
    return f"rc{RUNTIMES[runtime][0]}{what}"


def fresh_lab(name: str, runtime: str, nodes: int = 1) -> AbstractContextManager[Lab]:
    return extra_lab(name, nodes, make_runtime(runtime))


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g}s")
        time.sleep(0.2)


def test_up_is_idempotent_scales_and_down_leaves_nothing(runtime_name: str) -> None:
    name = lab_name(runtime_name, "up")
    with fresh_lab(name, runtime_name, nodes=1) as lab:
        (n1,) = lab.nodes
        assert n1.eval("6 * 7") == 42
        first = n1.info.id
        lab.up(nodes=1)  # again: nothing is recreated
        assert [nd.info.id for nd in lab.nodes] == [first]
        lab.up(nodes=2)  # scale: node1 stays, node2 joins
        nodes = lab.nodes
        assert [nd.name for nd in nodes] == ["node1", "node2"] and nodes[0].info.id == first
        assert nodes[1].eval("1 + 1") == 2 and nodes[1].mac in lab.leases()
    assert leftovers(name) == {}
    Lab(name, runtime=make_runtime(runtime_name), progress=None).down()  # idempotent
    assert leftovers(name) == {}


def test_down_after_a_sigkilled_up_leaves_nothing(runtime_name: str, tmp_path: Path) -> None:
    name = lab_name(runtime_name, "sig")  # "kill": rcckill shares a /24 with the lab "test"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    mplab = [sys.executable, "-m", "lab", "--lab", name]
    subprocess.run([*mplab, "down"], env=env, capture_output=True, cwd=REPO, timeout=180)
    out = (tmp_path / "up.log").open("w")
    p = subprocess.Popen([*mplab, "up", "--nodes", "3"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: bool(leftovers(name).get("containers")) or p.poll() is not None, 90, "container of the lab")
        assert leftovers(name).get("containers"), (
            f"up ended before it made a container: {p.returncode}\n" + (tmp_path / "up.log").read_text()
        )
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    d = subprocess.run([*mplab, "down"], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert d.returncode == 0, d.stderr
    assert leftovers(name) == {}


def test_two_labs_side_by_side(runtime_name: str) -> None:
    a, b = lab_name(runtime_name, "a"), lab_name(runtime_name, "b")
    with fresh_lab(a, runtime_name) as la, fresh_lab(b, runtime_name) as lb:
        assert la.subnet != lb.subnet and la.bridge != lb.bridge
        assert la.node("node1").eval("'a'") == "a" and lb.node("node1").eval("'b'") == "b"
        assert {c.name for c in la.runtime.containers(a)}.isdisjoint(c.name for c in lb.runtime.containers(b))
        la.down()
        assert leftovers(a) == {}
        assert lb.node("node1").eval("2 + 2") == 4, "taking one lab down touched the other"


def test_a_dead_node_is_reported_at_once_with_its_console_tail(runtime_name: str) -> None:
    """Through the engine's events: the exec waiting on the node ends with NodeDown long before
    its own timeout, and the report names the node and shows what its console printed."""
    name = lab_name(runtime_name, "dead")
    with fresh_lab(name, runtime_name) as lab:
        nd = lab.node("node1")
        nd.exec("print('marker-before-kill')")
        reports: list[str] = []
        watch = lab.watch_nodes(reports.append)
        outcome: list[BaseException | str] = []

        def blocked_exec() -> None:
            try:
                outcome.append(nd.exec("import time\ntime.sleep(600)", timeout=900))
            except BaseException as e:  # the outcome is what the test looks at
                outcome.append(e)

        t = threading.Thread(target=blocked_exec, daemon=True)
        try:
            t.start()
            time.sleep(1.0)  # the exec is under way (not a timing assert: a late start only waits)
            os.kill(lab.runtime.pid(nd.container), signal.SIGKILL)  # QEMU is the container's PID 1
            t.join(timeout=120)
            assert not t.is_alive(), "the exec on a dead node was still waiting 120 s after the kill"
            wait_for(lambda: bool(reports), 30, "report of the dead node")
        finally:
            watch.close()
        assert isinstance(outcome[0], NodeDown), outcome
        assert "node1 died" in reports[0] and "console tail" in reports[0], reports
        assert "marker-before-kill" in reports[0] or "MicroPython" in reports[0], reports
        (row,) = lab.status()
        assert row.state.startswith("down") and row.console_tail, row


@pytest.mark.parametrize("other", ["compose-v2", "compose-v1"])
def test_the_engine_takes_down_a_lab_compose_brought_up_and_compose_sees_its_labs(
    other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One compose file, two ways to run it: what either runtime made, the other sees and removes."""
    why = _available(other)
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    name = f"rcx{RUNTIMES[other][0]}"
    compose = ["docker", "compose"] if other == "compose-v2" else ["docker-compose"]
    engine_lab = Lab(name, runtime=EngineRuntime(), progress=None)
    engine_lab.down()
    try:
        engine_lab.up(nodes=1)
        p = subprocess.run(
            [*compose, "-p", f"mplab-{name}", "-f", str(REPO / "docker-compose.yml"), "ps", "-q"],
            capture_output=True, text=True, timeout=60, env={**os.environ, **engine_lab.topology.env()},
        )  # fmt: skip
        listed = set(p.stdout.split())
        ids = {c.id for c in engine_lab.runtime.containers(name)}
        assert all(any(x.startswith(i) for x in listed) for i in ids), (p.stdout, p.stderr, ids)
    finally:
        engine_lab.down()
    for k, v in RUNTIMES[other][1].items():
        monkeypatch.setenv(k, v)
    compose_lab = Lab(name, runtime=ComposeRuntime(), progress=None)
    try:
        compose_lab.up(nodes=1)
        assert compose_lab.node("node1").eval("3") == 3
    finally:
        Lab(name, runtime=EngineRuntime(), progress=None).down()
    assert leftovers(name) == {}


DYING = """
import os, signal

def test_its_node_dies(lab, node):
    node.eval("1")
    os.kill(node.pid, signal.SIGKILL)  # QEMU, the container's PID 1
    node.exec("import time\\ntime.sleep(600)", timeout=900)  # NodeDown, not 900 s
"""


def test_the_plugin_reports_a_node_that_dies_during_a_test(tmp_path: Path) -> None:
    """The session's lab is watched: the death shows on the terminal as it happens, and beside
    the failure it explains, with the node's console tail."""
    t = tmp_path / "test_inner.py"
    t.write_text(DYING)
    p = subprocess.run(
        [sys.executable, "-m", "pytest", str(t), "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--mplab-lab", "rcplug", "--mplab-nodes", "1", "--mplab-file", str(REPO / "docker-compose.yml"),
         "--mplab-artifacts", str(tmp_path / "artifacts")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = p.stdout
    assert p.returncode == 1 and "NodeDown" in out, out + p.stderr
    assert "mplab nodes that died during the test" in out, out
    assert "rcplug: node1 died" in out and "console tail" in out, out
    assert leftovers("rcplug") == {}
