//! Networks that cannot share a node ("hostile networks"). On one host libvirt refuses to
//! start a network whose bridge another network already uses, or whose IPv4 or IPv6 subnet
//! overlaps another virtual network's (`networkCheckRouteCollision`, the bridge-in-use check of
//! `networkBridgeNameValidate`). A switchyard Network applies to many nodes at once, so the
//! same clash is decided here per node, the same way for the node agent (which realises the
//! older network and refuses the newer), the admission webhook (which refuses a create or
//! update that would clash) and `kubectl switchyard validate` (clashes between files).
//!
//! Two networks selecting one node clash when
//! - both use the same bridge there and at least one is a virtual network (isolated, nat,
//!   route, open: the node makes its bridge); two host-bridge networks sharing a host bridge
//!   are fine, as in libvirt;
//! - both are virtual networks and an `ips` element of one overlaps one of the other (same
//!   family, one range contains the other's network address).
//!
//! The older network wins: `metadata.creationTimestamp`, then the name for networks created in
//! the same second. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use switchyard_crds::{IpFamily, Network, NodeSelector, SelectorOperator};
use switchyard_libvirt::validate::ip_prefix;
use switchyard_libvirt::values::{mask, parse_ip};

use crate::realisation::{
    NodeRealisation, RealisationKind, bridge_field, is_virtual, realise, selects,
};

/// The reason a node reports for a network the rule refuses there.
pub const NETWORK_CONFLICT: &str = "NetworkConflict";

/// A node the rule decides for: its name (for messages) and labels (for selectors and node
/// groups). An empty name stands for any node with these labels, for checks without a cluster
/// ([`shared_node_labels`]).
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// The node's name, as messages show it.
    pub name: &'a str,
    /// The node's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// One side of a clash: a network and what of it clashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// The network's name.
    pub network: String,
    /// The field of its spec that clashes, e.g. `spec.bridge.name` or `spec.ips[0]`.
    pub field: String,
    /// The bridge name or the subnet (`10.0.0.0/24`), as the message shows it.
    pub value: String,
}

/// What two networks clash over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClashKind {
    /// Both use the same bridge.
    Bridge,
    /// Their subnets overlap.
    Subnet,
}

/// Two networks that cannot both run on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The node, as messages name it: `node 'n1'`, or `a node both select` for a node with no
    /// name.
    pub node: String,
    /// Whether the creation times decided which is older (else the names did: created in the
    /// same second, or not created yet).
    pub by_age: bool,
    /// What they clash over.
    pub kind: ClashKind,
    /// The network that wins: the older one.
    pub older: Side,
    /// The network refused: the newer one.
    pub newer: Side,
}

impl Clash {
    /// The clash as seen from `network` (one of the two): its field first, then the other
    /// network, the node and the reason.
    pub fn message_for(&self, network: &str) -> String {
        let (me, other, age) = if self.newer.network == network {
            (&self.newer, &self.older, "older, ")
        } else {
            (&self.older, &self.newer, "newer, ")
        };
        let age = if self.by_age { age } else { "" };
        let what = match self.kind {
            ClashKind::Bridge => format!(
                "network '{}' uses bridge '{}' on {}, and so does network '{}' ({age}{}); \
                 two networks cannot share a bridge on one node when either is an isolated, nat, \
                 route or open network",
                me.network, me.value, self.node, other.network, other.field
            ),
            ClashKind::Subnet => format!(
                "network '{}' has subnet {} on {}, which overlaps subnet {} of network \
                 '{}' ({age}{}); the virtual networks of one node must have disjoint subnets",
                me.network, me.value, self.node, other.value, other.network, other.field
            ),
        };
        format!("{}: {what}", me.field)
    }

    /// The message the refused (newer) network's node report carries.
    pub fn refusal(&self) -> String {
        let why = if self.by_age {
            "is older"
        } else {
            "was created in the same second and its name sorts first"
        };
        format!(
            "{}; network '{}' {why} and keeps running here",
            self.message_for(&self.newer.network),
            self.older.network
        )
    }
}

/// What of a network on a node can clash: its bridge and, for a virtual network, its subnets.
#[derive(Debug)]
struct Claims<'a> {
    network: &'a Network,
    name: String,
    is_virtual: bool,
    bridge: Side,
    subnets: Vec<(Side, IpAddr, u8)>,
}

