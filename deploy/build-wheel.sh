#!/bin/sh
# Builds the runai-preflight wheel from the source tree in the current directory
# into DIR. The ONE wheel build command: the Dockerfile's build stage runs this
# script, and tests/deploy/test_image.py runs it on the same image context.
#   usage: build-wheel.sh DIR      (PYTHON overrides the interpreter, default python3)
set -eu
if [ "$#" -ne 1 ]; then
    echo "usage: $0 WHEEL_DIR" >&2
    exit 2
fi
exec "${PYTHON:-python3}" -m pip wheel --no-deps --no-cache-dir --disable-pip-version-check \
    --wheel-dir "$1" .
