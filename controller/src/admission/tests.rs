use std::sync::Arc;

use switchyard_crds::{
    Forward, ForwardInterface, ForwardMode, NetworkNodeStatus, NetworkPortSpec, NetworkPortStatus,
    NodeGroup, NodeNetwork, NodeSelector, PoolDevice, PortActual, PortGroup, VirtualPort,
    VirtualPortType,
};

use super::*;
use switchyard_placement::index::{AgentReport, NodeInfo};

fn pool(devs: &[&str]) -> Vec<ForwardInterface> {
    devs.iter()
        .map(|d| ForwardInterface { dev: d.to_string() })
        .collect()
}

fn vepa(pool_devs: &[&str]) -> Network {
    let mut network = Network::new(
        "vepa",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Vepa,
                interfaces: pool(pool_devs),
                ..Default::default()
            }),
            virtualport: Some(VirtualPort {
                kind: Some(VirtualPortType::Qbg),
                managerid: Some(1),
                typeid: Some(100),
                typeidversion: Some(1),
                ..Default::default()
            }),
            portgroups: vec![
                PortGroup {
                    name: "gold".into(),
                    ..Default::default()
                },
                PortGroup {
                    name: "silver".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    network.metadata.name = Some("vepa".into());
    network
}

fn port(name: &str, node: &str) -> NetworkPort {
    let mut port = NetworkPort::new(
        name,
        NetworkPortSpec {
            network: "vepa".into(),
            node: node.into(),
            mac: "52:54:00:00:00:01".into(),
            ..Default::default()
        },
    );
    port.metadata.namespace = Some("vms".into());
    port
}

fn live(name: &str, node: &str, portgroup: Option<&str>, device: &str) -> PortUse {
    let mut p = port(name, node);
    p.spec.portgroup = portgroup.map(str::to_string);
    p.status = Some(NetworkPortStatus {
        actual: Some(PortActual {
            device: Some(device.into()),
            portgroup: portgroup.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    });
    PortUse::from_port(&p)
}

fn index_with(network: Network) -> Index {
    let mut index = Index::new();
    index.upsert_network(Arc::new(network));
    for node in ["a", "b"] {
        index.upsert_node(
            node,
            NodeInfo {
                labels: [("rack".to_string(), node.to_string())].into(),
                ready: true,
                ..Default::default()
            },
        );
        let status = NetworkNodeStatus {
            networks: vec![NodeNetwork {
                name: "vepa".into(),
                ready: true,
                devices: vec![PoolDevice {
                    name: "eth1".into(),
                    present: true,
                    connections: if node == "b" { 64 } else { 0 },
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        index.upsert_agent(
            node,
            AgentReport {
                ready: true,
                not_ready_reason: String::new(),
                networks: status
                    .networks
                    .into_iter()
                    .map(|n| (n.name.clone(), n))
                    .collect(),
            },
        );
    }
    index
}

fn denied(decision: Decision) -> Denial {
    match decision {
        Decision::Deny(denial) => denial,
        Decision::Allow => panic!("expected a denial"),
    }
}

#[test]
fn a_network_whose_forward_dev_is_not_the_pools_first_is_invalid() {
    let mut network = vepa(&["eth1", "eth2"]);
    network.spec.forward.as_mut().unwrap().dev = Some("eth9".into());
    let denial = denied(review_network(&Index::new(), &network, None));
    assert_eq!((denial.code, denial.reason), (422, "Invalid"));
    assert!(
        denial
            .message
            .starts_with("Network \"vepa\" is invalid: spec.forward.")
            && denial
                .message
                .contains("forward dev 'eth9' must match the first pool interface"),
        "{}",
        denial.message
    );
    assert!(review_network(&Index::new(), &vepa(&["eth1"]), None) == Decision::Allow);
}

#[test]
fn metadata_only_updates_of_an_invalid_network_pass() {
    let mut old = vepa(&["eth1", "eth2"]);
    old.spec.forward.as_mut().unwrap().dev = Some("eth9".into());
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some([("team".to_string(), "net".to_string())].into());
    assert_eq!(
        review_network(&Index::new(), &relabelled, Some(&old)),
        Decision::Allow
    );
    let mut changed = relabelled.clone();
    changed.spec.mtu = Some(9000);
    assert!(matches!(
        review_network(&Index::new(), &changed, Some(&old)),
        Decision::Deny(_)
    ));
}

#[test]
fn removing_a_portgroup_live_ports_use_is_refused_naming_them() {
    let mut index = index_with(vepa(&["eth1"]));
    index.upsert_port(live("p1", "a", Some("gold"), "eth1"));
    index.upsert_port(live("p2", "a", Some("silver"), "eth1"));
    let old = vepa(&["eth1"]);
    let mut new = old.clone();
    new.spec.portgroups.retain(|p| p.name == "silver");
    let denial = denied(review_network(&index, &new, Some(&old)));
    assert_eq!((denial.code, denial.reason), (403, "Forbidden"));
    assert_eq!(
        denial.message,
        "Network \"vepa\" cannot be changed this way: portgroup \"gold\" is used by live port(s) vms/p1; delete or move those ports first"
    );
    // Removing an unused one is fine.
    let mut unused = old.clone();
    unused.spec.portgroups.push(PortGroup {
        name: "bronze".into(),
        ..Default::default()
    });
    assert_eq!(review_network(&index, &old, Some(&unused)), Decision::Allow);
}

#[test]
fn removing_a_pool_device_live_ports_use_is_refused_per_node() {
    let mut index = index_with(vepa(&["eth1", "eth2"]));
    index.upsert_port(live("p1", "a", None, "eth2"));
    index.upsert_port(live("p2", "b", None, "eth1"));
    let old = vepa(&["eth1", "eth2"]);
    let denial = denied(review_network(&index, &vepa(&["eth1"]), Some(&old)));
    assert!(
        denial
            .message
            .contains("pool device \"eth2\" on node \"a\" is used by live port(s) vms/p1"),
        "{}",
        denial.message
    );

    // On node b a node group supplies the pool: eth2 was never b's, eth1 leaves b's pool.
    let mut grouped_old = old.clone();
    grouped_old.spec.node_groups = vec![NodeGroup {
        name: "rack-b".into(),
        node_selector: NodeSelector {
            match_labels: [("rack".to_string(), "b".to_string())].into(),
            ..Default::default()
        },
        interfaces: pool(&["eth1", "eth7"]),
        ..Default::default()
    }];
    let mut grouped_new = grouped_old.clone();
    grouped_new.spec.node_groups[0].interfaces = pool(&["eth7"]);
    let mut index = index_with(grouped_old.clone());
    index.upsert_port(live("p2", "b", None, "eth1"));
    let denial = denied(review_network(&index, &grouped_new, Some(&grouped_old)));
    assert!(
        denial.message.contains("\"eth1\" on node \"b\""),
        "{}",
        denial.message
    );
    assert!(!denial.message.contains("node \"a\""), "{}", denial.message);
}

#[test]
fn a_port_with_a_virtualport_conflict_is_invalid() {
    let index = index_with(vepa(&["eth1"]));
    let mut p = port("p1", "a");
    p.spec.virtualport = Some(VirtualPort {
        typeid: Some(200),
        ..Default::default()
    });
    let denial = denied(review_port(&index, &p, None));
    assert_eq!(denial.code, 422);
    assert!(
        denial.message.starts_with(
            "NetworkPort \"vms/p1\" cannot attach to network \"vepa\": [MergeConflict] virtualport typeid conflicts: 200 from the port but 100 from the network"
        ),
        "{}",
        denial.message
    );
}

#[test]
fn a_port_for_a_node_without_room_fails_with_the_check_reasons() {
    let index = index_with(vepa(&["eth1"]));
    assert_eq!(review_port(&index, &port("p1", "a"), None), Decision::Allow);
    let denial = denied(review_port(&index, &port("p1", "b"), None));
    assert_eq!((denial.code, denial.reason), (403, "Forbidden"));
    assert!(
        denial.message.starts_with(
            "NetworkPort \"vms/p1\" cannot be placed on node \"b\": [CapacityExhausted] network \"vepa\" on node \"b\""
        ),
        "{}",
        denial.message
    );
    let denial = denial_for(&index, port("p1", "nowhere"));
    assert!(
        denial.contains("[NodeNotFound] node \"nowhere\" does not exist"),
        "{denial}"
    );
}

fn denial_for(index: &Index, port: NetworkPort) -> String {
    denied(review_port(index, &port, None)).message
}

#[test]
fn a_port_naming_a_missing_network_or_portgroup_is_refused() {
    let index = index_with(vepa(&["eth1"]));
    let mut p = port("p1", "a");
    p.spec.network = "other".into();
    assert!(denial_for(&index, p).contains("network \"other\" does not exist"));
    let mut p = port("p1", "a");
    p.spec.portgroup = Some("platinum".into());
    let message = denial_for(&index, p);
    assert!(
        message.contains("[PortgroupNotFound] portgroup 'platinum' does not exist"),
        "{message}"
    );
}

#[test]
fn port_updates_are_checked_only_when_the_spec_changes() {
    let mut index = index_with(vepa(&["eth1"]));
    let old = port("p1", "b");
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    // Node b is full, but the port is already there: its own updates must pass.
    assert_eq!(
        review_port(&index, &relabelled, Some(&old)),
        Decision::Allow
    );
    // Even once the network is gone (the agent removes its finalizer then).
    index.remove_network("vepa");
    assert_eq!(
        review_port(&index, &relabelled, Some(&old)),
        Decision::Allow
    );
    // The owner is not realised: it may change.
    let mut owned = old.clone();
    owned.spec.owner = Some(switchyard_crds::PortOwner {
        name: "vm1".into(),
        ..Default::default()
    });
    assert_eq!(review_port(&index, &owned, Some(&old)), Decision::Allow);
}

#[test]
fn a_ports_realised_spec_is_immutable_naming_each_changed_field() {
    let index = index_with(vepa(&["eth1"]));
    let old = port("p1", "a");
    let mut moved = old.clone();
    moved.spec.node = "b".into();
    moved.spec.network = "other".into();
    let denial = denied(review_port(&index, &moved, Some(&old)));
    assert_eq!((denial.code, denial.reason), (422, "Invalid"));
    assert_eq!(
        denial.message,
        "NetworkPort \"vms/p1\" is invalid: spec.network, spec.node cannot change once the port exists, as its node's agent realised the port from its spec; delete the port and create it again with the new value"
    );
    let mut changed = old.clone();
    changed.spec.portgroup = Some("gold".into());
    changed.spec.mac = "52:54:00:00:00:02".into();
    let message = denied(review_port(&index, &changed, Some(&old))).message;
    assert!(
        message.contains("spec.mac, spec.portgroup cannot change"),
        "{message}"
    );
}

#[test]
fn network_names_must_fit_in_labels_and_resource_names() {
    let mut long = vepa(&["eth1"]);
    long.metadata.name = Some("n".repeat(64));
    let denial = denied(review_network(&Index::new(), &long, None));
    assert_eq!(denial.code, 422);
    assert!(
        denial.message.contains("metadata.name"),
        "{}",
        denial.message
    );
    assert!(
        denial.message.contains("63 characters"),
        "{}",
        denial.message
    );
    let mut fits = vepa(&["eth1"]);
    fits.metadata.name = Some("n".repeat(63));
    assert!(review_network(&Index::new(), &fits, None) == Decision::Allow);
}

/// A line break in a value written into dnsmasq's files (CVE-2026-61477) is refused, naming
/// the field.
#[test]
fn a_dns_value_with_a_line_break_is_invalid() {
    let mut network = Network::new(
        "isolated",
        NetworkSpec {
            dns: Some(switchyard_crds::Dns {
                txts: vec![switchyard_crds::DnsTxt {
                    name: "example".into(),
                    value: "x\ndhcp-script=/tmp/own".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    network.metadata.name = Some("isolated".into());
    let denial = denied(review_network(&Index::new(), &network, None));
    assert_eq!((denial.code, denial.reason), (422, "Invalid"));
    assert!(
        denial
            .message
            .contains("spec.dns.txts[0].value: must not contain a line break"),
        "{}",
        denial.message
    );
}

fn nat(name: &str, bridge: &str, address: &str) -> Network {
    let mut network = Network::new(
        name,
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Nat,
                ..Default::default()
            }),
            bridge: Some(switchyard_crds::Bridge {
                name: Some(bridge.into()),
                ..Default::default()
            }),
            ips: vec![switchyard_crds::IpConfig {
                address: Some(address.into()),
                prefix: Some(24),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    network.metadata.name = Some(name.into());
    network
}

#[test]
fn a_network_that_clashes_on_a_shared_node_is_refused_once_per_clash() {
    let mut index = Index::new();
    for node in ["n1", "n2"] {
        index.upsert_node(
            node,
            NodeInfo {
                ready: true,
                ..Default::default()
            },
        );
    }
    index.upsert_network(Arc::new(nat("a", "virbr5", "10.1.0.1")));
    let denial = denied(review_network(
        &index,
        &nat("b", "virbr6", "10.1.0.7"),
        None,
    ));
    assert_eq!(denial.code, 403);
    assert!(
        denial
            .message
            .contains("spec.ips[0]: network 'b' has subnet 10.1.0.0/24 on node 'n1'")
            && denial.message.contains("network 'a'")
            && denial.message.contains("(and on 1 more node(s))"),
        "{}",
        denial.message
    );
    let denial = denied(review_network(
        &index,
        &nat("b", "virbr5", "10.2.0.1"),
        None,
    ));
    assert!(
        denial
            .message
            .contains("spec.bridge.name: network 'b' uses bridge 'virbr5'"),
        "{}",
        denial.message
    );
    assert_eq!(
        review_network(&index, &nat("b", "virbr6", "10.2.0.1"), None),
        Decision::Allow
    );
    // An update that leaves the spec alone passes even where networks already clash (stored
    // before the webhook existed); the network itself is never its own clash.
    let clashing = nat("b", "virbr5", "10.1.0.1");
    index.upsert_network(Arc::new(clashing.clone()));
    assert_eq!(
        review_network(&index, &clashing, Some(&clashing)),
        Decision::Allow
    );
    // Changing a's subnet still leaves it on b's bridge: refused, though a is the older.
    assert_ne!(
        review_network(
            &index,
            &nat("a", "virbr5", "10.3.0.1"),
            Some(&nat("a", "virbr5", "10.1.0.1"))
        ),
        Decision::Allow
    );
}
