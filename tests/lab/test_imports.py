"""Imports inside lab/ run one way (docs/architecture.md): no cycles, no part importing up.

The graph comes from the AST of every module of the package (packages included), with every
import: at the top, inside functions and under ``if TYPE_CHECKING:`` (a type is a dependency
too). No Docker, no lab.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "lab"

# The layers of docs/architecture.md, top first. A module may import its own layer or below.
LAYERS: list[tuple[str, set[str]]] = [
    ("front", {"lab", "lab.__main__", "lab.cli", "lab.pytest_plugin"}),
    ("compose", {"lab.scenario", "lab.differential", "lab.conformance", "lab.report", "lab.upstream", "lab.soak"}),
    ("lab", {"lab.lab"}),
    (
        "parts",
        {
            "lab.runtime",
            "lab.console",
            "lab.capture",
            "lab.impair",
            "lab.inject",
            "lab.tcp_peer",
            "lab.linux_peer",
            "lab.peers",
            "lab.mqtt_peer",
            "lab.hostnet",
            "lab.guestfs",
            "lab.deploy",
            "lab.packages",
            "lab.snippet",
            "lab.netns",
            "lab.services",
            "lab.qmp",
            "lab.pki",
            "lab.ca",
            "lab.lanservices",
            "lab.ladder",
        },
    ),  # fmt: skip
    (
        "data",
        {"lab.topology", "lab.errors", "lab.util", "lab.spec", "lab.packets", "lab.guest_unittest", "lab.daemons"},
    ),  # fmt: skip
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(pkg: Path = PKG) -> dict[str, Path]:
    return {module_name(p, pkg.parent): p for p in sorted(pkg.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module that is one of ours."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``mod`` imports, wherever the import statement is."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if (r := _resolve(a.name, known)) is not None:
                    out.add(r)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for a in node.names:
                # `from . import capture` imports the module lab.capture, `from .x import Y` lab.x
                full = f"{target}.{a.name}"
                r = full if full in known else _resolve(target, known)
                if r is not None:
                    out.add(r)
    out.discard(mod)
    return out


def graph(pkg: Path = PKG) -> dict[str, set[str]]:
    known = modules(pkg)
    return {m: imports_of(m, p, known) for m, p in known.items()}


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path (a → b → … → a) per tangle of modules (see :func:`tangles`)."""
    return [_cycle_in(g, set(c)) for c in tangles(g)]


def tangles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sccs


def _cycle_in(g: dict[str, set[str]], comp: set[str]) -> list[str]:
    """One concrete cycle a → b → … → a inside a strongly connected component."""
    start = min(comp)
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in g[path[-1]] if w in comp)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]) :] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


def layer_of(mod: str) -> int | None:
    """The layer of ``mod`` or of the package it is in (lab.cli.up: lab.cli's)."""
    name = mod
    while name:
        for i, (_layer, mods) in enumerate(LAYERS):
            if name in mods:
                return i
        name = name.rpartition(".")[0]
        if name == "lab":  # the package's __init__ is the front; its modules are not
            return None
    return None


def test_no_import_cycle_in_lab() -> None:
    g = graph()
    msg = [f"  {' -> '.join(_cycle_in(g, set(t)))}   (modules in the tangle: {', '.join(t)})" for t in tangles(g)]
    assert not msg, "import cycles in lab/:\n" + "\n".join(msg)


def test_no_part_imports_a_layer_above() -> None:
    g = graph()
    unknown = sorted(m for m in g if layer_of(m) is None)
    assert not unknown, f"modules not in a layer of docs/architecture.md (add them to LAYERS): {unknown}"
    bad = [
        f"  {m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"  # type: ignore[index]
        for m, deps in sorted(g.items())
        for d in sorted(deps)
        if layer_of(d) is not None and layer_of(d) < layer_of(m)  # type: ignore[operator]
    ]
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


# ---- the checker itself, on small made-up packages ---------------------------------------------
def _pkg(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = tmp_path / "pkg" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path / "pkg"


def test_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = _pkg(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import x\n",
            "b.py": "x = 1\ndef f():\n    from . import a\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        },
    )
    assert find_cycles(graph(pkg)) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_handles_subpackages(tmp_path: Path) -> None:
    pkg = _pkg(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "from .sub.run import go\n",
            "sub/__init__.py": "from .run import go\n",
            "sub/run.py": "from ..core import thing\n",
        },
    )
    g = graph(pkg)
    assert g["pkg.sub"] == {"pkg.sub.run"} and g["pkg.sub.run"] == {"pkg.core"}
    assert find_cycles(g) == [["pkg.core", "pkg.sub.run", "pkg.core"]]


@pytest.mark.parametrize("mod", sorted(modules()))
def test_every_module_imports_alone(mod: str) -> None:
    """Each module imports in a fresh interpreter (an import cycle at the top would fail here)."""
    import subprocess
    import sys

    if mod == "lab.__main__":
        pytest.skip("runs the CLI")
    p = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr.strip().splitlines()[-1:]
