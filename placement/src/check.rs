//! The migration check: could these guest interfaces be attached on these nodes right now?
//!
//! One pure function over the [`Index`], used by the `MigrationCheck` reconciler, the
//! NetworkPort admission webhook and `kubectl switchyard check-migration`, so all three give
//! the same verdict with the same reasons.
//!
//! The work is split in two so that a check over many nodes stays cheap: [`plan`] resolves
//! each interface against its network once (existence, portgroup, virtualport / vlan merge,
//! exclusive or shared), then [`check_node`] looks each candidate node up by name and compares
//! the per-network demand with what that node's agent reports. Nothing scans the cluster.

use std::collections::HashSet;

use switchyard_crds::{
    IneligibleReason, InterfaceRequest, MigrationCheckSpec, Network, NetworkPortSpec, NodeNetwork,
    NodeVerdict, ReasonCode,
};
use switchyard_libvirt::merge::{Connection, PortError, PortRequest, effective_port};

use crate::exclusive::port_is_exclusive;
use crate::index::Index;
use crate::ledger::DeviceLoad;
use crate::readiness::{NotReady, network_on_node, node_problems};
use crate::report::{bridge_limit, bridge_room};

/// One guest interface to place.
#[derive(Debug, Clone)]
pub struct Interface<'a> {
    /// How answers name it: its name, or `#<position>`.
    pub label: String,
    /// The network it attaches to.
    pub network: &'a str,
    /// Its portgroup and interface-level settings.
    pub request: PortRequest<'a>,
}

impl<'a> Interface<'a> {
    /// The interfaces of a `MigrationCheck`.
    pub fn from_requests(interfaces: &'a [InterfaceRequest]) -> Vec<Self> {
        interfaces
            .iter()
            .enumerate()
            .map(|(position, interface)| Interface {
                label: interface
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("#{position}")),
                network: &interface.network,
                request: PortRequest::from_interface(interface),
            })
            .collect()
    }

    /// The one interface a `NetworkPort` is.
    pub fn from_port(label: String, spec: &'a NetworkPortSpec) -> Self {
        Interface {
            label,
            network: &spec.network,
            request: PortRequest::from_port(spec),
        }
    }
}

/// What the interfaces need from a node, worked out once for all nodes.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Reasons that hold on every node: unknown networks, portgroups, merge conflicts.
    everywhere: Vec<IneligibleReason>,
    /// What each network the interfaces attach to must provide.
    demands: Vec<Demand<'a>>,
}

/// The interfaces of one network, counted together: two passthrough interfaces need two free
/// devices on the same node.
#[derive(Debug)]
struct Demand<'a> {
    network: &'a Network,
    name: &'a str,
    connection: Connection,
    /// Interfaces needing a device of their own (passthrough, or 802.1Qbh).
    exclusive: Vec<&'a str>,
    /// Interfaces sharing a device or the bridge.
    shared: Vec<&'a str>,
}

impl Demand<'_> {
    fn labels(&self) -> impl Iterator<Item = &str> {
        self.exclusive.iter().chain(&self.shared).copied()
    }
}

/// Resolves the interfaces against the networks in the index.
pub fn plan<'a>(index: &'a Index, interfaces: &'a [Interface<'a>]) -> Plan<'a> {
    let mut everywhere = Vec::new();
    let mut demands: Vec<Demand<'a>> = Vec::new();
    for interface in interfaces {
        let Some(network) = index.network(interface.network) else {
            everywhere.push(reason(
                Some(&interface.label),
                ReasonCode::NetworkNotFound,
                format!("network \"{}\" does not exist", interface.network),
            ));
            continue;
        };
        let effective = match effective_port(&network.spec, &interface.request) {
            Ok(effective) => effective,
            Err(error) => {
                everywhere.push(reason(
                    Some(&interface.label),
                    reason_code(&error),
                    format!("network \"{}\": {error}", interface.network),
                ));
                continue;
            }
        };
        let demand = match demands.iter_mut().position(|d| d.name == interface.network) {
            Some(i) => &mut demands[i],
            None => {
                demands.push(Demand {
                    network,
                    name: interface.network,
                    connection: effective.connection,
                    exclusive: Vec::new(),
                    shared: Vec::new(),
                });
                demands.last_mut().expect("just pushed")
            }
        };
        if port_is_exclusive(&effective) {
            demand.exclusive.push(&interface.label);
        } else {
            demand.shared.push(&interface.label);
        }
    }
    Plan {
        everywhere,
        demands,
    }
}

