#!/bin/sh
# Build one mplab image if it is missing or its inputs changed.
#
# Usage: images/build-image.sh IMAGE BASE_IMAGE DOCKERFILE SRC[:DEST] ...
#   Stages DOCKERFILE and every SRC (as DEST, default its basename) into a
#   small build context under $BUILD_DIR/images/<name>.ctx, computes a hash of
#   the inputs (file contents and modes, the base image's ID, the build args)
#   and builds IMAGE with the label mplab.inputs=<hash>, unless IMAGE already
#   carries that label. MPLAB_FORCE=1 rebuilds anyway.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 IMAGE BASE_IMAGE DOCKERFILE SRC[:DEST] ..." >&2; exit 2; }
IMAGE=$1 BASE=$2 DOCKERFILE=$3
shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
DOCKER=${DOCKER:-docker}
name=${IMAGE##*/}; name=${name%%:*}
version=${IMAGE##*:}

die() { echo "images: $IMAGE: $*" >&2; exit 1; }

for spec in "$DOCKERFILE" "$@"; do
    src=${spec%%:*}
    [ -f "$src" ] || die "input $src is missing"
done

if ! base_id=$($DOCKER image inspect -f '{{.Id}}' "$BASE" 2>/dev/null); then
    echo "images: base image $BASE not here, pulling it" >&2
    $DOCKER pull "$BASE" >/dev/null || die "base image $BASE is missing (make base-image builds mplab/base offline)"
    base_id=$($DOCKER image inspect -f '{{.Id}}' "$BASE")
fi

inputs_hash() {
    {
        echo "base $BASE $base_id"
        for spec in "$DOCKERFILE" "$@"; do
            src=${spec%%:*}
            case $spec in *:*) dest=${spec#*:} ;; *) dest=$(basename "$src") ;; esac
            [ "$spec" = "$DOCKERFILE" ] && dest=Dockerfile
            echo "$dest $(stat -c %a "$src") $(sha256sum <"$src" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -c1-16
}
hash=$(inputs_hash "$@")
have=$($DOCKER image inspect -f '{{index .Config.Labels "mplab.inputs"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$hash" ] && [ "${MPLAB_FORCE:-0}" != 1 ]; then
    echo "images: $IMAGE is up to date (mplab.inputs=$hash)" >&2
    exit 0
fi

ctx=$BUILD_DIR/images/$name.ctx
rm -rf "$ctx"
mkdir -p "$ctx"
cp -p "$DOCKERFILE" "$ctx/Dockerfile"
for spec in "$@"; do
    src=${spec%%:*}
    case $spec in *:*) dest=${spec#*:} ;; *) dest=$(basename "$src") ;; esac
    cp -p "$src" "$ctx/$dest"
done

echo "images: building $IMAGE from $BASE (inputs ${have:-none} -> $hash)" >&2
log=$BUILD_DIR/images/$name.build.log
if ! $DOCKER build --build-arg "BASE_IMAGE=$BASE" \
        --label "mplab.inputs=$hash" --label "mplab.version=$version" \
        -t "$IMAGE" "$ctx" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "docker build failed (full log: $log)"
fi
echo "images: built $IMAGE (log $log)" >&2
