//! switchyard's API, group `switchyard.dev`, version `v1alpha1`.
//!
//! Types only, plus the names every component agrees on. No I/O.

// Several `printcolumn(type_ = "string", ...)` attributes on one kind look alike to clippy.
#![allow(clippy::duplicated_attributes)]

pub mod common;
pub mod migration;
pub mod network;
pub mod node;
pub mod port;

pub use common::*;
pub use migration::*;
pub use network::*;
pub use node::*;
pub use port::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// The API group.
pub const GROUP: &str = "switchyard.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// Label on a NetworkPort naming its node, so each agent watches only its own ports.
pub const LABEL_NODE: &str = "switchyard.dev/node";
/// Label on a NetworkPort naming its network.
pub const LABEL_NETWORK: &str = "switchyard.dev/network";
/// Prefix of the Node label that says a node serves a network: `net.switchyard.dev/<network>`.
pub const NODE_LABEL_PREFIX: &str = "net.switchyard.dev/";
/// Prefix of the extended resource a node advertises per network: `switchyard.dev/<network>`.
pub const RESOURCE_PREFIX: &str = "switchyard.dev/";
/// Finalizer the agent holds on a port until its link is gone.
pub const PORT_FINALIZER: &str = "switchyard.dev/port-cleanup";
/// Label on a pod's NetworkPort: the pod's UID. It marks the port as one the node agent's CNI
/// server made for a pod on its node.
pub const LABEL_POD_UID: &str = "switchyard.dev/cni-pod-uid";
/// Annotation on a pod's NetworkPort: `CNI_CONTAINERID` (too long for a label).
pub const ANNOTATION_CNI_CONTAINER_ID: &str = "switchyard.dev/cni-container-id";
/// Annotation on a pod's NetworkPort: `CNI_IFNAME`.
pub const ANNOTATION_CNI_IFNAME: &str = "switchyard.dev/cni-ifname";
/// Annotation on a pod's NetworkPort: `CNI_NETNS`.
pub const ANNOTATION_CNI_NETNS: &str = "switchyard.dev/cni-netns";
/// The annotations the CNI server keeps on a pod's port, changed when a new sandbox adopts it.
pub const CNI_ANNOTATIONS: [&str; 3] = [
    ANNOTATION_CNI_CONTAINER_ID,
    ANNOTATION_CNI_IFNAME,
    ANNOTATION_CNI_NETNS,
];
/// Field manager of the controller's server-side applies.
pub const CONTROLLER_MANAGER: &str = "switchyard-controller";

/// The field manager of one node's agent.
pub fn agent_manager(node: &str) -> String {
    format!("switchyard-agent/{node}")
}

/// Every CRD of the API, in a stable order, as installed on clusters.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Network::crd(),
        NetworkPort::crd(),
        NetworkNode::crd(),
        MigrationCheck::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                drop_nullable(schema);
            }
        }
    }
    crds
}

/// Removes `nullable: true`, which kube-derive puts on every `Option` field.
///
/// Kubernetes before 1.22 publishes CRD schemas as OpenAPI v2 with the type and properties of
/// nullable fields stripped, so `kubectl explain` would show no sub-fields. The API never
/// sends null (every `Option` is skipped when `None`), and the apiserver drops nulls sent by
/// clients for non-nullable fields, so nothing is lost.
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    let items: Vec<&mut JSONSchemaProps> = match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => vec![s.as_mut()],
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().collect(),
        None => Vec::new(),
    };
    let additional = match schema.additional_properties.as_mut() {
        Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_mut()),
        _ => None,
    };
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(items)
        .chain(additional)
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.all_of.iter_mut().flatten());
    for child in children {
        drop_nullable(child);
    }
}

/// Where the generated CRD YAML is committed, relative to the repository root: the plain
/// manifests and the Helm chart (which installs CRDs from its own `crds/`).
pub const CRD_DIRS: [&str; 2] = ["deploy/crds", "charts/switchyard/crds"];

/// The file name under `deploy/crds/` of a CRD.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// A CRD as the YAML committed under `deploy/crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD always serialises to YAML");
    format!("# Generated by `cargo run -p switchyard-crds --bin crdgen`; do not edit.\n{body}")
}
