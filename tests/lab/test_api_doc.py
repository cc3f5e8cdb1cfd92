"""docs/api.md stays true: every class, function and member it names in a ``###`` section exists."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def sections() -> list[tuple[str, str]]:
    text = DOC.read_text()
    out = []
    for m in re.finditer(r"(?ms)^### `([\w.]+)`\n(.*?)(?=^##)", text + "\n##"):
        out.append((m.group(1), m.group(2)))
    return out


def resolve(path: str) -> Any:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(path)


def has(obj: Any, name: str) -> bool:
    if hasattr(obj, name):
        return True
    if inspect.isclass(obj):  # instance attributes set in __init__ or dataclass fields
        if name in getattr(obj, "__dataclass_fields__", {}):
            return True
        src = "".join(inspect.getsource(c) for c in obj.__mro__ if c.__module__.startswith("lab"))
        return re.search(rf"self\.{name}\b(: [^=]+)? =", src) is not None
    return False


def names_in(body: str) -> set[str]:
    """Member names a section lists: the first cell of each table row, and `name(` calls."""
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            cell = line.split("|")[1]
            names.update(re.findall(r"`(\w+)[`(]", cell))
    names.update(re.findall(r"`(\w+)\(", body))
    return names


@pytest.mark.parametrize("path,body", sections(), ids=[p for p, _ in sections()])
def test_named_api_exists(path: str, body: str) -> None:
    obj = resolve(path)
    own = path.rsplit(".", 1)[-1]
    mod = importlib.import_module(obj.__module__) if inspect.isclass(obj) else obj
    missing = sorted(
        n for n in names_in(body) if n != own and not has(obj, n) and not (inspect.isclass(obj) and has(mod, n))
    )
    assert not missing, f"docs/api.md names {path}.{{{', '.join(missing)}}}, which do not exist"
