"""Differential mode: the same socket snippets on the guest and on CPython/Linux in the lab.

Runs every scenario of lab/differential on node1 and on the lab's Linux peer
(lab/linux_peer.py) at once, with the real lab and a capture of the bridge, then asserts the
documented differences (``EXPECTED`` there): a change on either side -- a firmware that starts
offering SACK, a kernel with other SYN timeouts -- fails here. The comparison is written to
``<artifacts>/differential/differential.json`` for the conformance report. ~15 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import differential as diff
from lab.linux_peer import ROLE, LinuxPeer


@pytest.fixture(scope="module")
def peer(lab: Any) -> Iterator[LinuxPeer]:
    with LinuxPeer(lab) as p:
        yield p


@pytest.fixture(scope="module")
def comparisons(lab: Any, node: Any, peer: LinuxPeer, request: pytest.FixtureRequest) -> dict[str, Any]:
    art = Path(request.config.getoption("--mplab-artifacts")).resolve() / "differential"
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    comps = diff.run_all(lab, node, peer, art, progress=(tr.write_line if tr else print))
    data = json.loads(diff.to_json(comps, diff.meta_for(node, peer)))
    (art / "differential.json").write_text(json.dumps(data, indent=1))
    return {c.key: c for c in comps}


def _table(c: Any) -> str:
    return "\n".join(
        f"  {r['fact']:<24} guest={r['guest']!r:<36} linux={r['linux']!r:<36} {r['verdict']} {r['note']}"
        for r in c.rows
    )


@pytest.mark.parametrize(
    "key", [pytest.param(s.key, marks=pytest.mark.check("differential", s.title), id=s.key) for s in diff.SCENARIOS]
)
def test_differential(comparisons: dict[str, Any], key: str) -> None:
    c = comparisons[key]
    print(f"{c.title} — pcap {c.pcap}\n{_table(c)}")
    assert not c.problems(), (
        f"{c.title}: guest or Linux no longer behaves as documented (docs/differential.md)\n"
        + "\n".join(c.problems())
        + f"\n{_table(c)}\npcap: {c.pcap}"
    )


@pytest.mark.check("differential", "Linux peer: in the lab only (labels, no default route, lab DNS)")
def test_linux_peer_confined(lab: Any, peer: LinuxPeer) -> None:
    p = peer.docker_cli("inspect", "-f", "{{json .Config.Labels}}", peer.name)
    labels = json.loads(p.stdout)
    assert labels.get("mplab.lab") == lab.name and labels.get("mplab.role") == ROLE, labels
    routes = peer.docker_cli("exec", peer.name, "ip", "-4", "route").stdout
    assert "default" not in routes, routes
    assert peer.ip in routes.split("src ")[-1], routes
    resolv = peer.eval("open('/etc/resolv.conf').read()")
    assert f"nameserver {lab.services_ip}" in resolv and "127.0.0.11" not in resolv, resolv
    # an address off the lab (TEST-NET-1) is unreachable from the peer: the kernel refuses at
    # once, no packet is sent anywhere
    r = diff.LinuxSide(peer).run("s = socket.socket()\ntry:\n    s.connect(('192.0.2.1', 9))\nfinally:\n    s.close()")
    assert r.kind == "err" and r.value == "ENETUNREACH", r
