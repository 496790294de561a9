//! `MigrationCheck` answers: the verdict per candidate node, kept current as the cluster
//! changes (the check is cheap, so every check is re-answered when something it reads moves).

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use switchyard_crds::{
    CONTROLLER_MANAGER, Condition, ConditionStatus, MigrationCheck, MigrationCheckStatus,
    NodeVerdict,
};

use super::{Context, ReconcileError};
use crate::check::{check_migration, eligible_nodes, summary};

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "migrationcheck";

/// Answers a migration check, or brings its answer up to date.
pub async fn reconcile(
    check: Arc<MigrationCheck>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.caches.wait_synced().await {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let verdicts = check_migration(&ctx.caches.read(), &check.spec);
    ctx.metrics.checked(NAME, started.elapsed());
    let previous = check.status.as_ref();
    let status = answer(verdicts, check.metadata.generation, previous, &super::now());
    if previous != Some(&status) {
        let namespace = check.namespace().unwrap_or_default();
        let api: Api<MigrationCheck> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": MigrationCheck::api_version(&()),
            "kind": MigrationCheck::kind(&()),
            "status": status,
        });
        api.patch_status(
            &check.name_any(),
            &PatchParams::apply(CONTROLLER_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(
            check = %format!("{namespace}/{}", check.name_any()),
            eligible = %status.summary.as_deref().unwrap_or(""),
            "migration check answered"
        );
    }
    ctx.succeeded(NAME, &super::object_key(check.as_ref()));
    Ok(Action::await_change())
}

/// Retries transient failures with backoff.
pub fn error_policy(
    check: Arc<MigrationCheck>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    super::on_error(NAME, check.as_ref(), error, &ctx)
}

/// The status for a set of verdicts. The `Checked` condition's transition time is kept while
/// the answer stays the same, so an unchanged answer is an identical status.
pub fn answer(
    verdicts: Vec<NodeVerdict>,
    generation: Option<i64>,
    previous: Option<&MigrationCheckStatus>,
    now: &str,
) -> MigrationCheckStatus {
    let eligible = eligible_nodes(&verdicts);
    let summary = summary(&verdicts);
    let unchanged =
        previous.is_some_and(|p| p.nodes == verdicts && p.observed_generation == generation);
    let since = previous
        .filter(|_| unchanged)
        .and_then(|p| p.conditions.iter().find(|c| c.kind == "Checked"))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    let message = match eligible.len() {
        0 => format!(
            "none of the {} checked nodes can take every interface",
            verdicts.len()
        ),
        n => format!(
            "{n} of {} checked nodes can take every interface",
            verdicts.len()
        ),
    };
    MigrationCheckStatus {
        observed_generation: generation,
        summary: Some(summary),
        eligible_nodes: eligible.clone(),
        conditions: vec![Condition {
            kind: "Checked".to_string(),
            status: ConditionStatus::True,
            reason: if eligible.is_empty() {
                "NoEligibleNode"
            } else {
                "EligibleNodesFound"
            }
            .to_string(),
            message,
            last_transition_time: Some(since),
            observed_generation: generation,
        }],
        nodes: verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{IneligibleReason, ReasonCode};

    fn verdicts(b_eligible: bool) -> Vec<NodeVerdict> {
        vec![
            NodeVerdict {
                node: "a".into(),
                eligible: true,
                reasons: vec![],
            },
            NodeVerdict {
                node: "b".into(),
                eligible: b_eligible,
                reasons: if b_eligible {
                    vec![]
                } else {
                    vec![IneligibleReason {
                        interface: None,
                        code: ReasonCode::NodeNotReady,
                        message: "down".into(),
                    }]
                },
            },
        ]
    }

    #[test]
    fn answer_lists_eligible_nodes_and_keeps_its_time_while_unchanged() {
        let first = answer(verdicts(false), Some(1), None, "t0");
        assert_eq!(first.summary.as_deref(), Some("1/2"));
        assert_eq!(first.eligible_nodes, ["a"]);
        assert_eq!(first.conditions[0].reason, "EligibleNodesFound");
        assert_eq!(
            first.conditions[0].message,
            "1 of 2 checked nodes can take every interface"
        );
        let again = answer(verdicts(false), Some(1), Some(&first), "t1");
        assert_eq!(again, first);
        let changed = answer(verdicts(true), Some(1), Some(&first), "t2");
        assert_eq!(changed.summary.as_deref(), Some("2/2"));
        assert_eq!(
            changed.conditions[0].last_transition_time.as_deref(),
            Some("t2")
        );
    }
}
