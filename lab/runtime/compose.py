"""The lab's containers through the docker and compose CLIs (``MPLAB_RUNTIME=compose``).

``ComposeRuntime`` runs ``docker compose`` (v2), else ``docker-compose`` (v1), and the docker
CLI, through subprocess: a process per call. The default runtime is the Engine API one
(lab/runtime/engine.py); this one stays for a compose file that uses what the engine runtime
does not read, and to show that the file stays a plain compose file (docs/runtime.md).
Anything labelled ``mplab.lab=<lab>`` belongs to the lab: ``down`` removes what compose
missed, so it also works after a crash or without the compose file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import LabError, RuntimeUnavailable
from ..topology import Topology, compose_images
from .base import (
    DOCKER_DOWN_MSG,
    ContainerEvent,
    ContainerInfo,
    Progress,
    Runtime,
    Watch,
    container_info,
    deliver,
    directory_tar,
    event_of,
    sort_containers,
)


def compose_versions() -> dict[str, str]:
    """The composes this machine runs: ``{"v2": "2.26.1-4", "v1": "1.29.2"}``, those that answer
    ``version`` with their own major version (a ``docker-compose`` that is v2 is not v1)."""
    out = {}
    for key, argv in (("v2", ["docker", "compose"]), ("v1", ["docker-compose"])):
        if shutil.which(argv[0]) is None:
            continue
        try:
            p = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        v = p.stdout.strip() if p.returncode == 0 else ""
        if v and v.startswith("1.") == (key == "v1"):
            out[key] = v
    return out


class ComposeRuntime(Runtime):
    """Docker + compose via the CLI."""

    name = "compose"

    def __init__(self, docker: str = "docker") -> None:
        self.docker = docker
        self._compose: list[str] | None = None

    # ---- plumbing -------------------------------------------------------------------
    def _run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        check: bool = True,
        cwd: Path | None = None,
        stdin: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        try:
            if stdin is None:
                p = subprocess.run(list(argv), capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)
            else:  # bytes in (a tar stream); the output is text all the same
                b = subprocess.run(list(argv), capture_output=True, input=stdin, env=full_env, timeout=timeout, cwd=cwd)
                p = subprocess.CompletedProcess(
                    b.args, b.returncode, b.stdout.decode(errors="replace"), b.stderr.decode(errors="replace")
                )
        except FileNotFoundError:
            raise RuntimeUnavailable(
                f"`{argv[0]}` not found: install Docker with scripts/ensure-host-packages.sh"
            ) from None
        except subprocess.TimeoutExpired:
            raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:g}s") from None
        if check and p.returncode != 0:
            err = (p.stderr or p.stdout).strip()
            if "Cannot connect to the Docker daemon" in err or "Is the docker daemon running" in err:
                raise RuntimeUnavailable(DOCKER_DOWN_MSG)
            last = err.splitlines()[-1] if err else f"exit {p.returncode}"
            raise LabError(f"`{' '.join(argv[:4])} …` failed: {last}")
        return p

    def check(self) -> None:
        if shutil.which(self.docker) is None:
            raise RuntimeUnavailable(f"`{self.docker}` not found: install Docker with scripts/ensure-host-packages.sh")
        p = self._run([self.docker, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
        if p.returncode != 0 or not p.stdout.strip() or "error" in p.stdout.lower():
            raise RuntimeUnavailable(DOCKER_DOWN_MSG)

    def compose_cmd(self) -> list[str]:
        """The compose command line: ``$MPLAB_COMPOSE`` if set (``docker compose`` for v2,
        ``docker-compose`` for v1; one that does not answer ``version`` is an error naming it),
        else ``docker compose`` when ``docker compose version`` works, else ``docker-compose``.
        """
        if self._compose is None:
            forced = os.environ.get("MPLAB_COMPOSE", "").strip()
            if forced:
                argv = forced.split()
                p = self._run([*argv, "version"], check=False, timeout=30) if shutil.which(argv[0]) else None
                if p is None or p.returncode != 0:
                    why = "not found" if p is None else ((p.stderr or p.stdout).strip().splitlines() or ["failed"])[-1]
                    raise RuntimeUnavailable(
                        f"MPLAB_COMPOSE={forced!r} does not work (`{forced} version`: {why}): set it to "
                        "'docker compose' (v2) or 'docker-compose' (v1), or unset it; "
                        "scripts/ensure-host-packages.sh installs both"
                    )
                self._compose = argv
                return self._compose
            p = self._run([self.docker, "compose", "version"], check=False, timeout=30)
            if p.returncode == 0:
                self._compose = [self.docker, "compose"]
            elif shutil.which("docker-compose"):
                self._compose = ["docker-compose"]
            else:
                raise RuntimeUnavailable(
                    "neither `docker compose` nor `docker-compose` found: "
                    "run scripts/ensure-host-packages.sh (installs docker-compose)"
                )
        return self._compose

    def _compose_run(self, topo: Topology, args: Sequence[str], timeout: float = 300.0) -> None:
        files = [a for f in (topo.compose_file, *topo.overrides) for a in ("-f", str(f))]
        cmd = [*self.compose_cmd(), "-p", topo.project, *files, *args]
        self._run(cmd, env=topo.env(), timeout=timeout, cwd=topo.compose_file.parent)

    # ---- lifecycle ------------------------------------------------------------------
    def up(self, topo: Topology, nodes: int, progress: Progress | None = None) -> None:
        # The lab never downloads: every image must be one `make images` built here. Compose v2
        # is told so (--pull never); v1 has no such flag and pulls a missing image, so the
        # images are checked first, for both.
        self.check_images(topo)
        pull = ["--pull", "never"] if self.compose_cmd()[-1] == "compose" else []  # v2 only
        # Name the compose services: the daemons not in x-mplab.services stay down.
        services = ["services", "node", *topo.services]
        self._compose_run(topo, ["up", "-d", *pull, "--scale", f"node={nodes}", "--remove-orphans", *services])

    def check_images(self, topo: Topology) -> None:
        missing = []
        for image in compose_images(topo):
            p = self._run([self.docker, "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60)
            if p.returncode != 0:
                missing.append(image)
        if missing:
            raise LabError(
                f"image {', '.join(missing)} not on this machine, and the lab never pulls: "
                f"build it with `make images VERSION={topo.version}` (or set MPLAB_VERSION to a tag you built)"
            )

    def down(self, lab: str, topo: Topology | None = None) -> list[str]:
        if topo is not None and topo.compose_file.is_file():
            try:
                self._compose_run(topo, ["down", "--remove-orphans", "-t", "2"], timeout=120)
            except RuntimeUnavailable:
                raise
            except LabError:
                pass  # the sweep below removes what is left
        swept: list[str] = []
        ids = self._ids(["ps", "-aq", "--filter", f"label=mplab.lab={lab}"])
        if ids:
            self._run([self.docker, "rm", "-f", "-v", *ids], check=False, timeout=120)
            swept += [f"container {i}" for i in ids]
        stuck = []
        for net in self.networks(lab):
            p = self._run([self.docker, "network", "rm", net], check=False, timeout=60)
            if p.returncode == 0:
                swept.append(f"network {net}")
            else:
                stuck.append(f"{net} ({(p.stderr or p.stdout).strip().splitlines()[-1]})")
        if stuck:
            # Seen once in ~60 up/downs: dockerd kept an endpoint of a removed container.
            raise LabError(
                f"lab {lab}: could not remove network {'; '.join(stuck)}. If no container of the lab is left, "
                "dockerd holds a stale endpoint: restart dockerd, then run `mplab down` again"
            )
        return swept

    def _ids(self, args: Sequence[str]) -> list[str]:
        p = self._run([self.docker, *args], timeout=60)
        return [x for x in p.stdout.split() if x]

    def networks(self, lab: str) -> list[str]:
        p = self._run(
            [self.docker, "network", "ls", "--filter", f"label=mplab.lab={lab}", "--format", "{{.Name}}"],
            timeout=60,
        )
        return [x for x in p.stdout.split() if x]

    def subnets_in_use(self) -> dict[str, str]:
        ids = self._ids(["network", "ls", "-q"])
        if not ids:
            return {}
        # Another lab may remove a network between `ls` and `inspect`: that's not an error here,
        # and docker then prints what it could inspect (stdout) beside the error.
        p = self._run([self.docker, "network", "inspect", *ids], timeout=60, check=False)
        out: dict[str, str] = {}
        for n in json.loads(p.stdout or "[]"):
            for cfg in (n.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    out[cfg["Subnet"]] = n.get("Name", "")
        return out

    def containers(self, lab: str) -> list[ContainerInfo]:
        ids = self._ids(["ps", "-aq", "--filter", f"label=mplab.lab={lab}"])
        if not ids:
            return []
        p = self._run([self.docker, "inspect", *ids], timeout=60)
        return sort_containers([container_info(c) for c in json.loads(p.stdout or "[]")])

    def logs(self, container: str, tail: int | None = None) -> str:
        args = [self.docker, "logs"]
        if tail is not None:
            args += ["--tail", str(tail)]
        p = self._run([*args, container], check=False, timeout=60)
        return (p.stdout or "") + (p.stderr or "")

    def exec(self, container: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self._run([self.docker, "exec", container, *argv], check=False, timeout=timeout)

    def copy_in(self, container: str, dest_dir: str, files: Mapping[str, bytes], timeout: float = 60.0) -> None:
        parent, tar = directory_tar(dest_dir, files)
        self._run([self.docker, "cp", "-", f"{container}:{parent}"], stdin=tar, timeout=timeout)

    def restart(self, container: str, timeout: float = 10.0) -> None:
        self._run([self.docker, "restart", "-t", f"{max(0, round(timeout))}", container], timeout=timeout + 60)

    def exec_detached(self, container: str, argv: Sequence[str]) -> None:
        self._run([self.docker, "exec", "-d", container, *argv], timeout=30)

    def pid(self, container: str) -> int:
        p = self._run([self.docker, "inspect", "-f", "{{.State.Pid}}", container], check=False, timeout=30)
        return int(p.stdout.strip() or 0) if p.returncode == 0 else 0

    def watch(self, lab: str, on_event: Callable[[ContainerEvent], None]) -> Watch:
        argv = [self.docker, "events", "--format", "{{json .}}", "--filter", f"label=mplab.lab={lab}"]
        argv += ["--filter", "type=container"]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            raise RuntimeUnavailable(
                f"`{self.docker}` not found: install Docker with scripts/ensure-host-packages.sh"
            ) from None
        return _CliWatch(proc, on_event)


class _CliWatch(Watch):
    """``docker events`` read line by line on a thread of its own."""

    def __init__(self, proc: subprocess.Popen[str], on_event: Callable[[ContainerEvent], None]) -> None:
        self._proc = proc
        self._thread = threading.Thread(target=self._run, args=(on_event,), name="mplab-events", daemon=True)
        self._thread.start()

    def _run(self, on_event: Callable[[ContainerEvent], None]) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                ev = event_of(json.loads(line))
            except ValueError:
                continue
            deliver(on_event, ev)

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=5)
