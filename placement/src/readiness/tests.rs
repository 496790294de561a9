use std::sync::Arc;

use switchyard_crds::{Forward, ForwardInterface, ForwardMode, NetworkSpec, NodeSelector};

use super::*;

fn network() -> Network {
    Network::new(
        "sriov",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Passthrough,
                interfaces: vec![ForwardInterface { dev: "eth1".into() }],
                ..Default::default()
            }),
            node_selector: Some(NodeSelector {
                match_labels: [("sriov".to_string(), "yes".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn node(selected: bool, ready: bool) -> NodeInfo {
    NodeInfo {
        labels: selected
            .then(|| ("sriov".to_string(), "yes".to_string()))
            .into_iter()
            .collect(),
        ready,
        not_ready_reason: if ready { "" } else { "Ready is False" }.into(),
        ..Default::default()
    }
}

fn agent(ready: bool, network: Option<(bool, Option<&str>)>) -> AgentReport {
    AgentReport {
        ready,
        not_ready_reason: if ready { "" } else { "Recovering" }.into(),
        networks: network
            .map(|(ready, reason)| {
                (
                    "sriov".to_string(),
                    NodeNetwork {
                        name: "sriov".into(),
                        ready,
                        reason: reason.map(str::to_string),
                        message: reason.map(|_| "eth1 is absent".to_string()),
                        capacity: 1,
                        free: 1,
                        ..Default::default()
                    },
                )
            })
            .into_iter()
            .collect(),
    }
}

fn problems<'a>(index: &'a Index, node: &str) -> Vec<NotReady<'a>> {
    network_on_node(index, &network(), node)
        .err()
        .unwrap_or_default()
}

fn index_with(node_info: NodeInfo, report: Option<AgentReport>) -> Index {
    let mut index = Index::new();
    index.upsert_network(Arc::new(network()));
    index.upsert_node("x", node_info);
    if let Some(report) = report {
        index.upsert_agent("x", report);
    }
    index
}

#[test]
fn a_ready_node_whose_agent_serves_the_network_gives_its_report() {
    let index = index_with(node(true, true), Some(agent(true, Some((true, None)))));
    let served = network_on_node(&index, &network(), "x").expect("ready");
    assert_eq!((served.name.as_str(), served.free), ("sriov", 1));
}

#[test]
fn every_reason_is_given_most_fundamental_first() {
    let index = index_with(node(true, true), None);
    assert_eq!(problems(&index, "ghost"), [NotReady::NodeNotFound]);
    assert_eq!(problems(&index, "x"), [NotReady::NoAgent]);

    let index = index_with(node(true, false), Some(agent(false, None)));
    assert_eq!(
        problems(&index, "x"),
        [
            NotReady::NodeNotReady("Ready is False"),
            NotReady::AgentNotReady("Recovering"),
            NotReady::NotReported,
        ]
    );

    let index = index_with(
        node(true, true),
        Some(agent(true, Some((false, Some("DeviceMissing"))))),
    );
    assert_eq!(
        problems(&index, "x"),
        [NotReady::NetworkNotReady {
            reason: Some("DeviceMissing"),
            message: Some("eth1 is absent"),
        }]
    );
}

#[test]
fn a_network_ready_on_a_node_that_is_not_is_not_ready_there() {
    let index = index_with(node(true, false), Some(agent(true, Some((true, None)))));
    assert_eq!(
        problems(&index, "x"),
        [NotReady::NodeNotReady("Ready is False")]
    );
}

#[test]
fn a_node_the_selector_leaves_out_gets_no_network_level_reason() {
    let index = index_with(node(false, true), Some(agent(true, None)));
    assert_eq!(problems(&index, "x"), [NotReady::NotSelected]);
}

#[test]
fn a_cordoned_node_still_serves_the_network() {
    let mut cordoned = node(true, true);
    cordoned.unschedulable = true;
    let index = index_with(cordoned, Some(agent(true, Some((true, None)))));
    assert!(network_on_node(&index, &network(), "x").is_ok());
}

#[test]
fn node_wide_reasons_are_those_of_the_node_and_its_agent() {
    let index = index_with(node(true, false), Some(agent(false, None)));
    let node_wide: Vec<bool> = node_problems(&index, "x")
        .iter()
        .map(NotReady::node_wide)
        .collect();
    assert_eq!(node_wide, [true, true]);
    assert!(!NotReady::NotReported.node_wide());
    assert!(!NotReady::NotSelected.node_wide());
}

#[test]
fn messages_name_the_node_the_network_and_the_reason() {
    let cases = [
        (
            NotReady::NodeNotFound,
            "node \"x\" does not exist",
            ReasonCode::NodeNotFound,
            "NodeNotFound",
        ),
        (
            NotReady::NodeNotReady("Ready is False"),
            "node \"x\" is not ready: Ready is False",
            ReasonCode::NodeNotReady,
            "NodeNotReady",
        ),
        (
            NotReady::NoAgent,
            "no switchyard agent reports for node \"x\" (no NetworkNode \"x\")",
            ReasonCode::NodeNotReady,
            "NoAgent",
        ),
        (
            NotReady::AgentNotReady("Recovering"),
            "the switchyard agent on node \"x\" is not ready: Recovering",
            ReasonCode::NodeNotReady,
            "AgentNotReady",
        ),
        (
            NotReady::NotReported,
            "the agent on node \"x\" does not report network \"sriov\" yet",
            ReasonCode::NetworkNotReady,
            "NotReported",
        ),
        (
            NotReady::NetworkNotReady {
                reason: Some("DeviceMissing"),
                message: Some("eth1 is absent"),
            },
            "network \"sriov\" is not ready on node \"x\": DeviceMissing: eth1 is absent",
            ReasonCode::NetworkNotReady,
            "DeviceMissing",
        ),
        (
            NotReady::NetworkNotReady {
                reason: None,
                message: None,
            },
            "network \"sriov\" is not ready on node \"x\": the agent gives no reason",
            ReasonCode::NetworkNotReady,
            "NotReady",
        ),
    ];
    for (problem, message, code, reason) in cases {
        assert_eq!(problem.message("x", "sriov"), message);
        assert_eq!(problem.code(), code, "{message}");
        assert_eq!(problem.reason(), reason, "{message}");
    }
}
