#!/bin/sh
# Install the Debian packages the lab needs on the host, if any are missing, then Compose v2
# as a docker CLI plugin (scripts/ensure-compose-v2.sh; Debian 12's v1 stays).
# Idempotent; silent when everything is already present.
# Usage: scripts/ensure-host-packages.sh [extra-package ...]
set -eu

PKGS="debootstrap qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi
      dnsmasq-base iproute2 tcpdump python3-venv xz-utils bzip2 perl iptables nftables socat curl openssl"
# Headless Chromium and a font: the ladder pages' browser tests (tests/ladder, docs/ladder.md).
PKGS="$PKGS chromium fonts-dejavu-core"

# Docker: Debian's docker.io, unless some Docker engine (e.g. docker-ce) is there.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    PKGS="docker.io $PKGS"
fi
# Compose: ensure-compose-v2.sh below adds the v2 plugin (`docker compose`). Debian's v1 is
# the fallback (an architecture without a pinned v2, MPLAB_COMPOSE=docker-compose).
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    PKGS="$PKGS docker-compose"
fi
PKGS="$PKGS $*"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done
compose_v2="$(dirname "$0")/ensure-compose-v2.sh"
[ -z "$missing" ] && exec "$compose_v2"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure-host-packages: missing Debian packages:$missing (need root or passwordless sudo to install them)" >&2
    exit 1
fi

echo "ensure-host-packages: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    echo "ensure-host-packages: apt-get failed to install:$missing (log: $log)" >&2
    tail -n 5 "$log" >&2
    exit 1
fi
rm -f "$log"
exec "$compose_v2"
