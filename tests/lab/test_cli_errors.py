"""No traceback reaches a CLI user, from any verb: bad input, no Docker, Docker down, no lab.

Each case runs ``python -m lab ...`` and asserts one clear line on stderr, rc != 0 and no
"Traceback". The no-Docker cases put a PATH without docker (or with a docker that says the
daemon is down) in front; the absent-lab cases need the real Docker daemon but never start a
lab (lab ``wtbabsent`` is never brought up).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import VERB_MODULES, build_parser

REPO = Path(__file__).resolve().parents[2]
ABSENT = "wtbabsent"
HERE = str(Path(__file__))

# verb -> arguments that are well-formed but need a running lab (node1 of lab ABSENT)
NEEDS_LAB: dict[str, list[str]] = {
    "up": ["up", "--nodes", "1"],
    "down": ["down"],
    "status": ["status"],
    "console": ["console", "node1"],
    "exec": ["exec", "node1", "print(1)"],
    "cp": ["cp", HERE, "node1:/x.py"],
    "deploy": ["deploy", "node1", str(REPO / "tests" / "lab")],
    "install": ["install", "node1", str(REPO / "tests" / "lab" / "fixtures" / "wthpkg")],
    "cert": ["cert", "node1"],
    "capture": ["capture", "-w", "/tmp/wtb-cli-errors.pcap", "--node", "node1", "--duration", "1"],
    "logs": ["logs", "node1"],
    "reset": ["reset", "node1"],
    "repro": ["repro", str(REPO / "scenarios" / "udp-one-slot.yml"), "--no-build", "--firmware", "/nonexistent.elf"],
    "impair": ["impair", "node1", "--loss", "10%"],
    "link": ["link", "node1", "down"],
    "diff": ["diff", "--only", "connect_handshake"],
    "conformance": ["conformance", "--junit", "/nonexistent.xml"],
    "view": ["view", "/nonexistent.pcap"],  # needs no lab: fails on its own
}

# verb -> (bad arguments, what the one line says)
BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "up": (["up", "--nodes", "0"], "invalid node count"),
    "down": (["down", "--bogus"], "unrecognized arguments"),
    "status": (["status", "extra"], "unrecognized arguments"),
    "console": (["console"], "required: NODE"),
    "exec": (["exec", "node1"], "exec needs CODE or -f FILE"),
    "cp": (["cp", HERE, "node1"], "must be NODE:PATH"),
    "deploy": (["deploy", "node1", "/nonexistent-dir"], "no such directory"),
    "install": (["install", "node1", "/nonexistent-pkg-dir/"], "no such directory"),
    "cert": (["cert"], "required: NODE"),
    "capture": (["capture", "-w", "/tmp/x.pcap", "--duration", "0"], "--duration must be > 0"),
    "logs": (["logs", "node1", "--tail", "x"], "invalid int value"),
    "reset": (["reset"], "required: NODE"),
    "repro": (["repro", "/nonexistent.yml"], "no such scenario file"),
    "impair": (["impair", "node1", "--loss", "ten"], "invalid loss"),
    "link": (["link", "node1", "sideways"], "invalid choice"),
    "diff": (["diff", "--only", "no_such_scenario"], "unknown differential scenario"),
    "conformance": (["conformance", "--junit", "/nonexistent.xml"], "no such file"),
    "view": (["view", str(REPO / "README.md")], "not a readable pcap"),
}


def _verbs() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return sorted(sub.choices)  # type: ignore[union-attr]


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("LAB", None)
    full.pop("MPLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout, env=full
    )


def _one_clear_line(p: subprocess.CompletedProcess[str], rc_zero_ok: bool = False) -> str:
    err = p.stderr.strip()
    assert "Traceback" not in err + p.stdout, err
    if not rc_zero_ok:
        assert p.returncode != 0, (p.returncode, p.stdout, err)
        assert len(err.splitlines()) == 1, err
        assert err.startswith("mplab"), err
    return err


def test_every_verb_is_covered() -> None:
    verbs = _verbs()
    assert len(verbs) == len(VERB_MODULES)
    assert set(NEEDS_LAB) == set(verbs), set(verbs) ^ set(NEEDS_LAB)
    assert set(BAD_INPUT) == set(verbs), set(verbs) ^ set(BAD_INPUT)


@pytest.mark.parametrize("verb", sorted(BAD_INPUT))
def test_bad_input(verb: str) -> None:
    args, msg = BAD_INPUT[verb]
    err = _one_clear_line(_run(["--lab", ABSENT, *args]))
    assert msg in err, err


@pytest.fixture(scope="module")
def no_docker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A PATH with the host's tools but no docker CLI, for the CLI runtime (the engine one
    needs no CLI: for it, the daemon's socket is what can be missing)."""
    d = tmp_path_factory.mktemp("nodocker")
    for tool in ("nft", "ip", "iptables", "sh", "make", "tc", "nsenter"):
        found = shutil.which(tool)
        if found:
            (d / tool).symlink_to(found)
    return {"PATH": str(d), "MPLAB_RUNTIME": "compose"}


