"""Everything the lab does to the host's own network: nft tables, the bridge rule, route checks.

The parts above take what they need from here by name (a lab name, a bridge), never a ``Lab``:

* **nftables**: everything the lab puts into the host's nftables lives in two tables named
  after the lab, ``bridge mplab_<lab>`` and ``inet mplab_<lab>`` (impairment fallbacks,
  injection blocks, TCP-peer RST drops). Rules carry a ``comment`` tag so that their owner can
  delete just its own; :func:`host_cleanup` (called by ``Lab.down``) deletes both tables.
* **the host bridge rule**: ``tap-net/mplab-host-net ensure|remove BRIDGE`` (one DOCKER-USER
  rule per lab so that frames bridged inside the LAN, DHCP broadcasts included, pass).
* **route checks**: a lab subnet must not shadow a route the host already has.
* **the bridge's MAC** (the host's address on the LAN, for frames the host sends).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from .errors import ConfigError, LabError


# ---- nftables (lab-owned tables) ------------------------------------------------------------
def nft_table(lab: str) -> str:
    return f"mplab_{lab}"


def nft(script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an nft script (``nft -f -``) on the host."""
    try:
        p = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        raise LabError("`nft` not found on the host: install nftables") from None
    if check and p.returncode != 0:
        err = (p.stderr or p.stdout).strip().splitlines()
        raise LabError(f"nft failed: {err[0] if err else p.returncode}")
    return p


def nft_ensure(lab: str, family: str) -> str:
    """Create the lab's table (and its base chains) in ``family`` (bridge or inet); return its name."""
    t = nft_table(lab)
    if family == "bridge":
        chains = (
            "chain pre { type filter hook prerouting priority -300; policy accept; }\n"
            "chain post { type filter hook postrouting priority 300; policy accept; }\n"
            "chain through { type filter hook forward priority 0; policy accept; }\n"
        )
    else:
        chains = "chain out { type filter hook output priority 0; policy accept; }\n"
    nft(f'table {family} {t} {{ comment "mplab lab {lab}"; }}\ntable {family} {t} {{\n{chains}}}\n')
    return t


def nft_add(lab: str, family: str, chain: str, rule: str, tag: str) -> None:
    """Add ``rule`` to the lab's ``family`` table, marked with ``comment "<tag>"``."""
    t = nft_ensure(lab, family)
    nft(f'add rule {family} {t} {chain} {rule} comment "{tag}"\n')


def nft_rules(lab: str, family: str) -> list[dict[str, Any]]:
    """The rules of the lab's ``family`` table, as nft's JSON (``[]`` when there is no table)."""
    try:
        p = subprocess.run(
            ["nft", "-j", "list", "table", family, nft_table(lab)], capture_output=True, text=True, timeout=20
        )
    except FileNotFoundError:
        return []  # without nftables the lab can't have made any
    if p.returncode != 0:
        return []
    return [item["rule"] for item in json.loads(p.stdout or "{}").get("nftables", []) if "rule" in item]


def nft_delete(lab: str, family: str, tag_prefix: str) -> int:
    """Delete the rules whose comment starts with ``tag_prefix``; return how many."""
    n = 0
    for r in nft_rules(lab, family):
        if str(r.get("comment", "")).startswith(tag_prefix):
            nft(f"delete rule {family} {nft_table(lab)} {r['chain']} handle {r['handle']}\n", check=False)
            n += 1
    return n


def host_cleanup(lab: str) -> list[str]:
    """Delete the lab's nft tables (impairment fallbacks, injection blocks, TCP peer RST drops)."""
    if shutil.which("nft") is None:
        return []  # without nftables the lab can't have made any
    gone = []
    for fam in ("bridge", "inet"):
        p = nft(f"delete table {fam} {nft_table(lab)}\n", check=False)
        if p.returncode == 0:
            gone.append(f"nft table {fam} {nft_table(lab)}")
    return gone


# ---- the host bridge rule (tap-net/mplab-host-net) -------------------------------------------
def helper(name: str) -> Path:
    """A host-side helper script of the installed package (tap-net/<name> of its checkout).

    Found from the package, not beside the compose file: a compose file elsewhere must not
    silently lose the host rules.
    """
    p = Path(__file__).resolve().parent.parent / "tap-net" / name
    if not p.is_file():
        raise LabError(f"{p}: host helper missing from the mplab installation; fix: reinstall with `make venv`")
    return p


def bridge_rule(script: Path, action: str, bridge: str) -> None:
    """Add (``ensure``) or drop (``remove``) the lab's DOCKER-USER rule for ``bridge``.

    ``script`` is tap-net/mplab-host-net (:func:`helper`). A failed ``remove`` is not an
    error (down must go on).
    """
    if not script.is_file():
        if action == "ensure":
            raise LabError(f"{script}: host helper missing; fix: reinstall with `make venv`")
        return
    try:
        p = subprocess.run(["sh", str(script), action, bridge], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        if action == "ensure":
            raise LabError(f"{script} {action} {bridge} failed: {e}") from None
        return
    if p.returncode != 0 and action == "ensure":
        raise LabError(f"{script} ensure failed: {(p.stderr or p.stdout).strip()}")


# ---- route checks -----------------------------------------------------------------------------
def check_routes_free(lab: str, subnet: IPv4Network, bridge: str) -> None:
    """ConfigError if a host route (a real LAN, a VPN) overlaps ``subnet``: the lab would shadow it.

    Routes via the lab's own ``bridge`` (a lab already up) and the default route are fine.
    """
    try:
        routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise LabError("`ip` not found on the host: install iproute2") from None
    for line in routes.stdout.splitlines():
        dest, _, rest = line.partition(" ")
        if dest == "default" or f"dev {bridge} " in f"{rest} ":
            continue
        try:
            overlap = IPv4Network(dest, strict=False).overlaps(subnet)
        except ValueError:
            continue
        if overlap:
            raise ConfigError(
                f"lab {lab}: subnet {subnet} overlaps the host route '{line.strip()}'; "
                "pick another lab name (it sets the subnet) or x-mplab.subnet in the compose file"
            )


def check_networks_free(lab: str, subnet: IPv4Network, in_use: dict[str, str], mine: set[str]) -> None:
    """ConfigError if a container network other than the lab's own (``mine``) holds ``subnet``.

    ``in_use`` maps subnet → network name (``Runtime.subnets_in_use()``).
    """
    for other, net in in_use.items():
        try:
            overlap = IPv4Network(other).overlaps(subnet)
        except ValueError:
            continue
        if overlap and net not in mine:
            raise ConfigError(
                f"lab {lab}: subnet {subnet} overlaps Docker network {net} "
                f"({other}); pick another lab name or take that network down"
            )


# ---- the bridge ---------------------------------------------------------------------------------
def bridge_mac(bridge: str) -> str:
    """The MAC of the host's end of the lab LAN (the bridge ``mplab-<lab>``)."""
    try:
        return Path(f"/sys/class/net/{bridge}/address").read_text().strip()
    except OSError:
        raise LabError(f"no interface {bridge} on this host: is the lab up? (`mplab up`)") from None


def bridge_exists(bridge: str) -> bool:
    return Path(f"/sys/class/net/{bridge}").exists()
