//! How a `Network` is realised on one node: which devices or bridge it uses there, given the
//! node's labels (its selector and the spec's node groups). Pure.

use std::collections::BTreeMap;

use switchyard_crds::{ForwardMode, MacvtapMode, Network, NetworkSpec};

use crate::netlink::KERNEL_MAX_BRIDGE_PORTS;

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

/// How `network` is realised on a node with `labels`; `None` when it does not select the node.
pub fn realise(network: &Network, labels: &BTreeMap<String, String>) -> Option<NodeRealisation> {
    let spec = &network.spec;
    if let Some(selector) = &spec.node_selector
        && !selector.matches(labels)
    {
        return None;
    }
    let name = network.metadata.name.clone().unwrap_or_default();
    Some(NodeRealisation {
        kind: kind_on_node(&name, spec, labels),
        network: name,
    })
}

fn kind_on_node(
    name: &str,
    spec: &NetworkSpec,
    labels: &BTreeMap<String, String>,
) -> RealisationKind {
    let group = spec
        .node_groups
        .iter()
        .find(|group| group.node_selector.matches(labels));
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
    let pool: Vec<String> = match group.filter(|g| !g.interfaces.is_empty()) {
        Some(g) => g.interfaces.iter().map(|i| i.dev.clone()).collect(),
        None if !forward.interfaces.is_empty() => {
            forward.interfaces.iter().map(|i| i.dev.clone()).collect()
        }
        None => forward.dev.iter().cloned().collect(),
    };
    let pf = group
        .and_then(|g| g.pf.clone())
        .or_else(|| forward.pf.clone());
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
    if pool.is_empty() {
        let message = match pf {
            Some(pf) => format!(
                "network '{name}' takes its pool from the virtual functions of physical function '{pf}'; list them under forward.interfaces (or a node group)"
            ),
            None => format!(
                "network '{name}' uses a direct mode, but has no forward dev and no interface pool"
            ),
        };
        return unsupported("NoPool", message);
    }
    RealisationKind::Macvtap {
        mode,
        pool,
        max_connections_per_device: spec.max_connections_per_device(),
    }
}

/// How many ports a bridge network can carry on one node.
pub const fn bridge_capacity() -> u32 {
    KERNEL_MAX_BRIDGE_PORTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Bridge, Forward, ForwardInterface, NodeGroup, NodeSelector};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
                    max_connections_per_device: 8
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
    fn modes_switchyard_does_not_realise_say_why() {
        for mode in [
            ForwardMode::Nat,
            ForwardMode::Route,
            ForwardMode::Open,
            ForwardMode::Hostdev,
        ] {
            let net = network(NetworkSpec {
                forward: forward(mode, &["eth1"]),
                ..Default::default()
            });
            match realise(&net, &labels(&[])).unwrap().kind {
                RealisationKind::Unsupported { reason, message } => {
                    assert_eq!(reason, "UnsupportedMode");
                    assert!(message.contains(mode.as_str()), "{message}");
                }
                other => panic!("{mode:?} realised as {other:?}"),
            }
        }
        let isolated = network(NetworkSpec::default());
        assert!(matches!(
            realise(&isolated, &labels(&[])).unwrap().kind,
            RealisationKind::Unsupported {
                reason: "UnsupportedMode",
                ..
            }
        ));
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
}
