"""Fixtures of the firmware tests: the built image, the host's abilities, a booted guest.

Nothing here builds the firmware: without firmware/build/firmware.elf the tests skip (and
fail under CI=true) with a message naming ``make firmware``. Each test module gets its own
guest in a fresh network namespace; on a failure its console log, pcap and host-side logs are
copied to artifacts/firmware/<test>/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.netns import NETNS_DIR, Guest, Netns, netns_supported

REPO = Path(__file__).resolve().parents[2]

FIRMWARE_DIR = REPO / "firmware"
ELF = FIRMWARE_DIR / "build" / "firmware.elf"
ARTIFACTS = REPO / "artifacts" / "firmware"

# tool -> Debian package
TOOLS = {
    "qemu-system-arm": "qemu-system-arm",
    "dnsmasq": "dnsmasq-base",
    "tcpdump": "tcpdump",
    "ip": "iproute2",
}


def _unavailable(message: str) -> None:
    """Skip, or fail under CI (where every prerequisite must be present)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def firmware_elf() -> Path:
    """The built image. Builds nothing."""
    if not ELF.is_file():
        _unavailable(f"{ELF.relative_to(REPO)} is missing: build it first with `make firmware`")
    return ELF


@pytest.fixture(scope="session")
def host_ready(firmware_elf: Path) -> Path:
    """Root, network namespaces with a TAP, and the host tools. One message per missing thing."""
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        _unavailable("firmware tests need these host tools: " + ", ".join(missing))
    why = netns_supported()
    if why:
        _unavailable(why)
    _delete_stale_netns()
    return firmware_elf


def _delete_stale_netns() -> None:
    """Namespaces left by an earlier run that was killed (named mplabfw-<its pid>-<n>)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        m = re.fullmatch(r"mplabfw-(\d+)-\d+", entry.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            Netns(entry.name).delete()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _artifact_dir(nodeid: str) -> Path:
    """tests/firmware/test_fw_tcp.py::test_x[1] -> artifacts/firmware/test_fw_tcp.py__test_x_1_"""
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.rsplit("/", 1)[-1].replace("::", "__"))


@pytest.fixture(scope="module")
def guest(
    host_ready: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Guest]:
    """A guest booted in a fresh namespace with a DHCP lease; torn down after the module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    g = Guest(elf=host_ready, workdir=tmp_path_factory.mktemp(module))
    try:
        g.start()
    except BaseException:
        g.stop()
        g.save_artifacts(ARTIFACTS / f"{module}__setup")
        raise
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(autouse=True)
def _keep_artifacts_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    node = request.node
    failed = any(getattr(getattr(node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
    g = node.funcargs.get("guest") if hasattr(node, "funcargs") else None
    if failed and isinstance(g, Guest):
        dest = _artifact_dir(node.nodeid)
        g.save_artifacts(dest)
        node.add_report_section("teardown", "artifacts", f"console log, pcap and logs kept in {dest}")
