//! What switchyard's agents and controller leave in the cluster, removed once they are gone
//! for good: `switchyard-node-agent cleanup`, which the chart runs as its post-delete hook
//! (after `helm uninstall` has deleted the DaemonSet, the Deployment and their permissions).
//!
//! An agent cannot do this itself when its pod stops: a restart, a rolling update and an
//! uninstall all look the same to it, and under `helm uninstall` its own ServiceAccount and
//! RBAC are deleted in the same moment as its DaemonSet.
//!
//! In order:
//! 1. Wait (bounded) until the agents' pods are gone, so that none writes again after.
//! 2. Remove the agents' finalizer from every NetworkPort: no agent is left to release it, and
//!    a port kept by it would block its own deletion and its namespace's forever. The links of
//!    ports still alive stay on their nodes (their VMs keep running); a later install's agent
//!    adopts them, or removes those whose port is gone.
//! 3. Delete every NetworkNode (the agents' reports).
//! 4. Remove every Node's `switchyard.dev/*` extended resources (so the scheduler places no VM
//!    pod on a network no one serves) and its `net.switchyard.dev/*` labels.
//!
//! The Networks and NetworkPorts themselves are the users' and stay, as the CRDs do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;
use switchyard_crds::{NetworkNode, NetworkPort};
use switchyard_placement::node_marks::{
    Resources, node_label_patch, node_resource_patch, own_resources,
};
use thiserror::Error;
use tracing::{info, warn};

use crate::agent::finalizer;

/// Whose pods to wait for, and for how long.
#[derive(Debug, Clone)]
pub struct CleanupConfig {
    /// The namespace of the agents' pods; every namespace when `None`.
    pub agents_namespace: Option<String>,
    /// The label selector of the agents' pods.
    pub agents_selector: String,
    /// How long to wait for them to be gone before cleaning up anyway.
    pub wait: Duration,
}

/// What the cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupSummary {
    /// Agent pods still there when the wait was over (`namespace/name`).
    pub agents_left: Vec<String>,
    /// Ports whose finalizer was removed.
    pub finalizers_removed: usize,
    /// NetworkNodes deleted.
    pub network_nodes_deleted: usize,
    /// Nodes whose labels or extended resources were removed.
    pub nodes_cleaned: usize,
}

/// Why the cleanup stopped.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct CleanupError {
    /// What was being done.
    pub what: String,
    /// The API's error.
    pub source: kube::Error,
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CleanupError {
    let what = what.into();
    move |source| CleanupError { what, source }
}

/// The patches that remove switchyard's marks from `node`: its metadata (labels) and its
/// status (extended resources); `None` where there is nothing to remove.
pub fn node_patches(node: &Node) -> (Option<Value>, Option<Value>) {
    let labels = node_label_patch(node.labels(), &BTreeSet::new());
    let own = |resources: Option<&BTreeMap<String, Quantity>>| {
        own_resources(
            resources
                .into_iter()
                .flatten()
                .map(|(name, count)| (name, count.0.as_str())),
        )
    };
    let status = node.status.as_ref();
    let capacity = own(status.and_then(|s| s.capacity.as_ref()));
    let allocatable = own(status.and_then(|s| s.allocatable.as_ref()));
    let resources = node_resource_patch(&capacity, &allocatable, &Resources::new());
    (labels, resources)
}

