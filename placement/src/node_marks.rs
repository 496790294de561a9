//! What switchyard keeps on Node objects, as merge patches (or nothing when the Node is
//! already right, so a writer that changes nothing writes nothing):
//!
//! - labels `net.switchyard.dev/<network>: "true"` where the network is ready (the
//!   controller's; it owns the prefix: a label under it the cluster does not justify goes);
//! - extended resources `switchyard.dev/<network>` in status capacity and allocatable (the
//!   node agent's).
//!
//! With nothing ready and nothing served, the patches remove every mark: what the uninstall
//! cleanup sends once the agents and the controller are gone.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use switchyard_crds::{NODE_LABEL_PREFIX, RESOURCE_PREFIX};

/// The merge patch of a Node's metadata that makes its `net.switchyard.dev/*` labels match
/// `ready`, if any is needed.
pub fn node_label_patch(
    current: &BTreeMap<String, String>,
    ready: &BTreeSet<String>,
) -> Option<Value> {
    let mut changes = Map::new();
    for (key, value) in current {
        let Some(network) = key.strip_prefix(NODE_LABEL_PREFIX) else {
            continue;
        };
        if !ready.contains(network) {
            changes.insert(key.clone(), Value::Null);
        } else if value != "true" {
            changes.insert(key.clone(), json!("true"));
        }
    }
    for network in ready {
        let key = format!("{NODE_LABEL_PREFIX}{network}");
        if !current.contains_key(&key) {
            changes.insert(key, json!("true"));
        }
    }
    (!changes.is_empty()).then(|| json!({ "metadata": { "labels": changes } }))
}

/// Extended resource name (`switchyard.dev/<network>`) to count.
pub type Resources = BTreeMap<String, String>;

/// The `switchyard.dev/*` entries among a Node's capacity or allocatable (name, quantity).
pub fn own_resources<'a>(entries: impl IntoIterator<Item = (&'a String, &'a str)>) -> Resources {
    entries
        .into_iter()
        .filter(|(name, _)| name.starts_with(RESOURCE_PREFIX))
        .map(|(name, count)| (name.clone(), count.to_string()))
        .collect()
}

/// The merge patch of a Node's status that makes its `switchyard.dev/*` capacity and
/// allocatable `desired`; `None` when they already are. `capacity` and `allocatable` hold
/// only the Node's `switchyard.dev/*` entries.
pub fn node_resource_patch(
    capacity: &Resources,
    allocatable: &Resources,
    desired: &Resources,
) -> Option<Value> {
    if capacity == desired && allocatable == desired {
        return None;
    }
    let mut resources = Map::new();
    for stale in capacity.keys().chain(allocatable.keys()) {
        if !desired.contains_key(stale) {
            resources.insert(stale.clone(), Value::Null);
        }
    }
    for (name, count) in desired {
        resources.insert(name.clone(), Value::String(count.clone()));
    }
    Some(json!({"status": {"capacity": resources, "allocatable": resources}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labels;

    fn resources(entries: &[(&str, &str)]) -> Resources {
        entries
            .iter()
            .map(|(name, count)| (format!("{RESOURCE_PREFIX}{name}"), count.to_string()))
            .collect()
    }

    #[test]
    fn node_label_patch_adds_fixes_and_removes_only_the_prefix() {
        let current = labels(&[
            ("rack", "2"),
            ("net.switchyard.dev/old", "true"),
            ("net.switchyard.dev/kept", "yes"),
            ("net.switchyard.dev/same", "true"),
        ]);
        let ready = BTreeSet::from(["kept".to_string(), "same".to_string(), "new".to_string()]);
        let patch = node_label_patch(&current, &ready).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {
                "net.switchyard.dev/old": null,
                "net.switchyard.dev/kept": "true",
                "net.switchyard.dev/new": "true",
            }}})
        );
        let done = labels(&[
            ("rack", "2"),
            ("net.switchyard.dev/kept", "true"),
            ("net.switchyard.dev/same", "true"),
            ("net.switchyard.dev/new", "true"),
        ]);
        assert_eq!(node_label_patch(&done, &ready), None);
    }

    #[test]
    fn with_nothing_ready_every_switchyard_label_goes_and_no_other() {
        let current = labels(&[("rack", "2"), ("net.switchyard.dev/a", "true")]);
        assert_eq!(
            node_label_patch(&current, &BTreeSet::new()),
            Some(json!({"metadata": {"labels": {"net.switchyard.dev/a": null}}}))
        );
        assert_eq!(
            node_label_patch(&labels(&[("rack", "2")]), &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn unchanged_resources_need_no_write() {
        let both = resources(&[("a", "4")]);
        assert_eq!(node_resource_patch(&both, &both, &both), None);
    }

    #[test]
    fn resources_no_longer_wanted_are_removed_from_capacity_and_allocatable() {
        let capacity = resources(&[("a", "4"), ("gone", "1")]);
        let allocatable = resources(&[("a", "4"), ("only-allocatable", "2")]);
        let desired = resources(&[("a", "3")]);
        let patch = node_resource_patch(&capacity, &allocatable, &desired).unwrap();
        let expected = json!({
            "switchyard.dev/a": "3",
            "switchyard.dev/gone": null,
            "switchyard.dev/only-allocatable": null,
        });
        assert_eq!(patch["status"]["capacity"], expected);
        assert_eq!(patch["status"]["allocatable"], expected);
    }

    #[test]
    fn only_switchyard_resources_are_its_own() {
        let cpu = "cpu".to_string();
        let ours = format!("{RESOURCE_PREFIX}a");
        let other = "example.com/switchyard.dev".to_string();
        assert_eq!(
            own_resources([(&cpu, "4"), (&ours, "2"), (&other, "1")]),
            resources(&[("a", "2")])
        );
    }

    #[test]
    fn with_nothing_served_every_switchyard_resource_goes() {
        let capacity = resources(&[("a", "4")]);
        let patch = node_resource_patch(&capacity, &capacity, &Resources::new()).unwrap();
        assert_eq!(
            patch,
            json!({"status": {
                "capacity": {"switchyard.dev/a": null},
                "allocatable": {"switchyard.dev/a": null},
            }})
        );
        assert_eq!(
            node_resource_patch(&Resources::new(), &Resources::new(), &Resources::new()),
            None
        );
    }
}
