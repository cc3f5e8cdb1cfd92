#!/bin/sh
# Install Compose v2 (`docker compose`) as a docker CLI plugin, beside Debian 12's
# docker-compose 1.29 (v1), which stays as it is. The plugin is the static Go binary of
# Debian 13 trixie's `docker-compose` package, pinned by version and sha256, fetched once
# into build/compose-v2/ from the Debian archive (scripts/debian-mirror.sh: the host's, or
# $MPLAB_DEBIAN_MIRROR). The .deb is only unpacked (dpkg-deb -x), never `dpkg -i`-ed: trixie's
# package has the same name as bookworm's v1 package, so dpkg would replace v1 (and its
# /usr/bin/docker-compose is a link to the v2 plugin).
# Idempotent: silent, and does nothing, when `docker compose version` already works.
# Called by scripts/ensure-host-packages.sh.
# Env: MPLAB_COMPOSE_PLUGIN_DIR  where the plugin goes (default: /usr/local/lib/docker/cli-plugins
#                                as root, else ${DOCKER_CONFIG:-~/.docker}/cli-plugins; the docker
#                                CLI searches both since 19.03)
#      MPLAB_COMPOSE_V2_CACHE    where the .deb is kept (default: build/compose-v2/)
set -eu

PKG_VERSION=2.26.1-4
SUITE=trixie
arch=$(dpkg --print-architecture)
# From trixie's signed Packages index (and, for amd64, the downloaded file).
case $arch in
    amd64) SHA256=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea ;;
    arm64) SHA256=bbafaa666f3e7fa00ad36f2a8bab889f1c791ca8743d674e7267a3d07203869c ;;
    *)
        # Not an error: v1 (or a v2 the user installs) still runs the lab.
        docker compose version >/dev/null 2>&1 ||
            echo "ensure-compose-v2: no pinned Compose v2 for architecture $arch; using docker-compose v1 (pin its trixie .deb's sha256 in scripts/ensure-compose-v2.sh to add it)" >&2
        exit 0 ;;
esac

DOCKER=${DOCKER:-docker}
"$DOCKER" compose version >/dev/null 2>&1 && exit 0

if [ -n "${MPLAB_COMPOSE_PLUGIN_DIR:-}" ]; then
    dir=$MPLAB_COMPOSE_PLUGIN_DIR
elif [ "$(id -u)" -eq 0 ]; then
    dir=/usr/local/lib/docker/cli-plugins
else
    dir=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${MPLAB_COMPOSE_V2_CACHE:-$root/build/compose-v2}
file=docker-compose_${PKG_VERSION}_${arch}.deb
mkdir -p "$cache"
if ! { [ -f "$cache/$file" ] && echo "$SHA256  $cache/$file" | sha256sum -c --status; }; then
    mirror=$("$root/scripts/debian-mirror.sh") || exit 1
    url="$mirror/pool/main/d/docker-compose/$file"
    echo "ensure-compose-v2: fetching $url" >&2
    tmp="$cache/$file.part"
    # curl's own message goes into the one error line.
    if ! err=$(curl -fsSL --retry 3 --max-time 300 -o "$tmp" "$url" 2>&1); then
        rm -f "$tmp"
        echo "ensure-compose-v2: could not download $url (suite $SUITE; $(echo "$err" | tail -n1)): is the archive reachable? Put $file in $cache, or set MPLAB_DEBIAN_MIRROR to an archive that has it" >&2
        exit 1
    fi
    if ! echo "$SHA256  $tmp" | sha256sum -c --status; then
        echo "ensure-compose-v2: $url does not match its pinned sha256 $SHA256 (got $(sha256sum "$tmp" | cut -d' ' -f1)); check MPLAB_DEBIAN_MIRROR or the pin in scripts/ensure-compose-v2.sh" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv "$tmp" "$cache/$file"
fi

x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
dpkg-deb -x "$cache/$file" "$x"
mkdir -p "$dir"
# Next to the target, then renamed: a docker CLI never sees half a plugin.
install -m 0755 "$x/usr/libexec/docker/cli-plugins/docker-compose" "$dir/.docker-compose.new"
mv -f "$dir/.docker-compose.new" "$dir/docker-compose"

if ! v=$("$DOCKER" compose version --short 2>/dev/null); then
    echo "ensure-compose-v2: installed $dir/docker-compose, but \`$DOCKER compose\` does not find it (CLI plugins need Docker ≥ 19.03; this is $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null || echo unknown))" >&2
    exit 1
fi
echo "ensure-compose-v2: installed Compose $v (trixie docker-compose $PKG_VERSION) as $dir/docker-compose; docker-compose v1 is unchanged" >&2
