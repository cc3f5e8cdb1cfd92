#!/bin/sh
# Print the Debian archive mirror that mplab downloads from (source packages for the
# firmware, debootstrap for the base image): $MPLAB_DEBIAN_MIRROR, else the mirror this
# Debian host's apt already uses. Never a hard-coded host.
set -eu

if [ -n "${MPLAB_DEBIAN_MIRROR:-}" ]; then
    echo "$MPLAB_DEBIAN_MIRROR"
    exit 0
fi

# Another distribution's mirror (Ubuntu's archive) has neither Debian's pool nor its suites.
os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}")
if [ "$os_id" != debian ]; then
    echo "debian-mirror: this host's apt mirror is not a Debian archive (ID=${os_id:-unknown}); set MPLAB_DEBIAN_MIRROR to one, e.g. the one your organisation uses" >&2
    exit 1
fi

for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: first URIs of a "Types: deb" stanza that is not the security archive
    m=$(awk '
        /^[[:space:]]*$/ { if (uri != "" && deb && uri !~ /security/) { print uri; exit } uri=""; deb=0; next }
        /^Types:/  { for (i = 2; i <= NF; i++) if ($i == "deb") deb=1 }
        /^URIs:/   { uri=$2 }
        END        { if (uri != "" && deb && uri !~ /security/) print uri }' "$f" | head -n1)
    [ -n "$m" ] && { echo "$m"; exit 0; }
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break } }' "$f" \
        | grep -v security | head -n1)
    [ -n "$m" ] && { echo "$m"; exit 0; }
done
echo "debian-mirror: no Debian mirror in /etc/apt/sources.list{,.d/}; set MPLAB_DEBIAN_MIRROR" >&2
exit 1
