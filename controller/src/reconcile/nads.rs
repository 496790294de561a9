//! NetworkAttachmentDefinitions: applies the NADs [`crate::nad::plan_nads`] wants for a
//! Network, deletes the controller's NADs of that Network it no longer wants (a portgroup or
//! a namespace removed), and reports the outcome as the Network's `AttachmentDefinitions`
//! condition.
//!
//! NADs of a deleted Network are the garbage collector's: each is owned by its Network.
//! Without the NAD CRD (no Multus) the condition says so and the Network is looked at again
//! with the shared backoff, up to [`switchyard_retry::MAX_BACKOFF`], so installing Multus
//! later needs no restart and a cluster without it costs a request every few minutes.

use std::sync::Arc;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use switchyard_crds::{CONTROLLER_MANAGER, Condition, ConditionStatus, Network};

use super::{Context, ReconcileError};
use crate::nad::{NadPlan, nad_resource, plan_nads};

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "attachment-definitions";
/// The Network condition this reconciler owns.
pub const CONDITION: &str = "AttachmentDefinitions";
/// The field manager of the condition. Not [`CONTROLLER_MANAGER`]: the network reconciler
/// applies its conditions with that one, and a server-side apply drops the list entries its
/// manager applied before but leaves out, so each writer of conditions needs its own.
pub const CONDITION_MANAGER: &str = "switchyard-controller/attachment-definitions";

/// What a reconcile found, before it is written as the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `True` when every wanted NAD is applied and none refused.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What a person reads.
    pub message: String,
}

/// The outcome when every apply and delete succeeded.
pub fn applied(plan: &NadPlan, namespaces: &[String]) -> Outcome {
    let count = plan.wanted.len();
    if plan.refused.is_empty() {
        return Outcome {
            status: ConditionStatus::True,
            reason: "Applied",
            message: format!(
                "{count} NetworkAttachmentDefinitions in namespace(s) {}",
                namespaces.join(", ")
            ),
        };
    }
    Outcome {
        status: ConditionStatus::False,
        reason: "InvalidName",
        message: format!(
            "{count} NetworkAttachmentDefinitions applied; {}",
            plan.refused.join("; ")
        ),
    }
}

/// The outcome of a failed request.
pub fn failed(what: &str, error: &kube::Error) -> Outcome {
    if crd_missing(error) {
        return Outcome {
            status: ConditionStatus::False,
            reason: "NotInstalled",
            message: "the NetworkAttachmentDefinition CRD (k8s.cni.cncf.io/v1, Multus) is not \
                      installed: no NetworkAttachmentDefinitions can be made"
                .to_string(),
        };
    }
    Outcome {
        status: ConditionStatus::False,
        reason: "ApplyFailed",
        message: format!("{what}: {error}"),
    }
}

/// Whether the API answered that it serves no NADs at all: a 404 naming no object (a missing
/// NAD or namespace is named in the answer's details).
pub fn crd_missing(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 404
                && status
                    .details
                    .as_ref()
                    .is_none_or(|details| details.name.is_empty())
        }
        _ => false,
    }
}

/// The condition to write for `outcome`, or `None` when the Network already has it.
pub fn condition_update(network: &Network, outcome: &Outcome, now: &str) -> Option<Condition> {
    let current = network
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.kind == CONDITION));
    let generation = network.meta().generation;
    if let Some(current) = current
        && current.status == outcome.status
        && current.reason == outcome.reason
        && current.message == outcome.message
        && current.observed_generation == generation
    {
        return None;
    }
    let since = current
        .filter(|c| c.status == outcome.status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Some(Condition {
        kind: CONDITION.to_string(),
        status: outcome.status,
        reason: outcome.reason.to_string(),
        message: outcome.message.clone(),
        last_transition_time: Some(since),
        observed_generation: generation,
    })
}

/// Applies and prunes a Network's NADs and reports it.
pub async fn reconcile(network: Arc<Network>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = network.name_any();
    let key = super::object_key(network.as_ref());
    let namespaces = &ctx.nad_namespaces;
    let plan = plan_nads(&network, namespaces);
    match sync(&ctx, &name, &plan).await {
        Ok(()) => {
            write_condition(&ctx, &network, &applied(&plan, namespaces)).await?;
            tracing::debug!(network = %name, nads = plan.wanted.len(), "attachment definitions applied");
            ctx.succeeded(NAME, &key);
            Ok(Action::await_change())
        }
        Err((what, error)) => {
            let outcome = failed(&what, &error);
            // The condition must not keep saying True while the NADs are not there.
            write_condition(&ctx, &network, &outcome).await?;
            if crd_missing(&error) {
                // Refused until someone installs the CRD: retried at the backoff's pace.
                ctx.metrics.reconcile_failed(NAME, "not-installed");
                let (attempt, delay) = ctx.failures.failed(key.clone());
                tracing::warn!(network = %name, attempt, retry_in = ?delay, "{}", outcome.message);
                return Ok(Action::requeue(delay));
            }
            Err(error.into())
        }
    }
}

