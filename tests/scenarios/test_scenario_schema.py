"""Scenario files: the schema and its error messages (no Docker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import scenario as sc

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
name: t-good
firmware: 1.25.0
topology: {nodes: 1}
peers:
  - {name: sender, kind: udp, port: 40000}
timeline:
  - id: go
    exec: {node: node1, code: "print(1)", expect: {output: "1"}}
  - send: {peer: sender, to: node1, port: 5005}
assertions:
  - wire: {layer: UDP, fields: {dst: "${node1}", dport: 5005}, count: 1, since: go}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path: Path) -> None:
    scn = sc.load(path)
    assert scn.upstream.startswith("https://github.com/micropython/micropython/")
    assert scn.description and scn.assertions
    assert len(scn.lab_name) <= 9


def test_good_scenario_loads(tmp_path: Path) -> None:
    scn = sc.load(write(tmp_path, GOOD))
    assert [s.action for s in scn.timeline] == ["exec", "send"]
    assert scn.timeline[0].expect and scn.timeline[0].expect.output == "1"
    assert scn.assertions[0].args["min"] == 1 and scn.assertions[0].args["max"] == 1


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "fix"),
    [
        ("kind: udp", "kind: udpp", 5, "peers[0].kind", "use one of"),
        ("    exec: {node: node1,", "    exce: {node: node1,", 8, "timeline[0].exce", "did you mean `exec`"),
        ("node: node1, code", "node: node3, code", 8, "timeline[0].exec.node", "use one of ['node1']"),
        ("count: 1, since: go", "count: lots, since: go", 11, "assertions[0].wire.count", "count: 3"),
        ("since: go}", "since: nope}", 11, "assertions[0].wire.since", "use one of"),
        ('dst: "${node1}"', 'dst: "${node9}"', 11, "assertions[0].wire.fields.dst", "${node1}"),
        ("layer: UDP", "layer: UPD", 11, "assertions[0].wire.layer", "use one of"),
        ('expect: {output: "1"}', 'expect: {output: "(1"}', 8, "timeline[0].exec.expect.output", "escape"),
        ("firmware: 1.25.0", "firmware: ./nope.elf", 2, "firmware", "fix the path"),
        ("  - id: go\n", "  - id: go\n    at: -1\n", 8, "timeline[0].at", "seconds"),
        ("  - id: go\n", "  - id: off\n", 7, "timeline[0].id", 'quote it: id: "off"'),
    ],
)
def test_malformed_scenario_names_file_line_field_and_fix(
    tmp_path: Path, old: str, new: str, line: int, field: str, fix: str
) -> None:
    assert old in GOOD
    p = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: {field}: "), msg
    assert "; fix: " in msg and fix in msg.split("; fix: ", 1)[1], msg
    assert "\n" not in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("timeline:\n", "timeline:\n  - id: [oops\n", 1))
    with pytest.raises(sc.ScenarioError, match=rf"^{p}:\d+: not valid YAML .*; fix: "):
        sc.load(p)


def test_missing_required_fields(tmp_path: Path) -> None:
    with pytest.raises(sc.ScenarioError, match=r":1: top level: `timeline` is missing; fix: add `timeline:`"):
        sc.load(write(tmp_path, "name: x\n"))
    with pytest.raises(sc.ScenarioError, match=r":1: top level: `name` is missing"):
        sc.load(write(tmp_path, "timeline: []\n"))


def test_cli_bad_scenario_exits_2_with_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("kind: udp", "kind: nope", 1))
    r = subprocess.run(
        [sys.executable, "-m", "lab", "repro", str(p)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"{p}:5: peers[0].kind: unknown peer kind" in r.stderr


def test_cli_unknown_firmware_version_exits_2(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    r = subprocess.run(
        [sys.executable, "-m", "lab", "repro", str(p), "--firmware", "0.0.1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown firmware version 0.0.1" in r.stderr, r.stderr


def test_cli_check_only(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "repro", "--check", str(write(tmp_path, GOOD))],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 0 and ": ok (2 steps, 1 assertions" in r.stdout, r.stderr


def test_unknown_action_lists_every_valid_action(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("  - send: {peer: sender,", "  - frobnicate: {peer: sender,", 1))
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:9: timeline[1].frobnicate: unknown action 'frobnicate'; fix: "), msg
    fix = msg.split("; fix: ", 1)[1]
    listed = fix.split("the actions are: ", 1)[1].split(" (", 1)[0].split(", ")
    assert listed == list(sc.ACTIONS) and {"exec", "impair", "inject", "send", "wait_for"} <= set(listed), fix
    # the runner resolves a step's action through the same registry, with the same list
    with pytest.raises(sc.ScenarioError, match="unknown action 'frobnicate'; fix: the actions are: exec, "):
        sc.lookup("frobnicate")


def test_one_registry_validates_and_runs_each_action() -> None:
    for name, act in sc.ACTIONS.items():
        assert act.name == name and act.synopsis
        assert type(act).check is not sc.Action.check and type(act).run is not sc.Action.run, name


def test_impair_fields_and_service_ports_have_one_source() -> None:
    import ast

    from lab import impair, services

    assert {*impair.FIELDS, "direction"} == sc.IMPAIR_KEYS
    assert sc.SERVICES == services.PORTS
    # the services image cannot import the lab: its own table must agree with lab/services.py
    tree = ast.parse((REPO / "images" / "services" / "peers.py").read_text())
    image = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PORTS"]
    assert image == [services.PORTS]
