//! The ADD result (SPEC.md §5 "Success"), in the version the runtime asked for.
//!
//! switchyard's attachments are layer 2 only: the result lists interfaces and no addresses.
//! That shape is the same from 0.3.0 to 1.1.0, except that `interfaces[].mtu` exists only from
//! 1.1.0 on, so it is left out for older callers. A `prevResult` (plugins chained before this
//! one) is passed through with this plugin's interfaces appended, so the indices its `ips` use
//! stay valid.

use serde_json::{Map, Value, json};

use crate::version;

/// One interface the attachment created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (inside the sandbox: `CNI_IFNAME`).
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its MTU, if known.
    pub mtu: Option<u32>,
    /// `CNI_NETNS` for an interface inside the container; empty for one on the host.
    pub sandbox: String,
}

impl Interface {
    fn to_json(&self, cni_version: &str) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), json!(self.name));
        object.insert("mac".into(), json!(self.mac));
        if let Some(mtu) = self.mtu
            && version::at_least(cni_version, (1, 1, 0))
        {
            object.insert("mtu".into(), json!(mtu));
        }
        if !self.sandbox.is_empty() {
            object.insert("sandbox".into(), json!(self.sandbox));
        }
        Value::Object(object)
    }
}

/// The ADD result: `prev` (if any) with `interfaces` appended, in `cni_version`.
pub fn add_result(cni_version: &str, prev: Option<&Value>, interfaces: &[Interface]) -> Value {
    let mut result = match prev {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    result.insert("cniVersion".into(), json!(cni_version));
    let mut listed = match result.remove("interfaces") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    listed.extend(interfaces.iter().map(|i| i.to_json(cni_version)));
    result.insert("interfaces".into(), Value::Array(listed));
    Value::Object(result)
}

/// The MAC a `prevResult` gives interface `name` in `sandbox`, if it lists it.
pub fn prev_mac<'a>(prev: &'a Value, name: &str, sandbox: &str) -> Option<&'a str> {
    prev.get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| {
            i.get("name").and_then(Value::as_str) == Some(name)
                && i.get("sandbox").and_then(Value::as_str).unwrap_or("") == sandbox
        })?
        .get("mac")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_interface() -> Interface {
        Interface {
            name: "net1".into(),
            mac: "02:11:22:33:44:55".into(),
            mtu: Some(1400),
            sandbox: "/run/netns/p".into(),
        }
    }

    #[test]
    fn mtu_only_from_1_1_0() {
        let new = add_result("1.1.0", None, &[pod_interface()]);
        assert_eq!(
            new,
            json!({"cniVersion": "1.1.0", "interfaces": [
                {"name": "net1", "mac": "02:11:22:33:44:55", "mtu": 1400, "sandbox": "/run/netns/p"}
            ]})
        );
        for old in ["1.0.0", "0.4.0", "0.3.1", "0.3.0"] {
            assert_eq!(
                add_result(old, None, &[pod_interface()]),
                json!({"cniVersion": old, "interfaces": [
                    {"name": "net1", "mac": "02:11:22:33:44:55", "sandbox": "/run/netns/p"}
                ]}),
                "{old}"
            );
        }
    }

    #[test]
    fn host_interfaces_have_no_sandbox() {
        let host = Interface {
            sandbox: String::new(),
            mtu: None,
            ..pod_interface()
        };
        assert_eq!(
            add_result("1.1.0", None, &[host])["interfaces"][0],
            json!({"name": "net1", "mac": "02:11:22:33:44:55"})
        );
    }

    #[test]
    fn prev_result_is_passed_through_with_ours_appended() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "10.0.0.2/24", "interface": 0}],
            "dns": {"nameservers": ["10.0.0.1"]},
        });
        let merged = add_result("1.0.0", Some(&prev), &[pod_interface()]);
        assert_eq!(merged["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(merged["interfaces"][0]["name"], "eth0");
        assert_eq!(merged["interfaces"][1]["name"], "net1");
        assert_eq!(merged["ips"], prev["ips"]);
        assert_eq!(merged["dns"], prev["dns"]);
        assert_eq!(
            prev_mac(&merged, "net1", "/run/netns/p"),
            Some("02:11:22:33:44:55")
        );
        assert_eq!(prev_mac(&merged, "net1", "/run/netns/other"), None);
        assert_eq!(prev_mac(&json!({}), "net1", ""), None);
    }
}