/// What `network` claims on `node`; `None` when it does not select the node or makes nothing
/// there (macvtap pools, unsupported modes).
fn claims<'a>(network: &'a Network, node: Node<'_>) -> Option<Claims<'a>> {
    let realisation = realise(network, node.labels)?;
    let RealisationKind::Bridge { bridge } = realisation.kind else {
        return None;
    };
    let name = realisation.network;
    let is_virtual = is_virtual(network);
    let subnets = if is_virtual {
        network
            .spec
            .ips
            .iter()
            .enumerate()
            .filter_map(|(i, ip)| {
                let address = parse_ip(ip.address.as_deref()?)?;
                // A family that contradicts the address is the validator's to refuse.
                if address.is_ipv6() != (ip.family == Some(IpFamily::Ipv6)) {
                    return None;
                }
                let prefix = ip_prefix(ip, address)?;
                let base = mask(address, prefix);
                let side = Side {
                    network: name.clone(),
                    field: format!("spec.ips[{i}]"),
                    value: format!("{base}/{prefix}"),
                };
                Some((side, base, prefix))
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Claims {
        network,
        bridge: Side {
            network: name.clone(),
            field: bridge_field(&network.spec, node.labels, is_virtual),
            value: bridge,
        },
        name,
        is_virtual,
        subnets,
    })
}

/// Whether two ranges of one family overlap: the shorter prefix's range holds both.
fn overlaps((a, a_prefix): (IpAddr, u8), (b, b_prefix): (IpAddr, u8)) -> bool {
    a.is_ipv6() == b.is_ipv6() && {
        let shorter = a_prefix.min(b_prefix);
        mask(a, shorter) == mask(b, shorter)
    }
}

/// The sort key of "older": creation time (none yet, as in a create under review, is newest),
/// then name.
fn age_key(network: &Network) -> (bool, Option<k8s_openapi::jiff::Timestamp>, String) {
    let created = network.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        created.is_none(),
        created,
        network.metadata.name.clone().unwrap_or_default(),
    )
}

/// The first clash between two networks on `node`, older first; `None` when they coexist.
fn clash_between(node: Node<'_>, a: &Claims<'_>, b: &Claims<'_>) -> Option<Clash> {
    let (older, newer) = if age_key(a.network) <= age_key(b.network) {
        (a, b)
    } else {
        (b, a)
    };
    let (older_age, newer_age) = (age_key(older.network).1, age_key(newer.network).1);
    let by_age = older_age.is_some() && newer_age.is_some() && older_age != newer_age;
    let clash = |kind, older: &Side, newer: &Side| Clash {
        node: if node.name.is_empty() {
            "a node both select".to_string()
        } else {
            format!("node '{}'", node.name)
        },
        by_age,
        kind,
        older: older.clone(),
        newer: newer.clone(),
    };
    if (older.is_virtual || newer.is_virtual) && older.bridge.value == newer.bridge.value {
        return Some(clash(ClashKind::Bridge, &older.bridge, &newer.bridge));
    }
    for (newer_side, newer_base, newer_prefix) in &newer.subnets {
        for (older_side, older_base, older_prefix) in &older.subnets {
            if overlaps((*older_base, *older_prefix), (*newer_base, *newer_prefix)) {
                return Some(clash(ClashKind::Subnet, older_side, newer_side));
            }
        }
    }
    None
}

/// The networks refused on `node`, by name, with the clash that refuses each: the networks
/// selecting the node are taken oldest first, and each is refused when it clashes with one
/// already kept (so a network refused itself refuses nothing, and an older network never
/// gives way to a newer one).
pub fn refused(node: Node<'_>, networks: &[&Network]) -> BTreeMap<String, Clash> {
    let mut candidates: Vec<Claims<'_>> = networks
        .iter()
        .filter_map(|network| claims(network, node))
        .collect();
    candidates.sort_by_key(|c| age_key(c.network));
    let mut kept: Vec<&Claims<'_>> = Vec::new();
    let mut refused = BTreeMap::new();
    for candidate in &candidates {
        match kept
            .iter()
            .find_map(|winner| clash_between(node, winner, candidate))
        {
            Some(clash) => {
                refused.insert(candidate.name.clone(), clash);
            }
            None => kept.push(candidate),
        }
    }
    refused
}

/// How each network selecting `node` is realised there, the refused ones
/// ([`refused`]) as [`RealisationKind::Unsupported`] with reason [`NETWORK_CONFLICT`]: what the
/// node agent reports, realises ports on and makes bridges for.
pub fn realise_on_node(node: Node<'_>, networks: &[&Network]) -> Vec<NodeRealisation> {
    let refused = refused(node, networks);
    networks
        .iter()
        .filter_map(|network| realise(network, node.labels))
        .map(|mut realisation| {
            if let Some(clash) = refused.get(&realisation.network) {
                realisation.kind = RealisationKind::Unsupported {
                    reason: NETWORK_CONFLICT,
                    message: clash.refusal(),
                };
            }
            realisation
        })
        .collect()
}

/// Every clash between `network` and `others` on `node`, whichever is older (the admission
/// webhook refuses both a new network that clashes and a change that would make one clash).
/// `others` may include `network` itself (by name), which is skipped.
pub fn clashes_with(node: Node<'_>, network: &Network, others: &[&Network]) -> Vec<Clash> {
    let Some(mine) = claims(network, node) else {
        return Vec::new();
    };
    others
        .iter()
        .filter(|other| other.metadata.name != network.metadata.name)
        .filter_map(|other| claims(other, node))
        .filter_map(|other| clash_between(node, &mine, &other))
        .collect()
}

/// Labels of a node both selectors select, when one is easy to find: the union of their
/// `matchLabels`, `In` (first value) and `Exists` requirements, checked against both. `None`
/// when none is found this way (their selectors may still overlap through `NotIn` and
/// `DoesNotExist`, which this never fills in). For checks without a cluster, such as
/// `kubectl switchyard validate` over several files.
pub fn shared_node_labels(a: &Network, b: &Network) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let selectors = [&a.spec.node_selector, &b.spec.node_selector];
    for selector in selectors.into_iter().flatten() {
        add_labels(selector, &mut labels)?;
    }
    (selects(&a.spec, &labels) && selects(&b.spec, &labels)).then_some(labels)
}

