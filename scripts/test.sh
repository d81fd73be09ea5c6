#!/usr/bin/env bash
# Runs the whole test suite: installs the real components the tests start (runc, etcd,
# docker-registry, busybox), builds, then runs every crate's unit, property, real-kernel,
# real-server and end-to-end tests. Needs root: containers, namespaces and cgroups are real.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the test suite starts real containers and network namespaces: run it as root" >&2; exit 1; }
scripts/deps.sh
# A CI build happens once: incremental caches would only double the size of target/.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
