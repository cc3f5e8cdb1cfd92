"""The ladder's data model on a known capture (tests/ladder/pcaps.py), without a browser:
lanes, event order, labels, collapsed runs, findings, notes; the page's shape; `mplab view`
and the conformance report's ladder links. No Docker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pcaps
import pytest

from lab import conformance, ladder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pcaps.write(tmp_path_factory.mktemp("lad") / "known.pcap")


def build(pcap: Path, **kw: object) -> ladder.Ladder:
    return ladder.build(ladder.read_pcap(pcap), pcaps.hosts(), **kw)  # type: ignore[arg-type]


def test_lanes_are_the_lab_hosts_in_order(pcap: Path) -> None:
    lad = build(pcap)
    assert lad.lane_ids() == ["node1", "host", "services", "broadcast"]
    # without names: addresses in order of appearance (a DHCP client by its MAC), broadcast last
    bare = ladder.build(ladder.read_pcap(pcap)).lane_ids()
    assert bare == ["02:00:00:00:00:40", "10.5.0.2", "10.5.0.64", "10.5.0.1", "broadcast"]


def test_events_in_capture_order_with_protocol_labels(pcap: Path) -> None:
    lad = build(pcap)
    ev = lad.events
    assert [e.frame for e in ev] == list(range(1, 36))
    assert [e.t for e in ev] == sorted(e.t for e in ev) and ev[0].t == 0.0
    want = {
        1: ("node1", "broadcast", "DHCP discover"),
        2: ("services", "node1", "DHCP offer 10.5.0.64"),
        3: ("node1", "services", "ARP who-has 10.5.0.2"),
        4: ("services", "node1", "ARP 10.5.0.2 is-at 02:00:00:00:00:02"),
        5: ("node1", "services", "DNS A? www.lab"),
        6: ("services", "node1", "DNS www.lab A → 10.5.0.2"),
        7: ("node1", "host", "40000 → 7 [S] seq=0 win=8192 len=0"),
        8: ("host", "node1", "7 → 40000 [SA] seq=0 ack=1 win=8192 len=0"),
        10: ("node1", "host", "40000 → 7 [PA] seq=1 ack=1 win=8192 len=100"),
        11: ("host", "node1", "7 → 40000 [A] seq=1 ack=101 win=8192 len=0"),
        30: ("node1", "host", "40000 → 7 [FA] seq=1001 ack=1 win=8192 len=0"),
        31: ("host", "node1", "UDP 40001 → 5005 len=7"),
        35: ("node1", "host", "ICMP echo-request id=1 seq=1"),
    }
    for f, (src, dst, label) in want.items():
        e = ev[f - 1]
        assert (e.src, e.dst, e.label) == (src, dst, label), f
    assert ev[33].label.startswith("MQTT CONNECT id=dev1  40002 → 1883 [PA]"), ev[33].label


def test_bulk_data_collapses_into_one_run(pcap: Path) -> None:
    lad = build(pcap)
    runs = [r for r in lad.rows if r.kind == ladder.RUN]
    assert len(runs) == 1
    (run,) = runs
    assert run.frames == list(range(9, 30))  # the handshake's ACK, 10 segments and their 10 ACKs
    assert (run.src, run.dst) == ("node1", "host")  # drawn from the side that sent the bytes
    assert run.label == "×21 TCP data: node1→host 11 (1000 B), host→node1 10"
    # the three datagrams are a run too short to collapse
    assert [r.kind for r in lad.rows if r.conv.startswith("UDP 10.5.0.1:40001")] == ["frame"] * 3
    assert len(lad.arrows()) == 35 - 21 + 1
    assert all(r.kind == ladder.FRAME for r in build(pcap, min_run=100).rows)


def test_retransmission_and_zero_window_break_a_run() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    n2h = Ether(src=pcaps.NODE_MAC, dst=pcaps.HOST_MAC) / IP(src=pcaps.NODE, dst=pcaps.HOST)
    h2n = Ether(src=pcaps.HOST_MAC, dst=pcaps.NODE_MAC) / IP(src=pcaps.HOST, dst=pcaps.NODE)
    pk = [n2h / TCP(sport=5000, dport=7, flags="S", seq=99), h2n / TCP(sport=7, dport=5000, flags="SA", seq=0, ack=100)]
    for k in range(8):  # data 1..800, the 4th segment sent again after the 8th, then a zero window
        pk.append(n2h / TCP(sport=5000, dport=7, flags="PA", seq=100 + 100 * k, ack=1) / Raw(b"y" * 100))
    pk.append(n2h / TCP(sport=5000, dport=7, flags="PA", seq=400, ack=1) / Raw(b"y" * 100))
    pk += [h2n / TCP(sport=7, dport=5000, flags="A", seq=1, ack=900, window=0)]
    pk += [n2h / TCP(sport=5000, dport=7, flags="PA", seq=900 + 100 * k, ack=1) / Raw(b"y" * 100) for k in range(6)]
    for k, p in enumerate(pk):
        p.time = pcaps.T0 + k * 0.01
    lad = ladder.build(pk, pcaps.hosts())
    assert lad.events[10].label == "5000 → 7 [PA] seq=301 ack=1 win=8192 len=100 retransmission"
    assert lad.events[11].label == "7 → 5000 [A] seq=1 ack=801 win=0 len=0"
    assert [(r.kind, r.frames[0], len(r.frames)) for r in lad.rows] == [
        ("frame", 1, 1),
        ("frame", 2, 1),
        ("run", 3, 8),
        ("frame", 11, 1),  # the retransmission
        ("frame", 12, 1),  # the zero window
        ("run", 13, 6),
    ]


def test_a_matched_frame_is_never_collapsed_and_is_highlighted(pcap: Path) -> None:
    f = ladder.Finding("a1", "the 5th segment", True, [18])
    lad = build(pcap, findings=[f])
    runs = [r.frames for r in lad.rows if r.kind == ladder.RUN]
    assert runs == [list(range(9, 18)), list(range(19, 30))]
    (hl,) = [r for r in lad.rows if r.findings]
    assert hl.frames == [18] and hl.findings == ["a1"] and hl.kind == ladder.FRAME


def test_failed_finding_marks_where_the_packet_was_expected(pcap: Path) -> None:
    t = 0.37  # frame 32 is at 0.35 s, 33 at 0.40 s
    miss = ladder.Finding("a2", "a 4th datagram", False, [31, 32, 33], t, pcaps.HOST, pcaps.NODE, "UDP(dport=5005)")
    lad = build(pcap, findings=[miss])
    k = next(i for i, r in enumerate(lad.rows) if r.kind == ladder.EXPECTED)
    x = lad.rows[k]
    assert (x.src, x.dst, x.label, x.findings) == ("host", "node1", "UDP(dport=5005)", ["a2"])
    assert lad.rows[k - 1].frames == [32] and lad.rows[k + 1].frames == [33]


def test_notes_go_before_the_frames_they_explain(pcap: Path) -> None:
    notes = [ladder.Note(0.33, "step burst: send", "step"), ladder.Note(0.0, "impair node1", "impair", "node1")]
    lad = build(pcap, notes=notes)
    kinds = [(r.kind, r.frames[:1], r.label) for r in lad.rows]
    assert kinds[0] == ("note", [], "impair node1") and kinds[1][1] == [1]
    k = kinds.index(("note", [], "step burst: send"))
    assert kinds[k + 1][1] == [32]


def test_page_is_self_contained_and_has_one_group_per_row(pcap: Path) -> None:
    lad = build(pcap, findings=[ladder.Finding("a1", "x", True, [31])])
    html = ladder.render.page(lad)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    assert "<link" not in html and "@import" not in html
    assert html.count('class="row frame') == len([r for r in lad.rows if r.kind == ladder.FRAME])
    assert html.count('class="row run') == 1
    assert html.count('class="lane"') == 4
    assert 'id="f31" class="row frame hl"' in html and 'href="#f31"' in html


def test_mplab_view_renders_and_bad_input_is_one_line(pcap: Path, tmp_path: Path) -> None:
    def view(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab", "view", *a], capture_output=True, text=True, cwd=REPO, timeout=120
        )

    out = tmp_path / "v.html"
    p = view(str(pcap), "--out", str(out))
    assert p.returncode == 0 and p.stdout.strip() == str(out), p.stdout + p.stderr
    assert "#30" in out.read_text()
    for bad, why in ((tmp_path / "none.pcap", "no such file"), (REPO / "README.md", "not a readable pcap")):
        p = view(str(bad))
        assert p.returncode == 2 and why in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_conformance_rows_link_their_ladder(pcap: Path, tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuite><testcase classname="tests.socket.test_usocket_udp" name="test_x" time="0.5">'
        '<properties><property name="method" value="sendto"/><property name="check" value="sends"/></properties>'
        '<failure message="wire: no"/></testcase>'
        '<testcase classname="tests.socket.test_usocket_udp" name="test_dev" time="0.5">'
        '<properties><property name="method" value="sendto"/><property name="check" value="deviates"/></properties>'
        '<skipped type="pytest.xfail" message="x"/></testcase>'
        '<testcase classname="tests.socket.test_usocket_udp" name="test_no_pcap" time="0.5"/></testsuite>'
    )
    art = tmp_path / "art"
    d = art / "tests_socket_test_usocket_udp.py__test_x"  # a failure: the lab plugin's dir
    dev = art / "conformance" / "tests_socket_test_usocket_udp.py__test_dev"  # a deviation: the suite's
    for x in (d, dev):
        x.mkdir(parents=True)
        (x / "wire.pcap").write_bytes(pcap.read_bytes())
    case, deviation, nothing = conformance.parse(junit, art)
    assert Path(case.ladder).name == "ladder.html" and (d / "ladder.html").is_file()
    assert "#35" in (d / "ladder.html").read_text()
    assert deviation.outcome == "xfail" and Path(deviation.ladder) == dev / "ladder.html"
    assert nothing.ladder == "" and nothing.artifacts == []
    assert "[ladder](" in conformance.render_md([case], "m")
    assert 'class="ladder" href=' in conformance.render_html([case], "m")