/// The reason code of a merge failure.
pub fn reason_code(error: &PortError) -> ReasonCode {
    match error {
        PortError::PortgroupNotFound { .. } => ReasonCode::PortgroupNotFound,
        PortError::VirtualPortConflict { .. }
        | PortError::VirtualPortTypeMismatch { .. }
        | PortError::VirtualPortExtraAttribute { .. }
        | PortError::VirtualPortIncomplete { .. } => ReasonCode::MergeConflict,
        _ => ReasonCode::Unsupported,
    }
}

fn reason(interface: Option<&str>, code: ReasonCode, message: String) -> IneligibleReason {
    IneligibleReason {
        interface: interface.map(str::to_string),
        code,
        message,
    }
}

/// Whether the planned interfaces fit on one node, and every reason they do not: the node's
/// own ([`node_problems`]), a cordon, those of each network ([`network_on_node`]), then
/// capacity.
pub fn check_node(index: &Index, plan: &Plan<'_>, node: &str) -> NodeVerdict {
    let mut reasons = Vec::new();
    let node_wide = node_problems(index, node);
    for problem in &node_wide {
        reasons.push(reason(None, problem.code(), problem.message(node, "")));
    }
    if node_wide.contains(&NotReady::NodeNotFound) {
        reasons.extend(plan.everywhere.iter().cloned());
        return verdict(node, reasons);
    }
    if let Some(why) = not_a_migration_target(index, node) {
        reasons.push(why);
    }
    reasons.extend(plan.everywhere.iter().cloned());

    for demand in &plan.demands {
        match network_on_node(index, demand.network, node) {
            Ok(state) => capacity_reasons(node, demand, state, &mut reasons),
            Err(problems) => {
                // The node-wide reasons above say those once, for every interface.
                for problem in problems.iter().filter(|p| !p.node_wide()) {
                    for label in demand.labels() {
                        reasons.push(reason(
                            Some(label),
                            problem.code(),
                            problem.message(node, demand.name),
                        ));
                    }
                }
            }
        }
    }
    verdict(node, reasons)
}

/// A rule of the migration check only: a cordoned node (`spec.unschedulable`) takes no new
/// pod, so no migrating VM, although it still serves the ports it has (the Network status
/// counts it as serving).
fn not_a_migration_target(index: &Index, node: &str) -> Option<IneligibleReason> {
    index.node(node).filter(|info| info.unschedulable).map(|_| {
        reason(
            None,
            ReasonCode::NodeNotReady,
            format!("node \"{node}\" is cordoned (spec.unschedulable)"),
        )
    })
}

fn verdict(node: &str, reasons: Vec<IneligibleReason>) -> NodeVerdict {
    NodeVerdict {
        node: node.to_string(),
        eligible: reasons.is_empty(),
        reasons,
    }
}

