"""The ``userspace`` engine: netem's semantics where the kernel has no sch_netem.

Everything runs inside the node container, in the node's own datapath (docs/impairments.md):

* an iptables-nft rule per direction on br0's bridged traffic (bridge-nf-call-iptables is on in
  the container's network namespace), ``-m physdev --physdev-in tap0 --physdev-out eth0``
  (``out``) or the reverse (``in``) ``-j NFQUEUE --queue-num 1|2 --queue-bypass``: only the
  guest's IPv4/IPv6 frames, not the console connection (which ends on br0 itself) and not ARP
  (NFQUEUE only sees IP);
* ``mplab-netem`` (images/node/mplab-netem.c), one process per direction, holds each packet
  until netem would send it (delay, jitter, distribution, correlation, loss incl. gemodel,
  corrupt, reorder/gap, rate, limit);
* duplicate: an nft ``netdev`` egress rule on the output port (``dup to``), after the delay,
  since a queue verdict cannot make a second packet.

The rules exist only while a direction is impaired, and ``clear`` deletes the iptables tables
as well, so an unimpaired node pays nothing (no netfilter hook registered). ``--queue-bypass``
lets packets through unimpaired if the engine dies; the container's end takes everything with
it, so ``down`` leaves nothing behind even after a SIGKILL.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ..errors import LabError
from .model import Impairment, bits_per_second, fraction, seconds
from .target import Target

BINARY = "/usr/local/bin/mplab-netem"
RUN = "/run/mplab/netem"
QUEUE = {"out": 1, "in": 2}
PORTS = {"out": ("tap0", "eth0"), "in": ("eth0", "tap0")}  # (physdev-in, physdev-out)
NFT_TABLE = "mplab_impair"
DUP_MARK = "0x4d50"  # set on a duplicate's original before `dup`, so the clone is not duplicated again


def rule(direction: str) -> str:
    pin, pout = PORTS[direction]
    return (
        f"FORWARD -m physdev --physdev-in {pin} --physdev-out {pout} "
        f"-m comment --comment mplab-impair:{direction} "
        f"-j NFQUEUE --queue-num {QUEUE[direction]} --queue-bypass"
    )


def engine_conf(imp: Impairment) -> str:
    """The ``key value`` lines mplab-netem reads (probabilities 0..1, times in ns)."""
    c: dict[str, float | str] = {}
    if imp.delay:
        c["delay_ns"] = round(seconds(imp.delay) * 1e9)
    if imp.jitter:
        c["jitter_ns"] = round(seconds(imp.jitter) * 1e9)
    if imp.correlation:
        c["delay_corr"] = fraction(imp.correlation)
    if imp.distribution and imp.distribution != "uniform":
        c["dist"] = imp.distribution
    if imp.loss:
        toks = imp.loss.split()
        if toks[0] == "gemodel":
            # p [r [1-h [1-k]]], with tc's defaults r = 100 %, 1-h = 100 %, 1-k = 0 %
            p = [fraction(x) for x in toks[1:]] + [None] * 4
            c["ge_p"] = p[0]
            c["ge_r"] = 1.0 if p[1] is None else p[1]
            c["ge_h"] = 0.0 if p[2] is None else 1.0 - p[2]  # the engine keeps h: delivery in bad
            c["ge_k"] = 0.0 if p[3] is None else p[3]
        else:
            c["loss"] = fraction(toks[0])
            if len(toks) > 1:
                c["loss_corr"] = fraction(toks[1])
    for n in ("corrupt", "reorder"):
        v = getattr(imp, n)
        if v:
            toks = v.split()
            c[n] = fraction(toks[0])
            if len(toks) > 1:
                c[f"{n}_corr"] = fraction(toks[1])
    if imp.gap:
        c["gap"] = int(imp.gap)
    if imp.rate:
        c["rate_bps"] = bits_per_second(imp.rate)
    if imp.limit:
        c["limit"] = int(imp.limit)
    return "".join(f"{k} {v}\n" for k, v in c.items())


def check(imp: Impairment) -> None:
    """What this engine cannot do, as one line."""
    if imp.duplicate and len(imp.duplicate.split()) > 1:
        raise LabError(
            "duplicate correlation needs tc netem: the userspace engine duplicates with an nft rule "
            "(independent per packet); give --duplicate without a correlation"
        )


def _dup_script(t: Target, direction: str, imp: Impairment) -> str:
    """(Re)make this direction's nft netdev egress chain; none without a duplicate."""
    pout = PORTS[direction][1]
    chain = f"dup_{direction}"
    s = f"nft add table netdev {NFT_TABLE}; " f"nft delete chain netdev {NFT_TABLE} {chain} 2>/dev/null; "
    if not imp.duplicate:
        return s + _drop_empty_nft()
    n = round(fraction(imp.duplicate.split()[0]) * 1_000_000)
    who = f"ether saddr {t.mac} " if direction == "out" else ""  # eth0 also carries the console
    pick = "" if n >= 1_000_000 else f"numgen random mod 1000000 < {n} "
    body = (
        f"type filter hook egress device {pout} priority 0; policy accept;\n"
        f"{who}meta protocol {{ ip, ip6 }} meta mark & {DUP_MARK} != {DUP_MARK} {pick}"
        f"meta mark set meta mark | {DUP_MARK} dup to {pout}\n"
    )
    script = f"table netdev {NFT_TABLE} {{\nchain {chain} {{\n{body}}}\n}}\n"
    return s + f"printf %s {shlex.quote(script)} | nft -f -; "


