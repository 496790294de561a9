#!/usr/bin/env bash
# The switchyard demo, start to finish on one machine:
#   a real local Kubernetes control plane; two simulated nodes (network namespaces whose veth
#   pairs stand in for NICs, each with a real node agent); the controller with its admission
#   webhook; a network imported from libvirt XML; ports for two VMs; a migration check that
#   says yes for one node and no, with reasons, for the other; and a clean teardown.
# Installs what it needs first. Run as root on Debian 12.
# `scripts/demo.sh --real-node` shows the chart's pods on a real kubelet instead
# (scripts/demo-real-node.sh).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
[ "${1:-}" = --real-node ] && exec bash scripts/demo-real-node.sh
source scripts/lib.sh
source scripts/control-plane.sh
need_root

bash scripts/install-deps.sh

work="$(mktemp -d /tmp/switchyard-demo.XXXXXX)"
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug"
NODES=(node-a node-b)
pids=()
cleanup() {
  set +e
  step "Tearing down"
  if [ -n "${KUBECONFIG:-}" ]; then
    kubectl delete networkports --all -n demo --wait=true --timeout=30s >/dev/null 2>&1
    kubectl delete validatingwebhookconfiguration switchyard-demo >/dev/null 2>&1
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  for node in "${NODES[@]}"; do ip netns del "swy-demo-$node" 2>/dev/null; done
  stop_control_plane
  rm -rf "$work"
  note "agents, controller and control plane stopped; namespaces and temporary files removed"
}
trap cleanup EXIT INT TERM
show() { printf '\n\033[36m$ %s\033[0m\n' "$*"; "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local timeout="$1" what="$2"; shift 2
  for _ in $(seq 1 $((timeout * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what"
}
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

step "Building switchyard"
cargo build --workspace --bins --locked -q
export PATH="$bin:$PATH"   # kubectl finds the plugin as `kubectl switchyard`

step "Starting the local control plane (etcd + kube-apiserver $KUBE_VERSION on 127.0.0.1)"
start_control_plane "$work"

step "Two simulated nodes: node-a has uplinks eth1 and eth2, node-b has none"
for node in "${NODES[@]}"; do
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {kubernetes.io/hostname: $node, topology.kubernetes.io/zone: demo}
YAML
  # No kubelet runs here: mark the node Ready the way its kubelet would.
  kubectl patch node "$node" --subresource=status --type=merge \
    -p '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"DemoKubelet","message":"simulated"}]}}' >/dev/null
  ip netns add "swy-demo-$node"
  ip -n "swy-demo-$node" link set lo up
done
for nic in eth1 eth2; do
  ip -n swy-demo-node-a link add "$nic" type veth peer name "$nic-sw"
  ip -n swy-demo-node-a link set "$nic" up
  ip -n swy-demo-node-a link set "$nic-sw" up
done
show ip -n swy-demo-node-a -br link

step "Starting the controller (with its admission webhook) and one agent per node"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/webhook-ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/webhook-ca.key" -subj /CN=switchyard-demo-ca -days 1 -out "$work/webhook-ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/webhook.key" 2>/dev/null
openssl req -new -key "$work/webhook.key" -subj /CN=127.0.0.1 -out "$work/webhook.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/webhook.ext"
openssl x509 -req -in "$work/webhook.csr" -CA "$work/webhook-ca.crt" -CAkey "$work/webhook-ca.key" \
  -CAcreateserial -days 1 -extfile "$work/webhook.ext" -out "$work/webhook.crt" 2>/dev/null
controller_metrics="$(free_port)"; webhook_port="$(free_port)"
SWITCHYARD_METRICS_ADDR="127.0.0.1:$controller_metrics" SWITCHYARD_WEBHOOK_ADDR="127.0.0.1:$webhook_port" \
SWITCHYARD_TLS_CERT_FILE="$work/webhook.crt" SWITCHYARD_TLS_KEY_FILE="$work/webhook.key" \
  "$bin/switchyard-controller" >"$work/controller.log" 2>&1 &
pids+=($!)
wait_for 30 "the controller to be ready" curl -sf "http://127.0.0.1:$controller_metrics/readyz"
kubectl apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: switchyard-demo}
webhooks:
- name: networks.validate.switchyard.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  clientConfig:
    url: https://127.0.0.1:$webhook_port/validate-networks
    caBundle: $(base64 -w0 "$work/webhook-ca.crt")
  rules: [{apiGroups: [switchyard.dev], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [networks]}]
- name: networkports.validate.switchyard.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  clientConfig:
    url: https://127.0.0.1:$webhook_port/validate-networkports
    caBundle: $(base64 -w0 "$work/webhook-ca.crt")
  rules: [{apiGroups: [switchyard.dev], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [networkports]}]
YAML
for node in "${NODES[@]}"; do
  port="$(free_port)"
  NODE_NAME="$node" SWITCHYARD_NETNS="swy-demo-$node" SWITCHYARD_METRICS_ADDR="127.0.0.1:$port" \
  SWITCHYARD_REPORT_INTERVAL=1 "$bin/switchyard-node-agent" >"$work/agent-$node.log" 2>&1 &
  pids+=($!)
  wait_for 30 "the agent of $node to be ready" curl -sf "http://127.0.0.1:$port/readyz"
done
note "controller and 2 agents ready (logs in $work)"

step "Importing a network from libvirt XML"
show cat examples/libvirt/uplinks.xml
show kubectl switchyard import examples/libvirt/uplinks.xml
kubectl switchyard import examples/libvirt/uplinks.xml | kubectl apply -f -

step "Ports for two VMs on node-a"
kubectl create namespace demo >/dev/null
for vm in 1 2; do
  group=$([ "$vm" = 1 ] && echo engineering || echo sales)
  kubectl apply -f - <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: NetworkPort
metadata:
  name: vm$vm-net0
  namespace: demo
  labels: {switchyard.dev/node: node-a, switchyard.dev/network: uplinks}
spec:
  network: uplinks
  portgroup: $group
  node: node-a
  mac: 52:54:00:00:00:0$vm
  owner: {kind: VirtualMachineInstance, name: vm$vm}
YAML
done
wait_for 30 "both ports to be Ready" bash -c \
  '[ "$(kubectl get networkports -n demo -o jsonpath="{.items[*].status.phase}")" = "Ready Ready" ]'
wait_for 30 "the network status" bash -c \
  '[ -n "$(kubectl get network uplinks -o jsonpath="{.status.nodesReadySummary}")" ]'
show kubectl get networks,networkports -A -o wide
show kubectl get networkport vm1-net0 -n demo -o jsonpath='{.status.actual}{"\n"}'
step "The kernel on node-a: one macvtap per port, in switchyard's link group"
show ip -n swy-demo-node-a -d -br link show type macvtap
step "The node state each agent reports"
show kubectl get networknodes
show kubectl get networknode node-a -o jsonpath='{range .status.networks[*].devices[*]}{.name}{"\tpresent="}{.present}{"\tstate="}{.linkState}{"\tconnections="}{.connections}{"\n"}{end}'
show kubectl get networknode node-b -o jsonpath='{range .status.networks[*]}{.name}{": ready="}{.ready}{" "}{.reason}{": "}{.message}{"\n"}{end}'

step "Can vm1 migrate? A MigrationCheck answered by the controller"
kubectl apply -f - <<'YAML'
apiVersion: switchyard.dev/v1alpha1
kind: MigrationCheck
metadata: {name: vm1, namespace: demo}
spec:
  interfaces: [{name: net0, network: uplinks, portgroup: engineering}]
  nodes: [node-a, node-b]
YAML
wait_for 30 "the migration check" bash -c \
  '[ -n "$(kubectl get migrationcheck vm1 -n demo -o jsonpath="{.status.summary}")" ]'
show kubectl get migrationcheck vm1 -n demo
show kubectl get migrationcheck vm1 -n demo -o jsonpath='{range .status.nodes[*]}{.node}{": eligible="}{.eligible}{"  "}{.reasons[*].message}{"\n"}{end}'
step "The same question from the kubectl plugin"
# Exits 0 when some candidate node is eligible: node-a is.
show kubectl switchyard check-migration --network uplinks --portgroup engineering --node node-a --node node-b

step "The webhook refuses a port whose virtualport conflicts with its portgroup"
if show kubectl apply -f - <<'YAML'; then
apiVersion: switchyard.dev/v1alpha1
kind: NetworkPort
metadata: {name: vm3-net0, namespace: demo, labels: {switchyard.dev/node: node-a}}
spec:
  network: uplinks
  portgroup: sales
  node: node-a
  mac: 52:54:00:00:00:03
  virtualport: {type: 802.1Qbg, typeid: 999}
YAML
  die "the webhook accepted a port whose virtualport conflicts with its portgroup"
fi

step "Deleting the ports removes their links"
show kubectl delete networkports --all -n demo
wait_for 30 "the macvtaps of node-a to be removed" bash -c \
  '[ -z "$(ip -n swy-demo-node-a link show type macvtap)" ]'
show ip -n swy-demo-node-a -br link show type macvtap
note "no macvtap left on node-a"
