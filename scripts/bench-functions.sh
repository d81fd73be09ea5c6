#!/usr/bin/env bash
# Measures the Function figures in BENCHMARKS.md: publish → handler receives, warm and from
# zero (image present), and events per second through one replica, with `flotilla bench
# functions` against a nats-server it starts. Runs its own one-node cluster in a throwaway data
# dir. Needs root, gcc (static libc), nats-server.
#   scripts/bench-functions.sh [bench functions flags, e.g. --cold 50]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FLOTILLA_BIN:-}
[ -n "$bin" ] || { cargo build --release -p flotilla; bin=$PWD/target/release/flotilla; }
data=$(mktemp -d /var/tmp/flotilla-bench-fn.XXXXXX)
port=${PORT:-16444}
export FLOTILLA_KUBECONFIG=$data/kubeconfig HOME=$data/home
scripts/function-image.sh "$data/fn-echo.tar" >/dev/null
"$bin" image import --data-dir "$data" "$data/fn-echo.tar" >/dev/null
"$bin" up --data-dir "$data" --listen 127.0.0.1:$port --agent-port 0 --bridge flbenchfn0 \
  --pod-cidr 10.251.0.0/16 --node-name bench-fn 2>"$data/up.log" &
up=$!
cleanup() { "$bin" delete namespace flotilla-bench-fn --wait=false >/dev/null 2>&1 || true
            for _ in $(seq 120); do [ -z "$(runc --root "$data/runc" list -q 2>/dev/null)" ] && break; sleep 1; done
            kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true; ip link del flbenchfn0 2>/dev/null || true
            rm -rf "$data"; }
trap cleanup EXIT
until "$bin" get nodes 2>/dev/null | grep -q ' Ready'; do sleep 0.2; done
echo "== $(nproc) cores, $(uname -r), nats-server $(nats-server --version | awk '{print $2}'), $(date -u +%F)"
"$bin" bench functions "$@"
