"""The ladder pages in a real browser (headless Chromium from Debian): a known capture's page,
the verdict.html of a shipped scenario run on the real lab, and the ladder.html of a failing
pytest test. Each: a screenshot, the DOM (one lane per host, the arrows the model has, the
matched frames highlighted), no console or script error, and no network request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pcaps
import pytest
from cdp import Chromium, Page, unavailable

from lab import ladder

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "ladder"
STATE = "JSON.stringify({lanes: ladder.lanes, arrows: ladder.arrows, hl: ladder.highlighted, x: ladder.expected})"


def open_page(browser: Chromium, page_file: Path, shot: str) -> tuple[Page, dict[str, int]]:
    assert page_file.is_file(), f"{page_file} was not written"
    page = browser.open(page_file.resolve().as_uri())
    page.wait_for("document.body.dataset.ready === '1'")
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = page.screenshot(SHOTS / shot)
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    return page, json.loads(page.evaluate(STATE))


def assert_clean(page: Page, page_file: Path) -> None:
    assert page.errors() == [], page.errors()
    assert page.requests() == [page_file.resolve().as_uri()], page.requests()  # the page itself, nothing else


def lane_names(page: Page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('g.lane')].map(g => g.dataset.lane)")


def test_known_capture_page(browser: Chromium, tmp_path: Path) -> None:
    pcap = pcaps.write(tmp_path / "known.pcap")
    found = [
        ladder.Finding("a1", "three datagrams", True, [31, 32, 33]),
        ladder.Finding("a2", "a fourth one", False, [], 0.37, pcaps.HOST, pcaps.NODE, "UDP(dport=5005)"),
    ]
    out = ladder.write_pcap(pcap, tmp_path / "known.html", hosts=pcaps.hosts(), findings=found)
    page, st = open_page(browser, out, "known.png")
    assert st == {"lanes": 4, "arrows": 15, "hl": 3, "x": 1}, st
    assert lane_names(page) == ["node1", "host", "services", "broadcast"]
    assert page.evaluate("[...document.querySelectorAll('g.row.hl')].map(g => g.id).join()") == "f31,f32,f33"
    # the assertion links to its frames; the failed one to its marker
    links = page.evaluate("[...document.querySelectorAll('#finding-a1 a.frame')].map(a => a.hash).join()")
    assert links == "#f31,#f32,#f33"
    assert page.evaluate("document.querySelector('#finding-a2 a.frame').hash") == "#x-a2"
    # zoom on a time window: frames 30..33 (0.29..0.40 s)
    page.evaluate("ladder.zoomTo(0.285, 0.405)")
    assert page.evaluate("ladder.arrows") == 4
    # filter by host: services has the DHCP offer, ARP, DNS and the MQTT CONNECT
    page.evaluate(
        "ladder.zoomTo('', ''); const h = document.getElementById('f-host'); h.value = 'services';"
        " h.dispatchEvent(new Event('input'))"
    )
    assert page.evaluate("ladder.arrows") == 6
    page.evaluate("document.getElementById('f-reset').click()")
    assert page.evaluate("ladder.arrows") == 15
    page.evaluate("document.querySelector('#finding-a1 a.frame').click()")
    assert page.evaluate("document.getElementById('f31').classList.contains('flash')")
    assert_clean(page, out)


# ---- with the real lab ------------------------------------------------------------------------
def _lab_ready() -> None:
    if os.geteuid() != 0:
        unavailable("needs root (capture on the lab bridge)")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        unavailable("needs a Docker daemon: make docker")


def leftovers(lab: str) -> str:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=mplab.lab={lab}"], capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.mark.docker
def test_verdict_html_of_a_shipped_scenario(browser: Chromium, tmp_path: Path) -> None:
    _lab_ready()
    out = tmp_path / "bundle"
    r = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", "ladsc", "repro", "scenarios/udp-one-slot.yml", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr  # reproduced on the scenario's own firmware (1.25.0)
    assert not leftovers("ladsc")
    page_file = out / "verdict.html"
    assert "`verdict.html`" in (out / "verdict.md").read_text()
    verdict = json.loads((out / "verdict.json").read_text())
    udp = next(c for c in verdict["checks"] if "datagrams crossed" in c["says"])
    frames = [p["frame"] for p in udp["packets"]]
    assert len(frames) == 3
    hosts = ladder.Hosts.from_status(json.loads((out / "status.json").read_text()))
    model = ladder.build(ladder.read_pcap(out / "wire.pcap"), hosts)
    page, st = open_page(browser, page_file, "verdict.png")
    names = lane_names(page)
    assert names[:2] == ["node1", "host"] and len(names) == len(set(names)) == st["lanes"] == len(model.lanes), names
    assert st["arrows"] == len(model.arrows()) and st["hl"] == 3, st
    hl = page.evaluate("[...document.querySelectorAll('g.row.hl')].map(g => g.id).join()")
    assert hl == ",".join(f"f{f}" for f in frames)
    assert page.evaluate("document.querySelector('g.row.hl').dataset.findings") == "a2"  # the wire assertion
    steps = page.evaluate("[...document.querySelectorAll('g.row.note')].map(g => g.textContent).join('|')")
    assert "step burst: send" in steps and "errno 116" in steps, steps
    assert_clean(page, page_file)


FAILING = """
def test_misses_a_packet(lab, node, wire):
    from scapy.layers.inet import TCP, UDP
    node.exec(f"import socket\\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{lab.host_ip}', 9))")
    wire.expect_sequence([(UDP, {"dport": 9, "src": node.ip}), (TCP, {"dport": 4})], within=5)
