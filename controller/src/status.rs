//! A network's status across the cluster, and the events worth telling people about when it
//! changes. Pure: the reconciler supplies the index, the previous status and the time.

use std::collections::BTreeMap;

use kube::ResourceExt;
use switchyard_crds::{Condition, ConditionStatus, Network, NetworkStatus, UnreadyNode};

use switchyard_placement::index::Index;
use switchyard_placement::readiness::{NotReady, network_on_node};

/// At most this many unready nodes are listed in a status; the `Ready` condition counts them
/// all. Keeps a network that is broken on a thousand nodes readable.
pub const MAX_UNREADY_LISTED: usize = 100;

/// At most this many nodes are named in `freePerNode`; the rest are counted.
pub const MAX_FREE_LISTED: usize = 20;

/// The status of a network: which selected nodes serve it, its capacity on them, and why the
/// others cannot. `validation_errors` are the spec's problems (empty when it is valid).
/// Condition transition times are kept from `previous` when the condition did not change, so
/// an unchanged cluster yields an identical status.
pub fn network_status(
    network: &Network,
    index: &Index,
    validation_errors: &[String],
    previous: Option<&NetworkStatus>,
    now: &str,
) -> NetworkStatus {
    let name = network.name_any();
    let generation = network.metadata.generation;
    let mut status = NetworkStatus {
        observed_generation: generation,
        pool_size: switchyard_libvirt::modes::pool_devices(&network.spec).len() as u32,
        uses: Some(switchyard_placement::realisation::uses(network)),
        ..Default::default()
    };
    let mut unready = Vec::new();
    let mut free_per_node = Vec::new();
    let mut nodes: Vec<&String> = index.nodes().map(|(node, _)| node).collect();
    nodes.sort_unstable();
    for node in nodes {
        // A cordoned node still serves the ports it has, so it counts as serving here; only
        // the migration check refuses it as a target.
        let readiness = network_on_node(index, network, node);
        if matches!(&readiness, Err(problems) if problems.first() == Some(&NotReady::NotSelected)) {
            continue;
        }
        status.nodes_selected += 1;
        match readiness {
            Ok(served) => {
                status.nodes_ready += 1;
                status.capacity_total += served.capacity;
                status.capacity_used += served.used;
                status.capacity_free += served.free;
                free_per_node.push(format!("{node}={}", served.free));
            }
            Err(problems) => {
                // The most fundamental reason; the node's own NetworkNode has the rest.
                let first = problems
                    .first()
                    .expect("a network not ready on a node has a reason");
                unready.push(UnreadyNode {
                    node: node.clone(),
                    reason: first.reason().to_string(),
                    message: first.message(node, &name),
                });
            }
        }
    }
    status.nodes_ready_summary = Some(format!("{}/{}", status.nodes_ready, status.nodes_selected));
    status.free_per_node = describe_free(&free_per_node);

    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let valid = if validation_errors.is_empty() {
        (
            ConditionStatus::True,
            "Valid",
            "the spec passed validation".to_string(),
        )
    } else {
        (
            ConditionStatus::False,
            "Invalid",
            validation_errors.join("; "),
        )
    };
    let ready = if status.nodes_ready > 0 {
        let mut message = format!(
            "served by {} of {} selected nodes",
            status.nodes_ready, status.nodes_selected
        );
        if !unready.is_empty() {
            message.push_str(&format!("; {}", describe_unready(&unready)));
        }
        (ConditionStatus::True, "Serving", message)
    } else if status.nodes_selected == 0 {
        (
            ConditionStatus::False,
            "NoNodesSelected",
            "no node matches the network's nodeSelector".to_string(),
        )
    } else {
        (
            ConditionStatus::False,
            "NoReadyNodes",
            format!(
                "none of the {} selected nodes can serve it; {}",
                status.nodes_selected,
                describe_unready(&unready)
            ),
        )
    };
    status.conditions = [("Ready", ready), ("Valid", valid)]
        .into_iter()
        .map(|(kind, (truth, reason, message))| {
            let since = previous_conditions
                .iter()
                .find(|c| c.kind == kind && c.status == truth)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.to_string());
            Condition {
                kind: kind.to_string(),
                status: truth,
                reason: reason.to_string(),
                message,
                last_transition_time: Some(since),
                observed_generation: generation,
            }
        })
        .collect();
    unready.truncate(MAX_UNREADY_LISTED);
    status.unready_nodes = unready;
    status
}

