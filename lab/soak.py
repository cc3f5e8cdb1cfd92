"""Soak and chaos (issue 12): ``python -m lab.soak`` / ``make soak``; a short run in the tests.

Two parts, each in a lab of its own, each writing its counts into the report:

- **echo**: a guest sends numbered, CRC-32-checked messages over TCP to an echo server on the
  host's lab address and checks every echo; the host checks every message too. It runs once
  per phase of ``ECHO_PHASES``: under 10 % loss, then under delay and jitter both ways
  (netem, or the userspace engine where the kernel has none: docs/impairments.md). Nothing
  may be lost, corrupted or reordered (TCP must recover every drop and reorder).
- **chaos**: a 4-node lab under a workload (every node answers an exec and holds its lease)
  takes random faults: a node's container killed and restored (``up``), a link flap (QMP
  ``set_link``), a guest reset (``machine.reset()``). After each, the fault must have been
  reported with its evidence (NodeDown naming ``mplab up``, ``lan.isconnected()`` False, a
  ConsoleReset with the bring-up redone) and every other node must still work. At the end
  ``down`` must leave nothing of the lab.
"""

from __future__ import annotations

import argparse
import binascii
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .console import ConsoleReset
from .errors import LabError, NodeDown
from .lab import Lab, Node
from .util import poll_until

Log = Callable[[str], None]


@dataclass(frozen=True)
class EchoPhase:
    """One echo run: its name and the impairment (``Node.impair`` keywords) it runs under."""

    name: str
    impairment: dict[str, str]


ECHO_PHASES = (
    EchoPhase("loss", {"loss": "10%"}),
    # 50 ms +- 20 ms (normal) each way: a long, varying RTT (>= 100 ms); the jitter may
    # reorder segments, as netem does.
    EchoPhase("delay", {"delay": "50ms", "jitter": "20ms", "distribution": "normal", "direction": "both"}),
)

GUEST_ECHO = """
import socket, time, binascii, json
def _soak(host, port, seconds, size):
    s = socket.socket()
    s.connect((host, port))
    t0 = time.ticks_ms()
    end = time.ticks_add(t0, int(seconds * 1000))
    n = bad = nbytes = 0
    base = bytes(range(256)) * (size // 256 + 1)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        payload = bytes([n & 0xFF]) + base[: size - 1]
        msg = n.to_bytes(4, 'big') + binascii.crc32(payload).to_bytes(4, 'big') + payload
        k = 0
        while k < len(msg):
            k += s.send(msg[k:])
        got = b''
        while len(got) < len(msg):
            c = s.recv(len(msg) - len(got))
            if not c:
                raise OSError('echo server closed')
            got += c
        if got != msg or binascii.crc32(got[8:]) != int.from_bytes(got[4:8], 'big'):
            bad += 1
        n += 1
        nbytes += len(msg)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    s.close()
    print(json.dumps({'messages': n, 'corrupt': bad, 'bytes': nbytes, 'ms': ms}))
"""


