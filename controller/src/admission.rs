//! What the validating webhook decides, as pure functions of the request and the index.
//!
//! - A Network must pass `switchyard_libvirt::validate::validate_network`, with its messages;
//!   it must not clash with another network on a node both select (one bridge, overlapping
//!   subnets: [`coexistence`]); an update must not remove a portgroup or a pool device that
//!   live ports use.
//! - A NetworkPort is created only where it can be realised: its network exists, its portgroup
//!   exists, the virtualport / vlan merge succeeds, and its node passes the migration check
//!   (so a migration to a node that lacks the network or room fails at once, with reasons).
//! - A NetworkPort's spec is fixed once it exists, apart from `owner` (see [`review_port`]).
//! - A node agent writes only its own node's objects ([`agent`]).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use switchyard_crds::{Network, NetworkPort, NetworkSpec};
use switchyard_libvirt::merge::effective_port;
use switchyard_libvirt::validate::validate_network;
use switchyard_placement::check::{self, Interface, code_name};
use switchyard_placement::coexistence;
use switchyard_placement::index::{Index, PortUse};
use switchyard_placement::realisation::pool_on_node;

pub mod agent;
mod fields;

/// The webhook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny(Denial),
}

/// Why a request is refused, as the apiserver relays it to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP code: 422 for a spec that is wrong in itself, 403 for one the cluster's state
    /// refuses (no room, ports in the way).
    pub code: u16,
    /// A Kubernetes status reason: `Invalid` or `Forbidden`.
    pub reason: &'static str,
    /// What is wrong and what to do, in full.
    pub message: String,
}

impl Decision {
    fn invalid(message: String) -> Self {
        Decision::Deny(Denial {
            code: 422,
            reason: "Invalid",
            message,
        })
    }

    fn forbidden(message: String) -> Self {
        Decision::Deny(Denial {
            code: 403,
            reason: "Forbidden",
            message,
        })
    }
}

