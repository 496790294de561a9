//! The objects and polls of tests that drive the node agent as a process: Networks that select
//! only the test's nodes, NetworkPorts labelled as the controller labels them, waits on the
//! ports and the node's report, and the agent's marks on the links it owns.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use switchyard_crds::{
    LABEL_NETWORK, LABEL_NODE, Network, NetworkNode, NetworkNodeStatus, NetworkPort,
    NetworkPortSpec, PortPhase,
};

use crate::cluster::{TEST_LABEL, TestEnv};
use crate::netns::LinkView;
use crate::nodes::SimulatedNode;

// Spelled out rather than imported: this crate does not depend on the agent, and a change of
// the agent's marks should fail the tests, not follow silently.
/// The group of the links the agent owns (`LinkGroups::DEFAULT`).
pub const OWNED_GROUP: u32 = 0x7377_7901;
/// The group of owned links awaiting a group deletion; they still count as owned.
pub const DOOMED_GROUP: u32 = 0x7377_7902;
/// The prefix of the names of the links the agent makes.
pub const LINK_PREFIX: &str = "swy";

/// A network selecting only this test's nodes; `spec_yaml` is the rest of its spec, as lines
/// indented by two spaces.
pub fn network(env: &TestEnv, name: &str, spec_yaml: &str) -> Network {
    let mut net: Network = serde_yaml::from_str(&format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {{matchLabels: {{\"{TEST_LABEL}\": {ns}}}}}\n{spec_yaml}",
        ns = env.namespace
    ))
    .expect("test network YAML");
    net.metadata.labels = Some([env.test_label()].into_iter().collect());
    net
}

/// Creates the [`network`] named `env.unique(label)` and returns that name.
pub async fn create_network(env: &TestEnv, label: &str, spec_yaml: &str) -> String {
    let name = env.unique(label);
    Api::<Network>::all(env.client.clone())
        .create(&PostParams::default(), &network(env, &name, spec_yaml))
        .await
        .expect("creating the network");
    name
}

/// A node of the test with stand-in NICs `<nic_prefix>0`, `<nic_prefix>1`, … (`nics` of them)
/// and the network [`create_network`] makes of `net_label` and `spec_yaml`, then `agent` started
/// on it. Returns the node and the network's name.
pub async fn node_with_network(
    env: &TestEnv,
    agent: &Path,
    node_label: &str,
    (nic_prefix, nics): (&str, usize),
    (net_label, spec_yaml): (&str, &str),
) -> (SimulatedNode, String) {
    let mut node = SimulatedNode::new(env, node_label, &[]).await;
    node.sandbox
        .add_nics(nic_prefix, nics)
        .expect("adding the node's NICs");
    let net = create_network(env, net_label, spec_yaml).await;
    node.start_agent(agent);
    (node, net)
}

/// A port request labelled as the controller would label it: the agent watches its node's
/// ports by label, and most tests run no controller.
pub fn port(namespace: &str, name: &str, network: &str, node: &str, mac: &str) -> NetworkPort {
    let mut port = NetworkPort::new(
        name,
        NetworkPortSpec {
            network: network.into(),
            node: node.into(),
            mac: mac.into(),
            ..Default::default()
        },
    );
    port.metadata.namespace = Some(namespace.to_string());
    port.metadata.labels = Some(
        [
            (LABEL_NODE.to_string(), node.to_string()),
            (LABEL_NETWORK.to_string(), network.to_string()),
        ]
        .into_iter()
        .collect(),
    );
    port
}

/// A MAC address in QEMU's `52:54:00` range, distinct for every `i` below 2^24.
pub fn mac(i: usize) -> String {
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// The ports of the test's namespace.
pub fn ports_api(env: &TestEnv) -> Api<NetworkPort> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// Every port of the test's namespace.
pub async fn list_ports(env: &TestEnv) -> Vec<NetworkPort> {
    ports_api(env)
        .list(&ListParams::default())
        .await
        .expect("listing ports")
        .items
}

/// The port's phase, if the agent has written one.
pub fn phase(port: &NetworkPort) -> Option<PortPhase> {
    port.status.as_ref().and_then(|s| s.phase)
}

/// How many of `ports` are in phase `wanted`.
pub fn count_phase(ports: &[NetworkPort], wanted: PortPhase) -> usize {
    ports.iter().filter(|p| phase(p) == Some(wanted)).count()
}

/// A one-line-per-port summary for assertion messages (at most 40 lines).
pub fn summary(ports: &[NetworkPort]) -> String {
    let mut lines: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}: {:?} deleting={} {:?}",
                p.name_any(),
                phase(p),
                p.metadata.deletion_timestamp.is_some(),
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.first())
                    .map(|c| (&c.reason, &c.message))
            )
        })
        .collect();
    if lines.len() > 40 {
        let more = lines.len() - 40;
        lines.truncate(40);
        lines.push(format!("... and {more} more"));
    }
    lines.join("\n")
}

/// Lists the namespace's ports every `every` until `done` holds for them, or panics with the
/// last state once `timeout` has passed.
pub async fn wait_ports<F>(
    env: &TestEnv,
    what: &str,
    timeout: Duration,
    every: Duration,
    done: F,
) -> Vec<NetworkPort>
where
    F: Fn(&[NetworkPort]) -> bool,
{
    let start = Instant::now();
    loop {
        let ports = list_ports(env).await;
        if done(&ports) {
            return ports;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}:\n{}",
            summary(&ports)
        );
        tokio::time::sleep(every).await;
    }
}

/// The status the node's agent last reported (empty before its first report).
pub async fn network_node(env: &TestEnv, node: &str) -> NetworkNodeStatus {
    Api::<NetworkNode>::all(env.client.clone())
        .get(node)
        .await
        .expect("the node's NetworkNode")
        .status
        .unwrap_or_default()
}

/// Polls the node's report ([`network_node`]) until `done` holds for it and returns it, or
/// panics with the last report after 45 s (long enough for an agent to start its networks'
/// dnsmasq and report their leases).
pub async fn wait_network_node<F>(
    env: &TestEnv,
    node: &str,
    what: &str,
    done: F,
) -> NetworkNodeStatus
where
    F: Fn(&NetworkNodeStatus) -> bool,
{
    let timeout = Duration::from_secs(45);
    let start = Instant::now();
    loop {
        let status = network_node(env, node).await;
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Macvtaps among `links` per lower device, as the kernel shows them.
pub fn kernel_connections(links: &[LinkView]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for link in links {
        if link.kind.as_deref() == Some("macvtap") {
            *counts
                .entry(link.lower.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    counts
}
