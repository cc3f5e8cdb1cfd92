"""pytest plugin (entry point ``mplab``): lab fixtures and failure artifacts.

Fixtures:
  lab        session: the lab named by --mplab-lab / env LAB (default "test"), brought up with
             --mplab-nodes nodes (default 2); taken down at the end unless --mplab-keep.
  nodes      session: the lab's nodes, node1..nodeN.
  node       session: node1.
  wire       function: a Wire over a Capture of the lab bridge for this test.
  host_peer  function: a lab.peers.HostPeer (sockets on the host's LAN address), closed after the test.

On failure, the test's pcap, its ladder diagram (ladder.html, lab/ladder) and each node's
console transcript (the part written during the test) are kept under artifacts/<test id>/ and
listed in the report.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import ladder
from .errors import LabError
from .lab import Lab, Node
from .peers import HostPeer

_ARTIFACTS = pytest.StashKey[dict[str, Any]]()
# what Lab.watch_nodes reported in this session: a node that died, with its console tail
_DEATHS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("mplab")
    g.addoption("--mplab-lab", default=None, help="lab name (env LAB; default: test)")
    g.addoption("--mplab-nodes", type=int, default=2, help="nodes to bring up (default 2)")
    g.addoption("--mplab-keep", action="store_true", help="leave the lab up after the session")
    g.addoption("--mplab-file", default=None, help="compose file (default: found from the cwd)")
    g.addoption("--mplab-artifacts", default="artifacts", help="artifacts dir (default: artifacts)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mplab: test uses the mplab lab")


def artifacts_root(config: pytest.Config) -> Path:
    return Path(config.getoption("--mplab-artifacts")).resolve()


def _test_dir(config: pytest.Config, nodeid: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__")).strip("_")
    return artifacts_root(config) / safe[:150]


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    cfg = request.config
    name = cfg.getoption("--mplab-lab") or os.environ.get("LAB") or "test"
    cf = cfg.getoption("--mplab-file")
    tr = cfg.pluginmanager.get_plugin("terminalreporter")

    def progress(msg: str) -> None:
        if tr is not None:
            tr.write_line(msg)

    the_lab = Lab(name, compose_file=Path(cf) if cf else None, progress=progress)
    the_lab.artifacts = artifacts_root(cfg) / f"lab-{name}"
    the_lab.artifacts.mkdir(parents=True, exist_ok=True)
    try:
        the_lab.up(nodes=cfg.getoption("--mplab-nodes"))
    except BaseException:
        if not cfg.getoption("--mplab-keep"):
            the_lab.down()
        raise
    deaths = cfg.stash.setdefault(_DEATHS, [])

    def died(msg: str) -> None:  # on the watch's thread, while a test runs
        deaths.append(msg)
        progress(f"\n{msg}")

    watch = the_lab.watch_nodes(died)
    try:
        yield the_lab
    finally:
        watch.close()
        the_lab.close()
        if not cfg.getoption("--mplab-keep"):
            the_lab.down()


@pytest.fixture(scope="session")
def nodes(lab: Lab) -> list[Node]:
    return lab.nodes


@pytest.fixture(scope="session")
def node(nodes: list[Node]) -> Node:
    return nodes[0]


@pytest.fixture(autouse=True)
def _mplab_marks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember where each console transcript stood when a lab test began."""
    if "lab" not in request.fixturenames:
        yield
        return
    the_lab: Lab = request.getfixturevalue("lab")
    st = request.node.stash.setdefault(_ARTIFACTS, {})
    st["lab"] = the_lab
    st["marks"] = {nd.name: con.mark() for nd in the_lab.open_nodes if (con := nd.console_open) is not None}
    st["deaths"] = len(request.config.stash.setdefault(_DEATHS, []))
    yield