/// Whether a Network may be created (`old` is `None`) or updated. An update that leaves the
/// spec alone (labels, annotations) always passes: what it would check has not changed, and a
/// network stored before the webhook existed must stay editable that far.
pub fn review_network(index: &Index, network: &Network, old: Option<&Network>) -> Decision {
    if old.is_some_and(|old| old.spec == network.spec) {
        return Decision::Allow;
    }
    let name = network.name_any();
    if old.is_none() && !switchyard_libvirt::names::is_object_name(&name) {
        return Decision::invalid(format!(
            "Network \"{name}\" is invalid: metadata.name: must be a DNS subdomain of at most {} characters, because the name is also used in labels and extended resource names (switchyard.dev/network=<name>, net.switchyard.dev/<name>, switchyard.dev/<name>)",
            switchyard_libvirt::names::MAX_OBJECT_NAME
        ));
    }
    if let Err(errors) = validate_network(&network.spec) {
        let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Decision::invalid(format!(
            "Network \"{name}\" is invalid: {}",
            problems.join("; ")
        ));
    }
    let clashes = clashes(index, network);
    if !clashes.is_empty() {
        return Decision::forbidden(format!(
            "Network \"{name}\" cannot share a node with another network: {}; give it another bridge name or subnet, or node selectors that share no node with the other network",
            clashes.join("; ")
        ));
    }
    let Some(old) = old else {
        return Decision::Allow;
    };
    let mut problems = Vec::new();
    let kept: BTreeSet<&str> = network
        .spec
        .portgroups
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for removed in old
        .spec
        .portgroups
        .iter()
        .map(|p| p.name.as_str())
        .filter(|p| !kept.contains(p))
    {
        let users: Vec<String> = index
            .ports_of_network(&name)
            .filter(|port| port.uses_portgroup(removed))
            .map(|port| port.key.to_string())
            .collect();
        if !users.is_empty() {
            problems.push(format!(
                "portgroup \"{removed}\" is used by live port(s) {}",
                users.join(", ")
            ));
        }
    }
    // device -> (node -> ports), so the message groups them.
    let mut pulled: BTreeMap<&str, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    for port in index.ports_of_network(&name) {
        let Some(device) = port.actual_device.as_deref() else {
            continue;
        };
        if device_removed(index, &old.spec, &network.spec, port, device) {
            pulled
                .entry(device)
                .or_default()
                .entry(port.node.as_str())
                .or_default()
                .push(port.key.to_string());
        }
    }
    for (device, nodes) in pulled {
        for (node, ports) in nodes {
            problems.push(format!(
                "pool device \"{device}\" on node \"{node}\" is used by live port(s) {}",
                ports.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Decision::Allow
    } else {
        Decision::forbidden(format!(
            "Network \"{name}\" cannot be changed this way: {}; delete or move those ports first",
            problems.join("; ")
        ))
    }
}

/// The network's clashes with the other networks on the nodes both select
/// ([`coexistence::clashes_with`]), whichever is older: the agent would refuse the newer of
/// the two there, so a create or an update that clashes is refused now instead. One message
/// per clash, naming its first node and how many more share it.
fn clashes(index: &Index, network: &Network) -> Vec<String> {
    let name = network.name_any();
    let others: Vec<&Network> = index.networks().map(|n| &**n).collect();
    // (this field, other network, its field) -> (message, nodes)
    let mut found: BTreeMap<(String, String, String), (String, usize)> = BTreeMap::new();
    // By name, so that the message names the same first node every time.
    for node in index.node_names() {
        let Some(info) = index.node(node) else {
            continue;
        };
        let node = coexistence::Node {
            name: node,
            labels: &info.labels,
        };
        for clash in coexistence::clashes_with(node, network, &others) {
            let (mine, other) = if clash.newer.network == name {
                (&clash.newer, &clash.older)
            } else {
                (&clash.older, &clash.newer)
            };
            let key = (
                mine.field.clone(),
                other.network.clone(),
                other.field.clone(),
            );
            found
                .entry(key)
                .or_insert_with(|| (clash.message_for(&name), 0))
                .1 += 1;
        }
    }
    found
        .into_values()
        .map(|(message, nodes)| match nodes {
            1 => message,
            n => format!("{message} (and on {} more node(s))", n - 1),
        })
        .collect()
}

/// Whether the port's device was in the network's pool on its node and no longer is.
fn device_removed(
    index: &Index,
    old: &NetworkSpec,
    new: &NetworkSpec,
    port: &PortUse,
    device: &str,
) -> bool {
    let no_labels = BTreeMap::new();
    let labels = index.node(&port.node).map_or(&no_labels, |n| &n.labels);
    let in_pool =
        |spec: &NetworkSpec| pool_on_node(spec, labels).map(|pool| pool.contains(&device));
    // A pool given by a physical function lists no names: nothing to compare.
    matches!((in_pool(old), in_pool(new)), (Some(true), Some(false)))
}

/// The spec fields of a NetworkPort that may change after it is created: those the agent's
/// realisation does not read. The node and network say which agent realises the port and
/// where (a port moved would leave its link and device count behind on the old node); the
/// MAC is the link's; the portgroup, virtualport, vlan and bandwidth decide the device's
/// sharing and what `status.actual` says was applied; `trustGuestRxFilters` is reported there
/// too. As with libvirt's network ports, such a port is deleted and created again instead.
pub const MUTABLE_PORT_FIELDS: [&str; 1] = ["owner"];

/// Whether a NetworkPort may be created (`old` is `None`) or updated.
///
/// On creation the port must fit on its node now. An update may change no spec field but
/// those in [`MUTABLE_PORT_FIELDS`], and is not judged further: the agent's own updates
/// (finalizers, labels) must go through even when the network has since changed or gone.
pub fn review_port(index: &Index, port: &NetworkPort, old: Option<&NetworkPort>) -> Decision {
    let name = format!(
        "{}/{}",
        port.namespace().unwrap_or_default(),
        port.name_any()
    );
    let spec = &port.spec;
    if let Some(old) = old {
        let changed: Vec<String> =
            fields::changed("spec", &fields::json(&old.spec), &fields::json(spec))
                .into_iter()
                .filter(|field| {
                    !MUTABLE_PORT_FIELDS
                        .iter()
                        .any(|m| field == &format!("spec.{m}"))
                })
                .collect();
        if changed.is_empty() {
            return Decision::Allow;
        }
        return Decision::invalid(format!(
            "NetworkPort \"{name}\" is invalid: {} cannot change once the port exists, as its node's agent realised the port from its spec; delete the port and create it again with the new value",
            changed.join(", ")
        ));
    }
    let Some(network) = index.network(&spec.network) else {
        return Decision::forbidden(format!(
            "NetworkPort \"{name}\": network \"{}\" does not exist; create it first, or name an existing network in spec.network",
            spec.network
        ));
    };
    let request = switchyard_libvirt::merge::PortRequest::from_port(spec);
    if let Err(error) = effective_port(&network.spec, &request) {
        return Decision::invalid(format!(
            "NetworkPort \"{name}\" cannot attach to network \"{}\": [{}] {error}",
            spec.network,
            error.reason()
        ));
    }
    let interfaces = [Interface::from_port(port.name_any(), spec)];
    let plan = check::plan(index, &interfaces);
    let verdict = check::check_node(index, &plan, &spec.node);
    if verdict.eligible {
        return Decision::Allow;
    }
    let reasons: Vec<String> = verdict
        .reasons
        .iter()
        .map(|r| format!("[{}] {}", code_name(r.code), r.message))
        .collect();
    Decision::forbidden(format!(
        "NetworkPort \"{name}\" cannot be placed on node \"{}\": {}",
        spec.node,
        reasons.join("; ")
    ))
}

#[cfg(test)]
mod tests;