@dataclass
class EchoServer:
    """A TCP echo server on the host's lab address that checks each framed message's CRC."""

    host: str
    size: int
    messages: int = 0
    corrupt: int = 0
    out_of_order: int = 0
    bytes: int = 0
    error: str = ""

    def __post_init__(self) -> None:
        self.sock = socket.create_server((self.host, 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError as e:
            self.error = f"accept: {e}"
            return
        frame = 8 + self.size
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
                buf += data
                while len(buf) >= frame:
                    msg, buf = buf[:frame], buf[frame:]
                    seq = int.from_bytes(msg[:4], "big")
                    if binascii.crc32(msg[8:]) != int.from_bytes(msg[4:8], "big"):
                        self.corrupt += 1
                    if seq != self.messages:
                        self.out_of_order += 1
                    self.messages += 1
                    self.bytes += frame

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=10)


def describe(impairment: dict[str, str]) -> str:
    """``{"loss": "10%"}`` -> ``loss 10%``."""
    return ", ".join(f"{k} {x}" for k, x in impairment.items())


def echo(
    lab: Lab, seconds: float, phase: EchoPhase = ECHO_PHASES[0], size: int = 512, log: Log = print
) -> dict[str, Any]:
    """TCP echo guest <-> host under ``phase``'s impairment; the counts of both ends."""
    nd = lab.nodes[0]
    srv = EchoServer(lab.host_ip, size)
    what = describe(phase.impairment)
    try:
        nd.exec(GUEST_ECHO, timeout=30)
        with nd.impair(**phase.impairment):
            log(f"soak echo ({phase.name}): {nd.name} -> {lab.host_ip}:{srv.port}, {seconds:g} s under {what}")
            out = nd.exec(f"_soak({lab.host_ip!r}, {srv.port}, {seconds}, {size})", timeout=seconds + 120)
        guest = json.loads(out.strip().splitlines()[-1])
    finally:
        srv.close()
    res = {
        "phase": phase.name,
        "impairment": dict(phase.impairment),
        "seconds": seconds,
        "message_bytes": 8 + size,
        # one message in flight at a time: the mean time for one round trip, as the guest saw it
        "mean_round_trip_ms": round(guest["ms"] / guest["messages"], 1) if guest.get("messages") else None,
        "guest": guest,
        "host": {
            "messages": srv.messages,
            "corrupt": srv.corrupt,
            "out_of_order": srv.out_of_order,
            "bytes": srv.bytes,
        },
    }
    res["ok"] = (
        guest["corrupt"] == 0
        and srv.corrupt == 0
        and srv.out_of_order == 0
        and srv.messages == guest["messages"]
        and srv.bytes == guest["bytes"]
        and guest["messages"] > 0
        and not srv.error
    )
    return res


@dataclass
class Fault:
    kind: str
    node: str
    evidence: str = ""
    others_ok: bool = False
    ok: bool = False
    seconds: float = 0.0


@dataclass
class ChaosReport:
    faults: list[Fault] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.faults) and all(f.ok for f in self.faults) and not self.leftovers


def _works(nd: Node) -> bool:
    """The workload check: the guest answers and holds its lease."""
    try:
        return nd.eval("1 + 1", timeout=20) == 2 and bool(nd.eval("lan.isconnected()", timeout=20))
    except LabError:
        return False


def _kill(lab: Lab, nd: Node, n: int) -> str:
    subprocess.run(["docker", "kill", nd.container], capture_output=True, timeout=60)
    try:
        lab.node(nd.name).exec("print(1)")
        return "exec after docker kill did not fail"
    except NodeDown as e:
        ev = str(e).splitlines()[0]
    lab.close()
    lab.up(nodes=n)  # `mplab up` restores it, as the error says
    return ev if "mplab --lab" in ev and _works(lab.node(nd.name)) else f"not restored: {ev}"


def _flap(lab: Lab, nd: Node) -> str:
    nd.link(False)
    down = poll_until(lambda: not nd.eval("lan.isconnected()", timeout=10) or None, 20, interval=0.5)
    nd.link(True)
    nd.wait_connected(60)
    return "lan.isconnected() False while the link was down, lease back after" if down else "link down not seen"


def _reset(nd: Node) -> str:
    try:
        nd.exec("import machine\nmachine.reset()", timeout=60)
        return "machine.reset() not seen"
    except ConsoleReset as e:
        return str(e).splitlines()[0]


def chaos(lab: Lab, seconds: float, nodes: int = 4, seed: int | None = None, log: Log = print) -> ChaosReport:
    """Random faults on a ``nodes``-node lab for ``seconds``; each fault checked as it happens."""
    rng = random.Random(seed)
    rep = ChaosReport()
    end = time.monotonic() + seconds
    kinds = ["kill", "flap", "reset"]
    while time.monotonic() < end or not rep.faults:
        nd = rng.choice(lab.nodes)
        kind = kinds[len(rep.faults) % 3] if len(rep.faults) < 3 else rng.choice(kinds)  # each kind at least once
        t0 = time.monotonic()
        f = Fault(kind, nd.name)
        try:
            f.evidence = _kill(lab, nd, nodes) if kind == "kill" else _flap(lab, nd) if kind == "flap" else _reset(nd)
        except LabError as e:
            f.evidence = f"error: {str(e).splitlines()[0]}"
        others = [x for x in lab.nodes if x.name != nd.name]
        f.others_ok = all(_works(x) for x in others) and _works(lab.node(nd.name))
        good = ("mplab --lab", "isconnected() False", "reset during exec: network bring-up redone")
        f.ok = f.others_ok and any(g in f.evidence for g in good)
        f.seconds = round(time.monotonic() - t0, 1)
        log(f"soak chaos: {kind} {nd.name}: {'ok' if f.ok else 'FAILED'} ({f.evidence}; others ok: {f.others_ok})")
        rep.faults.append(f)
    return rep


