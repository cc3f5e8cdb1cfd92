"""The scenario's data: the schema a file loads into, and the results a run produces."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError

REPRODUCED, NOT_REPRODUCED, ERROR = "reproduced", "not reproduced", "error"
EXIT_CODES = {REPRODUCED: 0, NOT_REPRODUCED: 1, ERROR: 3}
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
NODE_RE = re.compile(r"^node[1-9][0-9]?$")
VAR_RE = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")

Progress = Callable[[str], None]
Path_ = tuple[str | int, ...]  # where a value sits in the file: ("timeline", 0, "exec", "node")


class ScenarioError(ConfigError):
    """A scenario file is malformed: ``<file>:<line>: <field>: <problem>; fix: <fix>``."""


# ---- the schema ------------------------------------------------------------------------
@dataclass
class FileCopy:
    src: Path
    node: str
    dst: str
    line: int


@dataclass
class AppDeploy:
    """``app:``: a project tree deployed to a node before the timeline (then soft reset)."""

    src: Path
    node: str
    dest: str
    wait: str | None
    line: int


@dataclass
class WwwFile:
    """``www:``: a file or a directory put into the lab's web root (nginx at www.<domain>)."""

    src: Path
    dst: str  # the URL path, e.g. /api/status.json (a directory's tree goes under it)
    line: int


@dataclass
class PackageSet:
    """``packages:``: package specs (lab.packages) installed into a node's /lib."""

    node: str
    specs: list[str]
    line: int


@dataclass
class Peer:
    name: str
    kind: str  # udp | tcp_server | tcp_peer | dns | services | mqtt_subscriber
    port: int
    options: dict[str, Any]
    line: int


@dataclass
class Expect:
    """What an exec step's result must look like (part of the bug's signature)."""

    output: str | None = None  # regex searched in stdout
    exception: str | None = None  # exception type name, e.g. OSError
    errno: int | None = None
    timeout: bool | None = None  # True: the exec must hang past its timeout
    absent: str | None = None  # regex that must NOT be in stdout


@dataclass
class Step:
    index: int
    line: int
    id: str
    action: str
    args: dict[str, Any]
    at: float | None = None
    after: float = 0.0
    expect: Expect | None = None
    says: str = ""
    require: Expect | None = None  # like expect, but a miss means the scenario could not run (error)


@dataclass
class WireSpec:
    layer: str
    fields: dict[str, Any]


@dataclass
class Assertion:
    index: int
    line: int
    kind: str  # console | wire | sequence | mqtt
    says: str
    args: dict[str, Any]


@dataclass
class Scenario:
    path: Path
    text: str
    name: str
    upstream: str
    description: str
    firmware: str | None
    nodes: int
    compose: Path | None
    files: list[FileCopy]
    peers: list[Peer]
    timeline: list[Step]
    assertions: list[Assertion]
    expect: str = "reproduces"
    lines: dict[Path_, int] = field(default_factory=dict, repr=False)
    app: list[AppDeploy] = field(default_factory=list)
    packages: list[PackageSet] = field(default_factory=list)
    mqtt_persistence: bool | None = None  # topology.mqtt_persistence; None: as the compose file says
    www: list[WwwFile] = field(default_factory=list)
    certs: list[str] = field(default_factory=list)  # nodes that get a certificate (Node.install_cert)

    @property
    def lab_name(self) -> str:
        """A lab name of <= 9 characters derived from the scenario name."""
        stem = re.sub(r"[^a-z0-9]", "", self.name)[:5] or "r"
        return stem + hashlib.sha256(self.name.encode()).hexdigest()[:4]


# ---- results ---------------------------------------------------------------------------
@dataclass
class StepResult:
    id: str
    action: str
    line: int
    t_start: float = 0.0  # wall clock (pcap time base)
    t_end: float = 0.0
    output: str = ""
    exception: str = ""
    traceback: str = ""
    errno: int | None = None
    timed_out: bool = False
    error: str = ""
    note: str = ""
    done: bool = False


@dataclass
class PacketRef:
    frame: int  # 1-based frame number in the bundle's pcap
    t: float  # seconds since the capture started
    summary: str


@dataclass
class Expected:
    """Where the packet a failed wire or sequence assertion wanted should have been."""

    t: float  # seconds since the capture started
    what: str  # the spec, e.g. UDP(dst='10.0.0.64', dport=5005)
    src: str | None = None  # the spec's src / dst addresses, when it names them
    dst: str | None = None


@dataclass
class Check:
    label: str
    line: int
    says: str
    held: bool
    detail: str
    packets: list[PacketRef] = field(default_factory=list)
    expected: Expected | None = None  # a failed wire/sequence assertion: its missing packet


@dataclass
class Result:
    scenario: str
    firmware: str
    verdict: str
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""
    duration: float = 0.0
    lab: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


class StepFailed(Exception):
    """A timeline step could not run: the verdict is ``error``."""


class RunState(Protocol):
    """What the actions, the judge and the bundle writer use of a run in progress.

    The runner implements it; they take this small view instead of importing the runner, so
    that imports inside the package run one way (runner -> actions/judge/bundle -> model).
    """

    scn: Scenario
    fw: Any
    lab: Any
    results: dict[str, StepResult]
    checks: list[Check]
    peers: dict[str, Any]
    threads: dict[str, Any]
    node_locks: dict[str, Any]
    impaired: set[str]
    vars: dict[str, str]
    tcp_clients: list[Any]
    t_cap0: float

    def packets(self) -> list[Any]: ...

    def ref(self, i: int, p: Any) -> PacketRef: ...

    def sub(self, value: Any) -> Any: ...
