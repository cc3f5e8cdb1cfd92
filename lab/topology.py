"""A lab's topology: its name, addresses and bridge, from the compose file's ``x-mplab``.

The compose file is the single source of truth. Its ``x-mplab`` block holds the default
lab's layout in a /24 (docs/conventions.md). Any other lab name gets the same layout shifted
into a /24 of its own, derived from the name (see :func:`subnet_for`), so that labs can run
side by side. A lab of more nodes than that /24 holds gets the smallest aligned block that
does (/23, /22, ...), the layout scaled into it (:meth:`Topology.sized`, docs/topology.md).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Protocol

import yaml

from .daemons import DAEMONS, NAMES
from .errors import ConfigError

LAB_NAME_RE = re.compile(r"^[a-z0-9]{1,9}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
DEFAULT_LAB = "default"
# The largest lab brought up, every guest leased and answering, on the 2-core 24 GiB reference
# machine (bench/scale.py; docs/scale-out.md). The address plan holds more; this is what was measured.
MAX_NODES = 256
COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")


class LanView(Protocol):
    """What the parts (inject, tcp_peer, linux_peer) need of a running lab: ``Lab`` is one.

    A part takes this, never ``Lab`` itself, so that it imports nothing above it.
    """

    name: str
    topology: Topology

    @property
    def bridge(self) -> str: ...

    @property
    def host_ip(self) -> str: ...

    @property
    def services_ip(self) -> str: ...

    @property
    def subnet(self) -> IPv4Network: ...

    def leases(self) -> dict[str, str]:
        """guest MAC → guest IP."""
        ...

    def lan_hosts(self) -> dict[str, str]:
        """IP → MAC of every lab host that can be named (guests, host, services)."""
        ...

    def networks(self) -> list[str]:
        """The lab's container networks."""
        ...


