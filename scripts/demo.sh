#!/usr/bin/env bash
# The switchyard demo: a real local Kubernetes control plane, switchyard's API, and networks
# defined the libvirt way. Installs what it needs first. Run as root on Debian 12.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/lib.sh
source scripts/control-plane.sh
need_root

bash scripts/install-deps.sh

work="$(mktemp -d /tmp/switchyard-demo.XXXXXX)"
cleanup() {
  step "Tearing down"
  stop_control_plane
  rm -rf "$work"
  note "control plane stopped, temporary files removed"
}
trap cleanup EXIT INT TERM

step "Building switchyard"
cargo build --workspace --bins --locked -q

step "Starting the local control plane (etcd + kube-apiserver $KUBE_VERSION on 127.0.0.1)"
start_control_plane "$work"
show() { printf '\n\033[36m$ %s\033[0m\n' "$*"; "$@"; }

step "switchyard's API is installed"
show kubectl get crds
show kubectl api-resources --api-group=switchyard.dev

step "Applying example networks"
show kubectl apply -f examples/networks/
show kubectl get networks -o wide

step "kubectl explain teaches the API"
# The apiserver publishes new CRD schemas to OpenAPI a few seconds after they are established.
for _ in $(seq 1 100); do kubectl explain networks.spec.forward >/dev/null 2>&1 && break; sleep 0.2; done
show kubectl explain networks.spec.forward

step "The apiserver refuses a network with an unknown forward mode"
show kubectl apply -f - <<'YAML' || true
apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: broken}
spec:
  forward: {mode: tunnel}
YAML
