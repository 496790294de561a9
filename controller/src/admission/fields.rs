//! Which fields of an object an update changed, named as the API spells them.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// `value` as the API serialises it.
pub(crate) fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The fields (`<prefix>.<key>`) in which two JSON objects differ, in order; a missing field
/// counts as null, as the API treats it.
pub(crate) fn changed(prefix: &str, old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|key| {
            old.get(*key).unwrap_or(&Value::Null) != new.get(*key).unwrap_or(&Value::Null)
        })
        .map(|key| format!("{prefix}.{key}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changed;

    #[test]
    fn changed_fields_are_named_and_a_missing_field_is_null() {
        let old = json!({"node": "a", "mac": "m", "vlan": null, "owner": {"name": "x"}});
        let new = json!({"node": "b", "mac": "m", "owner": {"name": "y"}, "portgroup": "gold"});
        assert_eq!(
            changed("spec", &old, &new),
            ["spec.node", "spec.owner", "spec.portgroup"]
        );
        assert!(changed("spec", &old, &old).is_empty());
    }
}