def validate_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise ConfigError (one line)."""
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise ConfigError(
            f"invalid lab name {name!r}: use 1-9 characters from a-z and 0-9 "
            f"(the bridge mplab-<lab> must fit Linux's 15-character limit)"
        )
    return name


def guest_mac(lab: str, node: str) -> str:
    """The guest MAC of ``node`` in ``lab``: 02:6d:70 + sha256("<lab>/<node>")[:3]."""
    h = hashlib.sha256(f"{lab}/{node}".encode()).digest()[:3]
    return "02:6d:70:" + ":".join(f"{b:02x}" for b in h)


# The lab LAN's IPv6 prefix: a ULA /64 under this /48, its subnet id taken from the second and
# third octets of the lab's IPv4 /24, so that it is as distinct per lab as the IPv4 subnet.
ULA_48 = IPv6Network("fd6d:706c:6162::/48")


def subnet6_for(subnet: IPv4Network) -> IPv6Network:
    """The IPv6 /64 of the lab whose IPv4 subnet is ``subnet``: 10.77.5.0/24 -> fd6d:706c:6162:4d05::/64."""
    b = subnet.network_address.packed
    return IPv6Network((int(ULA_48.network_address) | (b[1] << 72) | (b[2] << 64), 64))


def slaac_address(prefix: IPv6Network, mac: str) -> IPv6Address:
    """The SLAAC address (modified EUI-64, RFC 4291) that a host with ``mac`` forms in ``prefix``.

    lwIP derives the guest's link-local and autoconfigured addresses this way, so a node's
    IPv6 addresses follow from its MAC.
    """
    m = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([m[0] ^ 0x02, m[1], m[2], 0xFF, 0xFE, m[3], m[4], m[5]])
    return IPv6Address(int(prefix.network_address) | int.from_bytes(iid, "big"))


def subnet_for(lab: str, base: IPv4Network, default_lab: str = DEFAULT_LAB, prefix: int = 24) -> IPv4Network:
    """The subnet of ``lab``: the aligned /``prefix`` block holding its /24.

    Its /24 is ``base`` for the default lab, else base's /16 + a name-hashed octet: with the
    default base 10.77.0.0/24, lab "x" gets 10.77.<1..254>.0/24. A bigger block (``prefix``
    < 24) is the aligned one that holds that /24; for another lab, the next one up (or down)
    if that would hold the default lab's /24, so that no size of lab always collides with it.
    """
    if lab == default_lab:
        return base.supernet(new_prefix=prefix) if prefix < base.prefixlen else base
    octet = 1 + int.from_bytes(hashlib.sha256(lab.encode()).digest()[:4], "big") % 254
    b16 = ipaddress.ip_network(f"{base.network_address}/16", strict=False)
    net = ipaddress.ip_network(f"{IPv4Address(int(b16.network_address) + (octet << 8))}/24")
    if prefix >= 24:
        return net
    block = net.supernet(new_prefix=prefix)
    if block.overlaps(base):
        size = block.num_addresses
        up = int(block.network_address) + size
        step = size if up + size <= int(b16.broadcast_address) + 1 else -size
        block = IPv4Network((int(block.network_address) + step, prefix))
    return block


def find_compose_file(start: Path | None = None) -> Path:
    """$MPLAB_COMPOSE_FILE, else the first compose file in ``start`` or a parent directory."""
    env = os.environ.get("MPLAB_COMPOSE_FILE")
    if env:
        return Path(env)
    d = (start or Path.cwd()).resolve()
    for p in [d, *d.parents]:
        for name in COMPOSE_NAMES:
            if (p / name).is_file():
                return p / name
    raise ConfigError(
        f"no docker-compose.yml in {d} or its parents: run from the mplab checkout "
        f"or pass --file PATH (or set MPLAB_COMPOSE_FILE)"
    )


@dataclass(frozen=True)
class Topology:
    """Everything that names and addresses one lab."""

    lab: str
    compose_file: Path
    nodes: int = 2
    subnet: IPv4Network = IPv4Network("10.77.0.0/24")
    gateway: IPv4Address = IPv4Address("10.77.0.1")
    services_ip: IPv4Address = IPv4Address("10.77.0.2")
    ip_range: IPv4Network = IPv4Network("10.77.0.64/26")
    dhcp_start: IPv4Address = IPv4Address("10.77.0.128")
    dhcp_end: IPv4Address = IPv4Address("10.77.0.254")
    domain: str = "lab"
    console_port: int = 5555
    version: str = "dev"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # extra compose files merged over compose_file (`-f` each), e.g. a per-run firmware volume
    overrides: tuple[Path, ...] = ()
    # x-mplab.services: the service daemons that start (lab/daemons.py; docs/services.md)
    services: tuple[str, ...] = NAMES
    # x-mplab.mqtt_persistence: Mosquitto keeps sessions and queued QoS 1 messages across a
    # restart of its container (docs/services.md); off by default: a restart forgets everything
    mqtt_persistence: bool = False
    # x-mplab.subnet and x-mplab.lab: where the layout was described, for sized() to place a bigger block
    base: IPv4Network = IPv4Network("10.77.0.0/24")
    default_lab: str = DEFAULT_LAB

    @property
    def project(self) -> str:
        return f"mplab-{self.lab}"

    @property
    def bridge(self) -> str:
        return f"mplab-{self.lab}"

    def node_names(self, n: int | None = None) -> list[str]:
        return [f"node{i}" for i in range(1, (self.nodes if n is None else n) + 1)]

    def mac(self, node: str) -> str:
        return guest_mac(self.lab, node)

    @property
    def subnet6(self) -> IPv6Network:
        """The LAN's IPv6 prefix (router advertisements from the services container)."""
        return subnet6_for(self.subnet)

    @property
    def ip_range6(self) -> IPv6Network:
        """Where Docker picks the containers' dynamic IPv6 addresses (``<prefix>::1:0/112``): away
        from the fixed ones (``::2``, ``::11``..), which it would otherwise hand out first."""
        return IPv6Network((int(self.subnet6.network_address) | 0x10000, 112))

    @property
    def gateway6(self) -> IPv6Address:
        """The host's IPv6 address on the LAN bridge."""
        return self.subnet6.network_address + 1

    @property
    def services_ip6(self) -> IPv6Address:
        return self.subnet6.network_address + 2

    def service_ip(self, name: str) -> IPv4Address:
        """The address of the service daemon ``name`` (``mqtt``: subnet + 11)."""
        return self.subnet.network_address + DAEMONS[name].host

    def service_ip6(self, name: str) -> IPv6Address:
        """Its IPv6 address: the host number's decimal digits as the last group (``::11``)."""
        return self.subnet6.network_address + int(str(DAEMONS[name].host), 16)

    def service_name(self, name: str) -> str:
        """Its DNS name: ``mqtt.lab``."""
        return f"{name}.{self.domain}"

    @property
    def run_dir(self) -> Path:
        """The lab's directory on the host: its CA, the services' keys, ``www/`` (build/labs/<lab>)."""
        return self.compose_file.parent / "build" / "labs" / self.lab

    def ip6(self, node: str) -> IPv6Address:
        """``node``'s global IPv6 address (SLAAC from its MAC)."""
        return slaac_address(self.subnet6, self.mac(node))

    def env(self) -> dict[str, str]:
        """The MPLAB_* variables that compose interpolates (docs/conventions.md)."""
        return {
            "MPLAB_LAB": self.lab,
            "MPLAB_VERSION": self.version,
            "MPLAB_SUBNET": str(self.subnet),
            "MPLAB_GATEWAY": str(self.gateway),
            "MPLAB_SERVICES_IP": str(self.services_ip),
            "MPLAB_IP_RANGE": str(self.ip_range),
            "MPLAB_DHCP_START": str(self.dhcp_start),
            "MPLAB_DHCP_END": str(self.dhcp_end),
            "MPLAB_BRIDGE": self.bridge,
            "MPLAB_DOMAIN": self.domain,
            "MPLAB_CONSOLE_PORT": str(self.console_port),
            "MPLAB_SUBNET6": str(self.subnet6),
            "MPLAB_GATEWAY6": str(self.gateway6),
            "MPLAB_IP_RANGE6": str(self.ip_range6),
            "MPLAB_SERVICES_IP6": str(self.services_ip6),
            "MPLAB_RUN_DIR": str(self.run_dir),
            "MPLAB_LAB_SERVICES": " ".join(self.services),
            "MPLAB_MQTT_PERSISTENCE": "true" if self.mqtt_persistence else "false",
            **{f"MPLAB_{n.upper()}_IP": str(self.service_ip(n)) for n in NAMES},
            **{f"MPLAB_{n.upper()}_IP6": str(self.service_ip6(n)) for n in NAMES},
        }

    def with_subnet(self, subnet: IPv4Network) -> Topology:
        """The same layout moved into ``subnet`` (same host offsets)."""
        delta = int(subnet.network_address) - int(self.subnet.network_address)

        def mv(a: IPv4Address) -> IPv4Address:
            return IPv4Address(int(a) + delta)

        rng = IPv4Network(f"{mv(self.ip_range.network_address)}/{self.ip_range.prefixlen}")
        return _replace(
            self,
            subnet=subnet,
            gateway=mv(self.gateway),
            services_ip=mv(self.services_ip),
            ip_range=rng,
            dhcp_start=mv(self.dhcp_start),
            dhcp_end=mv(self.dhcp_end),
        )

    @property
    def capacity(self) -> int:
        """The most nodes the layout holds: Docker's ip_range for the node containers less its
        network and broadcast addresses, and the guests' DHCP pool (one lease each)."""
        return min(self.ip_range.num_addresses - 2, int(self.dhcp_end) - int(self.dhcp_start) + 1)

    def with_prefix(self, prefix: int) -> Topology:
        """The layout scaled into the lab's aligned /``prefix`` block (:func:`subnet_for`).

        Host, services and the daemons keep their host numbers (+1, +2, +11..13); the node
        containers' ip_range and the guests' DHCP pool grow with the block: offsets times k
        (k = the block's size / the layout's), the pool's end kept as far below the block's
        broadcast address (.254 of a /24 -> the block's last address but one). At the layout's
        own prefix it is the layout itself, so a /24 lab is what it always was.
        """
        if not 16 <= prefix <= 30:
            raise ConfigError(f"lab {self.lab}: no /{prefix} subnet plan; fix: use fewer nodes (1..{MAX_NODES})")
        cur = self.subnet.prefixlen
        net = int(self.subnet.network_address)
        new = subnet_for(self.lab, self.base, self.default_lab, prefix)
        base = int(new.network_address)

        def scale(off: int) -> int:
            return off << (cur - prefix) if prefix <= cur else off >> (prefix - cur)

        rng_off = int(self.ip_range.network_address) - net
        start_off = int(self.dhcp_start) - net
        end_off = int(self.dhcp_end) - net
        return _replace(
            self,
            subnet=new,
            gateway=IPv4Address(base + int(self.gateway) - net),
            services_ip=IPv4Address(base + int(self.services_ip) - net),
            ip_range=IPv4Network((base + scale(rng_off), self.ip_range.prefixlen - (cur - prefix))),
            dhcp_start=IPv4Address(base + scale(start_off)),
            dhcp_end=IPv4Address(base + scale(end_off + 2) - 2),
        )

    def sized(self, nodes: int) -> Topology:
        """The layout in the smallest block (never below the configured /24) that holds ``nodes``."""
        validate_nodes(nodes)
        for prefix in range(self.base.prefixlen, 15, -1):
            t = self.with_prefix(prefix)
            if t.capacity >= nodes:
                return _replace(t, nodes=nodes)
        raise ConfigError(f"lab {self.lab}: {nodes} nodes do not fit a /16; fix: use 1..{MAX_NODES} nodes")

    # ---- loading ----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        lab: str | None = None,
        compose_file: Path | None = None,
        nodes: int | None = None,
        version: str | None = None,
    ) -> Topology:
        """Read and validate ``compose_file``; derive the layout of ``lab`` from it."""
        path = Path(compose_file) if compose_file else find_compose_file()
        doc, lines = _read_compose(path)
        if "x-mplab" not in doc:
            near = difflib.get_close_matches("x-mplab", [str(k) for k in doc], n=1, cutoff=0.6)
            if near:
                raise _bad(
                    path,
                    f"line {lines.get((near[0],), '?')}: unknown top-level key {near[0]!r}",
                    "did you mean `x-mplab`? (docs/topology.md)",
                )
            raise _bad(path, "no `x-mplab:` block", "add the x-mplab block of the repo's docker-compose.yml")
        x = doc.get("x-mplab")
        if not isinstance(x, dict):
            raise _bad(path, "x-mplab must be a mapping", "write `x-mplab:` followed by key: value lines")
        for key in x:
            if key not in _KNOWN_X:
                near = difflib.get_close_matches(str(key), sorted(_KNOWN_X), n=1, cutoff=0.5)
                hint = f"did you mean `{near[0]}`?" if near else f"use one of {', '.join(sorted(_KNOWN_X))}"
                raise _bad(path, f"line {lines.get(('x-mplab', key), '?')}: unknown x-mplab key {key!r}", hint)
        default_lab = str(x.get("lab", DEFAULT_LAB))
        lab = validate_lab_name(lab if lab is not None else os.environ.get("LAB") or default_lab)
        try:
            base = IPv4Network(str(x.get("subnet", "10.77.0.0/24")))
            dhcp = x.get("dhcp", ["10.77.0.128", "10.77.0.254"])
            if not (isinstance(dhcp, list) and len(dhcp) == 2):
                raise ValueError("dhcp must be a list [start, end]")
            topo = cls(
                lab=lab,
                compose_file=path.resolve(),
                nodes=_int(x, "nodes", 2, lines, path),
                subnet=base,
                gateway=IPv4Address(str(x.get("gateway", base.network_address + 1))),
                services_ip=IPv4Address(str(x.get("services_ip", base.network_address + 2))),
                ip_range=IPv4Network(str(x.get("ip_range", "10.77.0.64/26"))),
                dhcp_start=IPv4Address(str(dhcp[0])),
                dhcp_end=IPv4Address(str(dhcp[1])),
                domain=str(x.get("domain", "lab")),
                console_port=_int(x, "console_port", 5555, lines, path),
                services=_services(path, x.get("services", _defined(doc)), _defined(doc)),
                mqtt_persistence=_bool(x, "mqtt_persistence", False, lines, path),
                version=version or os.environ.get("MPLAB_VERSION") or _read_version(path),
                extra={k: v for k, v in x.items() if k not in _KNOWN_X},
            )
        except (ValueError, TypeError) as e:
            raise _bad(path, f"bad x-mplab value ({e})", "fix the address in x-mplab (see docs/topology.md)") from None
        if not DOMAIN_RE.match(topo.domain):
            raise _bad(
                path, f"x-mplab.domain {topo.domain!r} is not a DNS domain", "use labels of a-z, 0-9 and '-', e.g. lab"
            )
        if not 1 <= topo.console_port <= 65535:
            raise _bad(path, f"x-mplab.console_port {topo.console_port} is not a TCP port", "use 1..65535, e.g. 5555")
        if base.prefixlen != 24:
            raise _bad(path, f"x-mplab.subnet {base} is not a /24", "use a /24 such as 10.77.0.0/24")
        for what, a in (
            ("gateway", topo.gateway),
            ("services_ip", topo.services_ip),
            ("dhcp start", topo.dhcp_start),
            ("dhcp end", topo.dhcp_end),
        ):
            if a not in base:
                raise _bad(path, f"x-mplab {what} {a} is outside subnet {base}", "keep every address in the subnet")
        if not topo.ip_range.subnet_of(base):
            raise _bad(
                path, f"x-mplab.ip_range {topo.ip_range} is outside subnet {base}", "keep ip_range in the subnet"
            )
        if topo.dhcp_start in topo.ip_range or topo.dhcp_end in topo.ip_range:
            raise _bad(path, "the DHCP pool overlaps ip_range", "keep the guest pool outside the containers' ip_range")
        for name in NAMES:
            a = topo.service_ip(name)
            if a in topo.ip_range or topo.dhcp_start <= a <= topo.dhcp_end or a in (topo.gateway, topo.services_ip):
                raise _bad(
                    path,
                    f"service {name}'s address {a} (subnet + {DAEMONS[name].host}) is taken by ip_range, "
                    "the DHCP pool, the gateway or services_ip",
                    "keep subnet + 11..13 free (docs/services.md)",
                )
        if nodes is not None:
            topo = _replace(topo, nodes=nodes)
        validate_nodes(topo.nodes)
        return _replace(topo, base=base, default_lab=default_lab).sized(topo.nodes)


