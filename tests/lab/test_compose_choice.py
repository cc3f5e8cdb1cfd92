"""Which compose command ComposeRuntime runs: MPLAB_COMPOSE forces it, else v2, else v1.
No Docker: fake commands on PATH stand in for docker and docker-compose."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import RuntimeUnavailable
from lab.runtime import ComposeRuntime


def _fake(bin_dir: Path, name: str, rc: int, out: str = "") -> str:
    """An executable ``name`` that prints ``out`` to stderr and exits ``rc``."""
    p = bin_dir / name
    p.write_text(f"#!/bin/sh\necho '{out}' >&2\nexit {rc}\n")
    p.chmod(0o755)
    return str(p)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("MPLAB_COMPOSE", raising=False)
    return tmp_path


def test_v2_is_chosen_when_it_answers(bin_dir: Path) -> None:
    docker = _fake(bin_dir, "fakedocker", 0)
    _fake(bin_dir, "docker-compose", 0)
    assert ComposeRuntime(docker=docker).compose_cmd() == [docker, "compose"]


def test_mplab_compose_forces_v1_over_a_working_v2(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = _fake(bin_dir, "fakedocker", 0)
    _fake(bin_dir, "docker-compose", 0)
    monkeypatch.setenv("MPLAB_COMPOSE", "docker-compose")
    assert ComposeRuntime(docker=docker).compose_cmd() == ["docker-compose"]


def test_mplab_compose_forces_v2_over_autodetection(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runtime's own docker has no compose plugin; the forced command does.
    docker = _fake(bin_dir, "fakedocker", 1, "docker: unknown command: docker compose")
    other = _fake(bin_dir, "otherdocker", 0)
    monkeypatch.setenv("MPLAB_COMPOSE", f"{other} compose")
    assert ComposeRuntime(docker=docker).compose_cmd() == [other, "compose"]


def test_a_missing_forced_command_is_one_line_naming_it(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLAB_COMPOSE", "nope-compose")
    with pytest.raises(RuntimeUnavailable) as e:
        ComposeRuntime(docker=_fake(bin_dir, "fakedocker", 0)).compose_cmd()
    msg = str(e.value)
    assert "\n" not in msg
    assert "MPLAB_COMPOSE='nope-compose'" in msg and "not found" in msg
    assert "'docker compose' (v2) or 'docker-compose' (v1)" in msg


def test_a_forced_command_that_fails_says_why(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = _fake(bin_dir, "fakedocker", 1, "docker: unknown command: docker compose")
    monkeypatch.setenv("MPLAB_COMPOSE", f"{docker} compose")
    with pytest.raises(RuntimeUnavailable, match=r"MPLAB_COMPOSE=.*unknown command: docker compose\): set it to"):
        ComposeRuntime(docker=docker).compose_cmd()
