#!/usr/bin/env bash
# Runs the whole test suite: installs the real components the tests start (runc, etcd,
# docker-registry, busybox), builds, then runs every crate's unit, property, real-kernel,
# real-server and end-to-end tests. Needs root: containers, namespaces and cgroups are real.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the test suite starts real containers and network namespaces: run it as root" >&2; exit 1; }
scripts/deps.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
