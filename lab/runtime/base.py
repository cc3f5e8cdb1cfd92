"""What the lab asks of a container engine: the ``Runtime`` interface and its data.

Two implementations (docs/runtime.md): ``EngineRuntime`` speaks the Docker Engine API
through the ``docker`` package (the default), ``ComposeRuntime`` drives the docker and compose
CLIs. Both read the same compose file and label everything with ``mplab.lab=<lab>``, so
either can take down what the other brought up.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LabError
from ..topology import Topology

DOCKER_DOWN_MSG = "Docker daemon not running: start it with `make docker` / scripts/ensure-docker.sh"

Progress = Callable[[str], None]


@dataclass
class ContainerInfo:
    """What the lab needs to know about one container."""

    id: str
    name: str
    role: str  # "node" | "services" | "service" | ""
    number: int  # compose replica number (1-based), 0 if unknown
    state: str  # running, exited, ...
    running: bool
    exit_code: int
    ip: str  # address on the lab network
    console_host_port: int | None  # 127.0.0.1:<port> → the console port (x-mplab.console_port)
    pid: int  # 0 where the engine's container list does not say (EngineRuntime)
    labels: dict[str, str] = field(default_factory=dict)
    mac: str = ""  # the container's MAC on the lab network

    @property
    def node_name(self) -> str:
        return self.labels.get("mplab.node") or (f"node{self.number}" if self.number else self.name)


@dataclass(frozen=True)
class ContainerEvent:
    """One container event of a lab, as the engine reports it (``die``, ``start``, ``oom``...)."""

    action: str
    container: str  # its name
    role: str
    node: str  # node name (``node3``) for a node, else the container name
    exit_code: int | None  # for ``die``
    time: float  # seconds since the epoch, as the engine stamped it


class Watch(ABC):
    """A running subscription to a lab's container events; ``close`` ends it."""

    @abstractmethod
    def close(self) -> None: ...


def deliver(on_event: Callable[[ContainerEvent], None], ev: ContainerEvent | None) -> None:
    """Hand ``ev`` to the subscriber on the watch's thread: a report that cannot be made (the
    daemon went away meanwhile) is dropped, not raised where nobody would catch it."""
    if ev is None:
        return
    try:
        on_event(ev)
    except LabError:
        pass


