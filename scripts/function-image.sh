#!/usr/bin/env bash
# Builds the image `flotilla bench functions` runs, offline: the example busybox image plus
# /bin/echo-handler (scripts/bench/echo-handler.c, built static with gcc), named
# localhost/flotilla/fn-echo:1, written as an OCI archive (tar) to $1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: function-image.sh OUTPUT.tar}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -static -pthread -o "$work/echo-handler" scripts/bench/echo-handler.c
IMAGE_NAME=localhost/flotilla/fn-echo:1 EXTRA_BINARIES="$work/echo-handler" scripts/example-image.sh "$out"
