"""The lab's containers on the Docker Engine API, through the ``docker`` package (docker-py).

No process per call: one HTTP connection pool to the daemon's socket serves every list,
inspect, exec, log and sweep, and ``up`` creates and starts the containers in parallel
(``workers`` at a time), wave by wave along ``depends_on``. The compose file is read by
:mod:`.composefile`; names and labels are Compose v2's, so ``docker compose`` sees the lab.
Every engine error is converted to a ``LabError`` in one place, :meth:`EngineRuntime._api_call`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import docker.types
import docker.utils
import requests.exceptions

from ..errors import LabError, RuntimeUnavailable
from ..topology import Topology
from . import composefile
from .base import (
    DOCKER_DOWN_MSG,
    ContainerEvent,
    ContainerInfo,
    Progress,
    Runtime,
    Watch,
    container_summary,
    deliver,
    directory_tar,
    event_of,
    sort_containers,
)
from .composefile import Project, ServiceSpec

API_TIMEOUT = 120.0  # seconds for one API request (a container start under load can be slow)


class EngineRuntime(Runtime):
    """Docker through its Engine API (``DOCKER_HOST`` or the local socket)."""

    name = "engine"

    def __init__(self, base_url: str | None = None, workers: int = 8) -> None:
        self.base_url = base_url
        self.workers = workers
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()
        # exec_start blocks until the command ends: it runs here, so that a timeout can kill it
        self._execs = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mplab-exec")

    # ---- plumbing -----------------------------------------------------------------------
    @property
    def api(self) -> docker.APIClient:
        """The low-level client, made on first use (RuntimeUnavailable if no daemon answers)."""
        with self._lock:
            if self._client is None:
                kwargs: dict[str, Any] = docker.utils.kwargs_from_env()
                if self.base_url:
                    kwargs["base_url"] = self.base_url
                with self._api_call("connect to the Docker daemon"):
                    # version="auto" asks the daemon once: docker-py's default API version is
                    # newer than many daemons (20.10 speaks 1.41)
                    self._client = docker.APIClient(
                        version="auto", timeout=API_TIMEOUT, max_pool_size=self.workers + 40, **kwargs
                    )
            return self._client

    @contextmanager
    def _api_call(self, what: str) -> Iterator[None]:
        """Every engine error as one LabError line (RuntimeUnavailable when the daemon is away)."""
        try:
            yield
        except docker.errors.ImageNotFound as e:
            raise LabError(f"{what}: {_explain(e)}") from None
        except docker.errors.NotFound as e:
            raise LabError(f"{what}: {_explain(e)}") from None
        except docker.errors.APIError as e:
            raise LabError(f"{what} failed: {_explain(e)}") from None
        except requests.exceptions.Timeout:
            raise LabError(f"{what}: the Docker daemon did not answer within {API_TIMEOUT:g}s") from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException, FileNotFoundError) as e:
            raise RuntimeUnavailable(f"{DOCKER_DOWN_MSG} ({_first_line(e)})") from None

    def check(self) -> None:
        with self._api_call("ping the Docker daemon"):
            self.api.ping()

    # ---- lifecycle ----------------------------------------------------------------------
    def up(self, topo: Topology, nodes: int, progress: Progress | None = None) -> None:
        project = composefile.load(topo)
        wanted = ["services", "node", *topo.services]
        for s in wanted:
            if s not in project.services:
                raise LabError(f"{topo.compose_file}: no service {s!r}; fix: define it (see docs/topology.md)")
        self.check_images(topo, [project.services[s].image for s in wanted])
        used = {e.network for s in wanted for e in project.services[s].endpoints}
        for net in project.networks.values():
            if net.name in used:
                self._ensure_network(topo, net)
        counts = {s: (nodes if s == "node" else 1) for s in wanted}
        existing = {
            (c.labels.get("com.docker.compose.service", ""), c.number): c
            for c in self._list(topo.lab)
            if c.labels.get("com.docker.compose.project") == project.name
        }
        # What is no longer wanted goes first (a scale-down, a daemon taken out of x-mplab.services)
        gone = [c for (s, n), c in existing.items() if n > counts.get(s, 0)]
        self._parallel([lambda c=c: self._remove(c.id) for c in gone], "remove containers")
        # Every container is created first, all at once; then they start wave by wave along
        # depends_on (start is the slow part: the daemon wires the network then).
        todo = [(s, i) for s in wanted for i in range(1, counts[s] + 1)]
        to_start: dict[tuple[str, int], str] = {}

        def prepare(service: str, number: int) -> None:
            cid = self._prepare(project, service, number, existing.get((service, number)))
            if cid:
                with self._lock:
                    to_start[(service, number)] = cid

        self._parallel([lambda s=s, i=i: prepare(s, i) for s, i in todo], "create containers")
        total = len(to_start)
        started = [0]
        shown = [time.monotonic()]

        def start(key: tuple[str, int]) -> None:
            name = project.container_name(*key)
            with self._api_call(f"start {name}"):
                self.api.start(to_start[key])
            with self._lock:
                started[0] += 1
                now = time.monotonic()
                if progress and total > 4 and (now - shown[0] >= 2.0 or started[0] == total):
                    shown[0] = now
                    progress(f"  containers: {started[0]}/{total} started")

        for wave in project.start_order(wanted):
            keys = [k for k in todo if k[0] in wave and k in to_start]
            self._parallel([lambda k=k: start(k) for k in keys], "start containers")

    def check_images(self, topo: Topology, images: Sequence[str]) -> None:
        missing = []
        for image in sorted(set(images)):
            try:
                with self._api_call(f"inspect image {image}"):
                    self.api.inspect_image(image)
            except RuntimeUnavailable:
                raise
            except LabError:
                missing.append(image)
        if missing:
            raise LabError(
                f"image {', '.join(missing)} not on this machine, and the lab never pulls: "
                f"build it with `make images VERSION={topo.version}` (or set MPLAB_VERSION to a tag you built)"
            )

    def _ensure_network(self, topo: Topology, net: composefile.NetworkSpec) -> None:
        with self._api_call(f"network {net.name}"):
            found = [n for n in self.api.networks(names=[net.name]) if n.get("Name") == net.name]
            if found:
                have = sorted(c.get("Subnet", "") for c in ((found[0].get("IPAM") or {}).get("Config") or []))
                want = sorted(c.get("subnet", "") for c in net.ipam)
                if have == want:
                    return
                if (self.api.inspect_network(found[0]["Id"]).get("Containers") or {}) != {}:
                    raise LabError(
                        f"lab {topo.lab}: its network {net.name} has subnets {', '.join(have)}, the topology "
                        f"wants {', '.join(want)}; fix: `mplab --lab {topo.lab} down`, then up again"
                    )
                self.api.remove_network(found[0]["Id"])
            pools = [
                docker.types.IPAMPool(subnet=c.get("subnet"), iprange=c.get("ip_range"), gateway=c.get("gateway"))
                for c in net.ipam
            ]
            self.api.create_network(
                net.name,
                driver=net.driver,
                options=net.options,
                ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
                internal=net.internal,
                labels=net.labels,
                enable_ipv6=net.enable_ipv6,
                attachable=net.attachable,
            )

    def _prepare(self, project: Project, service: str, number: int, have: ContainerInfo | None) -> str | None:
        """The id of the container to start for ``service`` #``number`` (created if need be),
        or None if the one there is running with the same settings."""
        spec = project.services[service]
        if have is not None and have.labels.get("com.docker.compose.config-hash") == spec.config_hash:
            return None if have.running else have.id
        if have is not None:  # made from other settings: recreate, as compose does
            self._remove(have.id)
        name = project.container_name(service, number)
        with self._api_call(f"create {name}"):
            cid = self.api.create_container(**self._create_args(project, spec, number))["Id"]
            for extra in spec.endpoints[1:]:
                self.api.connect_container_to_network(
                    cid, extra.network, ipv4_address=extra.ipv4_address, ipv6_address=extra.ipv6_address,
                    aliases=list(extra.aliases),
                )  # fmt: skip
        return str(cid)

    def _create_args(self, project: Project, spec: ServiceSpec, number: int) -> dict[str, Any]:
        api = self.api
        host = api.create_host_config(
            binds=spec.binds or None,
            port_bindings=spec.ports or None,
            cap_add=spec.cap_add or None,
            cap_drop=spec.cap_drop or None,
            devices=spec.devices or None,
            sysctls=spec.sysctls or None,
            init=spec.init,
            privileged=spec.privileged,
            restart_policy={"Name": spec.restart} if spec.restart else None,
            tmpfs=spec.tmpfs or None,
            mem_limit=spec.mem_limit,
            shm_size=spec.shm_size,
        )
        networking = None
        if spec.endpoints:
            e = spec.endpoints[0]
            networking = api.create_networking_config(
                {e.network: api.create_endpoint_config(
                    ipv4_address=e.ipv4_address, ipv6_address=e.ipv6_address, aliases=list(e.aliases)
                )}
            )  # fmt: skip
        ports = [(int(p.split("/")[0]), p.split("/")[1]) for p in spec.ports]
        return {
            "image": spec.image,
            "command": spec.command,
            "entrypoint": spec.entrypoint,
            "name": project.container_name(spec.name, number),
            "environment": spec.environment,
            "labels": project.labels(spec.name, number),
            "host_config": host,
            "networking_config": networking,
            "ports": ports or None,
            "stop_timeout": spec.stop_timeout,
            "hostname": spec.hostname,
            "working_dir": spec.working_dir,
            "user": spec.user,
            "detach": True,
        }

    def _remove(self, cid: str) -> None:
        try:
            with self._api_call(f"remove container {cid[:12]}"):
                self.api.remove_container(cid, force=True, v=True)
        except RuntimeUnavailable:
            raise
        except LabError as e:
            if "No such container" not in str(e) and "is already in progress" not in str(e):
                raise

    def _parallel(self, jobs: Sequence[Callable[[], None]], what: str) -> None:
        """Run ``jobs`` ``workers`` at a time; the first failure is raised once the rest stop."""
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)), thread_name_prefix="mplab-up") as pool:
            futures: list[Future[None]] = [pool.submit(j) for j in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for f in futures:
                    f.cancel()
                raise failed[0].exception()  # type: ignore[misc]

    def down(self, lab: str, topo: Topology | None = None) -> list[str]:
        project = f"mplab-{lab}"
        found = self._list(lab)
        self._parallel([lambda c=c: self._remove(c.id) for c in found], "remove containers")
        swept = [f"container {c.name}" for c in found if c.labels.get("com.docker.compose.project") != project]
        stuck = []
        with self._api_call("list networks"):
            nets = self.api.networks(filters={"label": f"mplab.lab={lab}"})
        for n in nets:
            try:
                with self._api_call(f"remove network {n['Name']}"):
                    self.api.remove_network(n["Id"])
            except RuntimeUnavailable:
                raise
            except LabError as e:
                if "not found" not in str(e).lower():
                    stuck.append(f"{n['Name']} ({str(e).splitlines()[0]})")
                continue
            if (n.get("Labels") or {}).get("com.docker.compose.project") != project:
                swept.append(f"network {n['Name']}")
        if stuck:
            # Seen once in ~60 up/downs: dockerd kept an endpoint of a removed container.
            raise LabError(
                f"lab {lab}: could not remove network {'; '.join(stuck)}. If no container of the lab is left, "
                "dockerd holds a stale endpoint: restart dockerd, then run `mplab down` again"
            )
        return swept

    # ---- inspection ---------------------------------------------------------------------
    def _list(self, lab: str) -> list[ContainerInfo]:
        with self._api_call("list containers"):
            return [container_summary(c) for c in self.api.containers(all=True, filters={"label": f"mplab.lab={lab}"})]

    def containers(self, lab: str) -> list[ContainerInfo]:
        return sort_containers(self._list(lab))

    def networks(self, lab: str) -> list[str]:
        with self._api_call("list networks"):
            return [n["Name"] for n in self.api.networks(filters={"label": f"mplab.lab={lab}"})]

    def subnets_in_use(self) -> dict[str, str]:
        with self._api_call("list networks"):
            nets = self.api.networks()
        out: dict[str, str] = {}
        for n in nets:
            for cfg in (n.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    out[cfg["Subnet"]] = n.get("Name", "")
        return out

    def logs(self, container: str, tail: int | None = None) -> str:
        try:
            with self._api_call(f"logs of {container}"):
                data = self.api.logs(container, stdout=True, stderr=True, tail="all" if tail is None else tail)
        except RuntimeUnavailable:
            raise
        except LabError as e:
            return str(e)
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def pid(self, container: str) -> int:
        with self._api_call(f"inspect {container}"):
            return int((self.api.inspect_container(container).get("State") or {}).get("Pid") or 0)

    # ---- in a container -----------------------------------------------------------------
    def exec(self, container: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        args = list(argv)
        try:
            with self._api_call(f"exec in {container}"):
                eid = self.api.exec_create(container, args, stdout=True, stderr=True)["Id"]
        except RuntimeUnavailable:
            raise
        except LabError as e:  # no such container, or not running: as `docker exec` exits 1
            return subprocess.CompletedProcess(args, 1, "", str(e))
        fut = self._execs.submit(self._exec_start, eid)
        try:
            out, err = fut.result(timeout=timeout)
        except TimeoutError:
            self._kill_exec(eid)
            raise LabError(f"`{' '.join(args)}` in {container} did not finish within {timeout:g}s") from None
        with self._api_call(f"exec in {container}"):
            code = self.api.exec_inspect(eid).get("ExitCode")
        return subprocess.CompletedProcess(
            args, 1 if code is None else int(code), out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _exec_start(self, eid: str) -> tuple[bytes, bytes]:
        with self._api_call("exec"):
            out, err = self.api.exec_start(eid, demux=True)
        return out or b"", err or b""

    def _kill_exec(self, eid: str) -> None:
        """End an exec that overran (the Engine API has no call for it): SIGKILL its process."""
        try:
            pid = int(self.api.exec_inspect(eid).get("Pid") or 0)
            if pid > 0:
                os.kill(pid, signal.SIGKILL)
        except (OSError, docker.errors.DockerException, requests.exceptions.RequestException):
            pass  # gone already, or not ours to kill: the caller's error stands either way

    def exec_detached(self, container: str, argv: Sequence[str]) -> None:
        with self._api_call(f"exec in {container}"):
            eid = self.api.exec_create(container, list(argv), stdout=False, stderr=False)["Id"]
            self.api.exec_start(eid, detach=True)

    def copy_in(self, container: str, dest_dir: str, files: Mapping[str, bytes], timeout: float = 60.0) -> None:
        parent, tar = directory_tar(dest_dir, files)
        with self._api_call(f"copy into {container}:{dest_dir}"):
            self.api.put_archive(container, parent, tar)

    def restart(self, container: str, timeout: float = 10.0) -> None:
        with self._api_call(f"restart {container}"):
            self.api.restart(container, timeout=max(0, round(timeout)))

    # ---- events -------------------------------------------------------------------------
    def watch(self, lab: str, on_event: Callable[[ContainerEvent], None]) -> Watch:
        with self._api_call("subscribe to events"):
            stream = self.api.events(filters={"label": f"mplab.lab={lab}", "type": "container"}, decode=True)
        return _EventWatch(stream, on_event)


class _EventWatch(Watch):
    def __init__(self, stream: Any, on_event: Callable[[ContainerEvent], None]) -> None:
        self._stream = stream
        self._thread = threading.Thread(target=self._run, args=(on_event,), name="mplab-events", daemon=True)
        self._thread.start()

    def _run(self, on_event: Callable[[ContainerEvent], None]) -> None:
        try:
            for ev in self._stream:
                deliver(on_event, event_of(ev))
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError, ValueError):
            pass  # the stream ends with an error when closed, or when dockerd stops: the watch ends

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # (closing a stream that already ended)
            pass
        self._thread.join(timeout=5)


def _explain(e: docker.errors.DockerException) -> str:
    text = getattr(e, "explanation", None) or str(e)
    return _first_line(text)


def _first_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
