"""The board's host services on a real lab node: wall clock, entropy, RTC, modules, heap.

The AN385 has no RTC and no TRNG; the firmware asks its host for both by semihosting
(firmware/boards/MPS2_AN385_LAN/board_host.c). These tests check what a device application
relies on: time.time() is the real time of day, after a cold boot and after a reset; entropy
differs between nodes and between boots; machine.RTC sets the clock; the modules a networked
board has are importable; the heap leaves room for TLS and asyncio.
"""

from __future__ import annotations

import time

import pytest

from lab import Node

# The clock comes from the host in whole seconds at boot, so allow a little over one second,
# plus the console round trip on a loaded host.
CLOCK_SLACK_S = 5

NETWORKED_BOARD_MODULES = (
    "asyncio",
    "ssl",
    "tls",
    "cryptolib",
    "hashlib",
    "binascii",
    "json",
    "random",
    "errno",
    "select",
    "socket",
    "network",
    "websocket",
    "machine",
    "os",
    "time",
)


def guest_time(node: Node) -> float:
    return float(node.eval("__import__('time').time()"))


def urandom_hex(node: Node, n: int = 16) -> str:
    return str(node.eval(f"__import__('os').urandom({n}).hex()"))


def test_time_is_the_hosts_wall_clock(node: Node) -> None:
    before = time.time()
    t = guest_time(node)
    after = time.time()
    assert before - CLOCK_SLACK_S <= t <= after + CLOCK_SLACK_S, (t, before, after)


def test_localtime_and_rtc_agree_with_time(node: Node) -> None:
    got = node.eval(
        "(__import__('time').time(), __import__('time').localtime(), __import__('machine').RTC().datetime())"
    )
    t, local, rtc = got
    expect = time.gmtime(t)
    # (year, month, mday, hour, minute, second) of localtime; the board's zone is UTC
    assert tuple(local[:6]) == tuple(expect[:6])
    # RTC.datetime(): (year, month, day, weekday 0=Monday, hours, minutes, seconds, subseconds)
    assert (rtc[0], rtc[1], rtc[2], rtc[3]) == (expect.tm_year, expect.tm_mon, expect.tm_mday, expect.tm_wday)


def test_rtc_datetime_sets_the_clock(node: Node) -> None:
    try:
        node.exec("import machine; machine.RTC().datetime((2030, 1, 2, 2, 3, 4, 5, 0))")
        t = guest_time(node)
        assert time.gmtime(t)[:5] == (2030, 1, 2, 3, 4), time.gmtime(t)
    finally:
        # Back to the host's time, as the boot did.
        now = time.gmtime()
        fields = (now.tm_year, now.tm_mon, now.tm_mday, now.tm_wday, now.tm_hour, now.tm_min, now.tm_sec, 0)
        node.exec(f"import machine; machine.RTC().datetime({fields!r})")
    assert abs(guest_time(node) - time.time()) <= CLOCK_SLACK_S


def test_entropy_differs_between_nodes_and_calls(nodes: list[Node]) -> None:
    if len(nodes) < 2:
        pytest.skip("needs two nodes")
    a1, a2 = urandom_hex(nodes[0]), urandom_hex(nodes[0])
    b1 = urandom_hex(nodes[1])
    assert len({a1, a2, b1}) == 3, (a1, a2, b1)
    # Not a constant pattern either: 16 random bytes have (almost surely) many distinct values.
    assert len(set(bytes.fromhex(a1))) > 8


def test_reset_keeps_the_clock_and_renews_entropy(nodes: list[Node]) -> None:
    node = nodes[-1]
    before_reset = urandom_hex(node)
    rand_after_boot_before = node.eval("__import__('random').getrandbits(30)")
    node.reset()
    # A hard reset reboots the firmware: the clock is read from the host again, and the
    # entropy is new (a replayed seed would repeat the first values after every boot).
    assert abs(guest_time(node) - time.time()) <= CLOCK_SLACK_S
    assert urandom_hex(node) != before_reset
    assert node.eval("__import__('random').getrandbits(30)") != rand_after_boot_before


def test_networked_board_modules_import(node: Node) -> None:
    node.exec(
        "missing = []\n"
        f"for m in {list(NETWORKED_BOARD_MODULES)!r}:\n"
        "    try:\n"
        "        __import__(m)\n"
        "    except ImportError:\n"
        "        missing.append(m)\n"
    )
    assert node.eval("missing") == []


def test_sys_path_has_lib(node: Node) -> None:
    # As on rp2 and esp32: packages installed into /lib (mip, `mplab install`) import.
    assert node.eval("__import__('sys').path") == ["", ".frozen", "/lib"]


def test_hashes_and_cipher_give_known_answers(node: Node) -> None:
    got = node.eval(
        "(__import__('hashlib').sha256(b'abc').digest().hex(), __import__('hashlib').sha1(b'abc').digest().hex(),"
        " __import__('hashlib').md5(b'abc').digest().hex(),"
        " __import__('cryptolib').aes(bytes(16), 1).encrypt(bytes(16)).hex())"
    )
    assert got == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "900150983cd24fb0d6963f7d28e17f72",
        # FIPS-197 / NIST: AES-128 of the zero block under the zero key
        "66e94bd4ef8a2c3b884cfa59ca342b2e",
    )


def test_heap_after_asyncio_and_ssl(node: Node) -> None:
    node.exec("import asyncio, ssl, gc; gc.collect()")
    free = node.eval("gc.mem_free()")
    # Room for a few TLS connections (about 40 KiB each) beside an application.
    assert free > 1_500_000, free
