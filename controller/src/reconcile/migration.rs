//! `MigrationCheck` answers: the verdict per candidate node as the cluster is when the check
//! is created, its spec changes or the `switchyard.dev/recheck` annotation asks again. A check
//! is a question, not a subscription: re-answering every check whenever any node's counts move
//! would make every port anywhere cost a write per open check. An answered check is deleted
//! [`Context::check_ttl`] after its answer, so old ones do not pile up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use switchyard_crds::{
    ANNOTATION_RECHECK, CONTROLLER_MANAGER, Condition, ConditionStatus, MigrationCheck,
    MigrationCheckStatus, NodeVerdict,
};

use super::{Context, ReconcileError};
use switchyard_placement::check::{check_migration, eligible_nodes, summary};

/// The reconciler's name in metrics and logs.
pub const NAME: &str = "migrationcheck";

/// How long an answered check is kept unless the controller's `--check-ttl` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Answers a migration check that asks (new, changed or `switchyard.dev/recheck`), and deletes
/// one whose answer is older than the TTL.
pub async fn reconcile(
    check: Arc<MigrationCheck>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.caches.wait_synced().await {
        return Ok(Action::await_change());
    }
    let namespace = check.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", check.name_any());
    let api: Api<MigrationCheck> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = k8s_openapi::jiff::Timestamp::now();
    if let Some(answered) = current_answer(&check) {
        let age = Duration::try_from(now.duration_since(answered)).unwrap_or_default();
        ctx.succeeded(NAME, &super::object_key(check.as_ref()));
        if age < ctx.check_ttl {
            return Ok(Action::requeue(ctx.check_ttl - age));
        }
        match api
            .delete(&check.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                tracing::info!(check = %key, answered = %answered, "migration check expired; deleted")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
        return Ok(Action::await_change());
    }

    let started = Instant::now();
    let verdicts = check_migration(&ctx.caches.read(), &check.spec);
    ctx.metrics.checked(NAME, started.elapsed());
    let status = answer(
        verdicts,
        check.metadata.generation,
        check.status.as_ref(),
        &super::now(),
    );
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
        check = %key,
        eligible = %status.summary.as_deref().unwrap_or(""),
        "migration check answered"
    );
    if check.annotations().contains_key(ANNOTATION_RECHECK) {
        // Taken away only after the answer is written: a failure above keeps the request.
        let unask = json!({"metadata": {"annotations": {ANNOTATION_RECHECK: null}}});
        api.patch(
            &check.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&unask),
        )
        .await?;
    }
    ctx.succeeded(NAME, &super::object_key(check.as_ref()));
    Ok(Action::requeue(ctx.check_ttl))
}

/// When the check's answer was computed, if it answers the current spec and nobody asked
/// again; `None` when it must be (re-)answered.
fn current_answer(check: &MigrationCheck) -> Option<k8s_openapi::jiff::Timestamp> {
    if check.annotations().contains_key(ANNOTATION_RECHECK) {
        return None;
    }
    let status = check.status.as_ref()?;
    if status.observed_generation != check.metadata.generation {
        return None;
    }
    status.answered_at.as_deref()?.parse().ok()
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
        answered_at: Some(now.to_string()),
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
        assert_eq!(again.answered_at.as_deref(), Some("t1"));
        assert_eq!(
            again,
            MigrationCheckStatus {
                answered_at: Some("t1".into()),
                ..first.clone()
            }
        );
        let changed = answer(verdicts(true), Some(1), Some(&first), "t2");
        assert_eq!(changed.summary.as_deref(), Some("2/2"));
        assert_eq!(
            changed.conditions[0].last_transition_time.as_deref(),
            Some("t2")
        );
    }

    fn check(generation: i64, status: Option<MigrationCheckStatus>) -> MigrationCheck {
        let mut check = MigrationCheck::new("vm1", Default::default());
        check.metadata.generation = Some(generation);
        check.status = status;
        check
    }

    #[test]
    fn a_check_is_answered_again_only_when_its_spec_changed_or_it_asks() {
        assert_eq!(current_answer(&check(1, None)), None, "never answered");
        let answered = answer(verdicts(true), Some(1), None, "2026-12-01T10:00:00Z");
        let at: k8s_openapi::jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        assert_eq!(current_answer(&check(1, Some(answered.clone()))), Some(at));
        assert_eq!(
            current_answer(&check(2, Some(answered.clone()))),
            None,
            "the spec changed since"
        );
        let mut asked = check(1, Some(answered));
        asked.metadata.annotations =
            Some([(ANNOTATION_RECHECK.to_string(), "1".to_string())].into());
        assert_eq!(current_answer(&asked), None, "the recheck annotation");
    }
}
