"""scripts/ensure-compose-v2.sh (run by ensure-host-packages.sh): Compose v2 as a docker CLI
plugin from trixie's pinned .deb, beside v1. No Docker and no network: a fake `docker` on
PATH, a file:// mirror, and private plugin and cache folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ensure-compose-v2.sh"
UNREACHABLE = "http://127.0.0.1:9/debian"  # the discard port: any fetch fails at once


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _deb() -> str:
    return f"docker-compose_2.26.1-4_{_arch()}.deb"


def _run(tmp: Path, docker_body: str, mirror: str) -> subprocess.CompletedProcess[str]:
    bin_dir, plugins, cache = tmp / "bin", tmp / "plugins", tmp / "cache"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\n{docker_body}\n")
    docker.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MPLAB_DEBIAN_MIRROR": mirror,
        "MPLAB_COMPOSE_PLUGIN_DIR": str(plugins),
        "MPLAB_COMPOSE_V2_CACHE": str(cache),
        "DOCKER_CONFIG": str(tmp / "docker-config"),
    }
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(autouse=True)
def _pinned_arch() -> None:
    if _arch() not in ("amd64", "arm64"):
        pytest.skip(f"no Compose v2 pinned for {_arch()}")


def test_silent_and_offline_when_docker_compose_already_answers(tmp_path: Path) -> None:
    p = _run(tmp_path, 'echo "Docker Compose version v2.29.0"', UNREACHABLE)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert not (tmp_path / "plugins").exists()


def test_a_sha256_mismatch_is_one_line_and_installs_nothing(tmp_path: Path) -> None:
    pool = tmp_path / "mirror" / "pool" / "main" / "d" / "docker-compose"
    pool.mkdir(parents=True)
    (pool / _deb()).write_bytes(b"not the pinned package")
    p = _run(tmp_path, "exit 1", f"file://{tmp_path / 'mirror'}")
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if "fetching" not in line]
    assert len(errors) == 1 and "does not match its pinned sha256" in errors[0], p.stderr
    assert not (tmp_path / "plugins" / "docker-compose").exists()
    assert not list((tmp_path / "cache").iterdir()), "a mismatching download stayed in the cache"


def test_an_unreachable_archive_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    p = _run(tmp_path, "exit 1", UNREACHABLE)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if "fetching" not in line]
    assert len(errors) == 1 and "could not download" in errors[0] and "MPLAB_DEBIAN_MIRROR" in errors[0], p.stderr


def test_installs_the_plugin_from_the_cached_deb_and_then_does_nothing(tmp_path: Path) -> None:
    cached = REPO / "build" / "compose-v2" / _deb()
    if not cached.is_file():
        pytest.skip(f"{cached} not fetched yet: `make host-packages` fetches it")
    (tmp_path / "cache").mkdir()
    shutil.copy(cached, tmp_path / "cache" / _deb())
    plugin = tmp_path / "plugins" / "docker-compose"
    # A docker CLI that finds the plugin where the script puts it, as the real one does.
    body = f'[ "$1" = compose ] && [ -x {plugin} ] && shift && exec {plugin} "$@"\nexit 1'
    p = _run(tmp_path, body, UNREACHABLE)  # the cache is enough: no download
    assert p.returncode == 0, p.stderr
    assert "installed Compose 2.26.1" in p.stderr and "v1 is unchanged" in p.stderr, p.stderr
    assert os.access(plugin, os.X_OK)
    again = _run(tmp_path, body, UNREACHABLE)
    assert (again.returncode, again.stderr) == (0, "")