/// Runs the cleanup (see the module's documentation).
pub async fn run(client: Client, config: &CleanupConfig) -> Result<CleanupSummary, CleanupError> {
    let mut summary = CleanupSummary {
        agents_left: wait_for_agents(&client, config).await?,
        ..CleanupSummary::default()
    };

    let ports = Api::<NetworkPort>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(failed("listing NetworkPorts"))?;
    for port in ports.items.iter().filter(|p| finalizer::present(p)) {
        let namespace = port.namespace().unwrap_or_default();
        let api = Api::<NetworkPort>::namespaced(client.clone(), &namespace);
        let what = format!(
            "removing the finalizer of port {namespace}/{}",
            port.name_any()
        );
        if let Err(error) = finalizer::remove(&api, port).await {
            // The port changed since it was listed (its finalizers did): once more, as it is.
            warn!(%error, port = %port.name_any(), "retrying the finalizer removal");
            let fresh = api
                .get_opt(&port.name_any())
                .await
                .map_err(failed(what.clone()))?;
            if let Some(fresh) = fresh {
                finalizer::remove(&api, &fresh)
                    .await
                    .map_err(failed(what))?;
            }
        }
        summary.finalizers_removed += 1;
    }

    let network_nodes = Api::<NetworkNode>::all(client.clone());
    let listed = network_nodes
        .list(&ListParams::default())
        .await
        .map_err(failed("listing NetworkNodes"))?;
    for node in &listed.items {
        match network_nodes
            .delete(&node.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => summary.network_nodes_deleted += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(failed(format!("deleting NetworkNode {}", node.name_any()))(
                    error,
                ));
            }
        }
    }

    let nodes = Api::<Node>::all(client.clone());
    let listed = nodes
        .list(&ListParams::default())
        .await
        .map_err(failed("listing Nodes"))?;
    for node in &listed.items {
        let name = node.name_any();
        let (labels, resources) = node_patches(node);
        if let Some(patch) = &labels {
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed(format!(
                    "removing the switchyard labels of node {name}"
                )))?;
        }
        if let Some(patch) = &resources {
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed(format!(
                    "removing the switchyard extended resources of node {name}"
                )))?;
        }
        if labels.is_some() || resources.is_some() {
            summary.nodes_cleaned += 1;
        }
    }
    info!(
        finalizers_removed = summary.finalizers_removed,
        network_nodes_deleted = summary.network_nodes_deleted,
        nodes_cleaned = summary.nodes_cleaned,
        "switchyard's marks removed"
    );
    Ok(summary)
}

/// Waits until no pod matches the agents' selector; returns those still there when the wait
/// is over. Pods on a node that stopped answering can stay Terminating forever, and the
/// cleanup must not hang an uninstall: their agents have lost their permissions anyway.
async fn wait_for_agents(
    client: &Client,
    config: &CleanupConfig,
) -> Result<Vec<String>, CleanupError> {
    let pods: Api<Pod> = match &config.agents_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let start = Instant::now();
    loop {
        let listed = pods
            .list(&ListParams::default().labels(&config.agents_selector))
            .await
            .map_err(failed(format!(
                "listing the agents' pods ({})",
                config.agents_selector
            )))?;
        let left: Vec<String> = listed
            .items
            .iter()
            .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
            .collect();
        if left.is_empty() {
            return Ok(left);
        }
        if start.elapsed() >= config.wait {
            warn!(pods = ?left, waited_s = config.wait.as_secs(), "agent pods are still there; cleaning up anyway");
            return Ok(left);
        }
        info!(pods = ?left, "waiting for the agents' pods to be gone");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use serde_json::json;

    #[test]
    fn a_nodes_switchyard_labels_and_resources_go_and_nothing_else() {
        let quantities = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        let mut node = Node::default();
        node.metadata.labels = Some(
            [("rack", "1"), ("net.switchyard.dev/a", "true")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        );
        node.status = Some(NodeStatus {
            capacity: quantities(&[("cpu", "2"), ("switchyard.dev/a", "4")]),
            allocatable: quantities(&[("cpu", "2"), ("switchyard.dev/a", "4")]),
            ..NodeStatus::default()
        });
        let (labels, resources) = node_patches(&node);
        assert_eq!(
            labels,
            Some(json!({"metadata": {"labels": {"net.switchyard.dev/a": null}}}))
        );
        assert_eq!(
            resources,
            Some(json!({"status": {
                "capacity": {"switchyard.dev/a": null},
                "allocatable": {"switchyard.dev/a": null},
            }}))
        );

        let mut clean = Node::default();
        clean.metadata.labels = Some([("rack".to_string(), "1".to_string())].into());
        clean.status = Some(NodeStatus {
            capacity: quantities(&[("cpu", "2")]),
            ..NodeStatus::default()
        });
        assert_eq!(node_patches(&clean), (None, None));
    }
}
