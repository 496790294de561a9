//! Network status: which nodes serve the network, its capacity, why other nodes cannot, with
//! Events for the changes that matter.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use switchyard_crds::{CONTROLLER_MANAGER, Network};
use switchyard_libvirt::validate::validate_network;

use super::{Context, ReconcileError};
use crate::events::Severity;
use crate::status::{network_status, status_events};

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "network";

/// Brings a network's status up to date.
pub async fn reconcile(network: Arc<Network>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.caches.wait_synced().await {
        return Ok(Action::await_change());
    }
    let name = network.name_any();
    let validation_errors: Vec<String> = match validate_network(&network.spec) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    let previous = network.status.as_ref();
    let status = {
        let index = ctx.caches.read();
        network_status(
            &network,
            &index,
            &validation_errors,
            previous,
            &super::now(),
        )
    };
    // Conditions other reconcilers own (`nads`' AttachmentDefinitions) are theirs to write:
    // compared with them, this status would always look changed.
    let previous_own = previous.map(|previous| {
        let mut own = previous.clone();
        own.conditions
            .retain(|c| status.conditions.iter().any(|ours| ours.kind == c.kind));
        own
    });
    if previous_own.as_ref() != Some(&status) {
        let events = status_events(previous, &status);
        let api: Api<Network> = Api::all(ctx.client.clone());
        let patch = json!({
            "apiVersion": Network::api_version(&()),
            "kind": Network::kind(&()),
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(CONTROLLER_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(
            network = %name,
            ready = %status.nodes_ready_summary.as_deref().unwrap_or(""),
            free = status.capacity_free,
            "network status updated"
        );
        let reference = network.object_ref(&());
        for event in events {
            let severity = if event.warning {
                Severity::Warning
            } else {
                Severity::Normal
            };
            let published = ctx
                .events
                .publish(&reference, severity, &event.reason, &event.note)
                .await;
            // An event lost is not worth redoing the status for.
            if let Err(error) = published {
                tracing::warn!(network = %name, reason = %event.reason, %error, "could not publish an event");
            }
        }
    }
    ctx.succeeded(NAME, &super::object_key(network.as_ref()));
    Ok(Action::await_change())
}

/// Retries transient failures with backoff.
pub fn error_policy(network: Arc<Network>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    super::on_error(NAME, network.as_ref(), error, &ctx)
}
