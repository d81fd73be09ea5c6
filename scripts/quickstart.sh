#!/usr/bin/env bash
# The main job, offline: installs what Flotilla runs with, builds it, builds the example image
# from Debian's busybox-static, starts a one-node cluster (`flotilla up`, embedded store),
# deploys examples/web.yaml, shows the pods answering, then keeps the cluster running in the
# foreground until Ctrl-C (containers survive; the next `flotilla up` adopts them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "flotilla runs containers in real namespaces and cgroups: run this as root" >&2; exit 1; }
scripts/deps.sh
cargo build --release -p flotilla
install -m 0755 target/release/flotilla /usr/local/bin/flotilla
data=${FLOTILLA_DATA_DIR:-/var/lib/flotilla}
mkdir -p "$data"
log=$data/up.log
image_tar=$(mktemp --suffix=.tar)
scripts/example-image.sh "$image_tar"
flotilla image import --data-dir "$data" "$image_tar"
rm -f "$image_tar"

flotilla up --data-dir "$data" >"$log" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null' EXIT
for _ in $(seq 100); do
  flotilla get nodes 2>/dev/null | grep -q ' Ready' && break
  kill -0 $up 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
flotilla get nodes
flotilla apply -f examples/web.yaml
flotilla rollout status deployment/web --timeout 2m
flotilla get pods -o wide
for ip in $(flotilla get pods -l app=web -o json | jq -r '.items[].status.podIP'); do
  printf 'curl http://%s:8080/ -> ' "$ip"; curl -fsS --max-time 5 "http://$ip:8080/"
done
flotilla get services
vip=$(flotilla get service web -o json | jq -r '.spec.clusterIP')
printf 'curl http://%s/ (the Service) -> ' "$vip"; curl -fsS --max-time 5 "http://$vip/"
pod=$(flotilla get pods -l app=web -o json | jq -r '.items[0].metadata.name')
echo "flotilla logs $pod:"; flotilla logs "$pod" | tail -n 5
cat <<MSG

The cluster is running (log: $log). In another shell try:
  flotilla get pods -o wide
  curl http://$vip/
  flotilla logs -f $pod
  flotilla delete -f examples/web.yaml
Press Ctrl-C to stop the control plane and agent (containers keep running; the next
'flotilla up --data-dir $data' adopts them).
MSG
trap - EXIT
wait $up
