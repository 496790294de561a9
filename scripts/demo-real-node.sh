#!/usr/bin/env bash
# The switchyard demo on a real node (`scripts/demo.sh --real-node`): a local control plane
# with the scheduler and controller-manager, one real node (kubelet v1.20 + containerd in
# its own network namespace, see tests/src/real_node.rs), the Helm chart's controller and
# agent running there as pods from a locally built image, a network on the node's stand-in
# NIC, a port Ready through the agent pod with its macvtap in the node's namespace, a VM pod
# placed by the scheduler on the network's extended resource, and a clean uninstall.
# About 2 minutes once install-deps.sh has built the binaries. Run as root on Debian 12.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/lib.sh
need_root

bash scripts/install-deps.sh

work="$(mktemp -d /tmp/switchyard-demo-node.XXXXXX)"
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug"
cluster_pid=
cleanup() {
  set +e
  step "Tearing down"
  if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill "$cluster_pid"
    wait "$cluster_pid"
  fi
  rm -rf "$work"
  note "node, controllers and control plane stopped; namespace, cgroups and files removed"
}
trap cleanup EXIT INT TERM
show() { printf '\n\033[36m$ %s\033[0m\n' "$*"; "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local timeout="$1" what="$2"; shift 2
  for _ in $(seq 1 $((timeout * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out waiting for $what"
}

step "Building switchyard (the image's binaries in profile image)"
cargo build --workspace --bins --locked -q
build_image_binaries

step "Starting the control plane, scheduler, controller-manager and a real node (~30 s)"
"$bin/switchyard-control-plane" --real-node --env-file "$work/env" 2>"$work/cluster.log" &
cluster_pid=$!
for _ in $(seq 1 1800); do
  [ -s "$work/env" ] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; die "the real node failed to start"; }
  sleep 0.1
done
[ -s "$work/env" ] || die "the real node did not start within 180 s"
set -a
# shellcheck disable=SC1091
source "$work/env"
set +a
node="$SWITCHYARD_REAL_NODE"
netns="$SWITCHYARD_REAL_NODE_NETNS"
note "$(tail -n1 "$work/cluster.log")"
show kubectl get nodes -o wide
show ip -n "$netns" -br addr

step "Installing the Helm chart with the locally built image (no registry)"
"$HELM_BIN" install sy charts/switchyard --namespace switchyard-system --create-namespace \
  --set image.repository=localhost/switchyard/switchyard --set image.tag=dev \
  --set image.pullPolicy=Never --set logFormat=text >/dev/null
note "waiting for the controller and agent pods to be Ready"
kubectl -n switchyard-system wait --for=condition=Ready pods -l app.kubernetes.io/instance=sy --timeout=180s >/dev/null
show kubectl -n switchyard-system get pods -o wide

step "A network on the node's stand-in NIC eth1, served by the agent pod"
kubectl apply -f - >/dev/null <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: uplink}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: $node}}
  forward: {mode: bridge, interfaces: [{dev: eth1}]}
YAML
wait_for 60 "the agent to serve network uplink" \
  sh -c "kubectl get networknode $node -o jsonpath='{.status.networks[?(@.name==\"uplink\")].ready}' | grep -qx true"
show kubectl get networks
show kubectl get node "$node" -o jsonpath='{.status.allocatable}{"\n"}'

step "A port for VM vm-a, made by the agent pod in the node's namespace"
kubectl create namespace demo >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: NetworkPort
metadata: {name: vm-a, namespace: demo}
spec: {network: uplink, node: $node, mac: "52:54:00:00:00:0a"}
YAML
wait_for 60 "port vm-a to be Ready" \
  sh -c "kubectl -n demo get networkport vm-a -o jsonpath='{.status.phase}' | grep -qx Ready"
show kubectl -n demo get networkports
show ip -n "$netns" -d -br link show type macvtap

step "A VM pod asking for switchyard.dev/uplink: 1, placed by the scheduler"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: vm-a, namespace: demo}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: vm
    image: localhost/switchyard/pause:v1.20.2
    imagePullPolicy: Never
    resources: {limits: {switchyard.dev/uplink: 1}}
YAML
kubectl -n demo wait --for=condition=Ready pod/vm-a --timeout=120s >/dev/null
show kubectl -n demo get pod vm-a -o wide

step "Removing the port, the pod, the network and the release"
kubectl -n demo delete pod/vm-a networkport/vm-a --wait=true >/dev/null
kubectl delete network uplink --wait=true >/dev/null
"$HELM_BIN" uninstall sy --namespace switchyard-system --wait >/dev/null
show ip -n "$netns" -d -br link show type macvtap
note "no macvtap left in the node's namespace"
