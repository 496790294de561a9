//! How a `Network` is realised on one node: which devices or bridge it uses there, given the
//! node's labels (its selector and the spec's node groups). Pure.

use std::collections::BTreeMap;

use switchyard_crds::{ForwardMode, MacvtapMode, Network, NetworkSpec, NodeGroup};

use crate::exclusive::network_is_exclusive;
use crate::kernel::MAX_BRIDGE_PORTS;

/// A network as this node realises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRealisation {
    /// The network's name.
    pub network: String,
    /// How ports are made.
    pub kind: RealisationKind,
}

/// How the node makes a network's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealisationKind {
    /// macvtap links in `mode` on the pool devices, in pool order.
    Macvtap {
        /// The macvtap mode.
        mode: MacvtapMode,
        /// The pool on this node.
        pool: Vec<String>,
        /// How many ports one device may carry in shared modes.
        max_connections_per_device: u32,
        /// Whether every port needs a device of its own
        /// ([`network_is_exclusive`]): then a device carries one port.
        exclusive: bool,
    },
    /// veth pairs attached to a host bridge.
    Bridge {
        /// The bridge on this node.
        bridge: String,
    },
    /// The network selects the node but switchyard cannot realise it here.
    Unsupported {
        /// CamelCase reason for the node's report.
        reason: &'static str,
        /// What exactly is missing.
        message: String,
    },
}

impl NodeRealisation {
    /// The devices ports are counted on: the pool, or the bridge.
    pub fn devices(&self) -> Vec<&str> {
        match &self.kind {
            RealisationKind::Macvtap { pool, .. } => pool.iter().map(String::as_str).collect(),
            RealisationKind::Bridge { bridge } => vec![bridge.as_str()],
            RealisationKind::Unsupported { .. } => Vec::new(),
        }
    }
}

/// Whether a network selects a node with these labels. No selector selects every node.
pub fn selects(spec: &NetworkSpec, labels: &BTreeMap<String, String>) -> bool {
    spec.node_selector
        .as_ref()
        .is_none_or(|selector| selector.matches(labels))
}

/// The node group that applies on a node: the first whose selector matches.
fn node_group<'a>(
    spec: &'a NetworkSpec,
    labels: &BTreeMap<String, String>,
) -> Option<&'a NodeGroup> {
    spec.node_groups
        .iter()
        .find(|group| group.node_selector.matches(labels))
}

/// The spec field naming a network's bridge on a node with these labels: the first matching
/// node group's `bridge` when it sets one (host-bridge networks only: a virtual network's
/// bridge is the same on every node), else `spec.bridge.name`.
pub(crate) fn bridge_field(
    spec: &NetworkSpec,
    labels: &BTreeMap<String, String>,
    is_virtual: bool,
) -> String {
    let group = spec
        .node_groups
        .iter()
        .position(|group| group.node_selector.matches(labels));
    match group {
        Some(i) if !is_virtual && spec.node_groups[i].bridge.is_some() => {
            format!("spec.nodeGroups[{i}].bridge")
        }
        _ => "spec.bridge.name".to_string(),
    }
}

/// A network's device pool on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodePool<'a> {
    /// Devices by name, in pool order (possibly none).
    Devices(Vec<&'a str>),
    /// The virtual functions of this physical function, which the spec does not name.
    VirtualFunctions(&'a str),
}

/// The node group's interfaces, else its physical function, else the spec's
/// `forward.interfaces`, else its `forward.dev`, else its physical function.
fn node_pool<'a>(spec: &'a NetworkSpec, group: Option<&'a NodeGroup>) -> NodePool<'a> {
    if let Some(group) = group {
        if !group.interfaces.is_empty() {
            return NodePool::Devices(group.interfaces.iter().map(|i| i.dev.as_str()).collect());
        }
        if let Some(pf) = &group.pf {
            return NodePool::VirtualFunctions(pf);
        }
    }
    let Some(forward) = &spec.forward else {
        return NodePool::Devices(Vec::new());
    };
    let named: Vec<&str> = if forward.interfaces.is_empty() {
        forward.dev.iter().map(String::as_str).collect()
    } else {
        forward.interfaces.iter().map(|i| i.dev.as_str()).collect()
    };
    match &forward.pf {
        Some(pf) if named.is_empty() => NodePool::VirtualFunctions(pf),
        _ => NodePool::Devices(named),
    }
}

/// The pool devices of a network on a node with these labels. `None` when the pool there is
/// a physical function's virtual functions, whose names the spec does not give.
pub fn pool_on_node<'a>(
    spec: &'a NetworkSpec,
    labels: &BTreeMap<String, String>,
) -> Option<Vec<&'a str>> {
    match node_pool(spec, node_group(spec, labels)) {
        NodePool::Devices(devices) => Some(devices),
        NodePool::VirtualFunctions(_) => None,
    }
}

