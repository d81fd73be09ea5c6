#!/usr/bin/env bash
# Measures the figures in BENCHMARKS.md on this machine: pod start latency (with the raw runc
# floor in the same run, and for a signed image under a policy that requires its signature),
# resident memory of `flotilla up` idle and with 100 pods, and disk writes of an idle cluster.
# Runs its own cluster in a throwaway data dir. Needs root.
#   scripts/bench.sh            # COUNT=100 pods per phase, IDLE_SECONDS=300 of idle disk writes
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-100}
idle=${IDLE_SECONDS:-300}
bin=${FLOTILLA_BIN:-}
[ -n "$bin" ] || { cargo build --release -p flotilla; bin=$PWD/target/release/flotilla; }
data=$(mktemp -d /var/tmp/flotilla-bench.XXXXXX)
port=${PORT:-16443}
export FLOTILLA_KUBECONFIG=$data/kubeconfig HOME=$data/home
tar=$data/busybox.tar
scripts/example-image.sh "$tar" >/dev/null
"$bin" image import --data-dir "$data" "$tar" >/dev/null
"$bin" up --data-dir "$data" --listen 127.0.0.1:$port --agent-port 0 --bridge flbench0 \
  --pod-cidr 10.250.0.0/16 --node-name bench 2>"$data/up.log" &
up=$!
# Stopping `up` leaves containers running (the next `up` adopts them), so a run that fails
# midway first waits (up to 2 minutes) for the node to stop the benchmark's pods.
cleanup() { "$bin" delete namespace flotilla-bench --wait=false >/dev/null 2>&1 || true
            for _ in $(seq 120); do [ -z "$(runc --root "$data/runc" list -q 2>/dev/null)" ] && break; sleep 1; done
            kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true; ip link del flbench0 2>/dev/null || true; }
trap cleanup EXIT
until "$bin" get nodes 2>/dev/null | grep -q ' Ready'; do sleep 0.2; done
echo "== $(nproc) cores, $(uname -r), runc $(runc --version | head -1 | awk '{print $3}'), $(date -u +%F)"
sleep 10
echo "== footprint, idle, no pods"
"$bin" bench footprint --pid $up --seconds 5
echo "== pod start ($count per phase)"
"$bin" bench pod-start --count "$count" --data-dir "$data" --keep --signed
sleep 10
echo "== footprint with $count pods running"
"$bin" bench footprint --pid $up --seconds 5
"$bin" get pods -n flotilla-bench | grep -c Running
echo "== idle disk writes (no pods), $idle s"
"$bin" delete namespace flotilla-bench >/dev/null
while "$bin" get pods -n flotilla-bench -o json | grep -q '"name"'; do sleep 1; done
sleep 10
"$bin" bench footprint --pid $up --seconds "$idle"
