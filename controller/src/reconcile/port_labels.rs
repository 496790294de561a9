//! NetworkPort labels `switchyard.dev/node` and `switchyard.dev/network`, from the spec, for
//! ports created without them: the agents watch ports by these labels.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use switchyard_crds::{CONTROLLER_MANAGER, NetworkPort};

use super::{Context, ReconcileError};
use crate::labels::port_label_patch;

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "port-labels";

/// Gives a port the labels its spec implies.
pub async fn reconcile(
    port: Arc<NetworkPort>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if let Some(patch) = port_label_patch(&port) {
        let namespace = port.namespace().unwrap_or_default();
        let api: Api<NetworkPort> = Api::namespaced(ctx.client.clone(), &namespace);
        let params = PatchParams {
            field_manager: Some(CONTROLLER_MANAGER.to_string()),
            ..Default::default()
        };
        api.patch(&port.name_any(), &params, &Patch::Merge(&patch))
            .await?;
        tracing::info!(port = %format!("{namespace}/{}", port.name_any()), "port labelled");
    }
    ctx.succeeded(NAME, &super::object_key(port.as_ref()));
    Ok(Action::await_change())
}

/// Retries transient failures with backoff.
pub fn error_policy(port: Arc<NetworkPort>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    super::on_error(NAME, port.as_ref(), error, &ctx)
}
