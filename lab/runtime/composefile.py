"""The compose file as the Engine API runtime reads it: interpolated, merged, and turned into
the networks and containers to create.

``docker-compose.yml`` stays the one topology users edit, and ``docker compose up`` still runs
it; this module reads the part of the Compose specification that a lab uses (the keys in
``SERVICE_KEYS`` and ``NETWORK_KEYS``) and says so, in one line, for a key it does not know,
rather than ignore it. Interpolation follows compose: ``${VAR}``, ``${VAR:-default}`` (unset or
empty), ``${VAR-default}`` (unset), ``${VAR:?message}``, ``${VAR?message}``, ``$VAR`` and ``$$``.
YAML merge keys (``<<: *daemon``) are PyYAML's.

Names and labels are those of Compose v2 (``<project>-<service>-<n>``, ``<project>_<network>``,
``com.docker.compose.*``), so ``docker compose -p <project> ps`` lists a lab the engine made.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..topology import Topology, read_text

# What a lab's compose file may say, per service and per network. Anything else is an error
# that names the key and the way out (MPLAB_RUNTIME=compose hands the file to compose itself).
SERVICE_KEYS = frozenset(
    {
        *("image", "command", "entrypoint", "environment", "labels", "networks", "ports"),
        *("volumes", "cap_add", "cap_drop", "devices", "sysctls", "depends_on", "init"),
        *("stop_grace_period", "restart", "privileged", "hostname", "working_dir", "user"),
        *("tmpfs", "mem_limit", "shm_size"),
    }
)
NETWORK_KEYS = frozenset({"driver", "internal", "enable_ipv6", "driver_opts", "ipam", "labels", "attachable"})
COMPOSE_VERSION_LABEL = "2.26.1"  # the Compose v2 whose labels the engine runtime writes (docs/runtime.md)


@dataclass(frozen=True)
class NetworkSpec:
    key: str  # the compose file's name: lan
    name: str  # the engine's: mplab-x_lan
    driver: str
    internal: bool
    enable_ipv6: bool
    options: dict[str, str]
    ipam: list[dict[str, str]]  # [{subnet, ip_range, gateway}]
    labels: dict[str, str]
    attachable: bool = False


@dataclass(frozen=True)
class Endpoint:
    network: str  # the engine's network name
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    """One compose service, resolved: what every container of it is created with."""

    name: str
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    endpoints: tuple[Endpoint, ...]
    ports: dict[str, tuple[str, int | None] | int | None]  # "5555/tcp" → (host_ip, host_port)
    binds: list[str]  # "host:container[:ro]"
    cap_add: list[str]
    cap_drop: list[str]
    devices: list[str]
    sysctls: dict[str, str]
    depends_on: tuple[str, ...]
    init: bool | None
    stop_timeout: int | None
    restart: str | None
    privileged: bool = False
    hostname: str | None = None
    working_dir: str | None = None
    user: str | None = None
    tmpfs: dict[str, str] = field(default_factory=dict)
    mem_limit: str | None = None
    shm_size: str | None = None

    @property
    def config_hash(self) -> str:
        """A digest of the resolved service: a container made from other settings is recreated."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Project:
    """The resolved compose file of one lab."""

    name: str  # mplab-<lab>
    file: Path
    networks: dict[str, NetworkSpec]
    services: dict[str, ServiceSpec]

    def container_name(self, service: str, number: int) -> str:
        return f"{self.name}-{service}-{number}"

    def labels(self, service: str, number: int) -> dict[str, str]:
        """The compose labels of a container (what ``docker compose ps`` and ``down`` go by)."""
        s = self.services[service]
        return {
            **s.labels,
            "com.docker.compose.project": self.name,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.config-hash": s.config_hash,
            "com.docker.compose.project.config_files": str(self.file),
            "com.docker.compose.project.working_dir": str(self.file.parent),
            "com.docker.compose.version": COMPOSE_VERSION_LABEL,
        }

    def _may_collide(self, service: str) -> bool:
        """``service`` has a fixed address on a network whose dynamic addresses could take it."""
        nets = {n.name: n for n in self.networks.values()}
        return any(
            (e.ipv4_address or e.ipv6_address) and not _ranged(nets[e.network])
            for e in self.services[service].endpoints
        )

    def start_order(self, wanted: list[str]) -> list[list[str]]:
        """``wanted`` services in waves: each wave depends only on the waves before it.

        Docker hands out a network's dynamic addresses from the bottom of its range. Where a
        network has no ``ip_range`` for some family, a container started before one with a fixed
        address could take that address ("Address already in use"): then, in a wave, the
        services with fixed addresses go first, as a wave of their own. The repo's file gives
        both families a range away from the fixed addresses, so its waves stay whole."""
        waves: list[list[str]] = []
        done: set[str] = set()
        left = list(wanted)
        while left:
            wave = [s for s in left if all(d in done or d not in wanted for d in self.services[s].depends_on)]
            if not wave:
                raise ConfigError(f"{self.file}: depends_on has a cycle among {', '.join(left)}; fix: break it")
            fixed = [s for s in wave if self._may_collide(s)]
            waves += [w for w in (fixed, [s for s in wave if s not in fixed]) if w]
            done.update(wave)
            left = [s for s in left if s not in done]
        return waves


