#!/bin/sh
# Make sure a Docker daemon answers. If none does and no service manager runs
# docker, start dockerd in the background (log: build/dockerd.log, pid file:
# build/dockerd.pid so that CI can stop only a daemon it started itself). When it
# starts docker through systemd instead, it writes build/dockerd.systemd.
# Env: MPLAB_DOCKERD_TIMEOUT (seconds, default 60), BUILD_DIR (default <repo>/build).
set -eu

docker info >/dev/null 2>&1 && exit 0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TIMEOUT=${MPLAB_DOCKERD_TIMEOUT:-60}
mkdir -p "$BUILD_DIR"
LOG=$BUILD_DIR/dockerd.log
PIDFILE=$BUILD_DIR/dockerd.pid

die() { echo "ensure-docker: $*" >&2; exit 1; }
STARTED=""

command -v docker >/dev/null 2>&1 || die "no docker client; run scripts/ensure-host-packages.sh"

# A service manager that owns docker: ask it instead of starting our own daemon.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 \
   && systemctl list-unit-files docker.service >/dev/null 2>&1 \
   && systemctl cat docker.service >/dev/null 2>&1; then
    if ! systemctl is-active --quiet docker; then
        if [ "$(id -u)" -eq 0 ]; then systemctl start docker || die "systemctl start docker failed"; touch "$BUILD_DIR/dockerd.systemd"
        else die "docker.service is not running; run: sudo systemctl start docker"; fi
    fi
elif pgrep -x dockerd >/dev/null 2>&1; then
    : # a dockerd runs already (maybe still starting, or we lack permission): just wait
else
    [ "$(id -u)" -eq 0 ] || die "docker does not answer and no dockerd runs; start it as root (or add yourself to group docker)"
    rm -f "$PIDFILE" "$BUILD_DIR/dockerd.systemd"
    command -v dockerd >/dev/null 2>&1 || die "no dockerd; run scripts/ensure-host-packages.sh"
    echo "ensure-docker: starting dockerd (log $LOG)" >&2
    nohup dockerd >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    STARTED=$!
fi

i=0
while ! docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt "$TIMEOUT" ]; then
        die "docker did not answer within ${TIMEOUT}s (see $LOG)"
    fi
    if [ -n "${STARTED:-}" ] && ! kill -0 "$STARTED" 2>/dev/null; then
        rm -f "$PIDFILE"
        die "dockerd exited; last lines of $LOG: $(tail -n 3 "$LOG" | tr '\n' ' ')"
    fi
    sleep 1
done
