//! KubeVirt live migration of a VM whose pod has a switchyard interface: what this node's agent
//! does about one of its pod attachments when the owning VirtualMachineInstance's
//! `status.migrationState` changes. Pure.
//!
//! A migration gives the VM a second launcher pod on the target node; its CNI ADD there gets
//! the same MAC (derived from the VMI's UID, [`super::naming::derived_mac`]) while the source
//! pod still runs. Once the migration has completed, the source macvtap must go down at once:
//! while it stays up, a bridge-mode macvtap on the source node keeps taking the frames that
//! the node's other guests send to that MAC, and they cannot reach the migrated VM until the
//! source pod is gone (KubeVirt issue 5912). A failed or aborted migration leaves the VM on
//! the source: the target attachment is released, the source is left as it is.

use jiff::Timestamp;
use serde::Deserialize;

/// The fields of KubeVirt's `VirtualMachineInstanceMigrationState` (`kubevirt.io/v1`,
/// `status.migrationState`) the decision reads; every other field is ignored, and each one
/// here may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationState {
    /// The VirtualMachineInstanceMigration's UID: one migration.
    pub migration_uid: Option<String>,
    /// The node the VM is moving away from.
    pub source_node: Option<String>,
    /// The launcher pod it is moving away from (newer KubeVirt releases only).
    pub source_pod: Option<String>,
    /// The node it is moving to.
    pub target_node: Option<String>,
    /// The launcher pod it is moving to.
    pub target_pod: Option<String>,
    /// The migration is over (successfully unless `failed`).
    pub completed: bool,
    /// The migration failed: the VM runs on the source.
    pub failed: bool,
    /// `Succeeded` once an abort took effect (the VM stays on the source), `Aborting`,
    /// `Failed` (the abort failed: the migration goes on).
    pub abort_status: Option<String>,
    /// When the migration began (RFC 3339).
    pub start_timestamp: Option<String>,
}

/// KubeVirt's `abortStatus` once an abort took effect.
const ABORT_SUCCEEDED: &str = "Succeeded";

/// One of this node's pod attachments whose port a VMI owns, as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct LocalAttachment<'a> {
    /// This node.
    pub node: &'a str,
    /// The launcher pod the attachment belongs to.
    pub pod_name: &'a str,
    /// When ADD attached it.
    pub attached_at: Option<Timestamp>,
    /// The migration for which its link was already set down, if any.
    pub down_for: Option<&'a str>,
}

/// What to do with the attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationAction {
    /// Nothing: no migration, one under way, one that concerns another pod, or one already
    /// acted on.
    Nothing,
    /// The VM has moved away: set this (the source) link down, and remember the migration.
    SourceDown {
        /// The migration's UID.
        migration_uid: String,
        /// Where the VM went.
        target_node: String,
    },
    /// The migration to this node failed or was aborted: release this (the target)
    /// attachment.
    ReleaseTarget {
        /// The migration's UID.
        migration_uid: String,
    },
}

/// Decides what to do with `attachment` given its VMI's migration state.
///
/// The state stays on the VMI after the migration is over, until the next one replaces it, so
/// an attachment is matched to the migration by pod, not only by node: a VM migrated away and
/// later back gets a new launcher pod here, whose link an old "completed, from this node"
/// must not touch. KubeVirt names both pods in the state; when it names no source pod (older
/// releases), an attachment counts as the source only if it is older than the migration.
pub fn decide(state: Option<&MigrationState>, attachment: &LocalAttachment<'_>) -> MigrationAction {
    let Some(state) = state else {
        return MigrationAction::Nothing;
    };
    let Some(uid) = state.migration_uid.as_deref().filter(|u| !u.is_empty()) else {
        return MigrationAction::Nothing;
    };
    let node = Some(attachment.node);
    let source_node = state.source_node.as_deref();
    let target_node = state.target_node.as_deref();
    let pod = Some(attachment.pod_name);
    let aborted = state.abort_status.as_deref() == Some(ABORT_SUCCEEDED);
    if state.failed || aborted {
        // Only the pod the state names: a later migration's target on this node is not
        // this one's.
        let is_target = target_node == node
            && source_node != node
            && state.target_pod.as_deref().filter(|p| !p.is_empty()) == pod;
        return if is_target {
            MigrationAction::ReleaseTarget {
                migration_uid: uid.to_string(),
            }
        } else {
            MigrationAction::Nothing
        };
    }
    if !state.completed || attachment.down_for == Some(uid) {
        return MigrationAction::Nothing;
    }
    let Some(target) = target_node.filter(|t| Some(*t) != node && !t.is_empty()) else {
        return MigrationAction::Nothing;
    };
    if source_node != node || state.target_pod.as_deref() == pod {
        return MigrationAction::Nothing;
    }
    let is_source = match state.source_pod.as_deref().filter(|p| !p.is_empty()) {
        Some(source_pod) => Some(source_pod) == pod,
        None => older_than_migration(attachment.attached_at, state.start_timestamp.as_deref()),
    };
    if is_source {
        MigrationAction::SourceDown {
            migration_uid: uid.to_string(),
            target_node: target.to_string(),
        }
    } else {
        MigrationAction::Nothing
    }
}

