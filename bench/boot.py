"""Boot to REPL: our firmware against the stock upstream MPS2_AN385 build, same QEMU, same run."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from bench.common import CLK_TCK, REPO, Figure, cpu_ticks

QEMU = ["qemu-system-arm", "-machine", "mps2-an385", "-display", "none", "-monitor", "none", "-semihosting"]


def boot_to_prompt(elf: Path, timeout: float = 20.0) -> float:
    """Seconds from starting QEMU to the first `>>> ` on its serial port."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*QEMU, "-nic", "none", "-serial", "stdio", "-kernel", str(elf)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    seen = b""
    try:
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                if b">>> " in seen:
                    return time.monotonic() - start
        raise RuntimeError(f"{elf}: no REPL prompt within {timeout} s; output: {seen[-200:]!r}")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def idle_cpu(elf: Path, settle: float = 2.0, window: float = 5.0) -> float:
    """% of one core QEMU uses with the guest sitting at its REPL, no network, nobody typing."""
    proc = subprocess.Popen(
        [*QEMU, "-nic", "none", "-serial", "null", "-kernel", str(elf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle)
        c0, t0 = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(window)
        return (cpu_ticks(proc.pid) - c0) / CLK_TCK / (time.monotonic() - t0) * 100
    finally:
        proc.kill()
        proc.wait(timeout=10)


def run(repeat: int = 5, idle_repeat: int = 2) -> list[Figure]:
    ours = REPO / "firmware/build/firmware.elf"
    stock = REPO / "firmware/build/stock/firmware.elf"
    if not stock.exists():
        subprocess.run(["make", "-C", str(REPO / "firmware"), "stock"], check=True)
    ours_samples = [boot_to_prompt(ours) * 1000 for _ in range(repeat)]
    stock_samples = [boot_to_prompt(stock) * 1000 for _ in range(repeat)]
    idle_ours = [idle_cpu(ours) for _ in range(idle_repeat)]
    idle_stock = [idle_cpu(stock) for _ in range(idle_repeat)]
    return [
        Figure(
            name="idle_cpu_standalone",
            unit="% of a core",
            samples=idle_ours,
            goal="< 1",
            baseline="stock upstream MPS2_AN385 build",
            baseline_samples=idle_stock,
            note="one QEMU at the REPL, no NIC, serial to null, 5 s window after 2 s settle",
        ),
        Figure(
            name="boot_to_repl",
            unit="ms",
            samples=ours_samples,
            goal="close to stock",
            baseline="stock upstream MPS2_AN385 build",
            baseline_samples=stock_samples,
            note="QEMU start to first '>>> ' on the serial port; includes QEMU's own start-up",
        ),
    ]