/// How `network` is realised on a node with `labels`; `None` when it does not select the node.
pub fn realise(network: &Network, labels: &BTreeMap<String, String>) -> Option<NodeRealisation> {
    let spec = &network.spec;
    if !selects(spec, labels) {
        return None;
    }
    let name = network.metadata.name.clone().unwrap_or_default();
    if is_virtual(network) {
        // Isolated, nat, route and open networks: the node makes the bridge itself (see
        // the node agent's `virtual_network`), and ports attach to it as to a host bridge.
        return Some(NodeRealisation {
            kind: RealisationKind::Bridge {
                bridge: virtual_bridge_name(network),
            },
            network: name,
        });
    }
    Some(NodeRealisation {
        kind: kind_on_node(&name, spec, node_group(spec, labels)),
        network: name,
    })
}

/// What the network uses on the nodes no node group overrides, for people reading its
/// status: `bridge br0`, `pool of 2` (macvtap over two devices), or `unsupported (NoPool)`;
/// with ` +N node groups` when some nodes use other devices.
pub fn uses(network: &Network) -> String {
    let name = network.metadata.name.clone().unwrap_or_default();
    let kind = if is_virtual(network) {
        RealisationKind::Bridge {
            bridge: virtual_bridge_name(network),
        }
    } else {
        kind_on_node(&name, &network.spec, None)
    };
    let mut text = match kind {
        RealisationKind::Bridge { bridge } => format!("bridge {bridge}"),
        RealisationKind::Macvtap { pool, .. } => format!("pool of {}", pool.len()),
        RealisationKind::Unsupported { reason, .. } => format!("unsupported ({reason})"),
    };
    match network.spec.node_groups.len() {
        0 => {}
        1 => text.push_str(" +1 node group"),
        groups => text.push_str(&format!(" +{groups} node groups")),
    }
    text
}

fn kind_on_node(name: &str, spec: &NetworkSpec, group: Option<&NodeGroup>) -> RealisationKind {
    let unsupported = |reason, message: String| RealisationKind::Unsupported { reason, message };
    let Some(forward) = &spec.forward else {
        return unsupported(
            "UnsupportedMode",
            format!(
                "network '{name}' is isolated (no <forward>): it needs libvirt's own bridge, which switchyard does not create"
            ),
        );
    };
    let bridge_name = group
        .and_then(|g| g.bridge.clone())
        .or_else(|| spec.bridge.as_ref().and_then(|b| b.name.clone()));
    let mode = match forward.mode {
        ForwardMode::Bridge if bridge_name.is_some() => {
            return RealisationKind::Bridge {
                bridge: bridge_name.unwrap_or_default(),
            };
        }
        ForwardMode::Bridge => MacvtapMode::Bridge,
        ForwardMode::Vepa => MacvtapMode::Vepa,
        ForwardMode::Private => MacvtapMode::Private,
        ForwardMode::Passthrough => MacvtapMode::Passthrough,
        other => {
            return unsupported(
                "UnsupportedMode",
                format!(
                    "network '{name}' uses forward mode '{}', which needs libvirt's own bridge, NAT or PCI passthrough; switchyard realises bridge, vepa, private and passthrough networks",
                    other.as_str()
                ),
            );
        }
    };
    let pool = match node_pool(spec, group) {
        NodePool::Devices(devices) if !devices.is_empty() => devices,
        NodePool::Devices(_) => {
            return unsupported(
                "NoPool",
                format!(
                    "network '{name}' uses a direct mode, but has no forward dev and no interface pool"
                ),
            );
        }
        NodePool::VirtualFunctions(pf) => {
            return unsupported(
                "NoPool",
                format!(
                    "network '{name}' takes its pool from the virtual functions of physical function '{pf}'; list them under forward.interfaces (or a node group)"
                ),
            );
        }
    };
    RealisationKind::Macvtap {
        mode,
        pool: pool.into_iter().map(str::to_string).collect(),
        max_connections_per_device: spec.max_connections_per_device(),
        exclusive: network_is_exclusive(spec),
    }
}

/// How many ports a bridge network can carry on one node.
pub const fn bridge_capacity() -> u32 {
    MAX_BRIDGE_PORTS
}