/// `node-a=3, node-b=0` (the first [`MAX_FREE_LISTED`], then `and N more`), or
/// `no ready node`.
fn describe_free(free_per_node: &[String]) -> Option<String> {
    if free_per_node.is_empty() {
        return Some("no ready node".to_string());
    }
    let mut text = free_per_node
        .iter()
        .take(MAX_FREE_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if free_per_node.len() > MAX_FREE_LISTED {
        text.push_str(&format!(
            " and {} more",
            free_per_node.len() - MAX_FREE_LISTED
        ));
    }
    Some(text)
}

/// `2 cannot: node-b DeviceMissing, node-c NoAgent` (the first few only).
fn describe_unready(unready: &[UnreadyNode]) -> String {
    const SHOWN: usize = 5;
    let mut text = format!("{} cannot: ", unready.len());
    let shown: Vec<String> = unready
        .iter()
        .take(SHOWN)
        .map(|u| format!("{} {}", u.node, u.reason))
        .collect();
    text.push_str(&shown.join(", "));
    if unready.len() > SHOWN {
        text.push_str(&format!(" and {} more", unready.len() - SHOWN));
    }
    text
}

/// A Kubernetes Event to publish about a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// A Warning rather than a Normal event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What happened.
    pub note: String,
}

/// At most this many per-node events per status change, then one that counts the rest.
const MAX_NODE_EVENTS: usize = 5;

/// The changes between two statuses that matter to people: the network becoming ready or not,
/// its spec becoming invalid, nodes starting or ceasing to serve it, capacity running out.
pub fn status_events(previous: Option<&NetworkStatus>, next: &NetworkStatus) -> Vec<StatusEvent> {
    let mut events = Vec::new();
    let condition = |status: Option<&NetworkStatus>, kind: &str| {
        status.and_then(|s| s.conditions.iter().find(|c| c.kind == kind).cloned())
    };
    for kind in ["Ready", "Valid"] {
        let Some(now) = condition(Some(next), kind) else {
            continue;
        };
        let before = condition(previous, kind);
        if before.as_ref().map(|c| c.status) == Some(now.status) {
            continue;
        }
        let warning = now.status != ConditionStatus::True;
        // A new network that is valid is not news; one that is invalid is.
        if kind == "Valid" && !warning && before.is_none() {
            continue;
        }
        events.push(StatusEvent {
            warning,
            reason: match (kind, warning) {
                ("Ready", false) => "Ready".to_string(),
                ("Ready", true) => "NotReady".to_string(),
                (_, false) => "Valid".to_string(),
                (_, true) => "InvalidSpec".to_string(),
            },
            note: now.message.clone(),
        });
    }

    let before: BTreeMap<&str, &UnreadyNode> = previous
        .map(|p| {
            p.unready_nodes
                .iter()
                .map(|u| (u.node.as_str(), u))
                .collect()
        })
        .unwrap_or_default();
    let after: BTreeMap<&str, &UnreadyNode> = next
        .unready_nodes
        .iter()
        .map(|u| (u.node.as_str(), u))
        .collect();
    let newly_unready: Vec<&UnreadyNode> = after
        .values()
        .filter(|u| {
            before
                .get(u.node.as_str())
                .is_none_or(|b| b.reason != u.reason)
        })
        .copied()
        .collect();
    for u in newly_unready.iter().take(MAX_NODE_EVENTS) {
        events.push(StatusEvent {
            warning: true,
            reason: u.reason.clone(),
            // The message names the node and the reason.
            note: u.message.clone(),
        });
    }
    if newly_unready.len() > MAX_NODE_EVENTS {
        events.push(StatusEvent {
            warning: true,
            reason: "NodesCannotServe".to_string(),
            note: format!(
                "{} more nodes cannot serve the network; see status.unreadyNodes",
                newly_unready.len() - MAX_NODE_EVENTS
            ),
        });
    }
    // A node that recovered, as opposed to one that merely left the list because it is no
    // longer selected: the ready count went up.
    let ready_before = previous.map_or(0, |p| p.nodes_ready);
    if next.nodes_ready > ready_before {
        let recovered: Vec<&str> = before
            .keys()
            .filter(|node| !after.contains_key(*node))
            .copied()
            .collect();
        for node in recovered.iter().take(MAX_NODE_EVENTS) {
            events.push(StatusEvent {
                warning: false,
                reason: "NodeServing".to_string(),
                note: format!("node {node} serves the network again"),
            });
        }
    }
    let free_before = previous.map_or(0, |p| p.capacity_free);
    if next.nodes_ready > 0 && next.capacity_free == 0 && free_before > 0 {
        events.push(StatusEvent {
            warning: true,
            reason: "CapacityExhausted".to_string(),
            note: format!(
                "no free port left on any of the {} ready nodes ({} in use)",
                next.nodes_ready, next.capacity_used
            ),
        });
    }
    events
}

#[cfg(test)]
mod tests;
