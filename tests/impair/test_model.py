"""The impairment model and what each engine is given, without a lab (no Docker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError, LabError
from lab.impair import Impairment, describe, flatten, make
from lab.impair.netem import parse_netem
from lab.impair.userspace import check, engine_conf

REPO = Path(__file__).resolve().parents[2]


def test_tc_args_carry_every_netem_key() -> None:
    imp = make(
        delay="100ms",
        jitter="20ms",
        correlation="25%",
        distribution="normal",
        loss="gemodel 1% 30%",
        duplicate="1%",
        reorder="25% 50%",
        gap="5",
        corrupt="0.1%",
        rate="1mbit",
        limit="500",
    )
    assert (
        imp.tc_args()
        == (
            "delay 100ms 20ms 25% distribution normal loss gemodel 1% 30% duplicate 1% "
            "reorder 25% 50% gap 5 corrupt 0.1% rate 1mbit limit 500"
        ).split()
    )
    assert make(loss="10% 25%").tc_args() == ["loss", "random", "10%", "25%"]
    assert make(delay="1ms", jitter="1ms", distribution="uniform").tc_args() == ["delay", "1ms", "1ms"]


def test_netem_readback_parses_what_tc_shows() -> None:
    # `tc qdisc show` of netem (iproute2 6.x): limit always shown, gap 1 with a reorder
    line = (
        "qdisc netem 10: parent 1:1 limit 1000 delay 100ms  20ms 25% distribution normal "
        "loss gemodel p 1% r 30% 1-h 100% 1-k 0% duplicate 1% reorder 25% 50% gap 5 corrupt 0.1%"
    )
    got = parse_netem(line)
    assert got["delay"] == "100ms" and got["jitter"] == "20ms" and got["correlation"] == "25%"
    assert got["distribution"] == "normal" and got["duplicate"] == "1%" and got["reorder"] == "25% 50%"
    assert got["gap"] == "5" and got["corrupt"] == "0.1%" and "limit" not in got
    assert parse_netem("qdisc netem 10: parent 1:1 limit 500 loss 10%") == {"limit": "500", "loss": "10%"}


def test_userspace_engine_config() -> None:
    conf = dict(
        line.split()
        for line in engine_conf(
            make(delay="100ms", jitter="20ms", distribution="normal", loss="gemodel 2% 25%", rate="8mbit")
        ).splitlines()
    )
    assert conf["delay_ns"] == "100000000" and conf["jitter_ns"] == "20000000" and conf["dist"] == "normal"
    assert conf["ge_p"] == "0.02" and conf["ge_r"] == "0.25" and conf["ge_h"] == "0.0" and conf["ge_k"] == "0.0"
    assert conf["rate_bps"] == "8000000.0"
    with pytest.raises(LabError, match="duplicate correlation"):
        check(make(duplicate="1% 25%"))


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"loss": "gemodel"}, "gemodel takes 1 to 4"),
        ({"loss": "10% 20% 30%"}, "at most a correlation"),
        ({"delay": "10ms", "jitter": "1ms", "distribution": "gauss"}, "unknown distribution"),
        ({"delay": "10ms", "distribution": "normal"}, "distribution shapes the jitter"),
        ({"delay": "10ms", "reorder": "5%", "gap": "0"}, "whole number"),
        ({"gap": "3"}, "gap needs a reorder"),
        ({"limit": "-1"}, "must not be negative"),
        ({"delay": "10ms", "jitter": "1ms", "correlation": "101%"}, "at most 100%"),
        ({"wobble": "1%"}, "unknown impairment wobble"),
    ],
)
def test_bad_values_are_one_line(kw: dict[str, str], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg) as e:
        make(**kw)
    assert "\n" not in str(e.value)


def test_directions_apart_flatten_and_describe() -> None:
    st = {"out": {"delay": "20ms"}, "in": {"delay": "300ms", "loss": "1%"}}
    flat = flatten(st)
    assert flat == {"direction": "split", "out": "delay 20ms", "in": "loss 1% delay 300ms"}
    assert describe(flat) == "out: delay 20ms; in: loss 1% delay 300ms"
    assert flatten({"out": {"loss": "1%"}, "in": {"loss": "1%"}}) == {"loss": "1%", "direction": "both"}
    assert flatten({"out": {}, "in": {"rate": "1mbit"}}) == {"rate": "1mbit", "direction": "in"}
    assert Impairment(delay="1ms", direction="both").directions == ["out", "in"]


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--distribution", "normal", "--delay", "1ms"], "distribution shapes the jitter"),
        (["--loss", "gemodel x"], "invalid loss 'gemodel x'"),
        (["--delay", "1ms", "--reorder", "5%", "--gap", "two"], "invalid gap 'two'"),
        (["--limit", "lots"], "invalid limit 'lots'"),
    ],
)
def test_cli_bad_new_keys(args: list[str], msg: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", "nolab", "impair", "node1", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_scenario_impair_takes_the_new_keys(tmp_path: Path) -> None:
    from lab import scenario as sc

    head = "name: t-imp\nfirmware: 1.25.0\ntopology: {nodes: 1}\ntimeline:\n"
    tail = "assertions:\n  - wire: {layer: UDP, fields: {dport: 5005}, count: 0}\n"
    good = tmp_path / "good.yml"
    good.write_text(
        head + "  - impair: {node: node1, direction: in, delay: 100ms, jitter: 20ms, distribution: normal,"
        ' correlation: "25%", reorder: "5%", gap: 3, loss: "gemodel 1% 30%", limit: 500}\n' + tail
    )
    st = sc.load(good).timeline[0]
    assert st.args["distribution"] == "normal" and st.args["gap"] == "3" and st.args["direction"] == "in"
    bad = tmp_path / "bad.yml"
    bad.write_text(head + "  - impair: {node: node1, delay: 100ms}\n  - impair: {node: node1, gap: 2x}\n" + tail)
    with pytest.raises(sc.ScenarioError) as e:
        sc.load(bad)
    assert str(e.value).startswith(f"{bad}:6: timeline[1].impair.gap: invalid gap '2x'"), e.value
    bad.write_text(head + "  - impair: {node: node1, direction: sideways, loss: 1%}\n" + tail)
    with pytest.raises(sc.ScenarioError, match=r":5: timeline\[0\]\.impair\.direction: invalid direction"):
        sc.load(bad)
