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
use tracing::{debug, warn};

use super::{Context, now};
use crate::realisation::{NodeRealisation, RealisationKind, realise};
use crate::report::node_network;

/// Changes arriving this close together are reported once.
const SETTLE: Duration = Duration::from_millis(100);

pub(super) async fn run(ctx: Arc<Context>, interval: Duration) {
    let mut last: Option<NetworkNodeStatus> = None;
    let mut resources: Option<ResourceWrite> = None;
    loop {
        match report(&ctx, last.as_ref(), &mut resources).await {
            Ok(status) => last = Some(status),
            Err(error) => warn!(%error, "reporting the node failed; retrying"),
        }
        let _ = tokio::time::timeout(interval, ctx.report.notified()).await;
        tokio::time::sleep(SETTLE).await;
    }
}

async fn report(
    ctx: &Context,
    last: Option<&NetworkNodeStatus>,
    resources: &mut Option<ResourceWrite>,
) -> Result<NetworkNodeStatus, kube::Error> {
    let labels = ctx.node_labels();
    let realisations: Vec<NodeRealisation> = ctx
        .networks
        .state()
        .iter()
        .filter_map(|network| realise(network, &labels))
        .collect();
    let names: BTreeSet<&str> = realisations.iter().flat_map(|r| r.devices()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let devices = match ctx.links.device_states(&names).await {
        Ok(states) => states.into_iter().map(|s| (s.name.clone(), s)).collect(),
        Err(error) => {
            warn!(%error, "reading device states");
            BTreeMap::new()
        }
    };
    let mut bridge_ports = BTreeMap::new();
    for realisation in &realisations {
        if let RealisationKind::Bridge { bridge } = &realisation.kind
            && devices
                .get(bridge)
                .is_some_and(|d: &crate::netlink::DeviceState| d.present())
            && let Ok(ports) = ctx.links.bridge_ports(bridge).await
        {
            bridge_ports.insert(bridge.clone(), ports);
        }
    }
    let (networks, total_ports) = {
        let state = ctx.state();
        let networks: Vec<_> = realisations
            .iter()
            .map(|r| {
                let bridge = match &r.kind {
                    RealisationKind::Bridge { bridge } => bridge_ports.get(bridge).copied(),
                    _ => None,
                };
                node_network(r, &devices, &state.ledger, bridge)
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
        let api = Api::<NetworkNode>::all(ctx.client.clone());
        // A merge patch naming every field of the status (the agent is its only writer):
        // server-side apply turns a list-map the applier stops naming into `null` on this
        // apiserver, which the schema refuses, so the last network gone would fail every
        // report from then on. The empty list is named explicitly for the same reason.
        let mut patch = serde_json::json!({"status": status});
        patch["status"]["networks"] = serde_json::json!(status.networks);
        api.patch_status(
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
    }
    update_node_resources(ctx, &status, resources).await?;
    Ok(status)
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

/// Resource name to count, as the agent wants them on the Node.
type Resources = BTreeMap<String, String>;

/// A resource write the Node cache may not show yet: the cache's `resourceVersion` when it was
/// made, and what was written. Until the cache moves past that version, the write is what the
/// Node has (so a report soon after a write does not write again).
#[derive(Debug)]
pub(super) struct ResourceWrite {
    seen_version: Option<String>,
    written: Resources,
}

/// The merge patch of the Node's status that makes its `switchyard.dev/*` capacity and
/// allocatable `desired`; `None` when they already are.
fn resource_patch(
    capacity: &Resources,
    allocatable: &Resources,
    desired: &Resources,
) -> Option<serde_json::Value> {
    if capacity == desired && allocatable == desired {
        return None;
    }
    let mut resources = serde_json::Map::new();
    for stale in capacity.keys().chain(allocatable.keys()) {
        if !desired.contains_key(stale) {
            resources.insert(stale.clone(), serde_json::Value::Null);
        }
    }
    for (name, count) in desired {
        resources.insert(name.clone(), serde_json::Value::String(count.clone()));
    }
    Some(serde_json::json!({"status": {"capacity": resources, "allocatable": resources}}))
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
        node.as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(pick)
            .into_iter()
            .flatten()
            .filter(|(name, _)| name.starts_with(RESOURCE_PREFIX))
            .map(|(name, count)| (name.clone(), count.0.clone()))
            .collect()
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
    let Some(patch) = resource_patch(&capacity, &allocatable, &desired) else {
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

    fn resources(entries: &[(&str, &str)]) -> Resources {
        entries
            .iter()
            .map(|(name, count)| (format!("{RESOURCE_PREFIX}{name}"), count.to_string()))
            .collect()
    }

    #[test]
    fn unchanged_resources_need_no_write() {
        let both = resources(&[("a", "4")]);
        assert_eq!(resource_patch(&both, &both, &both), None);
    }

    #[test]
    fn resources_no_longer_wanted_are_removed_from_capacity_and_allocatable() {
        let capacity = resources(&[("a", "4"), ("gone", "1")]);
        let allocatable = resources(&[("a", "4"), ("only-allocatable", "2")]);
        let desired = resources(&[("a", "3")]);
        let patch = resource_patch(&capacity, &allocatable, &desired).unwrap();
        let expected = serde_json::json!({
            "switchyard.dev/a": "3",
            "switchyard.dev/gone": null,
            "switchyard.dev/only-allocatable": null,
        });
        assert_eq!(patch["status"]["capacity"], expected);
        assert_eq!(patch["status"]["allocatable"], expected);
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
