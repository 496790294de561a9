use std::sync::Arc;

use switchyard_crds::{
    Forward, ForwardInterface, ForwardMode, NetworkSpec, NodeNetwork, NodeSelector,
};

use super::*;
use switchyard_placement::index::{AgentReport, NodeInfo};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-01T11:00:00Z";

fn network() -> Network {
    let mut network = Network::new(
        "sriov",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Passthrough,
                interfaces: vec![
                    ForwardInterface { dev: "eth1".into() },
                    ForwardInterface { dev: "eth2".into() },
                ],
                ..Default::default()
            }),
            node_selector: Some(NodeSelector {
                match_labels: [("sriov".to_string(), "yes".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    network.metadata.generation = Some(3);
    network
}

fn node(selected: bool, ready: bool) -> NodeInfo {
    NodeInfo {
        labels: if selected {
            [("sriov".to_string(), "yes".to_string())].into()
        } else {
            Default::default()
        },
        ready,
        not_ready_reason: if ready {
            String::new()
        } else {
            "Ready is False".into()
        },
        unschedulable: false,
    }
}

fn serving(ready: bool, capacity: u64, used: u64) -> AgentReport {
    AgentReport {
        ready: true,
        not_ready_reason: String::new(),
        networks: [(
            "sriov".to_string(),
            NodeNetwork {
                name: "sriov".into(),
                ready,
                reason: (!ready).then(|| "DeviceMissing".to_string()),
                message: (!ready).then(|| "eth2 is absent".to_string()),
                capacity,
                used,
                free: capacity - used,
                ..Default::default()
            },
        )]
        .into(),
    }
}

/// a, b serve it; c misses a device; d has no agent; e is down; f is not selected.
fn cluster() -> Index {
    let mut index = Index::new();
    index.upsert_network(Arc::new(network()));
    for (name, info) in [
        ("a", node(true, true)),
        ("b", node(true, true)),
        ("c", node(true, true)),
        ("d", node(true, true)),
        ("e", node(true, false)),
        ("f", node(false, true)),
    ] {
        index.upsert_node(name, info);
    }
    index.upsert_agent("a", serving(true, 2, 1));
    index.upsert_agent("b", serving(true, 2, 0));
    index.upsert_agent("c", serving(false, 0, 0));
    index.upsert_agent("e", serving(true, 2, 2));
    index.upsert_agent("f", serving(true, 2, 0));
    index
}

#[test]
fn status_counts_selected_and_ready_nodes_and_sums_their_capacity() {
    let index = cluster();
    let status = network_status(&network(), &index, &[], None, T0);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.nodes_selected, 5);
    assert_eq!(status.nodes_ready, 2);
    assert_eq!(status.nodes_ready_summary.as_deref(), Some("2/5"));
    assert_eq!(status.pool_size, 2);
    assert_eq!(
        (
            status.capacity_total,
            status.capacity_used,
            status.capacity_free
        ),
        (4, 1, 3)
    );
    assert_eq!(status.free_per_node.as_deref(), Some("a=1, b=2"));
    assert_eq!(status.uses.as_deref(), Some("pool of 2"));
    let unready: Vec<(&str, &str)> = status
        .unready_nodes
        .iter()
        .map(|u| (u.node.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        unready,
        [
            ("c", "DeviceMissing"),
            ("d", "NoAgent"),
            ("e", "NodeNotReady")
        ]
    );
    let messages: Vec<&str> = status
        .unready_nodes
        .iter()
        .map(|u| u.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "network \"sriov\" is not ready on node \"c\": DeviceMissing: eth2 is absent",
            "no switchyard agent reports for node \"d\" (no NetworkNode \"d\")",
            "node \"e\" is not ready: Ready is False",
        ]
    );

    let ready = &status.conditions[0];
    assert_eq!(
        (ready.kind.as_str(), ready.status),
        ("Ready", ConditionStatus::True)
    );
    assert_eq!(ready.reason, "Serving");
    assert_eq!(
        ready.message,
        "served by 2 of 5 selected nodes; 3 cannot: c DeviceMissing, d NoAgent, e NodeNotReady"
    );
    assert_eq!(ready.last_transition_time.as_deref(), Some(T0));
    let valid = &status.conditions[1];
    assert_eq!(
        (valid.kind.as_str(), valid.status),
        ("Valid", ConditionStatus::True)
    );
}

#[test]
fn unchanged_cluster_gives_an_identical_status_and_no_events() {
    let index = cluster();
    let first = network_status(&network(), &index, &[], None, T0);
    let second = network_status(&network(), &index, &[], Some(&first), T1);
    assert_eq!(first, second);
    assert!(status_events(Some(&first), &second).is_empty());
}

#[test]
fn invalid_spec_and_no_ready_node_are_conditions_and_warnings() {
    let mut index = cluster();
    let before = network_status(&network(), &index, &[], None, T0);
    for node in ["a", "b"] {
        index.upsert_agent(node, serving(false, 0, 0));
    }
    let errors = vec!["spec.forward.dev: must equal the pool's first interface".to_string()];
    let after = network_status(&network(), &index, &errors, Some(&before), T1);
    let ready = &after.conditions[0];
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "NoReadyNodes")
    );
    assert_eq!(ready.last_transition_time.as_deref(), Some(T1));
    let valid = &after.conditions[1];
    assert_eq!(
        (valid.status, valid.reason.as_str()),
        (ConditionStatus::False, "Invalid")
    );
    assert_eq!(valid.message, errors[0]);

    let events = status_events(Some(&before), &after);
    let reasons: Vec<(&str, bool)> = events
        .iter()
        .map(|e| (e.reason.as_str(), e.warning))
        .collect();
    assert_eq!(
        reasons,
        [
            ("NotReady", true),
            ("InvalidSpec", true),
            ("DeviceMissing", true),
            ("DeviceMissing", true),
        ]
    );
    assert_eq!(
        events[2].note,
        "network \"sriov\" is not ready on node \"a\": DeviceMissing: eth2 is absent"
    );
}