def _drop_empty_nft() -> str:
    return (
        f"nft list table netdev {NFT_TABLE} 2>/dev/null | grep -q 'chain ' "
        f"|| nft delete table netdev {NFT_TABLE} 2>/dev/null; "
    )


def _alive(direction: str) -> str:
    """sh: true if this direction's engine runs (the pidfile's process is mplab-netem)."""
    return (
        f'{{ p=$(cat {RUN}/{direction}.pid 2>/dev/null) && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = mplab-netem ]; }}'
    )


def apply(t: Target, direction: str, imp: Impairment) -> None:
    if imp.empty:
        clear(t, direction)
        return
    check(imp)
    conf = engine_conf(imp)
    shown = json.dumps(imp.values(), separators=(",", ":"))
    d = f"{RUN}/{direction}"
    prep = (
        f"[ -x {BINARY} ] || {{ echo 'no-binary'; exit 0; }}; " + "for f in iptables ip6tables; do "
        '[ "$(cat /proc/sys/net/bridge/bridge-nf-call-$f 2>/dev/null)" = 1 ] || { echo "no-brnf $f"; exit 0; }; '
        "done; "
        + _dist_check(imp)
        + f"mkdir -p {RUN} && printf %s {shlex.quote(conf)} > {d}.conf && printf %s {shlex.quote(shown)} > {d}.json; "
        + f'if {_alive(direction)}; then kill -HUP "$p" && echo reloaded; else rm -f {d}.log; echo start; fi'
    )
    out = t.sh(prep, "userspace impairment").strip()
    if out.startswith("no-dist"):
        raise LabError(f"{t.lab}/{t.name}: the node image has no tc table for distribution {imp.distribution}")
    if out == "no-binary":
        raise LabError(
            f"{t.lab}/{t.name}: the node image has no {BINARY} (the userspace impairment engine): "
            "rebuild it from this checkout (make images) and run the lab with it"
        )
    if out.startswith("no-brnf"):
        raise LabError(
            f"{t.lab}/{t.name}: net.bridge.bridge-nf-call-{out.split()[1]} is off in the node's network "
            "namespace: the userspace engine cannot see the guest's bridged packets (load br_netfilter)"
        )
    if out == "start":
        # `docker exec -d`: the engine's parent is then the container runtime, which reaps it
        # when it exits (QEMU, PID 1 of the container, reaps nobody: a zombie would stay).
        cmd = f"echo $$ > {d}.pid; exec {BINARY} {QUEUE[direction]} {d}.conf >{d}.log 2>&1"
        try:
            t.run_detached(t.container, ["sh", "-c", cmd])
        except LabError as e:
            raise LabError(f"{t.lab}/{t.name}: could not start mplab-netem: {e}") from None
    # the rule goes in once the engine listens: until then the queue would be bypassed anyway
    wait = (
        f"i=0; until grep -q ready {d}.log 2>/dev/null; do i=$((i+1)); "
        f'[ $i -gt 100 ] && {{ echo "mplab-netem did not start: $(cat {d}.log 2>/dev/null)" >&2; exit 1; }}; '
        "sleep 0.05; done; "
    )
    rules = "".join(
        f"{x}-nft -C {rule(direction)} 2>/dev/null || {x}-nft -A {rule(direction)}; " for x in ("iptables", "ip6tables")
    )
    t.sh(wait + rules + _dup_script(t, direction, imp) + "true", "userspace impairment")
    if out == "start":
        realtime(t)