/// Whether an attachment made at `attached_at` existed before a migration that began at
/// `started`: a migration's source pod runs before it begins; a pod made for a later
/// migration back to this node is attached after it. Unknown times count as older (the
/// state then has nothing else to tell the pods apart by).
fn older_than_migration(attached_at: Option<Timestamp>, started: Option<&str>) -> bool {
    match (
        attached_at,
        started.and_then(|s| s.parse::<Timestamp>().ok()),
    ) {
        (Some(attached), Some(started)) => attached < started,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: serde_json::Value) -> MigrationState {
        serde_json::from_value(json).expect("a migration state")
    }

    fn completed() -> MigrationState {
        state(serde_json::json!({
            "migrationUid": "m1", "sourceNode": "a", "sourcePod": "launcher-a",
            "targetNode": "b", "targetPod": "launcher-b", "targetNodeAddress": "10.0.0.2",
            "completed": true, "startTimestamp": "2026-12-03T10:00:00Z",
            "endTimestamp": "2026-12-03T10:00:30Z", "mode": "PreCopy",
        }))
    }

    fn on<'a>(node: &'a str, pod: &'a str) -> LocalAttachment<'a> {
        LocalAttachment {
            node,
            pod_name: pod,
            attached_at: None,
            down_for: None,
        }
    }

    fn down(uid: &str, target: &str) -> MigrationAction {
        MigrationAction::SourceDown {
            migration_uid: uid.into(),
            target_node: target.into(),
        }
    }

    #[test]
    fn a_completed_migration_takes_the_source_link_down_once() {
        let s = completed();
        assert_eq!(decide(Some(&s), &on("a", "launcher-a")), down("m1", "b"));
        // The target keeps its link.
        assert_eq!(
            decide(Some(&s), &on("b", "launcher-b")),
            MigrationAction::Nothing
        );
        // Done already for this migration.
        let mut done = on("a", "launcher-a");
        done.down_for = Some("m1");
        assert_eq!(decide(Some(&s), &done), MigrationAction::Nothing);
        // Down for an earlier migration: this one is another.
        done.down_for = Some("m0");
        assert_eq!(decide(Some(&s), &done), down("m1", "b"));
    }

    #[test]
    fn nothing_before_the_migration_is_over_or_without_one() {
        assert_eq!(
            decide(None, &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        let mut s = completed();
        s.completed = false;
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        // An abort under way, or one that failed (the migration goes on): not over.
        s.abort_status = Some("Aborting".into());
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        let mut s = completed();
        s.abort_status = Some("Failed".into());
        assert_eq!(decide(Some(&s), &on("a", "launcher-a")), down("m1", "b"));
        let mut s = completed();
        s.migration_uid = None;
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        assert_eq!(
            decide(Some(&MigrationState::default()), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
    }

    #[test]
    fn a_failed_or_aborted_migration_releases_the_target_and_leaves_the_source() {
        for s in [
            {
                let mut s = completed();
                s.failed = true;
                s
            },
            {
                let mut s = completed();
                s.completed = false;
                s.abort_status = Some("Succeeded".into());
                s
            },
        ] {
            assert_eq!(
                decide(Some(&s), &on("b", "launcher-b")),
                MigrationAction::ReleaseTarget {
                    migration_uid: "m1".into()
                }
            );
            assert_eq!(
                decide(Some(&s), &on("a", "launcher-a")),
                MigrationAction::Nothing
            );
            // Another pod of the VMI on the target node (a later target): not this one's.
            assert_eq!(
                decide(Some(&s), &on("b", "launcher-b2")),
                MigrationAction::Nothing
            );
        }
    }

    #[test]
    fn a_migration_back_leaves_the_new_pod_alone() {
        // a → b completed; later b → a starts with a new pod on a before the state changes.
        let s = completed();
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a2")),
            MigrationAction::Nothing
        );
        // Without a source pod in the state, the new pod is younger than the migration.
        let mut s = completed();
        s.source_pod = None;
        let mut newer = on("a", "launcher-a2");
        newer.attached_at = Some("2026-12-03T11:00:00Z".parse().unwrap());
        assert_eq!(decide(Some(&s), &newer), MigrationAction::Nothing);
        let mut older = on("a", "launcher-a");
        older.attached_at = Some("2026-12-03T09:00:00Z".parse().unwrap());
        assert_eq!(decide(Some(&s), &older), down("m1", "b"));
        // The state's target pod is never a source.
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-b")),
            MigrationAction::Nothing
        );
        // The next migration, b → a, completed: the pod on a is its target and stays up.
        let back = state(serde_json::json!({
            "migrationUid": "m2", "sourceNode": "b", "sourcePod": "launcher-b",
            "targetNode": "a", "targetPod": "launcher-a2", "completed": true,
        }));
        assert_eq!(
            decide(Some(&back), &on("a", "launcher-a2")),
            MigrationAction::Nothing
        );
        assert_eq!(decide(Some(&back), &on("b", "launcher-b")), down("m2", "a"));
    }

    #[test]
    fn a_migration_within_one_node_or_without_a_target_does_nothing() {
        let mut s = completed();
        s.target_node = Some("a".into());
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        s.target_node = None;
        assert_eq!(
            decide(Some(&s), &on("a", "launcher-a")),
            MigrationAction::Nothing
        );
        // Another node's source.
        let s = completed();
        assert_eq!(
            decide(Some(&s), &on("c", "launcher-a")),
            MigrationAction::Nothing
        );
    }

    #[test]
    fn unknown_fields_and_values_are_tolerated() {
        let s = state(serde_json::json!({
            "migrationUid": "m1", "sourceNode": "a", "targetNode": "b", "completed": true,
            "targetDirectMigrationNodePorts": {"4100": 0}, "migrationConfiguration": {},
            "somethingNew": [1, 2],
        }));
        assert_eq!(decide(Some(&s), &on("a", "launcher-a")), down("m1", "b"));
    }
}
