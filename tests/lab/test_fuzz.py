"""Hypothesis fuzzing of every input parser and of the console (issue 12). No Docker.

Property everywhere: an input is either accepted or refused with the library's own error (a
ConfigError / ConsoleError, i.e. one line from the CLI), never any other exception. Example
counts are bounded so that `make test` stays quick; no deadlines (a loaded host is slow).
"""

from __future__ import annotations

import argparse
import socket
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repl_emulator import ReplEmulator

from lab import cli
from lab.console import Console, ConsoleError
from lab.errors import ConfigError, LabError
from lab.impair import FIELDS, make
from lab.scenario import schema
from lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
GOOD_COMPOSE = (REPO / "docker-compose.yml").read_text()
GOOD_SCENARIO = (REPO / "scenarios" / "accept-queue-rst.yml").read_text()
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4))


def _write(tmp: Path, name: str, data: bytes) -> Path:
    f = tmp / name
    f.write_bytes(data)
    return f


# ---- compose files -------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=400))
def test_compose_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    f = _write(tmp_path_factory.mktemp("c"), "docker-compose.yml", data)
    with pytest.raises(ConfigError):
        Topology.load("default", f)


@FUZZ
@given(key=st.sampled_from(["lab", "nodes", "domain", "subnet", "gateway", "dhcp", "console_port", "zzz"]), v=values)
def test_compose_x_mplab_values(tmp_path_factory: pytest.TempPathFactory, key: str, v: object) -> None:
    doc = yaml.safe_load(GOOD_COMPOSE)
    doc["x-mplab"][key] = v
    f = _write(tmp_path_factory.mktemp("c"), "docker-compose.yml", yaml.safe_dump(doc).encode())
    try:
        Topology.load(None, f)
    except ConfigError:
        pass


@FUZZ
@given(cut=st.integers(0, len(GOOD_COMPOSE)), junk=st.binary(max_size=20))
def test_compose_truncated_or_spliced(tmp_path_factory: pytest.TempPathFactory, cut: int, junk: bytes) -> None:
    data = GOOD_COMPOSE.encode()[:cut] + junk
    f = _write(tmp_path_factory.mktemp("c"), "docker-compose.yml", data)
    try:
        Topology.load("default", f)
    except ConfigError:
        pass


# ---- scenario files ------------------------------------------------------------------------
@FUZZ
@given(cut=st.integers(0, len(GOOD_SCENARIO)), junk=st.binary(max_size=30))
def test_scenario_truncated_or_spliced(tmp_path_factory: pytest.TempPathFactory, cut: int, junk: bytes) -> None:
    f = _write(tmp_path_factory.mktemp("s"), "s.yml", GOOD_SCENARIO.encode()[:cut] + junk)
    try:
        schema.load(f)
    except ConfigError:
        pass


@FUZZ
@given(key=st.sampled_from(["name", "firmware", "topology", "peers", "timeline", "assertions", "zzz"]), v=values)
def test_scenario_top_level_values(tmp_path_factory: pytest.TempPathFactory, key: str, v: object) -> None:
    doc = yaml.safe_load(GOOD_SCENARIO)
    doc[key] = v
    f = _write(tmp_path_factory.mktemp("s"), "s.yml", yaml.safe_dump(doc).encode())
    try:
        schema.load(f)
    except ConfigError:
        pass


@FUZZ
@given(step=st.dictionaries(st.sampled_from(["exec", "impair", "link", "sleep", "reset", "zzz"]), values, max_size=2))
def test_scenario_timeline_steps(tmp_path_factory: pytest.TempPathFactory, step: dict) -> None:
    doc = yaml.safe_load(GOOD_SCENARIO)
    doc["timeline"] = [step, *(doc.get("timeline") or [])]
    f = _write(tmp_path_factory.mktemp("s"), "s.yml", yaml.safe_dump(doc).encode())
    try:
        schema.load(f)
    except ConfigError:
        pass


