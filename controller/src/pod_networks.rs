//! The `switchyard.dev/<network>` resource requests a plain Pod needs for the switchyard NADs it
//! names, as pure functions (what Multus' network-resources-injector does for any NAD with a
//! resourceName). KubeVirt adds the requests to its virt-launcher pods itself; a pod the
//! injector already served, or whose author set the resource, keeps its values.
//!
//! The annotation `k8s.v1.cni.cncf.io/networks` is either a comma-separated list of
//! `[namespace/]name[@interface]` or a JSON list of objects with `name`, optional `namespace`
//! and `interface` (Multus' `NetworkSelectionElement`); a name without a namespace is in the
//! pod's namespace.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;
use switchyard_crds::RESOURCE_PREFIX;

/// The pod annotation naming the NADs Multus attaches.
pub const ANNOTATION_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// A NAD a pod names: `(namespace, name)`.
pub type NadRef = (String, String);

/// The NADs `value` names, once per interface asked, in order.
pub fn parse_networks(value: &str, pod_namespace: &str) -> Result<Vec<NadRef>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    if value.starts_with('[') {
        let elements: Vec<Value> = serde_json::from_str(value)
            .map_err(|error| format!("{ANNOTATION_NETWORKS} is not a JSON list: {error}"))?;
        return elements
            .iter()
            .map(|element| {
                let name = element
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| {
                        format!("{ANNOTATION_NETWORKS}: an element has no name: {element}")
                    })?;
                let namespace = element
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(pod_namespace);
                Ok((namespace.to_string(), name.to_string()))
            })
            .collect();
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let without_interface = item.split_once('@').map_or(item, |(nad, _)| nad);
            let (namespace, name) = without_interface
                .split_once('/')
                .unwrap_or((pod_namespace, without_interface));
            if name.is_empty() || namespace.is_empty() {
                return Err(format!("{ANNOTATION_NETWORKS}: {item:?} names no NAD"));
            }
            Ok((namespace.to_string(), name.to_string()))
        })
        .collect()
}

/// How many interfaces of each switchyard network the pod asks for; `network_of` says which
/// network a NAD is the controller's for (`None`: not a switchyard NAD).
pub fn requested(
    nads: &[NadRef],
    mut network_of: impl FnMut(&NadRef) -> Option<String>,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for nad in nads {
        if let Some(network) = network_of(nad) {
            *counts.entry(network).or_insert(0) += 1;
        }
    }
    counts
}

/// The JSON patch that gives the pod's first container `switchyard.dev/<network>: <count>` in
/// its requests and limits, or `None` when nothing needs adding. A side the pod already sets is
/// kept; a missing side gets the other side's value if set (extended resources need both
/// equal), else the count.
pub fn resource_patch(pod: &Pod, counts: &BTreeMap<String, u64>) -> Option<Patch> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let mut resources = container.resources.clone().unwrap_or_default();
    let mut requests = resources.requests.clone().unwrap_or_default();
    let mut limits = resources.limits.clone().unwrap_or_default();
    let mut changed = false;
    for (network, count) in counts {
        let resource = format!("{RESOURCE_PREFIX}{network}");
        let wanted = requests
            .get(&resource)
            .or_else(|| limits.get(&resource))
            .cloned()
            .unwrap_or_else(|| Quantity(count.to_string()));
        for side in [&mut requests, &mut limits] {
            if !side.contains_key(&resource) {
                side.insert(resource.clone(), wanted.clone());
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    resources.requests = Some(requests);
    resources.limits = Some(limits);
    // One `add` of the whole object: it replaces an existing member, so no test of which keys
    // already exist (nor escaping of the `/` in resource names) is needed.
    Some(Patch(vec![PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(["spec", "containers", "0", "resources"]),
        value: serde_json::to_value(resources).unwrap_or_default(),
    })]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(list: &[(&str, &str)]) -> Vec<NadRef> {
        list.iter()
            .map(|(ns, name)| (ns.to_string(), name.to_string()))
            .collect()
    }

    #[test]
    fn the_comma_form() {
        assert_eq!(
            parse_networks(" lan, other/lan-web@net1 ,lan@eth2", "vms").unwrap(),
            refs(&[("vms", "lan"), ("other", "lan-web"), ("vms", "lan")])
        );
        assert_eq!(parse_networks("", "vms").unwrap(), refs(&[]));
        assert!(parse_networks("ns/", "vms").is_err());
    }

    #[test]
    fn the_json_form() {
        let value = r#"[{"name":"lan","interface":"pod1"},{"name":"lan-web","namespace":"default","mac":"02:00:00:00:00:01"}]"#;
        assert_eq!(
            parse_networks(value, "vms").unwrap(),
            refs(&[("vms", "lan"), ("default", "lan-web")])
        );
        assert!(parse_networks("[{\"namespace\":\"x\"}]", "vms").is_err());
        assert!(parse_networks("[not json", "vms").is_err());
    }

    #[test]
    fn only_switchyard_nads_count() {
        let nads = refs(&[
            ("vms", "lan"),
            ("vms", "macvlan"),
            ("vms", "lan-web"),
            ("vms", "lan"),
        ]);
        let counts = requested(&nads, |(_, name)| {
            name.starts_with("lan").then(|| "lan".to_string())
        });
        assert_eq!(counts, BTreeMap::from([("lan".to_string(), 3)]));
    }

    fn pod(resources: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "resources": resources}, {"name": "b"}]},
        }))
        .unwrap()
    }

    fn patched(pod: &Pod, counts: &BTreeMap<String, u64>) -> Value {
        let mut value = serde_json::to_value(pod).unwrap();
        let patch = resource_patch(pod, counts).expect("a patch");
        json_patch::patch(&mut value, &patch).unwrap();
        value["spec"]["containers"].clone()
    }

    #[test]
    fn the_first_container_gets_requests_and_limits() {
        let counts = BTreeMap::from([("lan".to_string(), 2), ("wan".to_string(), 1)]);
        let containers = patched(&pod(json!({"requests": {"cpu": "1"}})), &counts);
        assert_eq!(
            containers[0]["resources"],
            json!({"requests": {"cpu": "1", "switchyard.dev/lan": "2", "switchyard.dev/wan": "1"},
                   "limits": {"switchyard.dev/lan": "2", "switchyard.dev/wan": "1"}})
        );
        assert!(containers[1].get("resources").is_none());

        let bare: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}),
        )
        .unwrap();
        let containers = patched(&bare, &BTreeMap::from([("lan".to_string(), 1)]));
        assert_eq!(
            containers[0]["resources"],
            json!({"requests": {"switchyard.dev/lan": "1"}, "limits": {"switchyard.dev/lan": "1"}})
        );
    }

    #[test]
    fn values_the_pod_sets_are_kept() {
        let counts = BTreeMap::from([("lan".to_string(), 2)]);
        let both = pod(
            json!({"requests": {"switchyard.dev/lan": "1"}, "limits": {"switchyard.dev/lan": "1"}}),
        );
        assert!(resource_patch(&both, &counts).is_none());
        let limit_only = pod(json!({"limits": {"switchyard.dev/lan": "3"}}));
        assert_eq!(
            patched(&limit_only, &counts)[0]["resources"],
            json!({"requests": {"switchyard.dev/lan": "3"}, "limits": {"switchyard.dev/lan": "3"}})
        );
    }

    #[test]
    fn nothing_to_add_no_patch() {
        assert!(resource_patch(&pod(json!({})), &BTreeMap::new()).is_none());
    }
}
