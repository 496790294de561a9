//! The labels the controller keeps on other objects, as pure functions returning the merge
//! patch to send (or nothing when the object is already right, so a reconcile that changes
//! nothing writes nothing and cannot wake itself up again).
//!
//! - Nodes: `net.switchyard.dev/<network>: "true"` exactly where the network is ready, so
//!   the scheduler can place VM pods by node selector. The controller owns the prefix: a label
//!   under it that the cluster does not justify is removed, whoever set it.
//! - NetworkPorts: `switchyard.dev/node` and `switchyard.dev/network` from the spec, so each
//!   agent can watch only its own node's ports.

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde_json::{Map, Value, json};
use switchyard_crds::{LABEL_NETWORK, LABEL_NODE, NetworkPort};

use switchyard_placement::index::Index;
use switchyard_placement::realisation::selects;

/// The networks a node should be labelled with: those that select it and that its agent,
/// itself ready, reports ready.
pub fn ready_networks(index: &Index, node: &str) -> BTreeSet<String> {
    let (Some(info), Some(agent)) = (index.node(node), index.agent(node)) else {
        return BTreeSet::new();
    };
    if !agent.ready {
        return BTreeSet::new();
    }
    agent
        .networks
        .values()
        .filter(|served| served.ready)
        .filter(|served| {
            index
                .network(&served.name)
                .is_some_and(|network| selects(&network.spec, &info.labels))
        })
        .map(|served| served.name.clone())
        .collect()
}

/// The merge patch that makes a node's `net.switchyard.dev/*` labels match `ready` (one rule
/// with the uninstall cleanup's, so it lives in `switchyard_placement`).
pub use switchyard_placement::node_marks::node_label_patch;

/// The merge patch that gives a port its node and network labels, if any is needed.
pub fn port_label_patch(port: &NetworkPort) -> Option<Value> {
    let labels = port.labels();
    let mut changes = Map::new();
    for (key, value) in [
        (LABEL_NODE, &port.spec.node),
        (LABEL_NETWORK, &port.spec.network),
    ] {
        if labels.get(key) != Some(value) {
            changes.insert(key.to_string(), json!(value));
        }
    }
    (!changes.is_empty()).then(|| json!({ "metadata": { "labels": changes } }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::collections::BTreeMap;

    use super::*;
    use switchyard_crds::{Network, NetworkPortSpec, NetworkSpec, NodeNetwork, NodeSelector};
    use switchyard_placement::index::{AgentReport, NodeInfo};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn index() -> Index {
        let mut index = Index::new();
        index.upsert_network(Arc::new(Network::new("everywhere", NetworkSpec::default())));
        let mut rack = Network::new("rack1", NetworkSpec::default());
        rack.spec.node_selector = Some(NodeSelector {
            match_labels: labels(&[("rack", "1")]),
            ..Default::default()
        });
        index.upsert_network(Arc::new(rack));
        index.upsert_node(
            "a",
            NodeInfo {
                labels: labels(&[("rack", "2")]),
                ready: true,
                ..Default::default()
            },
        );
        let served = |name: &str, ready| NodeNetwork {
            name: name.into(),
            ready,
            ..Default::default()
        };
        index.upsert_agent(
            "a",
            AgentReport {
                ready: true,
                not_ready_reason: String::new(),
                networks: [
                    ("everywhere".to_string(), served("everywhere", true)),
                    // Reported ready, but the network no longer selects the node.
                    ("rack1".to_string(), served("rack1", true)),
                    ("gone".to_string(), served("gone", true)),
                ]
                .into(),
            },
        );
        index
    }

    #[test]
    fn nodes_are_labelled_with_the_networks_ready_on_them() {
        let mut index = index();
        assert_eq!(
            ready_networks(&index, "a"),
            BTreeSet::from(["everywhere".to_string()])
        );
        assert!(ready_networks(&index, "b").is_empty());
        let mut agent = index.agent("a").unwrap().clone();
        agent.ready = false;
        index.upsert_agent("a", agent);
        assert!(ready_networks(&index, "a").is_empty());
    }

    #[test]
    fn ports_get_their_node_and_network_labels_once() {
        let mut port = NetworkPort::new(
            "p",
            NetworkPortSpec {
                network: "n1".into(),
                node: "a".into(),
                mac: "52:54:00:00:00:01".into(),
                ..Default::default()
            },
        );
        port.metadata.labels = Some(labels(&[(LABEL_NODE, "a")]));
        assert_eq!(
            port_label_patch(&port),
            Some(json!({"metadata": {"labels": {LABEL_NETWORK: "n1"}}}))
        );
        port.metadata.labels = Some(labels(&[(LABEL_NODE, "a"), (LABEL_NETWORK, "n1")]));
        assert_eq!(port_label_patch(&port), None);
    }
}