# ---- the CLI's parsers ---------------------------------------------------------------------
VERBS = ["up", "down", "status", "exec", "impair", "link", "reset", "repro", "capture", "logs", "cp", "console"]
OPTS = ["--timeout", "--nodes", "--loss", "--delay", "--rate", "--duration", "--firmware", "--keep", "-f", "--lab"]
arg = st.one_of(st.sampled_from(OPTS), st.text(max_size=8), st.sampled_from(["-5%", "-1", "0", "nan", "1e999", "10%"]))


@FUZZ
@given(verb=st.sampled_from(VERBS), rest=st.lists(arg, max_size=6))
def test_cli_parse_is_total(verb: str, rest: list[str]) -> None:
    p = cli.build_parser()
    argv = cli.join_negative_values([verb, *rest], cli._value_options(p))
    try:
        p.parse_args(argv)
    except SystemExit as e:
        assert e.code == 2  # argparse's one line (lab/cli/__init__.py _Parser)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.text(max_size=10), values), max_size=3))
def test_impairment_values_are_total(fields: dict) -> None:
    try:
        make(**fields)
    except ConfigError:
        pass


@FUZZ
@given(value=st.text(max_size=12))
def test_timeout_type_is_total(value: str) -> None:
    from lab.cli._common import positive_seconds

    try:
        v = positive_seconds(value)
    except argparse.ArgumentTypeError:
        return
    assert v > 0 and v != float("inf")


# ---- the console -----------------------------------------------------------------------------
def _run_console(payload: bytes, protocol: bool, code: str = "print(1)") -> tuple[str | None, ConsoleError | None]:
    """Run ``code`` against a guest that answers it with ``payload`` and hangs up.

    With ``protocol`` False the guest sends only ``payload`` (random bytes) and closes; with
    True the REPL emulator does the raw-REPL handshakes first, then sends ``payload`` as the
    program's reply (after raw-paste's end-of-data acknowledgement).
    """
    a, b = socket.socketpair()
    if protocol:

        def reply(program: str) -> bytes | None:
            return payload if program == code else None  # None: the console's sync program

        guest: threading.Thread = ReplEmulator(b, on_exec=reply, hang_up_after_reply=True)
    else:
        guest = threading.Thread(target=lambda: (b.sendall(payload), b.close()), daemon=True)
    guest.start()
    con = Console(a, name="fuzz")
    try:
        return con.exec(code, timeout=2.0), None
    except ConsoleError as e:
        return None, e
    finally:
        con.close()
        guest.join(timeout=10)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=300))
def test_console_random_bytes_from_the_guest(payload: bytes) -> None:
    _run_console(payload, protocol=False)  # a str or a ConsoleError, nothing else


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(out=st.binary(max_size=2000).filter(lambda b: b"\x04" not in b), err=st.sampled_from([b"", b"Traceback\r\nE"]))
def test_console_random_output_is_returned_whole(out: bytes, err: bytes) -> None:
    got, e = _run_console(out + b"\x04" + err + b"\x04>", protocol=True)
    want = out.decode("utf-8", "replace").replace("\r\n", "\n")
    if err:
        assert e is not None and e.output == want
    elif b"MicroPython v" in out:  # a banner-like payload may read as a reset; it keeps the output
        assert got == want or (e is not None and e.output.startswith(want[:1]))
    else:
        assert e is None and got == want


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(out=st.binary(max_size=500).filter(lambda b: b"\x04" not in b))
def test_console_lost_connection_keeps_the_output(out: bytes) -> None:
    got, e = _run_console(out, protocol=True)  # the guest hangs up mid-output
    assert got is None and isinstance(e, LabError)
    assert e.output == out.decode("utf-8", "replace").replace("\r\n", "\n")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(code=st.text(max_size=300))
def test_console_random_code_from_the_host(code: str) -> None:
    got, e = _run_console(b"ok\r\n\x04\x04>", protocol=True, code=code.replace("\x04", ""))
    assert (got, e) == ("ok\n", None)
