#!/bin/sh
# fetch-orig.sh PACKAGE UPSTREAM_VERSION SUITE SHA256 DESTDIR [COMPRESSION]
# Downloads PACKAGE_UPSTREAM_VERSION.orig.tar.COMPRESSION (default xz) from the pool of the Debian archive that this
# host's apt already uses, or $MPLAB_DEBIAN_MIRROR (scripts/debian-mirror.sh; never a hard-coded
# host), and checks it against the pinned sha256.
set -eu
pkg=$1 ver=$2 suite=$3 sha=$4 dest=$5 comp=${6:-xz}
file="${pkg}_${ver}.orig.tar.${comp}"
mkdir -p "$dest"
if [ -f "$dest/$file" ] && echo "$sha  $dest/$file" | sha256sum -c --status; then
    exit 0
fi
mirror=$("$(dirname "$0")/../../scripts/debian-mirror.sh") || exit 1
case $pkg in lib*) prefix=$(printf %s "$pkg" | cut -c1-4) ;; *) prefix=$(printf %s "$pkg" | cut -c1) ;; esac
url="$mirror/pool/main/$prefix/$pkg/$file"
echo "  FETCH $url"
tmp="$dest/$file.part"
if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --max-time 300 -o "$tmp" "$url"
elif command -v wget >/dev/null 2>&1; then
    wget -q -T 60 -O "$tmp" "$url"
else
    python3 -c "import socket,sys,urllib.request; socket.setdefaulttimeout(60); urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$tmp"
fi || { echo "error: could not download $url (suite $suite). Is the archive reachable? A version from a moving suite (unstable) leaves the pool when it is replaced: put $file in $dest, or set MPLAB_DEBIAN_MIRROR to an archive that still has it." >&2; rm -f "$tmp"; exit 1; }
if ! echo "$sha  $tmp" | sha256sum -c --status; then
    echo "error: $file does not match its pinned sha256 $sha (got $(sha256sum "$tmp" | cut -d' ' -f1))" >&2
    rm -f "$tmp"; exit 1
fi
mv "$tmp" "$dest/$file"
