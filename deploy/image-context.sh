#!/bin/sh
# Writes the Docker build context of the Preflight image into DIR (emptied first):
# exactly what deploy/Dockerfile copies, namely the Dockerfile, the wheel build
# script and the package sources (pyproject.toml, README.md, agent/, collector/,
# proto/), without tests, caches or anything else of the repository.
#   usage: deploy/image-context.sh DIR
#   then:  docker build -t REGISTRY/preflight:TAG DIR
set -eu
if [ "$#" -ne 1 ]; then
    echo "usage: $0 CONTEXT_DIR" >&2
    exit 2
fi
out=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
case "$out" in
    "" | / | "$repo" | "$repo/") echo "$0: refusing to use $out as the context" >&2; exit 2 ;;
esac
rm -rf "$out"
mkdir -p "$out"
cp "$repo/deploy/Dockerfile" "$out/Dockerfile"
cp "$repo/deploy/build-wheel.sh" "$out/build-wheel.sh"
cp "$repo/pyproject.toml" "$repo/README.md" "$out/"
(cd "$repo" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude='.*' \
    agent collector proto) | (cd "$out" && tar -xf -)
echo "$out"
