"""The lab's service daemons at run time: their CA and certificates, health, and clean-up.

``prepare`` runs before the containers start (the daemons mount ``<run_dir>/tls``), makes
``<run_dir>/www`` (nginx's root), a new CA and one certificate per selected daemon with its
DNS name and both its addresses as SANs. ``wait_healthy`` runs ``mplab-health`` in each
daemon's container until it passes. ``remove`` deletes the run directory at ``down``.
See docs/services.md.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .ca import LabCA
from .daemons import DAEMONS
from .errors import LabError, LabTimeout
from .runtime import ContainerInfo, Runtime
from .topology import Topology

HEALTH = "/usr/local/bin/mplab-health"
GUEST_CA = "/certs/ca.pem"  # where every node finds the lab's CA certificate


def prepare(topo: Topology, fresh: bool, daemons_up: bool = False) -> LabCA:
    """Make the run directory; with ``fresh`` (no container of the lab running) a new CA.

    A lab that is already up keeps its CA (its daemons and nodes hold that one); one that is
    not gets a new CA even if an old run directory was left behind (a crash before ``down``).
    A running lab whose daemons hold a CA that is gone from the run directory cannot be
    mended in place (the daemons would keep the old one): that is an error.
    """
    run = topo.run_dir
    ca = None if fresh else LabCA.load(run)
    if ca is None and not fresh and daemons_up:
        raise LabError(
            f"lab {topo.lab} is running, but its CA is gone from {run}: "
            f"take it down and up again (mplab --lab {topo.lab} down; mplab --lab {topo.lab} up)"
        )
    (run / "www").mkdir(parents=True, exist_ok=True)
    if ca is None:
        ca = LabCA.create(run, topo.lab)
    for name in topo.services:
        if DAEMONS[name].tls_ports and not (ca.tls / name / f"{name}.pem").is_file():  # new, or added to a running lab
            ca.issue(name, [topo.service_name(name)], [str(topo.service_ip(name)), str(topo.service_ip6(name))])
    return ca


def ca_cert(topo: Topology) -> Path:
    """The host path of the lab's CA certificate (the file copied to ``GUEST_CA`` on nodes)."""
    return topo.run_dir / "tls" / "ca.pem"


def daemons(containers: Sequence[ContainerInfo]) -> dict[str, ContainerInfo]:
    """service name -> its container, of a lab's containers."""
    return {c.labels.get("mplab.service", ""): c for c in containers if c.role == "service"}


def probe(runtime: Runtime, container: str) -> tuple[bool, str]:
    """One run of the daemon's health check: (passed, its one-line answer)."""
    p = runtime.exec(container, [HEALTH], timeout=30)
    line = ((p.stdout or p.stderr).strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return p.returncode == 0, line


def wait_healthy(
    runtime: Runtime,
    topo: Topology,
    timeout: float,
    progress: Callable[[str], None] = lambda _m: None,
    names: Sequence[str] | None = None,
) -> None:
    """Wait until every selected daemon (or those of ``names``) passes its health check; else
    one line naming it and its log."""
    deadline = time.monotonic() + timeout
    pending = list(topo.services if names is None else names)
    last: dict[str, str] = {}
    while pending:
        found = daemons(runtime.containers(topo.lab))
        for name in list(pending):
            c = found.get(name)
            if c is None:
                last[name] = "no container"
                continue
            if not c.running:  # a daemon that exited will not come back: say so now
                raise LabTimeout(
                    f"lab {topo.lab}: service {name} exited (container {c.state}, exit {c.exit_code}); "
                    f"log: docker logs {c.name}"
                )
            ok, last[name] = probe(runtime, c.name)
            if ok:
                progress(f"  {name}: healthy ({topo.service_name(name)} {topo.service_ip(name)})")
                pending.remove(name)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if pending:
        name = pending[0]
        c = found.get(name)
        log = f"docker logs {c.name}" if c is not None else f"docker-compose -p {topo.project} logs {name}"
        raise LabTimeout(
            f"lab {topo.lab}: service {name} not healthy within {timeout:g}s ({last.get(name, '?')}); log: {log}"
        )


def restart(
    runtime: Runtime,
    topo: Topology,
    name: str,
    timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _m: None,
) -> float:
    """Restart daemon ``name``'s container (SIGTERM first, as a host's service manager does)
    and wait until its health check passes again; return the seconds that took."""
    if name not in DAEMONS:
        raise LabError(f"unknown service {name!r}; fix: use one of {', '.join(DAEMONS)}")
    c = daemons(runtime.containers(topo.lab)).get(name)
    if c is None:
        raise LabError(
            f"lab {topo.lab} has no {name} service running (it runs: {', '.join(topo.services) or 'none'}); "
            f"fix: add {name} to x-mplab.services and bring the lab up"
        )
    t0 = time.monotonic()
    runtime.restart(c.name, timeout=10.0)
    wait_healthy(runtime, topo, timeout, progress, names=[name])
    return time.monotonic() - t0


def remove(topo: Topology) -> list[str]:
    """Delete the lab's run directory: its CA, every key and certificate, www/."""
    run = topo.run_dir
    if not run.exists():
        return []
    shutil.rmtree(run)
    return [f"run dir {run}"]
