#!/bin/sh
# Build the base image offline: debootstrap a minimal Debian into a directory,
# then `docker import` it. Equivalent to debian:<suite>-slim for our Dockerfiles.
#
# Usage: images/base/build.sh IMAGE [SUITE]   (default suite: trixie)
# Env:   MPLAB_DEBIAN_MIRROR  override the mirror (default: the host's apt config)
#        BUILD_DIR            scratch dir (default <repo>/build)
#        MPLAB_DEBOOTSTRAP_INSECURE=1  pass --no-check-gpg (only if the host's
#                             keyring cannot verify SUITE; see docs/images.md)
set -eu

IMAGE=${1:?usage: $0 IMAGE [SUITE]}
SUITE=${2:-trixie}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}

die() { echo "base-image: $*" >&2; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

# --- the Debian mirror: $MPLAB_DEBIAN_MIRROR or the host's own (scripts/debian-mirror.sh) ---
MIRROR=$("$(dirname "$0")/../../scripts/debian-mirror.sh") || exit 1

command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; run scripts/ensure-host-packages.sh"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "debootstrap needs root (or sudo)"
    SUDO="sudo"
fi

# --- signature check ---------------------------------------------------------
# bookworm's debian-archive-keyring (2023.3+deb12u1 and later) ships the trixie
# keys, and trixie's Release file is also signed by the bookworm archive keys,
# so the default keyring verifies trixie. Only if the host's keyring is too old
# can the user opt out of the check explicitly.
GPG_OPT=""
if [ "${MPLAB_DEBOOTSTRAP_INSECURE:-0}" = 1 ]; then
    echo "base-image: WARNING: MPLAB_DEBOOTSTRAP_INSECURE=1, not verifying the $SUITE Release signature" >&2
    GPG_OPT="--no-check-gpg"
elif [ -f /usr/share/keyrings/debian-archive-$SUITE-stable.gpg ]; then
    GPG_OPT="--keyring=/usr/share/keyrings/debian-archive-keyring.gpg"
fi

ROOTFS=$BUILD_DIR/images/base-$SUITE.rootfs
LOG=$BUILD_DIR/images/base-$SUITE.debootstrap.log
mkdir -p "$BUILD_DIR/images"
$SUDO rm -rf "$ROOTFS"
echo "base-image: debootstrap --variant=minbase $SUITE from $MIRROR (log $LOG)" >&2
if ! $SUDO debootstrap --variant=minbase $GPG_OPT "$SUITE" "$ROOTFS" "$MIRROR" >"$LOG" 2>&1; then
    tail -n 5 "$LOG" >&2
    die "debootstrap failed (full log: $LOG); if it is a signature error, update debian-archive-keyring or see docs/images.md"
fi

# Slim it like debian:*-slim: no apt caches or lists in the image, and keep
# later apt-get runs from leaving caches behind.
$SUDO sh -c "
    rm -rf '$ROOTFS'/var/cache/apt/archives/*.deb '$ROOTFS'/var/lib/apt/lists/* '$ROOTFS'/var/log/*.log '$ROOTFS'/tmp/*
    printf '%s\n' 'DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };' \
                  'Dir::Cache::pkgcache \"\";' 'Dir::Cache::srcpkgcache \"\";' > '$ROOTFS'/etc/apt/apt.conf.d/docker-clean
    printf '%s\n' 'Acquire::Languages \"none\";' > '$ROOTFS'/etc/apt/apt.conf.d/docker-no-languages
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
                  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
                  'path-exclude /usr/share/locale/*' > '$ROOTFS'/etc/dpkg/dpkg.cfg.d/docker-excludes
"

echo "base-image: importing $IMAGE" >&2
$SUDO tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    -c 'CMD ["/bin/bash"]' \
    -c "LABEL mplab.image=base mplab.suite=$SUITE" \
    -m "debootstrap --variant=minbase $SUITE $MIRROR" \
    - "$IMAGE" >/dev/null
$SUDO rm -rf "$ROOTFS"
echo "base-image: built $IMAGE" >&2
