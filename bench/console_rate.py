"""Console output rate: bytes per second of guest stdout that `exec` returns.

What limited it (docs/performance.md): QEMU's CMSDK UART model hands each byte written to its
DATA register to the chardev as a write(2) of its own, and one more to the chardev's logfile;
over the node's TCP console that was 35-100 KB/s. The board now writes runs of output with one
semihosting SYS_WRITE0 when the node's QEMU shares the console chardev (a mux) with the
semihosting console (tap-net/mplab-node). Figures:

- ``exec_output_rate_lab``: in a lab node (Docker, the node image), `Node.exec` of 1 MiB;
  in-run baseline: the same firmware in the same QEMU on the host, UART path (what every
  build did before), same chardev options, same Console.
- ``exec_output_rate_standalone``: that host QEMU with the node's chardev options (mux +
  semihosting console): the lab figure without Docker's log pipe and bridge.
- ``exec_input_rate_lab``: code bytes per second into the guest (raw-paste), for contrast:
  input is still one UART byte per QEMU main-loop turn.
- ``file_upload_rate_lab``: file bytes per second onto the guest's filesystem with
  lab.guestfs.put_many by the host channel (staged in the container, read by semihosting);
  baseline: the console channel (the bytes in exec code), what every upload did before.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, Figure
from lab import Lab, guestfs
from lab.console import Console

Log = Callable[[str], None]
ELF = REPO / "firmware/build/firmware.elf"
QEMU = ["qemu-system-arm", "-machine", "mps2-an385", "-display", "none", "-monitor", "none", "-nic", "none"]


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def output_code(nbytes: int) -> str:
    """Guest code printing ``nbytes`` bytes in 1 KiB lines. The line is made once: building it
    per line costs the emulated CPU more than the console takes to send it (0.6 vs 3+ MB/s)."""
    return f"s = 'x' * 1023\nfor i in range({nbytes // 1024}): print(s)"


def output_rate(con: Console, nbytes: int, timeout: float = 300.0) -> float:
    """Bytes per second of one exec printing ``nbytes`` (host clock, send to prompt)."""
    t0 = time.monotonic()
    out = con.exec(output_code(nbytes), timeout=timeout)
    dt = time.monotonic() - t0
    if len(out) != nbytes // 1024 * 1024:
        raise RuntimeError(f"exec returned {len(out)} bytes, expected {nbytes}")
    return len(out) / dt


def input_rate(con: Console, nbytes: int) -> float:
    """Code bytes per second into the guest: one exec of a ``nbytes`` comment-padded program."""
    code = "x = 1\n" + ("#" * 1023 + "\n") * (nbytes // 1024)
    t0 = time.monotonic()
    con.exec(code, timeout=300.0)
    return len(code) / (time.monotonic() - t0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standalone(elf: Path, mux: bool, nbytes: int, repeat: int) -> list[float]:
    """Output rate of a host QEMU with the node's console chardev (logfile included)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="mplab-bench-con-") as d:
        chardev = f"socket,id=con,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on,logfile={d}/console.log"
        if mux:
            args = [
                "-semihosting-config",
                "enable=on,target=native,chardev=con,arg=firmware,arg=mplab.console=mux",
                "-chardev",
                chardev.replace("socket,", "socket,mux=on,", 1),
                "-serial",
                "chardev:con",
                "-echr",
                "256",
            ]
        else:
            args = ["-semihosting", "-chardev", chardev, "-serial", "chardev:con"]
        proc = subprocess.Popen([*QEMU, "-kernel", str(elf), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            con = Console.connect_tcp("127.0.0.1", port, timeout=20.0)
            con.enter_raw(timeout=30.0)
            out = [output_rate(con, nbytes) for _ in range(repeat)]
            con.close()
            return out
        finally:
            proc.kill()
            proc.wait(timeout=10)


def run(repeat: int = 5, nbytes: int = 1 << 20, lab_name: str = "bcon", log: Log = _log) -> list[Figure]:
    figs: list[Figure] = []
    before = standalone(ELF, mux=False, nbytes=nbytes // 4, repeat=repeat)  # 256 KiB: the UART is slow
    log(f"console standalone UART path: median {statistics.median(before) / 1e3:.0f} KB/s")
    after = standalone(ELF, mux=True, nbytes=nbytes, repeat=repeat)
    log(f"console standalone semihosting path: median {statistics.median(after) / 1e6:.2f} MB/s")
    figs.append(
        Figure(
            "exec_output_rate_standalone",
            "MB/s",
            [x / 1e6 for x in after],
            goal=">= 1",
            baseline="same QEMU, UART path (the firmware before)",
            baseline_samples=[x / 1e6 for x in before],
            note=f"host QEMU, the node's chardev options, Console.exec of {nbytes >> 10} KiB "
            f"(baseline {nbytes >> 12} KiB), host clock from send to prompt",
            params={"bytes": nbytes},
        )
    )
    lab = Lab(lab_name, progress=None)
    lab.down()
    try:
        lab.up(nodes=1)
        nd = lab.nodes[0]
        rates = [output_rate(nd.console, nbytes) for _ in range(repeat)]
        log(f"console lab: median {statistics.median(rates) / 1e6:.2f} MB/s")
        figs.append(
            Figure(
                "exec_output_rate_lab",
                "MB/s",
                [x / 1e6 for x in rates],
                goal=">= 1",
                baseline="same firmware in a host QEMU, UART path (the console before)",
                baseline_samples=[x / 1e6 for x in before],
                note=f"Node.exec printing {nbytes >> 10} KiB in 1 KiB lines on a lab node (Docker), "
                "host clock from send to prompt",
                params={"bytes": nbytes},
            )
        )
        ins = [input_rate(nd.console, 64 << 10) for _ in range(repeat)]
        log(f"console input: median {statistics.median(ins) / 1e3:.0f} KB/s")
        figs.append(
            Figure(
                "exec_input_rate_lab",
                "KB/s",
                [x / 1e3 for x in ins],
                note="one exec of a 64 KiB program (raw-paste, window credits): one UART byte per QEMU "
                "main-loop turn",
            )
        )
        host, console = upload_rates(nd, repeat)
        med_host, med_console = statistics.median(host) / 1e3, statistics.median(console) / 1e3
        log(f"upload: host channel {med_host:.0f} KB/s, console {med_console:.1f} KB/s")
        figs.append(
            Figure(
                "file_upload_rate_lab",
                "KB/s",
                [x / 1e3 for x in host],
                baseline="the console channel (file bytes in exec code)",
                baseline_samples=[x / 1e3 for x in console],
                note="guestfs.put_many of 200 KiB (baseline 20 KiB) onto a lab node's littlefs, "
                "host clock from the call to its return, docker cp included",
            )
        )
    finally:
        lab.close()
        lab.down()
    return figs


class _ConsoleOnly:
    """A node without ``stage``: guestfs takes the console channel."""

    def __init__(self, node: Any) -> None:
        self.node, self.name = node, node.name

    def exec(self, code: str, timeout: float = 10.0) -> str:
        return self.node.exec(code, timeout=timeout)


def upload_rates(node: Any, repeat: int) -> tuple[list[float], list[float]]:
    """Bytes per second of guestfs.put_many: (host channel, console channel)."""
    host, console = [], []
    for i in range(repeat):
        data = bytes([i]) + bytes(range(256)) * 800  # a new hash each time: staged anew
        t = time.monotonic()
        assert guestfs.put_many(node, [("/bench_up.bin", data)]) == "host"
        host.append(len(data) / (time.monotonic() - t))
        small = data[: 20 << 10]
        t = time.monotonic()
        assert guestfs.put_many(_ConsoleOnly(node), [("/bench_up.bin", small)]) == "console"
        console.append(len(small) / (time.monotonic() - t))
    guestfs.rm(node, "/bench_up.bin")
    return host, console
