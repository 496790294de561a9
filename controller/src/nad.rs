//! The Multus NetworkAttachmentDefinitions (NADs) a Network should have, as a pure function.
//!
//! A pod (or KubeVirt's virt-launcher pod) asks Multus for a secondary interface by naming a
//! NAD in its `k8s.v1.cni.cncf.io/networks` annotation. KubeVirt sends no `cni-args` for
//! connectivity networks, so the portgroup cannot be asked per pod: each portgroup gets a NAD
//! of its own. For every Network, in each configured namespace:
//! - `<network>`: no portgroup (the agent applies the network's default portgroup, if any);
//! - `<network>-<portgroup>` for each portgroup.
//!
//! Each carries `k8s.v1.cni.cncf.io/resourceName: switchyard.dev/<network>`, the node agent's
//! device plugin resource, which KubeVirt (and, for plain pods, the controller's pod webhook)
//! turns into a resource request, and is owned by the Network, so deleting the Network lets
//! the garbage collector delete them.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use switchyard_crds::{LABEL_NETWORK, Network, RESOURCE_PREFIX};

/// The NAD's API group.
pub const NAD_GROUP: &str = "k8s.cni.cncf.io";
/// The NAD's API version.
pub const NAD_VERSION: &str = "v1";
/// The NAD's kind.
pub const NAD_KIND: &str = "NetworkAttachmentDefinition";
/// The NAD's resource (plural) name.
pub const NAD_PLURAL: &str = "network-attachment-definitions";
/// The NAD annotation Multus and KubeVirt read the device plugin resource from.
pub const ANNOTATION_RESOURCE_NAME: &str = "k8s.v1.cni.cncf.io/resourceName";
/// The label that marks a NAD as the controller's to update and delete.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// [`LABEL_MANAGED_BY`]'s value on the controller's NADs.
pub const MANAGED_BY: &str = "switchyard-controller";
/// The CNI plugin (binary name) the NADs run.
pub const CNI_TYPE: &str = "switchyard-cni";
/// The CNI spec version of the generated configurations (the shim speaks 0.3.0 to 1.1.0).
pub const CNI_VERSION: &str = "1.0.0";
/// The longest Kubernetes label (and so NAD name Multus accepts in a pod's annotation).
const MAX_LABEL: usize = 63;

/// The API resource of NADs, for dynamic API calls (the NAD CRD is Multus', not ours).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(NAD_GROUP, NAD_VERSION, NAD_KIND),
        NAD_PLURAL,
    )
}

/// The label selector of the controller's NADs for `network`.
pub fn managed_selector(network: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_NETWORK}={network}")
}

/// One NAD to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedNad {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The whole object, as a server-side apply body.
    pub object: Value,
}

/// The NADs a Network should have, and the ones it cannot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NadPlan {
    /// The NADs to apply, by namespace then name.
    pub wanted: Vec<WantedNad>,
    /// Why some NADs cannot exist (a name Kubernetes or Multus refuses), one line each.
    pub refused: Vec<String>,
}

impl NadPlan {
    /// Whether `(namespace, name)` is wanted.
    pub fn wants(&self, namespace: &str, name: &str) -> bool {
        self.wanted
            .iter()
            .any(|nad| nad.namespace == namespace && nad.name == name)
    }
}