#[test]
fn recovery_and_exhaustion_are_events() {
    let mut index = cluster();
    let before = network_status(&network(), &index, &[], None, T0);
    index.upsert_agent("c", serving(true, 2, 2));
    index.upsert_agent("a", serving(true, 2, 2));
    index.upsert_agent("b", serving(true, 2, 2));
    let after = network_status(&network(), &index, &[], Some(&before), T1);
    assert_eq!(after.capacity_free, 0);
    let events = status_events(Some(&before), &after);
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["NodeServing", "CapacityExhausted"]);
    assert_eq!(events[0].note, "node c serves the network again");
}

#[test]
fn a_network_selecting_no_node_says_so() {
    let mut index = Index::new();
    index.upsert_node("f", node(false, true));
    let status = network_status(&network(), &index, &[], None, T0);
    assert_eq!(status.nodes_selected, 0);
    assert_eq!(status.conditions[0].reason, "NoNodesSelected");
    let events = status_events(None, &status);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "NotReady");
}

#[test]
fn long_unready_lists_are_capped() {
    let mut index = Index::new();
    for i in 0..(MAX_UNREADY_LISTED + 20) {
        index.upsert_node(&format!("n{i:04}"), node(true, true));
    }
    let status = network_status(&network(), &index, &[], None, T0);
    assert_eq!(status.nodes_selected as usize, MAX_UNREADY_LISTED + 20);
    assert_eq!(status.unready_nodes.len(), MAX_UNREADY_LISTED);
    assert!(status.conditions[0].message.contains("120 cannot"));
    assert!(status.conditions[0].message.ends_with("and 115 more"));
    let events = status_events(None, &status);
    assert_eq!(events.last().unwrap().reason, "NodesCannotServe");
}

#[test]
fn free_per_node_names_the_first_nodes_and_counts_the_rest() {
    let mut index = Index::new();
    for i in 0..(MAX_FREE_LISTED + 3) {
        let name = format!("n{i:02}");
        index.upsert_node(&name, node(true, true));
        index.upsert_agent(&name, serving(true, 2, 1));
    }
    let status = network_status(&network(), &index, &[], None, T0);
    let free = status.free_per_node.unwrap();
    assert!(free.starts_with("n00=1, n01=1, "), "{free}");
    assert!(free.ends_with("n19=1 and 3 more"), "{free}");
    let none = network_status(&network(), &Index::new(), &[], None, T0);
    assert_eq!(none.free_per_node.as_deref(), Some("no ready node"));
}

#[test]
fn a_cordoned_node_still_serves_the_network() {
    let mut index = cluster();
    let mut cordoned = node(true, true);
    cordoned.unschedulable = true;
    index.upsert_node("a", cordoned);
    let status = network_status(&network(), &index, &[], None, T0);
    assert_eq!(status.nodes_ready, 2);
    assert!(status.unready_nodes.iter().all(|u| u.node != "a"));
}