def _leftovers(name: str) -> list[str]:
    def run(*cmd: str) -> list[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.split()

    left = run("docker", "ps", "-aq", "--filter", f"label=mplab.lab={name}")
    left += run("docker", "network", "ls", "-q", "--filter", f"label=mplab.lab={name}")
    if subprocess.run(["ip", "link", "show", f"mplab-{name}"], capture_output=True, timeout=10).returncode == 0:
        left.append(f"bridge mplab-{name}")
    return left


def run(
    echo_seconds: float,
    chaos_seconds: float,
    out: Path,
    lab_name: str = "soak",
    log: Log = print,
    delay_seconds: float | None = None,
) -> dict[str, Any]:
    """Both parts; writes ``out/report.json`` and ``out/report.md``; returns the report.

    ``echo_seconds`` is the loss phase's time, ``delay_seconds`` the delay/jitter phase's
    (default: the same)."""
    report: dict[str, Any] = {"echo": []}
    times = {"loss": echo_seconds, "delay": echo_seconds if delay_seconds is None else delay_seconds}
    lab = Lab(lab_name, progress=None)
    lab.down()
    try:
        lab.up(nodes=4)
        for phase in ECHO_PHASES:
            report["echo"].append(echo(lab, times[phase.name], phase, log=log))
            log(f"soak echo ({phase.name}): {json.dumps(report['echo'][-1])}")
        ch = chaos(lab, chaos_seconds, log=log)
    finally:
        lab.close()
        lab.down()
    ch.leftovers = _leftovers(lab_name)
    report["chaos"] = {"faults": [asdict(f) for f in ch.faults], "leftovers": ch.leftovers, "ok": ch.ok}
    report["ok"] = bool(all(e["ok"] for e in report["echo"]) and ch.ok)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# mplab soak", ""]
    for e in report["echo"]:
        lines.append(
            f"- echo ({e['phase']}): {e['guest']['messages']} messages ({e['guest']['bytes']} bytes) in "
            f"{e['seconds']:g} s under {describe(e['impairment'])}; corrupt {e['guest']['corrupt']} (guest) / "
            f"{e['host']['corrupt']} (host), host saw {e['host']['messages']} ({e['host']['bytes']} bytes), "
            f"{e['host']['out_of_order']} out of order; mean round trip {e['mean_round_trip_ms']} ms: "
            f"{'ok' if e['ok'] else 'FAILED'}"
        )
    lines += [
        f"- chaos: {len(ch.faults)} faults, {sum(f.ok for f in ch.faults)} ok; left after down: "
        f"{', '.join(ch.leftovers) or 'nothing'}",
        "",
        "| fault | node | ok | others ok | s | evidence |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {f.kind} | {f.node} | {f.ok} | {f.others_ok} | {f.seconds} | {f.evidence} |" for f in ch.faults]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return report


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0")
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--echo-seconds", type=_seconds, default=600.0, help="the echo under 10%% loss")
    ap.add_argument(
        "--delay-seconds", type=_seconds, default=None, help="the echo under delay and jitter (default: --echo-seconds)"
    )
    ap.add_argument("--chaos-seconds", type=_seconds, default=300.0)
    ap.add_argument("--lab", default="soak")
    ap.add_argument("--out", type=Path, default=Path("reports/soak"))
    args = ap.parse_args(argv)
    rep = run(args.echo_seconds, args.chaos_seconds, args.out, lab_name=args.lab, delay_seconds=args.delay_seconds)
    print(f"soak: {'ok' if rep['ok'] else 'FAILED'}; report {args.out}/report.md")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
