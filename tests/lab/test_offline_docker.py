"""Nothing off the machine (issue 12): a compose file outside the checkout brings a lab up and
down with the checkout's images and host rules; a missing image is an error naming
`make images`, never a pull, and the failed `up` leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import Lab, LabError
from lab.topology import Topology

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def leftovers(name: str) -> dict[str, str]:
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()

    out = {
        "containers": run("docker", "ps", "-aq", "--filter", f"label=mplab.lab={name}"),
        "networks": run("docker", "network", "ls", "-q", "--filter", f"label=mplab.lab={name}"),
        "iptables": " ".join(r for r in run("iptables", "-S", "DOCKER-USER").split("\n") if f"mplab-{name}:" in r),
    }
    return {k: v for k, v in out.items() if v}


def test_compose_file_outside_the_checkout(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO)
    f = tmp_path / "docker-compose.yml"
    shutil.copy(REPO / "docker-compose.yml", f)  # no VERSION, no tap-net/ beside it
    lab = Lab("toutside", compose_file=f, progress=None)
    assert lab.topology.version == Topology.load("toutside", REPO / "docker-compose.yml").version
    lab.down()
    try:
        (nd,) = lab.up(nodes=1)
        assert nd.eval("1 + 1") == 2
        rules = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, timeout=30).stdout
        assert "mplab-toutside:" in rules, "the host rule was skipped: helper looked for beside the compose file"
    finally:
        lab.down()
    assert leftovers("toutside") == {}


def test_missing_image_names_make_images_and_rolls_back() -> None:
    topo = Topology.load("tnoimg", REPO / "docker-compose.yml", version="no-such-tag")
    lab = Lab(topology=topo, progress=None)
    lab.down()
    with pytest.raises(LabError) as ei:
        lab.up(nodes=1)
    msg = str(ei.value)
    assert "mplab/node:no-such-tag" in msg and "make images" in msg and "never pulls" in msg, msg
    assert "rolled back" in msg, msg
    assert leftovers("tnoimg") == {}
    # with keep, it says what is left and how to remove it
    with pytest.raises(LabError) as ei:
        lab.up(nodes=1, keep=True)
    assert "nothing of the lab is left" in str(ei.value) or "mplab --lab tnoimg down" in str(ei.value)
    lab.down()
    assert leftovers("tnoimg") == {}


def test_status_of_a_lab_with_only_its_services_container() -> None:
    """Issue 12: after an `up` killed early, status said "not running" although the lab's
    services container ran."""
    import os
    import sys

    lab = Lab("tsvc", progress=None)
    lab.down()
    try:
        (nd,) = lab.up(nodes=1, bringup=False)
        subprocess.run(["docker", "rm", "-f", nd.container], capture_output=True, timeout=60)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.run(
            [sys.executable, "-m", "lab", "--lab", "tsvc", "status"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1
        assert "no nodes, but its services container" in p.stdout and "mplab --lab tsvc down" in p.stdout, p.stdout
    finally:
        lab.down()
    assert leftovers("tsvc") == {}