fn add_labels(selector: &NodeSelector, labels: &mut BTreeMap<String, String>) -> Option<()> {
    for (key, value) in &selector.match_labels {
        match labels.get(key) {
            Some(other) if other != value => return None,
            _ => {
                labels.insert(key.clone(), value.clone());
            }
        }
    }
    for requirement in &selector.match_expressions {
        let value = match requirement.operator {
            SelectorOperator::In => requirement.values.first()?.clone(),
            SelectorOperator::Exists => String::new(),
            SelectorOperator::NotIn | SelectorOperator::DoesNotExist => continue,
        };
        labels.entry(requirement.key.clone()).or_insert(value);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labels;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use switchyard_crds::{Bridge, Forward, ForwardMode, IpConfig, NetworkSpec, NodeGroup};

    /// A network created `second` seconds after the epoch.
    fn network(name: &str, second: i64, spec: NetworkSpec) -> Network {
        let mut network = Network::new(name, spec);
        network.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
        ));
        network
    }

    fn ip(address: &str, prefix: u8) -> IpConfig {
        IpConfig {
            family: address.contains(':').then_some(IpFamily::Ipv6),
            address: Some(address.into()),
            prefix: Some(prefix),
            ..Default::default()
        }
    }

    fn nat(bridge: Option<&str>, ips: Vec<IpConfig>) -> NetworkSpec {
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Nat,
                ..Default::default()
            }),
            bridge: bridge.map(|name| Bridge {
                name: Some(name.into()),
                ..Default::default()
            }),
            ips,
            ..Default::default()
        }
    }

    fn host_bridge(bridge: &str) -> NetworkSpec {
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Bridge,
                ..Default::default()
            }),
            bridge: Some(Bridge {
                name: Some(bridge.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn on_rack_a() -> Option<NodeSelector> {
        Some(NodeSelector {
            match_labels: labels(&[("rack", "a")]),
            ..Default::default()
        })
    }

    const NO_LABELS: &BTreeMap<String, String> = &BTreeMap::new();

    fn node(labels: &BTreeMap<String, String>) -> Node<'_> {
        Node { name: "n1", labels }
    }

    #[test]
    fn the_newer_of_two_networks_on_one_bridge_is_refused() {
        let a = network("a", 10, nat(Some("virbr5"), vec![ip("10.1.0.1", 24)]));
        let b = network("b", 20, nat(Some("virbr5"), vec![ip("10.2.0.1", 24)]));
        // Order of the input does not matter: age does.
        let refused = refused(node(NO_LABELS), &[&b, &a]);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["b"]);
        let clash = &refused["b"];
        assert_eq!(clash.kind, ClashKind::Bridge);
        assert_eq!(clash.older.network, "a");
        assert_eq!(clash.newer.field, "spec.bridge.name");
        let message = clash.refusal();
        for part in ["'a'", "'b'", "'n1'", "'virbr5'", "spec.bridge.name"] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn a_virtual_network_on_a_host_bridge_clashes_and_two_host_bridge_networks_do_not() {
        let lan = network("lan", 10, host_bridge("br0"));
        let lan_too = network("lan-too", 15, host_bridge("br0"));
        let nat_on_br0 = network("nat", 20, nat(Some("br0"), vec![ip("10.1.0.1", 24)]));
        let refused = refused(node(NO_LABELS), &[&lan, &lan_too, &nat_on_br0]);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["nat"]);
        assert_eq!(refused["nat"].older.network, "lan");

        // The host-bridge network's node group names the bridge on its nodes: the field says so.
        let mut grouped = host_bridge("br-other");
        grouped.node_groups = vec![NodeGroup {
            name: "rack-a".into(),
            node_selector: on_rack_a().unwrap(),
            bridge: Some("br0".into()),
            ..Default::default()
        }];
        let grouped = network("grouped", 30, grouped);
        let rack_a = labels(&[("rack", "a")]);
        let refused = super::refused(node(&rack_a), &[&grouped, &nat_on_br0]);
        assert_eq!(refused["grouped"].newer.field, "spec.nodeGroups[0].bridge");
        assert_eq!(refused["grouped"].older.network, "nat");
        // Elsewhere the group does not apply: br-other, no clash.
        assert!(super::refused(node(NO_LABELS), &[&grouped, &nat_on_br0]).is_empty());
    }

    #[test]
    fn overlapping_ipv4_subnets_clash_and_disjoint_ones_do_not() {
        let a = network("a", 10, nat(None, vec![ip("10.1.0.1", 16)]));
        let b = network(
            "b",
            20,
            nat(None, vec![ip("192.168.9.1", 24), ip("10.1.7.1", 24)]),
        );
        let c = network("c", 30, nat(None, vec![ip("10.2.0.1", 16)]));
        let refused = refused(node(NO_LABELS), &[&a, &b, &c]);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["b"]);
        let clash = &refused["b"];
        assert_eq!(clash.kind, ClashKind::Subnet);
        assert_eq!(clash.newer.field, "spec.ips[1]");
        assert_eq!(clash.newer.value, "10.1.7.0/24");
        assert_eq!(clash.older.value, "10.1.0.0/16");
        let message = clash.refusal();
        for part in [
            "'a'",
            "'b'",
            "'n1'",
            "10.1.7.0/24",
            "10.1.0.0/16",
            "spec.ips[1]",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        // A netmask counts as its prefix.
        let masked = IpConfig {
            address: Some("10.2.200.1".into()),
            netmask: Some("255.255.255.0".into()),
            ..Default::default()
        };
        let d = network("d", 40, nat(None, vec![masked]));
        assert_eq!(
            super::refused(node(NO_LABELS), &[&c, &d])["d"].newer.value,
            "10.2.200.0/24"
        );
    }

    #[test]
    fn overlapping_ipv6_subnets_clash_and_families_never_do() {
        let a = network("a", 10, nat(None, vec![ip("fd00:1::1", 48)]));
        let b = network("b", 20, nat(None, vec![ip("fd00:1:0:5::1", 64)]));
        let c = network(
            "c",
            30,
            nat(None, vec![ip("fd00:2::1", 64), ip("10.1.0.1", 8)]),
        );
        let refused = refused(node(NO_LABELS), &[&a, &b, &c]);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(refused["b"].newer.value, "fd00:1:0:5::/64");
        assert_eq!(refused["b"].older.value, "fd00:1::/48");
    }

    #[test]
    fn networks_on_different_nodes_coexist() {
        let mut a = nat(Some("virbr5"), vec![ip("10.1.0.1", 24)]);
        a.node_selector = on_rack_a();
        let a = network("a", 10, a);
        let b = network("b", 20, nat(Some("virbr5"), vec![ip("10.1.0.1", 24)]));
        let rack_b = labels(&[("rack", "b")]);
        assert!(refused(node(&rack_b), &[&a, &b]).is_empty());
        let rack_a = labels(&[("rack", "a")]);
        assert_eq!(refused(node(&rack_a), &[&a, &b]).len(), 1);
    }

    #[test]
    fn age_decides_then_the_name() {
        let a = network("a", 20, nat(Some("virbr5"), vec![]));
        let b = network("b", 10, nat(Some("virbr5"), vec![]));
        assert!(refused(node(NO_LABELS), &[&a, &b]).contains_key("a"));
        let a = network("a", 10, nat(Some("virbr5"), vec![]));
        assert!(refused(node(NO_LABELS), &[&b, &a]).contains_key("b"));
        let tie = network("b", 10, nat(Some("virbr5"), vec![]));
        let clash = &refused(node(NO_LABELS), &[&tie, &a])["b"];
        assert!(!clash.by_age && clash.refusal().contains("same second"));
        assert!(!clash.message_for("b").contains("older"), "{clash:?}");
        let later = network("c", 30, nat(Some("virbr5"), vec![]));
        assert!(refused(node(NO_LABELS), &[&later, &a])["c"].by_age);
        // A network not created yet (under admission) is the newest.
        let mut new = network("0-new", 0, nat(Some("virbr5"), vec![]));
        new.metadata.creation_timestamp = None;
        assert!(refused(node(NO_LABELS), &[&new, &b]).contains_key("0-new"));
    }

    #[test]
    fn a_refused_network_refuses_nothing() {
        let a = network("a", 10, nat(None, vec![ip("10.1.0.1", 24)]));
        let b = network("b", 20, nat(None, vec![ip("10.1.0.1", 16)]));
        let c = network("c", 30, nat(None, vec![ip("10.1.200.1", 24)]));
        // b is refused for a; c overlaps only b, which does not run: c runs.
        let refused = refused(node(NO_LABELS), &[&a, &b, &c]);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn refused_networks_are_realised_as_conflicts() {
        let a = network("a", 10, nat(Some("virbr5"), vec![]));
        let b = network("b", 20, nat(Some("virbr5"), vec![]));
        let realised = realise_on_node(node(NO_LABELS), &[&a, &b]);
        assert!(matches!(
            &realised[0].kind,
            RealisationKind::Bridge { bridge } if bridge == "virbr5"
        ));
        assert!(matches!(
            &realised[1].kind,
            RealisationKind::Unsupported { reason: NETWORK_CONFLICT, message } if message.contains("'a'")
        ));
    }

    #[test]
    fn the_webhook_sees_clashes_either_way() {
        let a = network("a", 10, nat(None, vec![ip("10.1.0.1", 24)]));
        let mut b = network("b", 20, nat(None, vec![ip("10.1.0.1", 24)]));
        assert_eq!(clashes_with(node(NO_LABELS), &a, &[&a, &b]).len(), 1);
        let clashes = clashes_with(node(NO_LABELS), &b, &[&a, &b]);
        assert_eq!(clashes.len(), 1);
        let message = clashes[0].message_for("b");
        assert!(message.starts_with("spec.ips[0]: network 'b'"), "{message}");
        b.spec.ips = vec![ip("10.3.0.1", 24)];
        assert!(clashes_with(node(NO_LABELS), &b, &[&a]).is_empty());
    }

    #[test]
    fn a_shared_node_is_found_from_both_selectors() {
        let mut a = NetworkSpec {
            node_selector: on_rack_a(),
            ..Default::default()
        };
        let b = network("b", 0, NetworkSpec::default());
        assert_eq!(
            shared_node_labels(&network("a", 0, a.clone()), &b),
            Some(labels(&[("rack", "a")]))
        );
        let mut c = a.clone();
        c.node_selector = Some(NodeSelector {
            match_labels: labels(&[("rack", "b")]),
            ..Default::default()
        });
        assert_eq!(
            shared_node_labels(&network("a", 0, a.clone()), &network("c", 0, c)),
            None
        );
        a.node_selector.as_mut().unwrap().match_expressions =
            vec![switchyard_crds::NodeSelectorRequirement {
                key: "gpu".into(),
                operator: SelectorOperator::DoesNotExist,
                values: vec![],
            }];
        let gpu = NetworkSpec {
            node_selector: Some(NodeSelector {
                match_expressions: vec![switchyard_crds::NodeSelectorRequirement {
                    key: "gpu".into(),
                    operator: SelectorOperator::Exists,
                    values: vec![],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            shared_node_labels(&network("a", 0, a), &network("gpu", 0, gpu)),
            None
        );
    }
}