"""


@pytest.mark.docker
def test_ladder_html_of_a_failing_pytest_test(browser: Chromium, tmp_path: Path) -> None:
    _lab_ready()
    (tmp_path / "test_inner.py").write_text(FAILING)
    art = tmp_path / "artifacts"
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "test_inner.py", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--mplab-lab", "ladpt", "--mplab-nodes", "1", "--mplab-file", str(REPO / "docker-compose.yml"),
         "--mplab-artifacts", str(art)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 1, p.stdout + p.stderr
    assert not leftovers("ladpt")
    (d,) = [x for x in art.iterdir() if x.name.startswith("test_inner")]
    page_file = d / "ladder.html"
    assert str(page_file) in p.stdout, p.stdout  # the failure report names it
    model = ladder.build(ladder.read_pcap(d / "wire.pcap"))
    assert any(e.label.startswith("UDP ") and "→ 9 len=1" in e.label for e in model.events), model.events
    page, st = open_page(browser, page_file, "pytest-ladder.png")
    names = lane_names(page)
    assert "node1" in names and "host" in names and len(names) == len(set(names)) == st["lanes"], names
    assert st["arrows"] == len(model.arrows()) >= 1, st  # one arrow per row of the model
    arrows = page.evaluate("[...document.querySelectorAll('g.row.frame')].map(g => g.textContent).join('|')")
    assert "UDP" in arrows and "→ 9 len=1" in arrows, arrows
    # the datagram the sequence matched is highlighted, the missing TCP segment marked after it
    assert st["hl"] == 1 and st["x"] == 1, st
    hl = page.evaluate("document.querySelector('g.row.hl').textContent")
    assert "UDP" in hl and "→ 9 len=1" in hl, hl
    marker = page.evaluate("document.querySelector('g.row.expected').textContent")
    assert "TCP(dport=4)" in marker, marker
    assert page.evaluate("document.querySelector('g.row.expected').previousElementSibling.classList.contains('hl')")
    notes = page.evaluate("[...document.querySelectorAll('g.row.note')].map(g => g.textContent).join('|')")
    assert "test failed: lab.capture.WireTimeout: wire: sequence incomplete after 5s (1/2 matched)" in notes, notes
    assert_clean(page, page_file)
