"""Scenario keys ``app:`` and ``packages:``: the schema (no Docker) and one real run whose
verdict depends on both and on an MQTT wire assertion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import scenario as sc

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).parent / "app-example" / "app.yml"
BASE = """\
name: t-app
firmware: 1.25.0
topology: {nodes: 2}
timeline:
  - exec: {node: node1, code: "print(1)", expect: {output: "1"}}
"""


def write(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "main.py").write_text("print('x')\n")
    p = tmp_path / "s.yml"
    p.write_text(BASE + extra)
    return p


def test_example_loads() -> None:
    scn = sc.load(EXAMPLE)
    assert [(a.node, a.src.name, a.wait) for a in scn.app] == [("node1", "app", "wth-app main ran")]
    assert [(ps.node, [Path(s).name for s in ps.specs]) for ps in scn.packages] == [("node1", ["wthpkg"])]
    assert scn.assertions[1].args["spec"].layer == "MQTTPublish"


def test_forms(tmp_path: Path) -> None:
    scn = sc.load(write(tmp_path, "app: app\npackages: [microdot]\n"))
    assert [(a.node, a.dest) for a in scn.app] == [("node1", "/")]
    assert [(ps.node, ps.specs) for ps in scn.packages] == [("node1", ["microdot"]), ("node2", ["microdot"])]
    scn = sc.load(write(tmp_path, "app: [{src: app, node: node2, dest: /app}]\npackages: {node2: [microdot]}\n"))
    assert [(a.node, a.dest) for a in scn.app] == [("node2", "/app")]
    assert [ps.node for ps in scn.packages] == ["node2"]


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ("app: nowhere\n", "app.src: "),
        ("app: {src: app, node: node3}\n", "app.node: no node 'node3'"),
        ("app: {src: app, wiat: x}\n", "did you mean `wait`"),
        ("packages: [./no/such/pkg]\n", "packages[0]: "),
        ("packages: {node5: [microdot]}\n", "no node 'node5'"),
    ],
)
def test_bad_keys_name_file_line_and_fix(tmp_path: Path, extra: str, msg: str) -> None:
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(write(tmp_path, extra))
    assert msg in str(ei.value) and "; fix: " in str(ei.value), str(ei.value)


@pytest.mark.docker
def test_app_and_packages_scenario_reproduces(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (capture on the lab bridge)")
    out = tmp_path / "b"
    r = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", "wthsc", "repro", str(EXAMPLE), "--no-build", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    v = json.loads((out / "verdict.json").read_text()) if (out / "verdict.json").is_file() else {}
    assert r.returncode == 0, r.stdout + r.stderr + json.dumps(v.get("checks"), indent=1)
    assert v["verdict"] == "reproduced"
    wire = [c for c in v["checks"] if "(wire)" in c["label"]]
    assert wire and len(wire[0]["packets"]) == 1, wire
    deploys = json.loads((out / "deploy.json").read_text())
    assert [d["kind"] for d in deploys] == ["packages", "app"]
    assert "/lib/wthpkg/util.py" in deploys[0]["sent"] and "/main.py" in deploys[1]["sent"]
    assert "wth-app main ran" in deploys[1]["console"]  # up to the `wait` regex