def _ranged(net: NetworkSpec) -> bool:
    """Every subnet of ``net`` keeps dynamic addresses in an ``ip_range``."""
    return all(c.get("ip_range") for c in net.ipam)


def load(topo: Topology) -> Project:
    """``topo``'s compose file (and its overrides, merged in order), resolved for ``topo``."""
    env = topo.env()
    docs = [_read(f) for f in (topo.compose_file, *topo.overrides)]
    merged: dict[str, Any] = {}
    for d in docs:
        merged = _merge(merged, d)
    doc = _interpolate(merged, env, topo.compose_file)
    project = topo.project
    networks = {k: _network(topo.compose_file, project, k, v or {}) for k, v in (doc.get("networks") or {}).items()}
    services = {
        k: _service(topo.compose_file, k, v, networks) for k, v in (doc.get("services") or {}).items() if v is not None
    }
    return Project(project, topo.compose_file, networks, services)


# ---- reading ------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(read_text(path, "compose file"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix: correct the YAML syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a compose file (top level is not a mapping); fix: start from the repo's")
    return doc


def _merge(base: Any, over: Any) -> Any:
    """Compose's override merge, in the part a lab needs: mappings merge, lists of volumes and
    ports add up, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if k in out and k in ("volumes", "ports", "cap_add", "devices") and isinstance(v, list):
                out[k] = [*(out[k] or []), *v]
            else:
                out[k] = _merge(out.get(k), v) if k in out else v
        return out
    return over


_VAR_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: Mapping[str, str], where: str = "") -> str:
    """``value`` with compose's variable substitution against ``env``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        got = env.get(name)
        missing = not got if op in (":-", ":?") else got is None
        if op and op.endswith("-") and missing:
            return arg
        if op and op.endswith("?") and missing:
            raise ConfigError(f"{where}: ${{{name}}} is required: {arg or 'not set'}; fix: set {name}")
        return got or ""

    return _VAR_RE.sub(sub, value)


def _interpolate(doc: Any, env: Mapping[str, str], path: Path) -> Any:
    if isinstance(doc, str):
        return interpolate(doc, env, str(path))
    if isinstance(doc, list):
        return [_interpolate(x, env, path) for x in doc]
    if isinstance(doc, dict):
        return {k: _interpolate(v, env, path) for k, v in doc.items()}
    return doc


# ---- networks -----------------------------------------------------------------------------
def _network(path: Path, project: str, key: str, n: dict[str, Any]) -> NetworkSpec:
    _only(path, f"networks.{key}", n, NETWORK_KEYS)
    ipam = n.get("ipam") or {}
    configs = []
    for c in ipam.get("config") or []:
        configs.append({k: str(v) for k, v in c.items() if k in ("subnet", "ip_range", "gateway")})
    return NetworkSpec(
        key=key,
        name=f"{project}_{key}",
        driver=str(n.get("driver", "bridge")),
        internal=bool(n.get("internal", False)),
        enable_ipv6=bool(n.get("enable_ipv6", False)),
        options={str(k): str(v) for k, v in (n.get("driver_opts") or {}).items()},
        ipam=configs,
        labels={
            **_mapping(n.get("labels")),
            "com.docker.compose.project": project,
            "com.docker.compose.network": key,
            "com.docker.compose.version": COMPOSE_VERSION_LABEL,
        },
        attachable=bool(n.get("attachable", False)),
    )


# ---- services -----------------------------------------------------------------------------
def _service(path: Path, name: str, s: Any, networks: dict[str, NetworkSpec]) -> ServiceSpec:
    where = f"services.{name}"
    if not isinstance(s, dict):
        raise ConfigError(f"{path}: {where} is not a mapping; fix: write its keys under it")
    _only(path, where, s, SERVICE_KEYS)
    if not isinstance(s.get("image"), str):
        raise ConfigError(f"{path}: {where} has no image; fix: name one (the lab builds images, it never pulls)")
    return ServiceSpec(
        name=name,
        image=s["image"],
        command=_argv(s.get("command")),
        entrypoint=_argv(s.get("entrypoint")),
        environment=_mapping(s.get("environment")),
        labels=_mapping(s.get("labels")),
        endpoints=_endpoints(path, where, name, s.get("networks"), networks),
        ports=_ports(path, where, s.get("ports") or []),
        binds=[_bind(path, where, v) for v in s.get("volumes") or []],
        cap_add=[str(c) for c in s.get("cap_add") or []],
        cap_drop=[str(c) for c in s.get("cap_drop") or []],
        devices=[str(d) for d in s.get("devices") or []],
        sysctls=_mapping(s.get("sysctls")),
        depends_on=tuple(s.get("depends_on") or ()),
        init=s.get("init"),
        stop_timeout=_seconds(path, where, s.get("stop_grace_period")),
        restart=s.get("restart"),
        privileged=bool(s.get("privileged", False)),
        hostname=s.get("hostname"),
        working_dir=s.get("working_dir"),
        user=None if s.get("user") is None else str(s["user"]),
        tmpfs=_tmpfs(s.get("tmpfs")),
        mem_limit=None if s.get("mem_limit") is None else str(s["mem_limit"]),
        shm_size=None if s.get("shm_size") is None else str(s["shm_size"]),
    )