/// Compares one network's demand with the room the node's agent reports.
fn capacity_reasons(
    node: &str,
    demand: &Demand<'_>,
    state: &NodeNetwork,
    reasons: &mut Vec<IneligibleReason>,
) {
    let interfaces = |labels: &[&str]| labels.join(", ");
    match demand.connection {
        Connection::Bridge => {
            let needed = demand.exclusive.len() + demand.shared.len();
            let all: Vec<&str> = demand.labels().collect();
            let Some(bridge) = state.bridge.as_ref() else {
                reasons.push(reason(
                    Some(&interfaces(&all)),
                    ReasonCode::NetworkNotReady,
                    format!(
                        "network \"{}\" on node \"{node}\": the agent reports no bridge",
                        demand.name
                    ),
                ));
                return;
            };
            if !bridge.present {
                reasons.push(reason(
                    Some(&interfaces(&all)),
                    ReasonCode::NetworkNotReady,
                    format!(
                        "network \"{}\" on node \"{node}\": bridge \"{}\" is absent",
                        demand.name, bridge.name
                    ),
                ));
                return;
            }
            let free = bridge_room(bridge.max_ports, bridge.total_ports) as usize;
            if needed > free {
                let max = bridge_limit(bridge.max_ports);
                reasons.push(reason(
                    Some(&interfaces(&all)),
                    ReasonCode::CapacityExhausted,
                    format!(
                        "network \"{}\" on node \"{node}\": bridge \"{}\" has {} of {max} ports in use, {needed} more needed",
                        demand.name, bridge.name, bridge.total_ports
                    ),
                ));
            }
        }
        Connection::Macvtap(_) => {
            let max = demand.network.spec.max_connections_per_device();
            // The agent's allocator: exclusive ports take a present device with no connection;
            // shared ports a present device below the limit; an exclusively held device is
            // never shared.
            let mut free_devices = 0usize;
            let mut shared_slots = 0usize;
            for device in &state.devices {
                let load = DeviceLoad {
                    name: &device.name,
                    present: device.present,
                    connections: device.connections,
                    held_exclusively: device.exclusive,
                };
                free_devices += usize::from(load.takes_exclusive());
                shared_slots += load.shared_room(max) as usize;
            }
            let exclusive_needed = demand.exclusive.len();
            if exclusive_needed > free_devices {
                reasons.push(reason(
                    Some(&interfaces(&demand.exclusive)),
                    ReasonCode::NoFreeDevice,
                    format!(
                        "network \"{}\" on node \"{node}\": {exclusive_needed} interface(s) need a pool device of their own, {free_devices} free ({})",
                        demand.name,
                        describe_devices(state)
                    ),
                ));
            }
            // Each exclusive interface takes a whole free device, and with it `max` slots.
            let taken = exclusive_needed.min(free_devices) * max as usize;
            let slots_left = shared_slots.saturating_sub(taken);
            if demand.shared.len() > slots_left {
                reasons.push(reason(
                    Some(&interfaces(&demand.shared)),
                    ReasonCode::CapacityExhausted,
                    format!(
                        "network \"{}\" on node \"{node}\": {} interface(s) need a shared device, {slots_left} connection(s) left at {max} per device ({})",
                        demand.name,
                        demand.shared.len(),
                        describe_devices(state)
                    ),
                ));
            }
        }
    }
}

/// `eth1: held by ns/p; eth2: 3 connections; eth3: absent`, for refusal messages.
fn describe_devices(state: &NodeNetwork) -> String {
    if state.devices.is_empty() {
        return "the agent reports no pool device".to_string();
    }
    state
        .devices
        .iter()
        .map(|d| {
            let what = if !d.present {
                "absent".to_string()
            } else if d.exclusive {
                match &d.holder {
                    Some(holder) => format!("held by {holder}"),
                    None => "held exclusively".to_string(),
                }
            } else if d.connections == 0 {
                "free".to_string()
            } else {
                format!("{} connection(s)", d.connections)
            };
            format!("{}: {what}", d.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The verdict for every candidate node of a `MigrationCheck`: the nodes it lists (each once,
/// in order), or every node, sorted, when it lists none.
pub fn check_migration(index: &Index, spec: &MigrationCheckSpec) -> Vec<NodeVerdict> {
    let interfaces = Interface::from_requests(&spec.interfaces);
    let plan = plan(index, &interfaces);
    if spec.nodes.is_empty() {
        return index
            .node_names()
            .into_iter()
            .map(|node| check_node(index, &plan, node))
            .collect();
    }
    let mut seen = HashSet::new();
    spec.nodes
        .iter()
        .filter(|node| seen.insert(node.as_str()))
        .map(|node| check_node(index, &plan, node))
        .collect()
}

/// The nodes every interface fits on.
pub fn eligible_nodes(verdicts: &[NodeVerdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| v.eligible)
        .map(|v| v.node.clone())
        .collect()
}

/// A reason code as spelled in the API (`NoFreeDevice`), for messages and tables.
pub fn code_name(code: ReasonCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// `eligible/checked`.
pub fn summary(verdicts: &[NodeVerdict]) -> String {
    format!(
        "{}/{}",
        verdicts.iter().filter(|v| v.eligible).count(),
        verdicts.len()
    )
}

#[cfg(test)]
mod tests;