/// Applies the wanted NADs, then deletes the controller's NADs of `network` not wanted.
async fn sync(ctx: &Context, network: &str, plan: &NadPlan) -> Result<(), (String, kube::Error)> {
    let resource = nad_resource();
    let apply = PatchParams::apply(CONTROLLER_MANAGER).force();
    for nad in &plan.wanted {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &nad.namespace, &resource);
        api.patch(&nad.name, &apply, &Patch::Apply(&nad.object))
            .await
            .map_err(|error| {
                (
                    format!(
                        "applying NetworkAttachmentDefinition {}/{}",
                        nad.namespace, nad.name
                    ),
                    error,
                )
            })?;
    }
    let all: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    let selector = crate::nad::managed_selector(network);
    let existing = all
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| ("listing NetworkAttachmentDefinitions".to_string(), error))?;
    for stale in existing.items {
        let (Some(namespace), stale_name) = (stale.namespace(), stale.name_any()) else {
            continue;
        };
        if plan.wants(&namespace, &stale_name) {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
        match api.delete(&stale_name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(network, namespace = %namespace, nad = %stale_name, "deleted a NetworkAttachmentDefinition no longer wanted");
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => {
                return Err((
                    format!("deleting NetworkAttachmentDefinition {namespace}/{stale_name}"),
                    error,
                ));
            }
        }
    }
    Ok(())
}

async fn write_condition(
    ctx: &Context,
    network: &Network,
    outcome: &Outcome,
) -> Result<(), ReconcileError> {
    let Some(condition) = condition_update(network, outcome, &super::now()) else {
        return Ok(());
    };
    let patch = json!({
        "apiVersion": Network::api_version(&()),
        "kind": Network::kind(&()),
        "status": {"conditions": [condition]},
    });
    let api: Api<Network> = Api::all(ctx.client.clone());
    api.patch_status(
        &network.name_any(),
        &PatchParams::apply(CONDITION_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    tracing::info!(network = %network.name_any(), status = ?outcome.status, reason = outcome.reason, message = %outcome.message, "attachment definitions condition");
    Ok(())
}

/// Retries transient failures with backoff.
pub fn error_policy(network: Arc<Network>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    super::on_error(NAME, network.as_ref(), error, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::StatusDetails;
    use switchyard_crds::{NetworkSpec, NetworkStatus};

    fn not_found(details: Option<StatusDetails>) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code: 404,
            reason: "NotFound".into(),
            message: "the server could not find the requested resource".into(),
            details,
            ..Default::default()
        }))
    }

    #[test]
    fn a_404_naming_nothing_is_a_missing_crd() {
        assert!(crd_missing(&not_found(None)));
        let details = |name: &str, kind: &str| -> StatusDetails {
            serde_json::from_value(json!({"name": name, "kind": kind})).unwrap()
        };
        assert!(crd_missing(&not_found(Some(details("", "")))));
        let namespace = details("vms", "namespaces");
        assert!(!crd_missing(&not_found(Some(namespace.clone()))));
        let outcome = failed("applying x", &not_found(Some(namespace)));
        assert_eq!(outcome.reason, "ApplyFailed");
        assert!(
            outcome.message.starts_with("applying x: "),
            "{}",
            outcome.message
        );
        assert_eq!(
            failed("applying x", &not_found(None)).reason,
            "NotInstalled"
        );
    }

    fn network_with(condition: Option<Condition>) -> Network {
        let mut network = Network::new("lan", NetworkSpec::default());
        network.metadata.generation = Some(2);
        network.status = Some(NetworkStatus {
            conditions: condition.into_iter().collect(),
            ..Default::default()
        });
        network
    }

    #[test]
    fn the_condition_is_written_only_when_it_changes() {
        let plan = NadPlan::default();
        let ok = applied(&plan, &["default".to_string()]);
        assert_eq!(ok.status, ConditionStatus::True);
        let first = condition_update(&network_with(None), &ok, "t1").expect("a new condition");
        assert_eq!(first.last_transition_time.as_deref(), Some("t1"));
        assert_eq!(first.observed_generation, Some(2));
        assert_eq!(
            condition_update(&network_with(Some(first.clone())), &ok, "t2"),
            None
        );

        // A failure after success turns it False, from now.
        let broken = failed("applying x", &not_found(None));
        let second = condition_update(&network_with(Some(first.clone())), &broken, "t3").unwrap();
        assert_eq!(second.status, ConditionStatus::False);
        assert_eq!(second.last_transition_time.as_deref(), Some("t3"));

        // Another message with the same truth keeps the transition time.
        let mut other = ok.clone();
        other.message = "3 NetworkAttachmentDefinitions".into();
        let third = condition_update(&network_with(Some(first)), &other, "t4").unwrap();
        assert_eq!(third.last_transition_time.as_deref(), Some("t1"));
    }

    #[test]
    fn refused_names_make_it_false() {
        let plan = NadPlan {
            wanted: Vec::new(),
            refused: vec!["portgroup \"A\": bad".to_string()],
        };
        let outcome = applied(&plan, &["default".to_string()]);
        assert_eq!(outcome.status, ConditionStatus::False);
        assert_eq!(outcome.reason, "InvalidName");
        assert!(outcome.message.contains("portgroup \"A\": bad"));
    }
}