def _only(path: Path, where: str, d: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in d if k not in known and not str(k).startswith("x-"))
    if unknown:
        raise ConfigError(
            f"{path}: {where}.{unknown[0]} is not a key the lab's engine runtime knows "
            f"(it knows {', '.join(sorted(known))}); fix: remove it, or run the file through compose "
            "with MPLAB_RUNTIME=compose (docs/runtime.md)"
        )


def _mapping(v: Any) -> dict[str, str]:
    """A compose mapping or ``KEY=VALUE`` list as a dict of strings (booleans as compose writes them)."""
    if v is None:
        return {}
    if isinstance(v, dict):
        return {str(k): _scalar(x) for k, x in v.items()}
    out = {}
    for item in v:
        k, _, x = str(item).partition("=")
        out[k] = x
    return out


def _scalar(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return "" if x is None else str(x)


def _argv(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]


def _endpoints(path: Path, where: str, service: str, v: Any, networks: dict[str, NetworkSpec]) -> tuple[Endpoint, ...]:
    items: dict[str, dict[str, Any]] = {}
    if v is None:
        v = ["default"]
    if isinstance(v, list):
        items = {str(k): {} for k in v}
    elif isinstance(v, dict):
        items = {str(k): dict(x or {}) for k, x in v.items()}
    out = []
    for key, opts in items.items():
        if key not in networks:
            raise ConfigError(
                f"{path}: {where}.networks names {key!r}, which the file does not define; "
                f"fix: use one of {', '.join(networks) or '(none)'} or define it under networks:"
            )
        aliases = (service, *[str(a) for a in opts.get("aliases") or []])
        out.append(Endpoint(networks[key].name, opts.get("ipv4_address"), opts.get("ipv6_address"), aliases))
    return tuple(out)


def _ports(path: Path, where: str, ports: list[Any]) -> dict[str, tuple[str, int | None] | int | None]:
    """Compose's short port syntax: ``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]``."""
    out: dict[str, tuple[str, int | None] | int | None] = {}
    for p in ports:
        spec = str(p)
        body, _, proto = spec.partition("/")
        parts = body.rsplit(":", 2)
        try:
            if len(parts) == 1:
                out[f"{int(parts[0])}/{proto or 'tcp'}"] = None
            elif len(parts) == 2:
                out[f"{int(parts[1])}/{proto or 'tcp'}"] = int(parts[0]) if parts[0] else None
            else:
                host_ip, host_port, cport = parts
                out[f"{int(cport)}/{proto or 'tcp'}"] = (host_ip, int(host_port) if host_port else None)
        except ValueError:
            raise ConfigError(
                f"{path}: {where}.ports entry {spec!r} is not [IP:][HOST:]PORT; fix: e.g. 127.0.0.1::5555"
            ) from None
    return out


def _bind(path: Path, where: str, v: Any) -> str:
    if not isinstance(v, str) or ":" not in v:
        raise ConfigError(
            f"{path}: {where}.volumes entry {v!r} is not HOST:CONTAINER[:ro]; fix: use a bind mount "
            "(named volumes need MPLAB_RUNTIME=compose)"
        )
    src, _, rest = v.partition(":")
    if not src.startswith(("/", ".", "~")):
        raise ConfigError(
            f"{path}: {where}.volumes entry {v!r} names a volume, not a host path; fix: use a bind mount "
            "(./dir or /dir), or MPLAB_RUNTIME=compose"
        )
    host = Path(src).expanduser()
    if not host.is_absolute():
        host = (path.parent / host).resolve()
    return f"{host}:{rest}"


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def _seconds(path: Path, where: str, v: Any) -> int | None:
    """A compose duration (``2s``, ``1m30s``, a number of seconds) as whole seconds, rounded up."""
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(-(-v // 1))
    m = _DURATION_RE.match(str(v))
    if not m or not any(m.groups()):
        raise ConfigError(f"{path}: {where}.stop_grace_period {v!r} is not a duration; fix: e.g. 2s or 1m30s")
    h, mi, s, ms = (float(x) if x else 0.0 for x in m.groups())
    total = h * 3600 + mi * 60 + s + ms / 1000
    return int(-(-total // 1))


def _tmpfs(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    items = [v] if isinstance(v, str) else list(v)
    out = {}
    for item in items:
        mount, _, opts = str(item).partition(":")
        out[mount] = opts
    return out
