//! Reports the node: its `NetworkNode` status, and per-network extended resources on the Node
//! so the scheduler can count ports by itself. Runs after every change the agent makes and
//! every `interval` (device presence and link state change without telling anyone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use switchyard_crds::{
    Condition, ConditionStatus, NetworkNode, NetworkNodeStatus, RESOURCE_PREFIX,
};
use switchyard_placement::node_marks::{Resources, node_resource_patch, own_resources};
use switchyard_placement::realisation::{NodeRealisation, RealisationKind};
use switchyard_placement::report::node_network;
use tracing::{debug, warn};

use super::{Context, now};
use crate::netlink::{BridgePorts, DeviceState, NetlinkError};

/// Changes arriving this close together are reported once.
const SETTLE: Duration = Duration::from_millis(100);

/// How soon a report whose kernel reading failed is tried again.
const RETRY_OBSERVATION: Duration = Duration::from_millis(500);

/// The condition a report carries while the kernel could not be read: the devices and counts
/// shown are the last ones read, not "absent".
pub const DEVICES_OBSERVED: &str = "DevicesObserved";

/// Why one report failed.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("reading the node's devices: {0}")]
    Observe(#[from] NetlinkError),
    #[error("writing the report: {0}")]
    Kube(#[from] kube::Error),
}

/// What one report did.
enum Reported {
    /// The kernel was read and the report written.
    Fresh(NetworkNodeStatus),
    /// The kernel could not be read: the last report stands, marked stale.
    Stale(NetworkNodeStatus),
}

pub(super) async fn run(ctx: Arc<Context>, interval: Duration) {
    let mut last: Option<NetworkNodeStatus> = None;
    let mut resources: Option<ResourceWrite> = None;
    loop {
        let wait = match report(&ctx, last.as_ref(), &mut resources).await {
            Ok(Reported::Fresh(status)) => {
                last = Some(status);
                interval
            }
            Ok(Reported::Stale(status)) => {
                last = Some(status);
                RETRY_OBSERVATION
            }
            Err(error @ ReportError::Observe(_)) => {
                warn!(%error, "nothing reported yet and the kernel could not be read; retrying");
                RETRY_OBSERVATION
            }
            Err(error) => {
                warn!(%error, "reporting the node failed; retrying");
                interval
            }
        };
        let _ = tokio::time::timeout(wait, ctx.report.notified()).await;
        tokio::time::sleep(SETTLE).await;
    }
}

/// The devices and bridges of the node's networks as the kernel shows them.
struct Observation {
    devices: BTreeMap<String, DeviceState>,
    bridge_ports: BTreeMap<String, BridgePorts>,
}

async fn observe(
    ctx: &Context,
    realisations: &[NodeRealisation],
) -> Result<Observation, NetlinkError> {
    let names: BTreeSet<&str> = realisations.iter().flat_map(|r| r.devices()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let devices: BTreeMap<String, DeviceState> = ctx
        .links
        .device_states(&names)
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut bridge_ports = BTreeMap::new();
    for realisation in realisations {
        if let RealisationKind::Bridge { bridge } = &realisation.kind
            && devices.get(bridge).is_some_and(DeviceState::present)
        {
            match ctx.links.bridge_ports(bridge).await {
                Ok(ports) => {
                    bridge_ports.insert(bridge.clone(), ports);
                }
                // Gone between the two reads: absent, as the next report will say anyway.
                Err(NetlinkError::BridgeNotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(Observation {
        devices,
        bridge_ports,
    })
}

/// `last` with a condition saying it is stale (since when it first became so).
fn stale(last: &NetworkNodeStatus, error: &NetlinkError, now: &str) -> NetworkNodeStatus {
    let since = last
        .conditions
        .iter()
        .find(|c| c.kind == DEVICES_OBSERVED)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    let mut status = last.clone();
    status.conditions.retain(|c| c.kind != DEVICES_OBSERVED);
    status.conditions.push(Condition {
        kind: DEVICES_OBSERVED.into(),
        status: ConditionStatus::False,
        reason: "KernelReadFailed".into(),
        message: format!(
            "the node's links could not be read ({error}); devices and counts are as last read"
        ),
        last_transition_time: Some(since),
        observed_generation: None,
    });
    status
}

async fn report(
    ctx: &Context,
    last: Option<&NetworkNodeStatus>,
    resources: &mut Option<ResourceWrite>,
) -> Result<Reported, ReportError> {
    let realisations = ctx.realisations();
    // A failed reading is not "every device absent": the last report stands, said to be stale,
    // and the Node's resources stay as they are.
    let Observation {
        devices,
        bridge_ports,
    } = match observe(ctx, &realisations).await {
        Ok(observation) => observation,
        Err(error) => {
            let Some(last) = last else {
                return Err(error.into());
            };
            warn!(%error, "reading the node's devices failed; keeping the last report, marked stale");
            let status = stale(last, &error, &now());
            if status != *last {
                write_network_node(ctx, &status).await?;
            }
            return Ok(Reported::Stale(status));
        }
    };
    let names: Vec<&str> = devices.keys().map(String::as_str).collect();
    let virtual_states = ctx.virtual_networks.states();
    let (networks, total_ports) = {
        let state = ctx.state();
        let networks: Vec<_> = realisations
            .iter()
            .map(|r| {
                let bridge = match &r.kind {
                    RealisationKind::Bridge { bridge } => bridge_ports.get(bridge).copied(),
                    _ => None,
                };
                let mut entry = node_network(r, &devices, &state.ledger, bridge);
                if let Some(virtual_state) = virtual_states.get(&r.network) {
                    crate::virtual_network::report_into(&mut entry, virtual_state);
                }
                entry
            })
            .collect();
        let mut per_network: BTreeMap<&str, u64> = BTreeMap::new();
        for device in &names {
            for (_, holding) in state.ledger.holders(device) {
                *per_network.entry(holding.network.as_str()).or_default() += 1;
            }
        }
        ctx.metrics.set_ports(per_network);
        (networks, state.ledger.total_connections() as u32)
    };
    let previous_ready = last.and_then(|s| s.conditions.first());
    let status = NetworkNodeStatus {
        networks_ready: networks.iter().filter(|n| n.ready).count() as u32,
        ports: total_ports,
        networks,
        conditions: vec![Condition {
            kind: "Ready".into(),
            status: ConditionStatus::True,
            reason: "Serving".into(),
            message: "recovery done; ports are being realised".into(),
            last_transition_time: previous_ready
                .and_then(|c| c.last_transition_time.clone())
                .or_else(|| Some(now())),
            observed_generation: None,
        }],
    };
    if last != Some(&status) {
        write_network_node(ctx, &status).await?;
    }
    ctx.served.send_if_modified(|served| {
        let changed = *served != status.networks;
        if changed {
            served.clone_from(&status.networks);
        }
        changed
    });
    // With a device plugin the kubelet owns the resources: it writes them from the plugin's
    // devices, and a patch here would fight it.
    if ctx.device_plugin.is_none() {
        update_node_resources(ctx, &status, resources).await?;
    }
    Ok(Reported::Fresh(status))
}

/// Writes the node's `NetworkNode` status: a merge patch naming every field (the agent is its
/// only writer). Server-side apply turns a list-map the applier stops naming into `null` on
/// this apiserver, which the schema refuses, so the last network gone would fail every report
/// from then on; the empty list is named explicitly for the same reason.
async fn write_network_node(ctx: &Context, status: &NetworkNodeStatus) -> Result<(), kube::Error> {
    let mut patch = serde_json::json!({"status": status});
    patch["status"]["networks"] = serde_json::json!(status.networks);
    Api::<NetworkNode>::all(ctx.client.clone())
        .patch_status(
            &ctx.node,
            &PatchParams {
                field_manager: Some(ctx.manager.clone()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
    ctx.metrics.wrote("NetworkNode");
    debug!(ports = status.ports, "node status written");
    Ok(())
}

/// The node's `switchyard.dev/*` capacity and allocatable, the only part of a Node's status
/// the agent caches and reads.
pub(super) fn own_resources_only(status: NodeStatus) -> NodeStatus {
    let own = |resources: Option<BTreeMap<String, Quantity>>| {
        resources.map(|resources| {
            resources
                .into_iter()
                .filter(|(name, _)| name.starts_with(RESOURCE_PREFIX))
                .collect()
        })
    };
    NodeStatus {
        capacity: own(status.capacity),
        allocatable: own(status.allocatable),
        ..NodeStatus::default()
    }
}

/// A resource write the Node cache may not show yet: the cache's `resourceVersion` when it was
/// made, and what was written. Until the cache moves past that version, the write is what the
/// Node has (so a report soon after a write does not write again).
#[derive(Debug)]
pub(super) struct ResourceWrite {
    seen_version: Option<String>,
    written: Resources,
}

/// Sets `switchyard.dev/<network>` capacity and allocatable on the Node for every network the
/// node serves and is ready for, and removes the others (a network no longer served, or not
/// ready here). Writes nothing when the Node already shows that.
async fn update_node_resources(
    ctx: &Context,
    status: &NetworkNodeStatus,
    pending: &mut Option<ResourceWrite>,
) -> Result<(), kube::Error> {
    let desired: Resources = status
        .networks
        .iter()
        .filter(|n| n.ready)
        .map(|n| {
            (
                format!("{RESOURCE_PREFIX}{}", n.name),
                n.capacity.to_string(),
            )
        })
        .collect();
    let node = ctx.nodes.get(&ObjectRef::<Node>::new(&ctx.node));
    let version = node
        .as_ref()
        .and_then(|n| n.metadata.resource_version.clone());
    let cached = |pick: fn(&NodeStatus) -> Option<&BTreeMap<String, Quantity>>| -> Resources {
        own_resources(
            node.as_ref()
                .and_then(|n| n.status.as_ref())
                .and_then(pick)
                .into_iter()
                .flatten()
                .map(|(name, count)| (name, count.0.as_str())),
        )
    };
    let (capacity, allocatable) = match pending.as_ref() {
        Some(write) if write.seen_version == version => {
            (write.written.clone(), write.written.clone())
        }
        _ => (
            cached(|s| s.capacity.as_ref()),
            cached(|s| s.allocatable.as_ref()),
        ),
    };
    let Some(patch) = node_resource_patch(&capacity, &allocatable, &desired) else {
        return Ok(());
    };
    Api::<Node>::all(ctx.client.clone())
        .patch_status(&ctx.node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.wrote("Node");
    debug!(resources = ?desired, "node resources written");
    *pending = Some(ResourceWrite {
        seen_version: version,
        written: desired,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_report_keeps_what_was_read_and_says_since_when() {
        let last = NetworkNodeStatus {
            ports: 3,
            networks: vec![switchyard_crds::NodeNetwork {
                name: "n".into(),
                ready: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = NetlinkError::Dump(std::io::Error::other("interrupted"));
        let first = stale(&last, &error, "t1");
        assert_eq!((first.ports, &first.networks), (3, &last.networks));
        let condition = &first.conditions[0];
        assert_eq!(
            (condition.kind.as_str(), condition.status),
            (DEVICES_OBSERVED, ConditionStatus::False)
        );
        let again = stale(&first, &error, "t2");
        assert_eq!(
            again, first,
            "the transition time stays, nothing to rewrite"
        );
    }

    #[test]
    fn only_the_agents_resources_are_cached() {
        let status = NodeStatus {
            capacity: Some(
                [
                    ("cpu".to_string(), Quantity("4".into())),
                    (format!("{RESOURCE_PREFIX}a"), Quantity("2".into())),
                ]
                .into_iter()
                .collect(),
            ),
            images: Some(vec![Default::default()]),
            ..NodeStatus::default()
        };
        let own = own_resources_only(status);
        assert_eq!(
            own.capacity.unwrap().keys().collect::<Vec<_>>(),
            vec![&format!("{RESOURCE_PREFIX}a")]
        );
        assert!(own.images.is_none() && own.allocatable.is_none());
    }
}
