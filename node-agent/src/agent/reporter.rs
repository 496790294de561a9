//! Reports the node: its `NetworkNode` status, and per-network extended resources on the Node
//! so the scheduler can count ports by itself. Runs after every change the agent makes and
//! every `interval` (device presence and link state change without telling anyone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
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
    loop {
        match report(&ctx, last.as_ref()).await {
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
        let patch = serde_json::json!({
            "apiVersion": "switchyard.dev/v1alpha1",
            "kind": "NetworkNode",
            "status": status,
        });
        api.patch_status(
            &ctx.node,
            &PatchParams::apply(&ctx.manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        debug!(ports = status.ports, "node status written");
    }
    update_node_resources(ctx, &status).await?;
    Ok(status)
}

/// Sets `switchyard.dev/<network>` capacity and allocatable on the Node for every network the
/// node serves, and removes those of networks it no longer serves.
async fn update_node_resources(
    ctx: &Context,
    status: &NetworkNodeStatus,
) -> Result<(), kube::Error> {
    let desired: BTreeMap<String, String> = status
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
    let current: BTreeMap<String, String> = node
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.capacity.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(RESOURCE_PREFIX))
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    if current == desired {
        return Ok(());
    }
    let mut resources = serde_json::Map::new();
    for key in current.keys().filter(|k| !desired.contains_key(*k)) {
        resources.insert(key.clone(), serde_json::Value::Null);
    }
    for (key, value) in &desired {
        resources.insert(key.clone(), serde_json::Value::String(value.clone()));
    }
    let patch = serde_json::json!({"status": {"capacity": resources, "allocatable": resources}});
    Api::<Node>::all(ctx.client.clone())
        .patch_status(&ctx.node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
