use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_crds::{
    BridgeState, Forward, ForwardInterface, ForwardMode, LinkState, Network, NetworkSpec,
    NodeSelector, PoolDevice, PortGroup, VirtualPort, VirtualPortType,
};

use super::*;
use crate::index::{AgentReport, NodeInfo};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ready_node(pairs: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        labels: labels(pairs),
        ready: true,
        ..Default::default()
    }
}

fn device(name: &str, connections: u32, exclusive: bool) -> PoolDevice {
    PoolDevice {
        name: name.into(),
        present: true,
        link_state: LinkState::Up,
        connections,
        exclusive,
        holder: exclusive.then(|| format!("vms/{name}-holder")),
    }
}

fn served(network: &str, devices: Vec<PoolDevice>) -> NodeNetwork {
    NodeNetwork {
        name: network.into(),
        ready: true,
        devices,
        ..Default::default()
    }
}

fn agent(networks: Vec<NodeNetwork>) -> AgentReport {
    AgentReport {
        ready: true,
        not_ready_reason: String::new(),
        networks: networks.into_iter().map(|n| (n.name.clone(), n)).collect(),
    }
}

fn macvtap_network(name: &str, mode: ForwardMode, pool: &[&str]) -> Network {
    Network::new(
        name,
        NetworkSpec {
            forward: Some(Forward {
                mode,
                interfaces: pool
                    .iter()
                    .map(|dev| ForwardInterface {
                        dev: dev.to_string(),
                    })
                    .collect(),
                ..Default::default()
            }),
            node_selector: Some(NodeSelector {
                match_labels: labels(&[("sriov", "yes")]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn interface(name: &str, network: &str) -> InterfaceRequest {
    InterfaceRequest {
        name: Some(name.into()),
        network: network.into(),
        ..Default::default()
    }
}

fn check(index: &Index, interfaces: Vec<InterfaceRequest>, nodes: &[&str]) -> Vec<NodeVerdict> {
    check_migration(
        index,
        &MigrationCheckSpec {
            interfaces,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        },
    )
}

fn codes(verdict: &NodeVerdict) -> Vec<ReasonCode> {
    verdict.reasons.iter().map(|r| r.code).collect()
}

/// The issue's scenario: one node lacks the network, one is full, one is fine.
fn three_nodes() -> Index {
    let mut index = Index::new();
    index.upsert_network(Arc::new(macvtap_network(
        "sriov",
        ForwardMode::Passthrough,
        &["eth1", "eth2"],
    )));
    index.upsert_node("lacking", ready_node(&[]));
    index.upsert_node("full", ready_node(&[("sriov", "yes")]));
    index.upsert_node("fine", ready_node(&[("sriov", "yes")]));
    index.upsert_agent("lacking", agent(vec![]));
    index.upsert_agent(
        "full",
        agent(vec![served(
            "sriov",
            vec![device("eth1", 1, true), device("eth2", 1, true)],
        )]),
    );
    index.upsert_agent(
        "fine",
        agent(vec![served(
            "sriov",
            vec![device("eth1", 1, true), device("eth2", 0, false)],
        )]),
    );
    index
}

#[test]
fn lacking_full_and_fine_nodes_get_their_own_verdicts() {
    let index = three_nodes();
    let verdicts = check(
        &index,
        vec![interface("net0", "sriov")],
        &["lacking", "full", "fine"],
    );
    assert_eq!(verdicts.len(), 3);

    assert_eq!(verdicts[0].node, "lacking");
    assert!(!verdicts[0].eligible);
    assert_eq!(codes(&verdicts[0]), [ReasonCode::NetworkNotOnNode]);
    assert_eq!(verdicts[0].reasons[0].interface.as_deref(), Some("net0"));

    assert_eq!(verdicts[1].node, "full");
    assert_eq!(codes(&verdicts[1]), [ReasonCode::NoFreeDevice]);
    let message = &verdicts[1].reasons[0].message;
    assert!(
        message.contains("1 interface(s) need a pool device of their own, 0 free"),
        "{message}"
    );
    assert!(
        message.contains("eth1: held by vms/eth1-holder"),
        "{message}"
    );

    assert_eq!(verdicts[2].node, "fine");
    assert!(verdicts[2].eligible, "{:?}", verdicts[2].reasons);
    assert_eq!(eligible_nodes(&verdicts), ["fine"]);
    assert_eq!(summary(&verdicts), "1/3");
}

#[test]
fn interfaces_of_one_network_are_counted_together() {
    let index = three_nodes();
    // "fine" has one free device: one passthrough interface fits, two do not.
    let verdicts = check(
        &index,
        vec![interface("net0", "sriov"), interface("net1", "sriov")],
        &["fine"],
    );
    assert_eq!(codes(&verdicts[0]), [ReasonCode::NoFreeDevice]);
    assert_eq!(
        verdicts[0].reasons[0].interface.as_deref(),
        Some("net0, net1")
    );
    assert!(verdicts[0].reasons[0].message.contains("2 interface(s)"));
}

#[test]
fn unknown_networks_and_portgroups_hold_on_every_node() {
    let index = three_nodes();
    let mut with_portgroup = interface("net1", "sriov");
    with_portgroup.portgroup = Some("gold".into());
    let verdicts = check(
        &index,
        vec![interface("net0", "nowhere"), with_portgroup],
        &["fine", "full"],
    );
    for verdict in &verdicts {
        assert!(
            codes(verdict).contains(&ReasonCode::NetworkNotFound),
            "{verdict:?}"
        );
        assert!(
            codes(verdict).contains(&ReasonCode::PortgroupNotFound),
            "{verdict:?}"
        );
    }
    let missing = &verdicts[0].reasons[0];
    assert_eq!(missing.interface.as_deref(), Some("net0"));
    assert_eq!(missing.message, "network \"nowhere\" does not exist");
    assert!(
        verdicts[0].reasons[1]
            .message
            .contains("portgroup 'gold' does not exist")
    );
}

#[test]
fn a_virtualport_conflict_is_a_merge_conflict() {
    let mut index = three_nodes();
    let mut network = macvtap_network("vepa", ForwardMode::Vepa, &["eth3"]);
    network.spec.virtualport = Some(VirtualPort {
        kind: Some(VirtualPortType::Qbg),
        managerid: Some(1),
        typeid: Some(100),
        typeidversion: Some(1),
        ..Default::default()
    });
    index.upsert_network(Arc::new(network));
    let mut conflicting = interface("net0", "vepa");
    conflicting.virtualport = Some(VirtualPort {
        typeid: Some(200),
        ..Default::default()
    });
    let verdicts = check(&index, vec![conflicting], &["fine"]);
    assert_eq!(codes(&verdicts[0]), [ReasonCode::MergeConflict]);
    let message = &verdicts[0].reasons[0].message;
    assert!(
        message.contains("typeid conflicts: 200 from the port but 100 from the network"),
        "{message}"
    );
}

#[test]
fn node_and_agent_readiness_are_reported_node_wide() {
    let mut index = three_nodes();
    let mut sick = ready_node(&[("sriov", "yes")]);
    sick.ready = false;
    sick.not_ready_reason = "Ready is False (KubeletNotReady)".into();
    sick.unschedulable = true;
    index.upsert_node("sick", sick);
    index.upsert_node("no-agent", ready_node(&[("sriov", "yes")]));
    index.upsert_node("starting", ready_node(&[("sriov", "yes")]));
    let mut starting = agent(vec![]);
    starting.ready = false;
    starting.not_ready_reason = "Recovering: listing links".into();
    index.upsert_agent("starting", starting);

    let verdicts = check(
        &index,
        vec![interface("net0", "sriov")],
        &["sick", "no-agent", "starting", "ghost"],
    );
    assert_eq!(
        codes(&verdicts[0]),
        [
            ReasonCode::NodeNotReady,
            ReasonCode::NodeNotReady,
            ReasonCode::NodeNotReady
        ]
    );
    assert!(verdicts[0].reasons[0].message.contains("KubeletNotReady"));
    assert!(verdicts[0].reasons[1].message.contains("no NetworkNode"));
    assert!(verdicts[0].reasons[2].message.contains("cordoned"));
    assert_eq!(codes(&verdicts[1]), [ReasonCode::NodeNotReady]);
    assert!(verdicts[1].reasons[0].message.contains("no NetworkNode"));
    assert_eq!(
        codes(&verdicts[2]),
        [ReasonCode::NodeNotReady, ReasonCode::NetworkNotReady]
    );
    assert!(
        verdicts[2].reasons[0]
            .message
            .contains("Recovering: listing links")
    );
    assert_eq!(codes(&verdicts[3]), [ReasonCode::NodeNotFound]);
}

#[test]
fn a_network_the_agent_cannot_serve_is_not_ready_with_its_reason() {
    let mut index = three_nodes();
    index.upsert_agent(
        "fine",
        agent(vec![NodeNetwork {
            name: "sriov".into(),
            ready: false,
            reason: Some("DeviceMissing".into()),
            message: Some("eth1, eth2 are absent".into()),
            ..Default::default()
        }]),
    );
    let verdicts = check(&index, vec![interface("net0", "sriov")], &["fine"]);
    assert_eq!(codes(&verdicts[0]), [ReasonCode::NetworkNotReady]);
    assert!(
        verdicts[0].reasons[0]
            .message
            .ends_with("DeviceMissing: eth1, eth2 are absent")
    );
}

#[test]
fn shared_interfaces_need_room_below_the_per_device_limit() {
    let mut index = three_nodes();
    let mut network = macvtap_network("vepa", ForwardMode::Vepa, &["eth3", "eth4", "eth5"]);
    network.spec.max_connections_per_device = Some(2);
    index.upsert_network(Arc::new(network));
    let mut absent = device("eth5", 0, false);
    absent.present = false;
    index.upsert_agent(
        "fine",
        agent(vec![served(
            "vepa",
            // eth3 is full, eth4 has one slot, eth5 is missing.
            vec![device("eth3", 2, false), device("eth4", 1, false), absent],
        )]),
    );
    let one = check(&index, vec![interface("a", "vepa")], &["fine"]);
    assert!(one[0].eligible, "{:?}", one[0].reasons);
    let two = check(
        &index,
        vec![interface("a", "vepa"), interface("b", "vepa")],
        &["fine"],
    );
    assert_eq!(codes(&two[0]), [ReasonCode::CapacityExhausted]);
    let message = &two[0].reasons[0].message;
    assert!(
        message
            .contains("2 interface(s) need a shared device, 1 connection(s) left at 2 per device"),
        "{message}"
    );
    assert!(message.contains("eth5: absent"), "{message}");
}

#[test]
fn an_exclusively_held_device_is_never_shared_and_exclusive_ports_take_whole_devices() {
    let mut index = three_nodes();
    let mut network = macvtap_network("private", ForwardMode::Private, &["eth3", "eth4"]);
    network.spec.max_connections_per_device = Some(4);
    network.spec.portgroups = vec![PortGroup {
        name: "qbh".into(),
        virtualport: Some(VirtualPort {
            kind: Some(VirtualPortType::Qbh),
            profileid: Some("fex".into()),
            ..Default::default()
        }),
        ..Default::default()
    }];
    index.upsert_network(Arc::new(network));
    index.upsert_agent(
        "fine",
        agent(vec![served(
            "private",
            vec![device("eth3", 1, true), device("eth4", 0, false)],
        )]),
    );
    let mut qbh = interface("fex0", "private");
    qbh.portgroup = Some("qbh".into());
    // The 802.1Qbh interface takes eth4 whole; nothing is left for the shared one.
    let verdicts = check(
        &index,
        vec![qbh.clone(), interface("plain", "private")],
        &["fine"],
    );
    assert_eq!(codes(&verdicts[0]), [ReasonCode::CapacityExhausted]);
    assert_eq!(verdicts[0].reasons[0].interface.as_deref(), Some("plain"));
    let alone = check(&index, vec![qbh], &["fine"]);
    assert!(alone[0].eligible, "{:?}", alone[0].reasons);
}

#[test]
fn a_full_bridge_has_no_room() {
    let mut index = three_nodes();
    let network = Network::new(
        "br",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Bridge,
                ..Default::default()
            }),
            bridge: Some(switchyard_crds::Bridge {
                name: Some("br0".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    index.upsert_network(Arc::new(network));
    let bridge = |total_ports, present| NodeNetwork {
        name: "br".into(),
        ready: true,
        bridge: Some(BridgeState {
            name: "br0".into(),
            present,
            ports: total_ports,
            total_ports,
            max_ports: 1023,
        }),
        ..Default::default()
    };
    index.upsert_agent("fine", agent(vec![bridge(1022, true)]));
    index.upsert_agent("full", agent(vec![bridge(1023, true)]));
    index.upsert_agent("lacking", agent(vec![bridge(0, false)]));
    let verdicts = check(
        &index,
        vec![interface("net0", "br")],
        &["fine", "full", "lacking"],
    );
    assert!(verdicts[0].eligible, "{:?}", verdicts[0].reasons);
    assert_eq!(codes(&verdicts[1]), [ReasonCode::CapacityExhausted]);
    assert!(
        verdicts[1].reasons[0]
            .message
            .contains("1023 of 1023 ports in use")
    );
    assert_eq!(codes(&verdicts[2]), [ReasonCode::NetworkNotReady]);
}

#[test]
fn candidates_are_deduplicated_and_no_candidates_means_every_node() {
    let index = three_nodes();
    let listed = check(
        &index,
        vec![interface("net0", "sriov")],
        &["full", "fine", "full"],
    );
    let names: Vec<&str> = listed.iter().map(|v| v.node.as_str()).collect();
    assert_eq!(names, ["full", "fine"]);
    let all = check(&index, vec![interface("net0", "sriov")], &[]);
    let names: Vec<&str> = all.iter().map(|v| v.node.as_str()).collect();
    assert_eq!(names, ["fine", "full", "lacking"]);
}

#[test]
fn unnamed_interfaces_are_labelled_by_position() {
    let index = three_nodes();
    let mut unnamed = interface("x", "nowhere");
    unnamed.name = None;
    let verdicts = check(&index, vec![interface("net0", "sriov"), unnamed], &["fine"]);
    assert_eq!(verdicts[0].reasons[0].interface.as_deref(), Some("#1"));
}

#[test]
fn reason_codes_are_named_as_the_api_spells_them() {
    assert_eq!(code_name(ReasonCode::NoFreeDevice), "NoFreeDevice");
    assert_eq!(code_name(ReasonCode::NetworkNotOnNode), "NetworkNotOnNode");
    let verdicts = check(&three_nodes(), vec![interface("net0", "sriov")], &[]);
    assert_eq!(summary(&verdicts), "1/3");
    assert_eq!(eligible_nodes(&verdicts), ["fine"]);
}
