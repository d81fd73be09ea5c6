#!/usr/bin/env bash
# Installs the Debian packages Flotilla and its test suite run for real: the OCI runtime, etcd,
# an OCI registry, busybox for the offline example image, image tools the tests build images with,
# protoc and the protobuf well-known types (libprotobuf-dev, only a Recommends of protoc) for the
# etcd client's build, the reference version orderings (dpkg, python3-packaging, node-semver) the
# scanner's property tests compare against, and independent implementations of cosign's key and
# signature primitives (python3-cryptography, python3-nacl) the signing tests cross-check with,
# the brokers Functions are tested against (nats-server, mosquitto), and clang with libbpf's
# headers (libbpf-dev) that compile the eBPF datapath at build time, and iptables for the
# kube-proxy baseline `flotilla bench services` measures against.
# Idempotent; needs root (or sudo).
set -euo pipefail
packages=(runc etcd-server docker-registry busybox-static umoci skopeo protobuf-compiler libprotobuf-dev
          iproute2 curl jq ca-certificates build-essential pkg-config
          python3-packaging node-semver nodejs python3-cryptography python3-nacl
          nats-server mosquitto clang libbpf-dev iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's docker-registry package starts a registry service on :5000; the tests start their
# own registries on free ports, so the packaged service is not needed.
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
for bin in runc etcd docker-registry busybox umoci skopeo protoc ip bridge nats-server mosquitto clang iptables-restore; do
  command -v "$bin" >/dev/null || { echo "required tool '$bin' is still missing after install" >&2; exit 1; }
done