/// Why `name` cannot be a NAD name, if it cannot: Multus parses `[ns/]name[@if]` with
/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, and the name is also the `switchyard.dev/network`
/// label's value, so it must be a DNS-1123 label of at most 63 characters.
pub fn dns1123_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    if name.len() > MAX_LABEL {
        return Some(format!(
            "is {} characters long, more than {MAX_LABEL}",
            name.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "contains {bad:?}; only lower-case letters, digits and '-' are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("starts or ends with '-'".to_string());
    }
    None
}

/// The CNI configuration of a NAD: the fields `switchyard-cni` reads (`cni/src/call.rs`
/// `NetConf`). `capabilities.mac` makes Multus pass a pod's requested MAC as
/// `runtimeConfig.mac` (only declared capabilities are passed; `CNI_ARGS MAC=` is deprecated).
pub fn cni_config(nad_name: &str, network: &str, portgroup: Option<&str>) -> String {
    let mut config = json!({
        "cniVersion": CNI_VERSION,
        "name": nad_name,
        "type": CNI_TYPE,
        "network": network,
        "capabilities": {"mac": true},
    });
    if let Some(portgroup) = portgroup {
        config["portgroup"] = json!(portgroup);
    }
    config.to_string()
}

/// The NADs `network` should have in each of `namespaces`.
pub fn plan_nads(network: &Network, namespaces: &[String]) -> NadPlan {
    let mut plan = NadPlan::default();
    let network_name = network.name_any();
    if let Some(problem) = dns1123_label_problem(&network_name) {
        plan.refused.push(format!(
            "the network's name {network_name:?} cannot name a NetworkAttachmentDefinition: it {problem}"
        ));
        return plan;
    }
    let mut attachments = vec![(network_name.clone(), None)];
    for portgroup in &network.spec.portgroups {
        let name = format!("{network_name}-{}", portgroup.name);
        match dns1123_label_problem(&name) {
            None => attachments.push((name, Some(portgroup.name.as_str()))),
            Some(problem) => plan.refused.push(format!(
                "portgroup {:?}: the NetworkAttachmentDefinition name {name:?} {problem}",
                portgroup.name
            )),
        }
    }
    // Two portgroups can yield one name only by being equal, which the Network's list map
    // forbids; the network's own name can clash with none (a portgroup name is never empty).
    let namespaces: BTreeSet<&String> = namespaces.iter().collect();
    for namespace in namespaces {
        for (name, portgroup) in &attachments {
            plan.wanted.push(WantedNad {
                namespace: namespace.clone(),
                name: name.clone(),
                object: nad_object(network, namespace, name, *portgroup),
            });
        }
    }
    plan
}

fn nad_object(network: &Network, namespace: &str, name: &str, portgroup: Option<&str>) -> Value {
    let network_name = network.name_any();
    let mut owner = json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Network",
        "name": network_name,
        "controller": true,
    });
    // A Network read from the API always has a UID; a reference without one is refused.
    if let Some(uid) = network.uid() {
        owner["uid"] = json!(uid);
    }
    json!({
        "apiVersion": format!("{NAD_GROUP}/{NAD_VERSION}"),
        "kind": NAD_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_NETWORK: network_name,
            },
            "annotations": {
                ANNOTATION_RESOURCE_NAME: format!("{RESOURCE_PREFIX}{network_name}"),
            },
            "ownerReferences": [owner],
        },
        "spec": {"config": cni_config(name, &network_name, portgroup)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{NetworkSpec, PortGroup};

    fn network(name: &str, portgroups: &[&str]) -> Network {
        let mut network = Network::new(
            name,
            NetworkSpec {
                portgroups: portgroups
                    .iter()
                    .map(|pg| PortGroup {
                        name: pg.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        );
        network.metadata.uid = Some("uid-1".to_string());
        network
    }

    fn namespaces(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    fn names(plan: &NadPlan) -> Vec<String> {
        plan.wanted
            .iter()
            .map(|nad| format!("{}/{}", nad.namespace, nad.name))
            .collect()
    }

    #[test]
    fn one_nad_per_network_and_portgroup_in_each_namespace() {
        let plan = plan_nads(
            &network("lan", &["web", "db"]),
            &namespaces(&["vms", "default"]),
        );
        assert_eq!(
            names(&plan),
            [
                "default/lan",
                "default/lan-web",
                "default/lan-db",
                "vms/lan",
                "vms/lan-web",
                "vms/lan-db"
            ]
        );
        assert!(plan.refused.is_empty());
        assert!(plan.wants("vms", "lan-db"));
        assert!(!plan.wants("other", "lan-db"));
    }

    #[test]
    fn a_nad_carries_resource_labels_owner_and_config() {
        let plan = plan_nads(&network("lan", &["web"]), &namespaces(&["default"]));
        let nad = &plan.wanted[1].object;
        assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1");
        assert_eq!(nad["kind"], "NetworkAttachmentDefinition");
        assert_eq!(
            nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"],
            "switchyard.dev/lan"
        );
        assert_eq!(
            nad["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "switchyard-controller"
        );
        assert_eq!(nad["metadata"]["labels"]["switchyard.dev/network"], "lan");
        let owner = &nad["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Network");
        assert_eq!(owner["apiVersion"], "switchyard.dev/v1alpha1");
        assert_eq!(owner["uid"], "uid-1");
        let config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(
            config,
            json!({"cniVersion": "1.0.0", "name": "lan-web", "type": "switchyard-cni",
                   "network": "lan", "portgroup": "web", "capabilities": {"mac": true}})
        );
        let plain: Value =
            serde_json::from_str(plan.wanted[0].object["spec"]["config"].as_str().unwrap())
                .unwrap();
        assert_eq!(plain["name"], "lan");
        assert!(plain.get("portgroup").is_none(), "{plain}");
    }

    #[test]
    fn the_config_is_what_the_cni_shim_reads() {
        // The shim's own parser is the judge of the field names.
        let with_portgroup =
            switchyard_cni::NetConf::parse(&cni_config("lan-web", "lan", Some("web")))
                .expect("the shim accepts the configuration");
        assert_eq!(with_portgroup.name, "lan-web");
        assert_eq!(with_portgroup.network, "lan");
        assert_eq!(with_portgroup.portgroup.as_deref(), Some("web"));
        assert_eq!(with_portgroup.cni_version, "1.0.0");
        let plain = switchyard_cni::NetConf::parse(&cni_config("lan", "lan", None)).unwrap();
        assert_eq!(plain.network, "lan");
        assert_eq!(plain.portgroup, None);
    }

    #[test]
    fn names_that_cannot_be_nads_are_refused_with_the_reason() {
        let plan = plan_nads(
            &network("lan", &["Web", "ok", &"x".repeat(60)]),
            &namespaces(&["default"]),
        );
        assert_eq!(names(&plan), ["default/lan", "default/lan-ok"]);
        assert_eq!(plan.refused.len(), 2, "{:?}", plan.refused);
        assert!(
            plan.refused[0].contains("\"lan-Web\"") && plan.refused[0].contains("'W'"),
            "{:?}",
            plan.refused
        );
        assert!(
            plan.refused[1].contains("64 characters"),
            "{:?}",
            plan.refused
        );

        let dotted = plan_nads(&network("lan.example", &["web"]), &namespaces(&["default"]));
        assert!(dotted.wanted.is_empty());
        assert_eq!(dotted.refused.len(), 1);
        assert!(
            dotted.refused[0].contains("\"lan.example\""),
            "{:?}",
            dotted.refused
        );
    }

    #[test]
    fn dns1123_labels() {
        for good in ["a", "lan-1", "0x", &"a".repeat(63)] {
            assert_eq!(dns1123_label_problem(good), None, "{good}");
        }
        for bad in ["", "-a", "a-", "a_b", "A", "a.b", &"a".repeat(64)] {
            assert!(dns1123_label_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn no_namespaces_no_nads() {
        assert!(plan_nads(&network("lan", &["web"]), &[]).wanted.is_empty());
    }

    #[test]
    fn the_selector_names_the_network() {
        assert_eq!(
            managed_selector("lan"),
            "app.kubernetes.io/managed-by=switchyard-controller,switchyard.dev/network=lan"
        );
    }
}
