//! The status the agent writes on a port, and its `Ready` condition. Pure.

use switchyard_crds::{Condition, ConditionStatus, NetworkPortStatus, PortActual, PortPhase};

use crate::bandwidth::MissingTcFeature;

/// The condition type every port status carries.
pub const READY: &str = "Ready";
/// The condition of a realised port whose bandwidth lacks an optional kernel part.
pub const BANDWIDTH_DEGRADED: &str = "BandwidthDegraded";

/// The status of a realised port.
pub fn ready(
    previous: Option<&NetworkPortStatus>,
    generation: Option<i64>,
    actual: PortActual,
    now: &str,
) -> NetworkPortStatus {
    let message = match (&actual.device, &actual.bridge) {
        (_, Some(bridge)) => format!("port {} attached to bridge {bridge}", actual.link_name),
        (Some(device), None) => format!("macvtap {} on {device}", actual.link_name),
        (None, None) => format!("link {}", actual.link_name),
    };
    NetworkPortStatus {
        phase: Some(PortPhase::Ready),
        observed_generation: generation,
        conditions: vec![condition(
            previous,
            ConditionStatus::True,
            "Realised",
            &message,
            generation,
            now,
        )],
        actual: Some(actual),
    }
}

/// Adds the `BandwidthDegraded` condition to a realised port's status when the kernel lacks
/// parts of libvirt's shaping that the limit holds without (`missing`), naming each.
pub fn with_missing_tc_features(
    mut status: NetworkPortStatus,
    previous: Option<&NetworkPortStatus>,
    missing: &[MissingTcFeature],
    now: &str,
) -> NetworkPortStatus {
    if missing.is_empty() {
        return status;
    }
    let message = missing
        .iter()
        .map(|f| format!("{} (kernel lacks {})", f.consequence(), f.kernel_option()))
        .collect::<Vec<_>>()
        .join("; ");
    let since = previous
        .into_iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.kind == BANDWIDTH_DEGRADED && c.message == message)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    status.conditions.push(Condition {
        kind: BANDWIDTH_DEGRADED.into(),
        status: ConditionStatus::True,
        reason: "TcFeatureMissing".into(),
        message,
        last_transition_time: Some(since),
        observed_generation: status.observed_generation,
    });
    status
}

/// The condition of a pod port whose link is down because its VM migrated to another node.
pub const MIGRATED_AWAY: &str = "MigratedAway";

/// Adds (or replaces) the [`MIGRATED_AWAY`] condition: the port's link was set down because
/// live migration `migration_uid` moved its VM to `target_node`. The port stays realised.
pub fn with_migrated_away(
    mut status: NetworkPortStatus,
    migration_uid: &str,
    target_node: &str,
    now: &str,
) -> NetworkPortStatus {
    status.conditions.retain(|c| c.kind != MIGRATED_AWAY);
    status.conditions.push(Condition {
        kind: MIGRATED_AWAY.into(),
        status: ConditionStatus::True,
        reason: "MigrationCompleted".into(),
        message: format!(
            "the VM migrated to node {target_node} (migration {migration_uid}); this link is \
             down so that the node's traffic for the VM's MAC goes to it there"
        ),
        last_transition_time: Some(now.to_string()),
        observed_generation: status.observed_generation,
    });
    status
}

/// The status of a port that is not realised: `Pending` when it may still be (waiting for a
/// device, a network), `Failed` when it cannot be until something changes.
pub fn not_ready(
    previous: Option<&NetworkPortStatus>,
    generation: Option<i64>,
    phase: PortPhase,
    reason: &str,
    message: &str,
    now: &str,
) -> NetworkPortStatus {
    NetworkPortStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions: vec![condition(
            previous,
            ConditionStatus::False,
            reason,
            message,
            generation,
            now,
        )],
        actual: None,
    }
}

/// The `Ready` condition, keeping the last transition time while the status stays the same.
fn condition(
    previous: Option<&NetworkPortStatus>,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let since = previous
        .into_iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.kind == READY && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        kind: READY.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(since),
        observed_generation: generation,
    }
}

/// Whether writing `next` would change what the port shows (ignoring transition times).
pub fn differs(current: Option<&NetworkPortStatus>, next: &NetworkPortStatus) -> bool {
    let Some(current) = current else { return true };
    let strip = |s: &NetworkPortStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(current) != strip(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{ActualType, MacvtapMode};

    fn actual() -> PortActual {
        PortActual {
            kind: ActualType::Direct,
            device: Some("eth1".into()),
            mode: Some(MacvtapMode::Vepa),
            link_name: "swy0123456789".into(),
            ..Default::default()
        }
    }

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let first = ready(None, Some(1), actual(), "2026-01-01T00:00:00Z");
        let again = ready(Some(&first), Some(1), actual(), "2026-01-01T00:05:00Z");
        assert_eq!(
            again.conditions[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert!(!differs(Some(&first), &again));
        let failed = not_ready(
            Some(&again),
            Some(2),
            PortPhase::Pending,
            "NoFreeDevice",
            "none",
            "2026-01-01T00:06:00Z",
        );
        assert_eq!(
            failed.conditions[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:06:00Z")
        );
        assert!(differs(Some(&again), &failed));
        assert!(failed.actual.is_none());
    }

    #[test]
    fn a_degraded_bandwidth_says_which_module_is_missing_and_keeps_its_time() {
        let ready = ready(None, Some(1), actual(), "t0");
        assert_eq!(
            with_missing_tc_features(ready.clone(), None, &[], "t0"),
            ready
        );
        let degraded = with_missing_tc_features(
            ready.clone(),
            None,
            &[MissingTcFeature::Sfq, MissingTcFeature::Fw],
            "t0",
        );
        let condition = &degraded.conditions[1];
        assert_eq!(condition.kind, BANDWIDTH_DEGRADED);
        assert!(
            condition
                .message
                .starts_with("sfq unavailable: average/peak/burst applied without fair queueing"),
            "{}",
            condition.message
        );
        assert!(condition.message.contains("CONFIG_NET_SCH_SFQ"));
        assert!(condition.message.contains("CONFIG_NET_CLS_FW"));
        let again = with_missing_tc_features(
            ready,
            Some(&degraded),
            &[MissingTcFeature::Sfq, MissingTcFeature::Fw],
            "t1",
        );
        assert!(!differs(Some(&degraded), &again));
        assert_eq!(
            again.conditions[1].last_transition_time.as_deref(),
            Some("t0")
        );
    }

    #[test]
    fn a_migrated_port_says_so_once_and_stays_ready() {
        let status = ready(None, Some(1), actual(), "t0");
        let once = with_migrated_away(status, "m1", "b", "t1");
        let twice = with_migrated_away(once.clone(), "m2", "c", "t2");
        assert_eq!(twice.phase, Some(PortPhase::Ready));
        let migrated: Vec<_> = twice
            .conditions
            .iter()
            .filter(|c| c.kind == MIGRATED_AWAY)
            .collect();
        assert_eq!(migrated.len(), 1);
        assert!(migrated[0].message.contains("node c (migration m2)"));
        assert!(twice.conditions.iter().any(|c| c.kind == READY));
        assert_eq!(once.conditions.len(), 2);
    }

    #[test]
    fn messages_name_the_link_and_device() {
        let status = ready(None, None, actual(), "t");
        assert_eq!(
            status.conditions[0].message,
            "macvtap swy0123456789 on eth1"
        );
        assert_eq!(status.phase, Some(PortPhase::Ready));
    }
}