/// The prefix of the bridge names a node picks for an isolated, nat, route or open network
/// that names none (libvirt picks `virbrN`; a name derived from the UID is the same on every
/// node and after a restart).
pub const DERIVED_BRIDGE_PREFIX: &str = "sybr";

/// Whether the network is isolated, nat, route or open: one whose bridge each node makes.
pub fn is_virtual(network: &Network) -> bool {
    matches!(
        network.spec.forward.as_ref().map(|f| f.mode),
        None | Some(ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open)
    )
}

/// The bridge of an isolated, nat, route or open network on every node: `spec.bridge.name`,
/// else [`derived_bridge_name`] of its UID (its name for an object not from the apiserver).
pub fn virtual_bridge_name(network: &Network) -> String {
    network
        .spec
        .bridge
        .as_ref()
        .and_then(|b| b.name.clone())
        .unwrap_or_else(|| {
            let uid = network
                .metadata
                .uid
                .as_deref()
                .or(network.metadata.name.as_deref())
                .unwrap_or_default();
            derived_bridge_name(uid)
        })
}

/// [`DERIVED_BRIDGE_PREFIX`] and 8 hex digits of the FNV-1a hash of `uid` (12 characters,
/// within the kernel's 15).
pub fn derived_bridge_name(uid: &str) -> String {
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{DERIVED_BRIDGE_PREFIX}{:08x}", hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labels;
    use switchyard_crds::{Bridge, Forward, ForwardInterface, NodeGroup, NodeSelector};

    fn network(spec: NetworkSpec) -> Network {
        Network::new("net", spec)
    }

    fn forward(mode: ForwardMode, devs: &[&str]) -> Option<Forward> {
        Some(Forward {
            mode,
            interfaces: devs
                .iter()
                .map(|d| ForwardInterface { dev: d.to_string() })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn unselected_nodes_do_not_realise_the_network() {
        let net = network(NetworkSpec {
            node_selector: Some(NodeSelector {
                match_labels: labels(&[("rack", "a")]),
                ..Default::default()
            }),
            forward: forward(ForwardMode::Vepa, &["eth1"]),
            ..Default::default()
        });
        assert_eq!(realise(&net, &labels(&[("rack", "b")])), None);
        assert!(realise(&net, &labels(&[("rack", "a")])).is_some());
    }

    #[test]
    fn macvtap_modes_use_the_pool_or_forward_dev() {
        for (mode, expected) in [
            (ForwardMode::Vepa, MacvtapMode::Vepa),
            (ForwardMode::Private, MacvtapMode::Private),
            (ForwardMode::Passthrough, MacvtapMode::Passthrough),
            (ForwardMode::Bridge, MacvtapMode::Bridge),
        ] {
            let net = network(NetworkSpec {
                forward: forward(mode, &["eth1", "eth2"]),
                max_connections_per_device: Some(8),
                ..Default::default()
            });
            assert_eq!(
                realise(&net, &labels(&[])).unwrap().kind,
                RealisationKind::Macvtap {
                    mode: expected,
                    pool: vec!["eth1".into(), "eth2".into()],
                    max_connections_per_device: 8,
                    exclusive: expected == MacvtapMode::Passthrough,
                }
            );
        }
        let dev_only = network(NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Vepa,
                dev: Some("eth9".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = realise(&dev_only, &labels(&[])).unwrap();
        assert_eq!(r.devices(), ["eth9"]);
    }

    #[test]
    fn bridge_mode_with_a_bridge_name_is_a_host_bridge() {
        let net = network(NetworkSpec {
            forward: forward(ForwardMode::Bridge, &[]),
            bridge: Some(Bridge {
                name: Some("br0".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            realise(&net, &labels(&[])).unwrap().kind,
            RealisationKind::Bridge {
                bridge: "br0".into()
            }
        );
    }

    #[test]
    fn the_first_matching_node_group_replaces_devices() {
        let group = |name: &str, label: &str, devs: &[&str], bridge: Option<&str>| NodeGroup {
            name: name.into(),
            node_selector: NodeSelector {
                match_labels: labels(&[("hw", label)]),
                ..Default::default()
            },
            interfaces: devs
                .iter()
                .map(|d| ForwardInterface { dev: d.to_string() })
                .collect(),
            pf: None,
            bridge: bridge.map(Into::into),
        };
        let net = network(NetworkSpec {
            forward: forward(ForwardMode::Passthrough, &["eth1", "eth2"]),
            node_groups: vec![
                group("dell", "dell", &["ens1f0", "ens1f1"], None),
                group("dell-too", "dell", &["never"], None),
            ],
            ..Default::default()
        });
        assert_eq!(
            realise(&net, &labels(&[("hw", "dell")])).unwrap().devices(),
            ["ens1f0", "ens1f1"]
        );
        assert_eq!(
            realise(&net, &labels(&[("hw", "hp")])).unwrap().devices(),
            ["eth1", "eth2"]
        );

        let bridged = network(NetworkSpec {
            forward: forward(ForwardMode::Bridge, &[]),
            bridge: Some(Bridge {
                name: Some("br0".into()),
                ..Default::default()
            }),
            node_groups: vec![group("lab", "lab", &[], Some("br-lab"))],
            ..Default::default()
        });
        assert_eq!(
            realise(&bridged, &labels(&[("hw", "lab")]))
                .unwrap()
                .devices(),
            ["br-lab"]
        );
    }

    #[test]
    fn isolated_nat_route_and_open_networks_attach_to_their_own_bridge() {
        let mut isolated = network(NetworkSpec::default());
        isolated.metadata.uid = Some("u-1".into());
        assert_eq!(
            realise(&isolated, &labels(&[])).unwrap().kind,
            RealisationKind::Bridge {
                bridge: derived_bridge_name("u-1")
            }
        );
        for mode in [ForwardMode::Nat, ForwardMode::Route, ForwardMode::Open] {
            let net = network(NetworkSpec {
                forward: forward(mode, &["eth1"]),
                bridge: Some(switchyard_crds::Bridge {
                    name: Some("virbr0".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            assert_eq!(
                realise(&net, &labels(&[])).unwrap().kind,
                RealisationKind::Bridge {
                    bridge: "virbr0".into()
                },
                "{mode:?}"
            );
        }
    }

    #[test]
    fn modes_switchyard_does_not_realise_say_why() {
        let net = network(NetworkSpec {
            forward: forward(ForwardMode::Hostdev, &["eth1"]),
            ..Default::default()
        });
        match realise(&net, &labels(&[])).unwrap().kind {
            RealisationKind::Unsupported { reason, message } => {
                assert_eq!(reason, "UnsupportedMode");
                assert!(message.contains("hostdev"), "{message}");
            }
            other => panic!("hostdev realised as {other:?}"),
        }
        let no_pool = network(NetworkSpec {
            forward: forward(ForwardMode::Vepa, &[]),
            ..Default::default()
        });
        assert!(matches!(
            realise(&no_pool, &labels(&[])).unwrap().kind,
            RealisationKind::Unsupported {
                reason: "NoPool",
                ..
            }
        ));
    }

    #[test]
    fn pools_on_nodes_follow_the_first_matching_group() {
        let mut spec = NetworkSpec {
            forward: forward(ForwardMode::Vepa, &["eth1"]),
            ..Default::default()
        };
        let a = labels(&[("rack", "a")]);
        assert_eq!(pool_on_node(&spec, &a), Some(vec!["eth1"]));
        spec.node_groups = vec![NodeGroup {
            name: "pf".into(),
            node_selector: NodeSelector::default(),
            pf: Some("ens1".into()),
            ..Default::default()
        }];
        // The group's physical function replaces the spec's pool on its nodes, for the webhook
        // and for the agent alike.
        assert_eq!(pool_on_node(&spec, &a), None);
        assert!(matches!(
            realise(&network(spec), &a).unwrap().kind,
            RealisationKind::Unsupported { reason: "NoPool", message } if message.contains("'ens1'")
        ));
    }

    #[test]
    fn a_network_says_what_it_uses() {
        let host_bridge = NetworkSpec {
            forward: forward(ForwardMode::Bridge, &[]),
            bridge: Some(Bridge {
                name: Some("br0".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(uses(&network(host_bridge)), "bridge br0");
        let mut pool = NetworkSpec {
            forward: forward(ForwardMode::Vepa, &["eth1", "eth2"]),
            ..Default::default()
        };
        assert_eq!(uses(&network(pool.clone())), "pool of 2");
        pool.node_groups = vec![NodeGroup {
            name: "rack2".into(),
            node_selector: NodeSelector::default(),
            pf: Some("ens1".into()),
            ..Default::default()
        }];
        assert_eq!(uses(&network(pool)), "pool of 2 +1 node group");
        let isolated = network(NetworkSpec::default());
        assert_eq!(
            uses(&isolated),
            format!("bridge {}", virtual_bridge_name(&isolated))
        );
        let hostdev = NetworkSpec {
            forward: forward(ForwardMode::Hostdev, &["eth1"]),
            ..Default::default()
        };
        assert_eq!(uses(&network(hostdev)), "unsupported (UnsupportedMode)");
    }
}
