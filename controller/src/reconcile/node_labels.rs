//! Node labels `net.switchyard.dev/<network>`: "true" where the network is ready.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use switchyard_crds::CONTROLLER_MANAGER;

use super::{Context, ReconcileError};
use crate::labels::{node_label_patch, ready_networks};

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "node-labels";

/// Makes a node's network labels match the networks ready on it.
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.caches.wait_synced().await {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let ready = ready_networks(&ctx.caches.read(), &name);
    if let Some(patch) = node_label_patch(node.labels(), &ready) {
        let api: Api<Node> = Api::all(ctx.client.clone());
        let params = PatchParams {
            field_manager: Some(CONTROLLER_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch(&name, &params, &Patch::Merge(&patch)).await?;
        tracing::info!(node = %name, networks = ?ready, "node network labels updated");
    }
    ctx.succeeded(NAME, &super::object_key(node.as_ref()));
    Ok(Action::await_change())
}

/// Retries transient failures with backoff.
pub fn error_policy(node: Arc<Node>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    super::on_error(NAME, node.as_ref(), error, &ctx)
}