@pytest.fixture(scope="module", params=["engine", "compose"])
def docker_down(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, no_docker: dict[str, str]
) -> dict[str, str]:
    """No daemon behind the socket (the engine runtime), and a PATH whose docker answers as the
    CLI does when the daemon is not running (the CLI runtime)."""
    d = tmp_path_factory.mktemp("dockerdown")
    f = d / "docker"
    f.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?' >&2\nexit 1\n"
    )
    f.chmod(0o755)
    return {
        "PATH": f"{d}:{no_docker['PATH']}",
        "MPLAB_RUNTIME": request.param,
        "DOCKER_HOST": f"unix://{tmp_path_factory.getbasetemp()}/no-daemon.sock",
    }


@pytest.mark.parametrize("verb", sorted(NEEDS_LAB))
def test_without_docker(verb: str, no_docker: dict[str, str]) -> None:
    err = _one_clear_line(_run(["--lab", ABSENT, *NEEDS_LAB[verb]], env=no_docker))
    if verb not in ("capture", "repro", "conformance", "view"):  # these fail earlier, on their own
        assert "docker" in err.lower() and "not found" in err, err


@pytest.mark.parametrize("verb", sorted(NEEDS_LAB))
def test_docker_daemon_down(verb: str, docker_down: dict[str, str]) -> None:
    err = _one_clear_line(_run(["--lab", ABSENT, *NEEDS_LAB[verb]], env=docker_down))
    if verb not in ("capture", "repro", "conformance", "view"):
        assert "Docker daemon not running" in err, err


def _docker_up() -> bool:
    if shutil.which("docker") is None:
        return False
    p = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30)
    return p.returncode == 0


@pytest.mark.skipif(not _docker_up(), reason="needs the Docker daemon")
@pytest.mark.parametrize("verb", sorted(set(NEEDS_LAB) - {"up", "diff"}))  # these start the lab
def test_absent_lab(verb: str) -> None:
    p = _run(["--lab", ABSENT, *NEEDS_LAB[verb]])
    if verb == "down":  # idempotent: nothing to remove is success
        _one_clear_line(p, rc_zero_ok=True)
        assert p.returncode == 0 and "down" in p.stderr + p.stdout
        return
    if verb == "status":
        assert p.returncode == 1 and "not running" in p.stdout and "Traceback" not in p.stderr
        return
    err = _one_clear_line(p)
    if verb in ("console", "exec", "cp", "deploy", "install", "cert", "capture", "logs", "reset", "impair", "link"):
        assert "is the lab up?" in err, err


def test_capture_as_non_root_says_so() -> None:
    code = (
        "import os, sys; os.geteuid = lambda: 1000\n"
        "from lab.cli import main\n"
        f"sys.exit(main(['--lab', {ABSENT!r}, 'capture', '-w', '/tmp/wtb-nonroot.pcap', '--duration', '1']))"
    )
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, env=full)
    err = _one_clear_line(p)
    assert err == "mplab: packet capture needs root: run as root or with CAP_NET_RAW", err


def test_unexpected_exception_is_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab import cli
    from lab.cli import status

    def boom(args: object) -> int:
        raise OSError(5, "Input/output error", "/dev/x")

    monkeypatch.setattr(status, "run", boom)
    monkeypatch.delenv("MPLAB_DEBUG", raising=False)
    p = cli.build_parser()
    args = p.parse_args(["status"])
    args.func = boom
    monkeypatch.setattr(cli, "build_parser", lambda *_verb: _Fixed(args))
    assert cli.main(["status"]) == 1
    monkeypatch.setenv("MPLAB_DEBUG", "1")
    with pytest.raises(OSError):
        cli.main(["status"])


class _Fixed:
    def __init__(self, args: object) -> None:
        self.args = args

    def parse_args(self, argv: object) -> object:
        return self.args