class Runtime(ABC):
    """What the lab asks of a container engine."""

    name = "runtime"

    @abstractmethod
    def check(self) -> None:
        """Raise RuntimeUnavailable with a one-line fix if the engine can't be used."""

    @abstractmethod
    def up(self, topo: Topology, nodes: int, progress: Progress | None = None) -> None:
        """Create and start what ``topo`` needs for ``nodes`` nodes (idempotent; scales)."""

    @abstractmethod
    def down(self, lab: str, topo: Topology | None = None) -> list[str]:
        """Remove everything of ``lab``; return what was removed beyond the lab's own project."""

    @abstractmethod
    def containers(self, lab: str) -> list[ContainerInfo]: ...

    @abstractmethod
    def networks(self, lab: str) -> list[str]: ...

    @abstractmethod
    def logs(self, container: str, tail: int | None = None) -> str: ...

    @abstractmethod
    def exec(self, container: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``container``; its exit status and output (LabError if it overran)."""

    @abstractmethod
    def exec_detached(self, container: str, argv: Sequence[str]) -> None:
        """Start ``argv`` in ``container`` and return at once (``docker exec -d``)."""

    @abstractmethod
    def pid(self, container: str) -> int:
        """The host PID of the container's first process (0 if it is not running)."""

    @abstractmethod
    def copy_in(self, container: str, dest_dir: str, files: Mapping[str, bytes], timeout: float = 60.0) -> None:
        """Write ``files`` (name → bytes) into the absolute directory ``dest_dir`` of
        ``container``, making the directory if needed. Raises LabError."""

    @abstractmethod
    def restart(self, container: str, timeout: float = 10.0) -> None:
        """Stop ``container`` (SIGTERM, then SIGKILL after ``timeout`` s) and start it again."""

    @abstractmethod
    def subnets_in_use(self) -> dict[str, str]:
        """subnet → network name, for every network of the engine."""

    @abstractmethod
    def watch(self, lab: str, on_event: Callable[[ContainerEvent], None]) -> Watch:
        """Call ``on_event`` (on a thread of the runtime's) for each container event of ``lab``
        until the returned Watch is closed."""


def directory_tar(dest_dir: str, files: Mapping[str, bytes]) -> tuple[str, bytes]:
    """(parent, tar) for ``copy_in``: a tar of the directory ``dest_dir`` itself (so that it is
    made too) holding ``files``, to unpack in ``parent``."""
    parent, _, leaf = dest_dir.rstrip("/").rpartition("/")
    if not leaf or not dest_dir.startswith("/"):
        raise LabError(f"copy_in: {dest_dir!r} is not an absolute directory below /")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo(leaf)
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name, data in files.items():
            f = tarfile.TarInfo(f"{leaf}/{name}")
            f.size, f.mode = len(data), 0o644
            tar.addfile(f, io.BytesIO(data))
    return parent or "/", buf.getvalue()


def _lan_address(nets: Mapping[str, Any]) -> tuple[str, str]:
    """(IP, MAC) of a container on its network (the lab's containers have one)."""
    ip = mac = ""
    for n in nets.values():
        ip = n.get("IPAddress") or ip
        mac = n.get("MacAddress") or mac
    return ip, mac.lower()


def container_info(c: Mapping[str, Any]) -> ContainerInfo:
    """A ContainerInfo from the engine's ``inspect`` of a container (the CLI's JSON)."""
    labels = (c.get("Config") or {}).get("Labels") or {}
    st = c.get("State") or {}
    ip, mac = _lan_address(((c.get("NetworkSettings") or {}).get("Networks")) or {})
    ports = ((c.get("NetworkSettings") or {}).get("Ports")) or {}
    host_port = None
    published = [b for key, binds in sorted(ports.items()) if key.endswith("/tcp") for b in binds or []]
    for b in published:  # a node publishes one port: its console's (x-mplab.console_port)
        if b.get("HostPort"):
            host_port = int(b["HostPort"])
            break
    return ContainerInfo(
        id=c.get("Id", "")[:12],
        name=(c.get("Name") or "").lstrip("/"),
        role=labels.get("mplab.role", ""),
        number=_number(labels),
        state=st.get("Status", "unknown"),
        running=bool(st.get("Running")),
        exit_code=int(st.get("ExitCode") or 0),
        ip=ip,
        console_host_port=host_port,
        pid=int(st.get("Pid") or 0),
        labels=labels,
        mac=mac,
    )


_EXITED_RE = re.compile(r"^Exited \((-?\d+)\)")


def container_summary(c: Mapping[str, Any]) -> ContainerInfo:
    """A ContainerInfo from one entry of the engine's container *list* (``GET /containers/json``).

    The list says all the lab needs but the PID, in one call for every container of a lab;
    the exit code is in its ``Status`` text ("Exited (137) 3 seconds ago").
    """
    labels = c.get("Labels") or {}
    ip, mac = _lan_address(((c.get("NetworkSettings") or {}).get("Networks")) or {})
    host_port = None
    for p in sorted(c.get("Ports") or [], key=lambda p: p.get("PrivatePort", 0)):
        if p.get("Type") == "tcp" and p.get("PublicPort"):
            host_port = int(p["PublicPort"])
            break
    state = c.get("State") or "unknown"
    m = _EXITED_RE.match(c.get("Status") or "")
    names = c.get("Names") or [""]
    return ContainerInfo(
        id=(c.get("Id") or "")[:12],
        name=names[0].lstrip("/"),
        role=labels.get("mplab.role", ""),
        number=_number(labels),
        state=state,
        running=state == "running",
        exit_code=int(m.group(1)) if m else 0,
        ip=ip,
        console_host_port=host_port,
        pid=0,
        labels=labels,
        mac=mac,
    )


def event_of(ev: Mapping[str, Any]) -> ContainerEvent | None:
    """A ContainerEvent from one engine event (``docker events --format '{{json .}}'`` has the same)."""
    if ev.get("Type") != "container":
        return None
    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
    action = str(ev.get("Action") or ev.get("status") or "")
    if ":" in action:  # "exec_start: sh -c ..." and "health_status: healthy"
        action = action.split(":", 1)[0]
    name = attrs.get("name", "")
    number = attrs.get("com.docker.compose.container-number", "")
    role = attrs.get("mplab.role", "")
    code = attrs.get("exitCode")
    return ContainerEvent(
        action=action,
        container=name,
        role=role,
        node=f"node{number}" if role == "node" and number else name,
        exit_code=int(code) if code not in (None, "") else None,
        time=float(ev.get("timeNano", 0)) / 1e9 if ev.get("timeNano") else float(ev.get("time", 0)),
    )


def sort_containers(cs: list[ContainerInfo]) -> list[ContainerInfo]:
    """The services container first, then by replica number and name (what ``status`` shows)."""
    return sorted(cs, key=lambda c: (c.role != "services", c.number, c.name))


def _number(labels: Mapping[str, str]) -> int:
    try:
        return int(labels.get("com.docker.compose.container-number", "0"))
    except ValueError:
        return 0