def _dist_check(imp: Impairment) -> str:
    if not imp.distribution or imp.distribution == "uniform":
        return ""
    f = f"{imp.distribution}.dist"
    return (
        f"ok=; for f in /usr/lib/tc/{f} /usr/lib/*/tc/{f}; do [ -r $f ] && ok=1; done; "
        '[ -n "$ok" ] || { echo no-dist; exit 0; }; '
    )


def _host_pids(t: Target) -> list[int]:
    """The host PIDs of this container's mplab-netem processes (same network namespace)."""
    try:
        ns = os.readlink(f"/proc/{t.host_pid(t.container)}/ns/net")
    except (OSError, ValueError, LabError):
        return []  # not a local Docker daemon: nothing to do from here
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "mplab-netem" and os.readlink(d / "ns/net") == ns:
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def realtime(t: Target) -> str:
    """Give the engine SCHED_FIFO from the host: a CFS task on a loaded 2-core host was measured
    waking milliseconds late (10 ms set: mean 12.7, sd 5.4 ms), SCHED_FIFO 10.20 / 0.03 ms.

    The container cannot do it itself (no CAP_SYS_NICE; under cgroup v1 Docker's cpu cgroup has
    no RT budget), so the lab, root on the host, does: sched_setscheduler, and if the cgroup
    refuses it, the process moves to the root cpu cgroup first (it stays in the container's
    PID namespace, so it still ends with the container). Without either, nice -20. Returns what
    it got: ``fifo``, ``nice`` or ``none``."""
    got = "none"
    for pid in _host_pids(t):
        try:
            try:
                os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(20))
            except PermissionError:
                Path("/sys/fs/cgroup/cpu/tasks").write_text(f"{pid}\n")
                os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(20))
            got = "fifo"
        except OSError:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, -20)
                got = "nice"
            except OSError:
                pass
    return got


def clear(t: Target, direction: str) -> None:
    d = f"{RUN}/{direction}"
    script = (
        "".join(f"while {x}-nft -D {rule(direction)} 2>/dev/null; do :; done; " for x in ("iptables", "ip6tables"))
        + f"nft delete chain netdev {NFT_TABLE} dup_{direction} 2>/dev/null; "
        + _drop_empty_nft()
        + f'if {_alive(direction)}; then kill -TERM "$p"; i=0; '
        + 'while [ -d /proc/"$p" ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done; '
        + 'kill -KILL "$p" 2>/dev/null; fi; '
        + f"rm -f {d}.conf {d}.json {d}.pid {d}.log; "
        # no rule left: drop the tables too, so that no netfilter hook stays registered
        + "for x in iptables ip6tables; do t=ip; [ $x = ip6tables ] && t=ip6; "
        + '[ -z "$($x-nft -S 2>/dev/null | grep -- "^-A")" ] && nft delete table $t filter 2>/dev/null; done; true'
    )
    if t.exec(["sh", "-c", script]).returncode != 0:
        raise LabError(f"{t.lab}/{t.name}: clearing the userspace impairment failed")


def state(t: Target) -> dict[str, dict[str, str]]:
    """Each direction's fields: what its running engine was given ({} when none runs)."""
    script = "".join(
        f'if {_alive(d)} && iptables-nft -C {rule(d)} 2>/dev/null; then echo "{d} $(cat {RUN}/{d}.json)"; fi; '
        for d in QUEUE
    )
    p = t.exec(["sh", "-c", script + "true"])
    out: dict[str, dict[str, str]] = {"out": {}, "in": {}}
    for line in p.stdout.splitlines():
        d, _, js = line.partition(" ")
        if d in out:
            try:
                out[d] = {str(k): str(v) for k, v in json.loads(js).items()}
            except ValueError:
                pass
    return out


def leftovers(t: Target) -> list[str]:
    """What of this engine is still in the container: rules, processes, queues, nft tables."""
    script = (
        "iptables-nft -S 2>/dev/null | grep -- '^-A'; ip6tables-nft -S 2>/dev/null | grep -- '^-A'; "
        f"nft list tables 2>/dev/null | grep -E 'ip6? filter|{NFT_TABLE}'; "
        'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = mplab-netem ] && echo "process ${p#/proc/}"; done; '
        "sed 's/^/queue /' /proc/net/netfilter/nfnetlink_queue 2>/dev/null; true"
    )
    return [x for x in t.exec(["sh", "-c", script]).stdout.splitlines() if x.strip()]
