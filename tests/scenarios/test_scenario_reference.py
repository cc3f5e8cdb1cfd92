"""docs/field-bugs.md's "Scenario reference" against the schema and the action registry, and
against what the real-lab scenario tests run (issue 12). No Docker.

* the reference's tables name the same peer kinds, actions, injection kinds, assertion kinds
  and, for each of them and each other place in a file, the same keys as the code;
* every peer kind, action, injection kind and assertion kind is used by a scenario that a
  Docker test runs (tests/scenarios/lab_runs.py);
* every key the reference lists is in every-key/every-key.yml at its place, and
  ``mplab repro --check`` accepts that file.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from lab_runs import RUNS

from lab import scenario as sc
from lab.scenario import actions, loader, schema

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "field-bugs.md"
EVERY_KEY = Path(__file__).parent / "every-key" / "every-key.yml"

# The "where" table's rows: the doc's label -> (an id, the code's keys there).
WHERE: dict[str, tuple[str, tuple[str, ...]]] = {
    "top level": ("top", tuple(schema.TOP_KEYS)),
    "`topology`": ("topology", schema.TOPOLOGY_KEYS),
    "`files[]`": ("files", schema.FILE_KEYS),
    "`www[]`": ("www", schema.WWW_KEYS),
    "`app`": ("app", schema.APP_KEYS),
    "`peers[]`": ("peers", schema.PEER_COMMON),
    "`timeline[]`": ("step", actions.STEP_META),
    "`expect`, `require`": ("expect", loader.EXPECT_KEYS),
    "a packet (`of`, `wait_for.wire`, `sequence.packets[]`)": ("packet", loader.WIRE_SPEC_KEYS),
    "`wait_for.console`": ("wait_console", actions.WAIT_CONSOLE_KEYS),
}
TABLES = {"where": "where", "kind": "peer", "action": "action", "inject kind": "inject", "assertion": "assertion"}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def reference() -> dict[str, dict[str, set[str]]]:
    """{table: {row: keys}} from the reference's tables (the first column names the row, the
    second lists its keys in backticks)."""
    text = DOC.read_text()
    sec = text.split("## Scenario reference", 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, set[str]]] = {}
    table = None
    for line in sec.splitlines():
        if not line.startswith("|"):
            table = None
            continue
        cells = _cells(line)
        if table is None:
            table = TABLES.get(cells[0])
            assert table is not None, f"docs/field-bugs.md: a table headed {cells[0]!r}: unknown here; add it to TABLES"
            out[table] = {}
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        row = cells[0] if table == "where" else cells[0].strip("`")
        out[table][row] = _names(cells[1])
    return out


def documented_variables() -> set[str]:
    para = DOC.read_text().split("Variables in any string:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`\$\{([^}]+)\}`", para))


# ---- (a) the reference and the code name the same things -------------------------------
def test_reference_names_the_registry_s_kinds_and_actions() -> None:
    ref = reference()
    assert set(ref) == set(TABLES.values()), set(ref)
    assert set(ref["action"]) == set(sc.ACTIONS), "the actions table and lab/scenario/actions.py ACTIONS"
    assert set(ref["peer"]) == set(schema.PEER_KINDS) == set(schema.PEER_OPTIONS)
    assert set(ref["inject"]) == set(actions.INJECT_KINDS)
    assert set(ref["assertion"]) == set(schema.ASSERTION_KEYS) == set(schema.ASSERTION_KINDS)
    assert set(ref["where"]) == set(WHERE), "a row of the first table is unknown here or missing"


def _action_keys(name: str) -> set[str]:
    if name == "inject":  # the rest depends on the kind: the injections table
        return set(actions.INJECT_COMMON)
    return set(sc.ACTIONS[name].fields or ())  # join and sleep take a value, not a mapping


def test_reference_lists_the_schema_s_keys() -> None:
    ref = reference()
    wrong = []

    def same(where: str, doc: set[str], code: set[str]) -> None:
        if doc != code:
            wrong.append(f"{where}: only in the doc {sorted(doc - code)}, only in the code {sorted(code - doc)}")

    for label, (_id, keys) in WHERE.items():
        same(label, ref["where"][label], set(keys))
    for kind, keys in ref["peer"].items():
        same(f"peer {kind}", keys, schema.PEER_OPTIONS[kind])
    for name, keys in ref["action"].items():
        same(f"action {name}", keys, _action_keys(name))
    for kind, keys in ref["inject"].items():
        need, optional = actions.INJECT_KINDS[kind]
        same(f"inject {kind}", keys, {*need, *optional})
    for kind, keys in ref["assertion"].items():
        same(f"assertion {kind}", keys, set(schema.ASSERTION_KEYS[kind]))
    assert not wrong, "docs/field-bugs.md and lab/scenario disagree:\n" + "\n".join(wrong)


def test_reference_lists_the_variables() -> None:
    assert documented_variables() == schema.variables(["node1"], ["NAME"])


# ---- (b) each kind and action is run against the real lab -------------------------------
def used(path: Path) -> dict[str, set[str]]:
    scn = sc.load(path)
    return {
        "peer": {p.kind for p in scn.peers},
        "action": {s.action for s in scn.timeline},
        "inject": {str(s.args["kind"]) for s in scn.timeline if s.action == "inject"},
        "assertion": {a.kind for a in scn.assertions},
    }


def test_every_kind_and_action_is_run_by_a_lab_test() -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for path in RUNS:
        for k, names in used(path).items():
            seen[k] |= names
    want = {
        "peer": set(schema.PEER_KINDS),
        "action": set(sc.ACTIONS),
        "inject": set(actions.INJECT_KINDS),
        "assertion": set(schema.ASSERTION_KINDS),
    }
    missing = {k: sorted(want[k] - seen[k]) for k in want if want[k] - seen[k]}
    assert not missing, (
        f"not used by any scenario a Docker test runs (tests/scenarios/lab_runs.py): {missing}; "
        "add it to a scenario there (tests/scenarios/reference-tour.yml) with an assertion on its effect"
    )


def _docker_tests(f: Path) -> set[str]:
    """The test functions of ``f`` that carry the docker mark (module-wide or their own)."""
    tree = ast.parse(f.read_text())
    module_wide = any(
        isinstance(n, ast.Assign)
        and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
        and "docker" in ast.unparse(n.value)
        for n in tree.body
    )
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and n.name.startswith("test_")
        and (module_wide or any("docker" in ast.unparse(d) for d in n.decorator_list))
    }


@pytest.mark.parametrize("path", list(RUNS), ids=lambda p: p.name)
def test_lab_runs_name_a_docker_test_of_their_file(path: Path) -> None:
    fname, test = RUNS[path].split("::")
    f = REPO / fname if "/" in fname else Path(__file__).with_name(fname)  # an example's own test
    assert test in _docker_tests(f), f"{RUNS[path]}: no such Docker test"
    assert path.is_file() and path.name in f.read_text(), f"{fname} never names {path.name}"


# ---- (c) every documented key is accepted ------------------------------------------------
def found_keys(d: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """{(table, row): keys} that the scenario file ``d`` uses, at their places."""
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    where = {i: label for label, (i, _) in WHERE.items()}

    def put(table: str, row: str, m: Any) -> None:
        if isinstance(m, dict):
            got[(table, row)] |= set(m)

    def packet(m: Any) -> None:
        put("where", where["packet"], m)

    put("where", where["top"], d)
    put("where", where["topology"], d.get("topology"))
    for f in d.get("files") or []:
        put("where", where["files"], f)
    for f in d.get("www") or []:
        put("where", where["www"], f)
    for a in d["app"] if isinstance(d.get("app"), list) else [d.get("app")]:
        put("where", where["app"], a)
    for p in d.get("peers") or []:
        got[("where", where["peers"])] |= set(p) & set(schema.PEER_COMMON)
        got[("peer", p["kind"])] |= set(p) - set(schema.PEER_COMMON)
    for s in d["timeline"]:
        got[("where", where["step"])] |= set(s) & set(actions.STEP_META)
        (name,) = set(s) - set(actions.STEP_META)
        a = s[name]
        put("action", name, a)
        if name == "exec":
            for k in ("expect", "require"):
                put(k, "", a.get(k))
        if name == "inject":
            put("inject", a["kind"], {k: x for k, x in a.items() if k not in actions.INJECT_COMMON})
            packet(a.get("of"))
        if name == "wait_for":
            packet(a.get("wire"))
            put("where", where["wait_console"], a.get("console"))
    for a in d.get("assertions") or []:
        (kind,) = set(a) - {"says"}
        put("assertion", kind, a[kind])
        for p in a[kind].get("packets", []) if kind == "sequence" else []:
            packet(p)
    return got


def test_every_documented_key_is_in_every_key_yml() -> None:
    ref = reference()
    got = found_keys(yaml.safe_load(EVERY_KEY.read_text()))
    missing = []
    for table, rows in ref.items():
        for row, keys in rows.items():
            if table == "where" and WHERE[row][0] == "expect":  # both of them, each with every key
                lack = {k: keys - got[(k, "")] for k in ("expect", "require")}
                missing += [f"exec {k}: {sorted(x)}" for k, x in lack.items() if x]
            elif keys - got[(table, row)]:
                missing.append(f"{table} {row}: {sorted(keys - got[(table, row)])}")
    assert not missing, f"{EVERY_KEY.name} lacks documented keys (add each at its place): {missing}"
    used_vars = set(re.findall(r"\$\{([^}]+)\}", EVERY_KEY.read_text()))
    norm = {re.sub(r"^peer\.[a-z_]+\.", "peer.NAME.", v) for v in used_vars}
    assert documented_variables() <= norm, sorted(documented_variables() - norm)


def test_check_accepts_every_documented_key() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "repro", "--check", str(EVERY_KEY)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and f"{EVERY_KEY}: ok (" in r.stdout, r.stdout + r.stderr


# ---- the schema's own checks for what the reference now says -----------------------------
TOUR = Path(__file__).with_name("reference-tour.yml")


def _tour_with(tmp_path: Path, old: str, new: str) -> Path:
    text = TOUR.read_text()
    assert old in text, old
    p = tmp_path / "s.yml"
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize(
    ("old", "new", "msg"),
    [
        # wait_for wire: its variables are checked at load (they were neither checked nor
        # substituted: the wait never matched)
        ('{src: "${node1}", dport: "${peer.ctl.port}"}}, timeout: 10}', '{src: "${node9}"}}, timeout: 10}', "${node9}"),
        ("mac: \"02:00:00:00:be:ef\"}", "mac: \"02:00:00:00:be:ef\", rpely: true}", "did you mean `reply`?"),
        ("mac: \"02:00:00:00:be:ef\"}", "mac: \"02-00\"}", "is not a MAC address"),
        ("reply: false}", "reply: maybe}", "expected true or false"),
        ('hex: "ffffffffffff', 'hex: "zzffffffffff', "not hexadecimal"),
        ("kind: arp_change,", "kind: arp_chnage,", "did you mean `arp_change`?"),
    ],
)  # fmt: skip
def test_inject_and_wait_for_reject_bad_keys_in_one_line(tmp_path: Path, old: str, new: str, msg: str) -> None:
    p = _tour_with(tmp_path, old, new)
    with pytest.raises(sc.ScenarioError) as ei:
        sc.load(p)
    text = str(ei.value)
    assert text.startswith(f"{p}:") and msg in text and "; fix: " in text and "\n" not in text, text


def test_wait_for_wire_keeps_variables_for_the_run() -> None:
    scn = sc.load(TOUR)
    (seen,) = [s for s in scn.timeline if s.id == "seen"]
    assert seen.args["wire"] == {"layer": "UDP", "fields": {"src": "${node1}", "dport": "${peer.ctl.port}"}}