@pytest.fixture
def wire(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    from .capture import Wire

    d = _test_dir(request.config, request.node.nodeid)
    cap = lab.capture(d / "wire.pcap")
    cap.start()
    request.node.stash.setdefault(_ARTIFACTS, {})["capture"] = cap
    try:
        yield Wire(cap)
    finally:
        cap.stop()


@pytest.fixture
def host_peer(lab: Lab) -> Iterator[HostPeer]:
    """lab.peers.HostPeer on the host's LAN address: its sockets and servers close after the test."""
    hp = HostPeer.for_lab(lab)
    try:
        yield hp
    finally:
        hp.close()


def lab_hosts(the_lab: Lab | None) -> ladder.Hosts:
    """The ladder's lane names of a lab: its nodes, the host, services."""
    h = ladder.Hosts()
    if the_lab is None:
        return h
    macs: dict[str, str] = {}
    with contextlib.suppress(LabError, OSError):
        leases = the_lab.leases()
        for nd in sorted(the_lab.open_nodes, key=lambda n: n.name):
            h.add(nd.name, leases.get(nd.mac.lower()), nd.mac)
        macs = the_lab.lan_hosts()
    h.add("host", the_lab.host_ip, macs.get(the_lab.host_ip) or None)
    h.add("services", the_lab.services_ip, macs.get(the_lab.services_ip) or None)
    return h


def _frames_of(cap: Any, matched: list[Any]) -> list[int]:
    """Frame numbers (in the written pcap) of packets a WireTimeout says matched: the same
    objects as the capture's, or (an application message rebuilt from a stream) the segment
    with its time."""
    pkts = cap.packets
    by_id = {id(p): i for i, p in enumerate(pkts)}
    out = []
    for m in matched:
        i = by_id.get(id(m))
        if i is None:
            i = next((k for k, p in enumerate(pkts) if float(p.time) == float(m.time)), None)
        if i is not None:
            out.append(i + 1)
    return out


def _ladder(
    cap: Any, hosts: ladder.Hosts, nodeid: str, rep: pytest.TestReport, d: Path, exc: Any, failed_at: float
) -> str:
    """ladder.html of a failed test's pcap: a note where it failed and, for a WireTimeout, the
    packets that matched so far highlighted and a marker after them; never fails the report."""
    out = d / "ladder.html"
    try:
        crash = getattr(rep.longrepr, "reprcrash", None)
        msg = str(crash.message if crash is not None else rep.longrepr) or "failed"
        first = msg.splitlines()[0][:200]
        t0 = cap.t0 or None
        t_fail = failed_at - t0 if t0 else 0.0
        notes = [ladder.Note(t_fail, f"test failed: {first}", "failure")] if t0 else []
        findings = []
        expected, matched = getattr(exc, "expected", None), getattr(exc, "matched", None)
        if expected is not None and matched is not None:
            frames = _frames_of(cap, matched)
            missing = next((e for e in expected if not e.startswith("✓ ")), expected[-1] if expected else "")
            # after the last packet that matched (expect_none's matches are the offenders: no marker)
            absent = missing.startswith("no ")
            where = float(matched[-1].time) - t0 if matched and t0 and not absent else None
            what = " then ".join(expected)
            findings.append(ladder.Finding("wire", f"{first}: {what}", False, frames, where, None, None, missing))
        return str(ladder.write_pcap(cap.path, out, hosts=hosts, title=nodeid, t0=t0, notes=notes, findings=findings))
    except Exception as e:  # the pcap is still kept; say why there is no ladder
        return f"(no ladder.html: {type(e).__name__}: {e})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    st = item.stash.get(_ARTIFACTS, None)
    if not st:
        return rep
    d = _test_dir(item.config, item.nodeid)
    failed = rep.failed and rep.when in ("setup", "call")
    if failed:
        paths: list[str] = []
        cap = st.get("capture")
        the_lab: Lab | None = st.get("lab")
        if cap is not None:
            paths.append(str(cap.write()))
            exc = call.excinfo.value if call.excinfo is not None else None
            # the lanes' names as they are now: the lab may be gone by the teardown below
            args = (cap, lab_hosts(the_lab), item.nodeid, rep, d, exc, time.time())
            paths.append(_ladder(*args))
            # the wire fixture's teardown writes the pcap again, with what came after the
            # failure: the ladder is drawn again then, so that the two always agree
            st["ladder"] = args
        if the_lab is not None:
            for nd in the_lab.open_nodes:
                con = nd.console_open
                if con is None:
                    continue
                start = st.get("marks", {}).get(nd.name, 0)
                p = d / f"{nd.name}.console.txt"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(con.since(start))
                paths.append(str(p))
        st["kept"] = True
        if paths:
            rep.sections.append(("mplab artifacts", "\n".join(paths)))
        died = item.config.stash.get(_DEATHS, [])[st.get("deaths", 0) :]
        if died:  # reported at once too; here they stand beside the failure they explain
            rep.sections.append(("mplab nodes that died during the test", "\n".join(died)))
    elif rep.when == "teardown" and st.get("ladder"):
        _ladder(*st.pop("ladder"))
    elif rep.when == "teardown" and not st.get("kept") and d.is_dir():
        shutil.rmtree(d, ignore_errors=True)
    return rep