_KNOWN_X = {
    *("lab", "nodes", "domain", "subnet", "gateway", "services_ip", "ip_range", "dhcp", "console_port"),
    "services",
    "mqtt_persistence",
}


def validate_services(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of service daemon names (in lab/daemons.py's order), or ConfigError."""
    valid = ", ".join(NAMES)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"not a list of names (got {names!r}): valid services are {valid}")
    unknown = [n for n in names if n not in DAEMONS]
    if unknown:
        raise ConfigError(f"unknown service {', '.join(map(repr, unknown))}: valid services are {valid}")
    return tuple(n for n in NAMES if n in names)


def _defined(doc: dict[str, Any]) -> list[str]:
    """The service daemons the compose file defines (all of them in the repo's)."""
    return [n for n in NAMES if isinstance(doc["services"].get(n), dict)]


def _services(path: Path, names: Any, defined: list[str]) -> tuple[str, ...]:
    """x-mplab.services, validated; without the key, every daemon the compose file defines."""
    try:
        out = validate_services(names)
    except ConfigError as e:
        raise _bad(path, f"x-mplab.services: {e}", f"list some of {', '.join(NAMES)} (or [] for none)") from None
    missing = [n for n in out if n not in defined]
    if missing:
        raise _bad(
            path,
            f"x-mplab.services names {', '.join(missing)}, but the file defines no such compose service",
            "copy its service from the repo's docker-compose.yml, or leave it out of x-mplab.services",
        )
    return out


def _int(x: dict[str, Any], key: str, default: int, lines: dict[tuple[Any, ...], int], path: Path) -> int:
    v = x.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(
            path,
            f"line {lines.get(('x-mplab', key), '?')}: x-mplab.{key} is {v!r}, not a whole number",
            f"write e.g. `{key}: {default}`",
        )
    return v


def _bool(x: dict[str, Any], key: str, default: bool, lines: dict[tuple[Any, ...], int], path: Path) -> bool:
    v = x.get(key, default)
    if not isinstance(v, bool):
        raise _bad(
            path,
            f"line {lines.get(('x-mplab', key), '?')}: x-mplab.{key} is {v!r}, not true or false",
            f"write `{key}: true` or `{key}: false`",
        )
    return v


def validate_nodes(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NODES:
        raise ConfigError(
            f"invalid node count {n!r}: use 1..{MAX_NODES} ({MAX_NODES} is the largest lab measured on the "
            "2-core 24 GiB reference machine, docs/scale-out.md)"
        )
    return n


def _replace(t: Topology, **kw: Any) -> Topology:
    from dataclasses import replace

    return replace(t, **kw)


def _bad(path: Path, what: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {what}; fix: {fix}")


def _read_version(compose: Path) -> str:
    """The image tag: VERSION beside the compose file, else the installed package's version.

    Never a made-up tag: a tag the lab did not build would make compose look for (and, without
    --pull never, download) an image from a registry.
    """
    v = compose.parent / "VERSION"
    if v.is_file():
        return v.read_text().strip()
    return package_version()


def package_version() -> str:
    """The version of the installed mplab package (its VERSION file in a checkout)."""
    v = Path(__file__).resolve().parent.parent / "VERSION"
    if v.is_file():
        return v.read_text().strip()
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mplab")
    except PackageNotFoundError:
        raise ConfigError(
            "cannot tell the image version: no VERSION file and no installed mplab package; "
            "fix: set MPLAB_VERSION to the tag `make images` built"
        ) from None


def read_text(path: Path, what: str = "file") -> str:
    """A config file's text, or one ConfigError line (not a UnicodeDecodeError traceback)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}, column {col}: not UTF-8 (byte 0x{data[e.start]:02x}); "
            f"fix: save the {what} as UTF-8"
        ) from None


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Line (1-based) of each mapping key two levels deep: {("x-mplab",): 9, ("x-mplab", "nodes"): 11}."""
    out: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if not isinstance(root, yaml.MappingNode):
        return out
    for k, v in root.value:
        out[(k.value,)] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            for k2, _ in v.value:
                out[(k.value, k2.value)] = k2.start_mark.line + 1
    return out


def _read_compose(path: Path) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    if not path.is_file():
        raise ConfigError(f"{path}: compose file not found; fix: pass --file PATH to an existing docker-compose.yml")
    text = read_text(path, "compose file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise _bad(path, f"not valid YAML{where}", "correct the YAML syntax") from None
    if not isinstance(doc, dict):
        raise _bad(path, "not a compose file (top level is not a mapping)", "start from the repo's docker-compose.yml")
    services = doc.get("services")
    if not isinstance(services, dict):
        raise _bad(path, "no `services:` mapping", "define the `node` and `services` services")
    for svc in ("node", "services"):
        if not isinstance(services.get(svc), dict):
            raise _bad(path, f"no service `{svc}`", f"define a `{svc}` service (see docs/topology.md)")
    nets = doc.get("networks")
    if not isinstance(nets, dict) or "lan" not in nets:
        raise _bad(path, "no network `lan`", "define networks.lan (internal bridge; see docs/topology.md)")
    return doc, key_lines(text)


def compose_images(topo: Topology) -> list[str]:
    """The images the compose file's services name, with ${MPLAB_*} interpolated as compose would."""
    doc, _ = _read_compose(topo.compose_file)
    env = {**os.environ, **topo.env()}
    out = []
    for svc in (doc.get("services") or {}).values():
        if isinstance(svc, dict) and isinstance(svc.get("image"), str):
            out.append(_interpolate(svc["image"], env))
    return sorted(set(out))


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        got = env.get(name)
        return got if got else (m.group(2) or "")

    return _VAR_RE.sub(sub, value)
