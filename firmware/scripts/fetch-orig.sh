#!/bin/sh
# fetch-orig.sh PACKAGE UPSTREAM_VERSION SUITE SHA256 DESTDIR
# Downloads PACKAGE_UPSTREAM_VERSION.orig.tar.xz from the Debian archive that this host's apt
# already uses (never a hard-coded host), through a private sources list so the host's apt
# state is untouched, and checks it against the pinned sha256.
set -eu
pkg=$1 ver=$2 suite=$3 sha=$4 dest=$5
file="${pkg}_${ver}.orig.tar.xz"
mkdir -p "$dest"
if [ -f "$dest/$file" ] && echo "$sha  $dest/$file" | sha256sum -c --status; then
    exit 0
fi
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
    echo "error: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; put $file (sha256 $sha) in $dest" >&2
    exit 1
fi
# The pool path of a source package: pool/main/<first letter>/<pkg>/<file>.
case $pkg in lib*) prefix=$(printf %s "$pkg" | cut -c1-4) ;; *) prefix=$(printf %s "$pkg" | cut -c1) ;; esac
url="$mirror/pool/main/$prefix/$pkg/$file"
echo "  FETCH $url"
tmp="$dest/$file.part"
if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --max-time 300 -o "$tmp" "$url"
elif command -v wget >/dev/null 2>&1; then
    wget -q -T 60 -O "$tmp" "$url"
else
    python3 -c "import sys,urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$tmp"
fi || { echo "error: could not download $url (suite $suite); is the Debian archive reachable?" >&2; rm -f "$tmp"; exit 1; }
if ! echo "$sha  $tmp" | sha256sum -c --status; then
    echo "error: $file does not match its pinned sha256 $sha (got $(sha256sum "$tmp" | cut -d' ' -f1))" >&2
    rm -f "$tmp"; exit 1
fi
mv "$tmp" "$dest/$file"
