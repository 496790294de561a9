//! What a node agent may write: only its own node's objects, and of those only what it owns.
//!
//! RBAC gives the agents' ServiceAccount its verbs on every node's objects alike (it cannot
//! say "the node this pod runs on"), so the webhook narrows each agent to its node. The agent is
//! recognised by its username, `system:serviceaccount:<namespace>:<name>`; its node is that of
//! the pod its token is bound to. kube-apiserver v1.20 puts that pod in the request's
//! `userInfo.extra` (`authentication.kubernetes.io/pod-name` and `pod-uid`, having checked that
//! the pod still exists with that UID) but not the pod's node (`…/node-name` came in v1.30),
//! so the webhook reads the pod: [`pod_node`].
//!
//! An agent may then
//! - create and update its own node's `NetworkNode` (and its status),
//! - change its own `Node`'s status only in the `switchyard.dev/<network>` extended resources
//!   of `status.capacity` and `status.allocatable`,
//! - change the status of its own node's ports (`spec.node`), and of their metadata only its
//!   finalizer `switchyard.dev/port-cleanup`; never a spec,
//! - create a pod's port for its own node from its CNI server ([`pod_port_owner`]: labelled
//!   with the pod's UID and owned by that Pod), and when a new sandbox of that pod adopts the
//!   port, change the CNI annotations. The agent is its node's single allocator, so a port it
//!   makes for its own node gives it no power over another node; the placement rules still
//!   apply to the port as to any user's. It deletes only such ports of its own node.
//!
//! Anything else from the agents' ServiceAccount is refused with a message naming the node and
//! the field. Other users are not concerned.

use std::collections::BTreeMap;
use std::str::FromStr;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use serde_json::Value;
use switchyard_crds::{
    CNI_ANNOTATIONS, LABEL_POD_UID, NetworkPort, PORT_FINALIZER, RESOURCE_PREFIX,
};

use super::fields::{changed as changed_fields, json};
use super::{Decision, Denial};

/// Where kube-apiserver names the pod a bound service-account token was issued for.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// Where kube-apiserver puts that pod's UID.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";

/// The node agents' ServiceAccount, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAccount {
    /// Its namespace (the agents' pods run there).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl AgentAccount {
    /// The username its tokens authenticate as.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl FromStr for AgentAccount {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(AgentAccount {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "{value:?} is not a ServiceAccount written <namespace>/<name>"
            )),
        }
    }
}

impl std::fmt::Display for AgentAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The pod a bound token was issued for, as the apiserver vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPod {
    /// The pod's name (its namespace is the ServiceAccount's).
    pub name: String,
    /// The pod's UID.
    pub uid: String,
}

/// Who sent a request, as far as the per-node rules go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A node agent, through the pod its token is bound to.
    Agent(BoundPod),
    /// Anyone else: the per-node rules do not apply.
    Other,
}

/// A node agent whose pod's node is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgent {
    /// The node it runs on, so the only node it may write for.
    pub node: String,
    /// Its pod, `namespace/name`, for messages.
    pub pod: String,
}

impl NodeAgent {
    fn refuse(&self, message: std::fmt::Arguments<'_>) -> Decision {
        Decision::forbidden(format!(
            "the node agent of node \"{}\" (pod {}) {message}",
            self.node, self.pod
        ))
    }
}

fn forbidden(message: String) -> Denial {
    Denial {
        code: 403,
        reason: "Forbidden",
        message,
    }
}

/// Whether the request comes from a node agent, and from which pod. A token of the agents'
/// ServiceAccount that is bound to no pod is refused outright: its node cannot be known.
pub fn requester(account: &AgentAccount, user: &UserInfo) -> Result<Requester, Denial> {
    if user.username.as_deref() != Some(account.username().as_str()) {
        return Ok(Requester::Other);
    }
    let single = |key: &str| match user.extra.as_ref().and_then(|extra| extra.get(key)) {
        Some(values) if values.len() == 1 && !values[0].is_empty() => Some(values[0].clone()),
        _ => None,
    };
    match (single(POD_NAME_KEY), single(POD_UID_KEY)) {
        (Some(name), Some(uid)) => Ok(Requester::Agent(BoundPod { name, uid })),
        _ => Err(forbidden(format!(
            "the node agents' ServiceAccount {account} wrote with a token bound to no pod (userInfo.extra lacks {POD_NAME_KEY} and {POD_UID_KEY}), so its node is unknown; run the agent with a projected service-account token, as the chart's DaemonSet does"
        ))),
    }
}

/// The node of the agent's pod, once the pod read back is the one the token names, runs as the
/// agents' ServiceAccount and is scheduled.
pub fn pod_node(account: &AgentAccount, bound: &BoundPod, pod: &Pod) -> Result<NodeAgent, Denial> {
    let name = format!("{}/{}", account.namespace, bound.name);
    if pod.metadata.uid.as_deref() != Some(bound.uid.as_str()) {
        return Err(forbidden(format!(
            "the node agent's token is bound to pod {name} with UID {}, which no longer exists",
            bound.uid
        )));
    }
    let spec = pod.spec.as_ref();
    let runs_as = spec.and_then(|s| s.service_account_name.as_deref());
    if runs_as != Some(account.name.as_str()) {
        return Err(forbidden(format!(
            "pod {name} does not run as the node agents' ServiceAccount {account} (spec.serviceAccountName is {runs_as:?})"
        )));
    }
    match spec.and_then(|s| s.node_name.as_deref()) {
        Some(node) if !node.is_empty() => Ok(NodeAgent {
            node: node.to_string(),
            pod: name,
        }),
        _ => Err(forbidden(format!(
            "the node agent's pod {name} is not scheduled (spec.nodeName is empty), so it may write for no node"
        ))),
    }
}

/// An agent's create or update of a `NetworkNode` (or its status): its own node's only.
pub fn review_network_node(agent: &NodeAgent, name: &str) -> Decision {
    if name == agent.node {
        Decision::Allow
    } else {
        agent.refuse(format_args!(
            "may write only its own node's NetworkNode, not NetworkNode \"{name}\" (metadata.name must be \"{}\")",
            agent.node
        ))
    }
}

/// An agent's write of a kind it never writes (Networks).
pub fn review_other_kind(agent: &NodeAgent, kind: &str, name: &str) -> Decision {
    agent.refuse(format_args!("may not write {kind} \"{name}\""))
}

/// An agent's create or update of a `NetworkPort` (`sub_resource` `status`, or the port
/// itself). Only its own node's ports (`spec.node`, of the stored port); of those only the
/// status, and of the port itself only the agent's finalizer.
pub fn review_port(
    agent: &NodeAgent,
    sub_resource: Option<&str>,
    port: &NetworkPort,
    old: Option<&NetworkPort>,
) -> Decision {
    let name = format!(
        "{}/{}",
        port.namespace().unwrap_or_default(),
        port.name_any()
    );
    let Some(old) = old else {
        if port.spec.node != agent.node {
            return agent.refuse(format_args!(
                "may create only its own node's ports: NetworkPort \"{name}\" has spec.node \"{}\"",
                port.spec.node
            ));
        }
        if pod_port_owner(port).is_none() {
            return agent.refuse(format_args!(
                "may create only a pod's port for its CNI server: NetworkPort \"{name}\" needs label {LABEL_POD_UID} and an ownerReference to the Pod of that UID; other ports are created by their users"
            ));
        }
        return Decision::Allow;
    };
    for node in [&old.spec.node, &port.spec.node] {
        if *node != agent.node {
            return agent.refuse(format_args!(
                "may write only its own node's ports: NetworkPort \"{name}\" has spec.node \"{node}\""
            ));
        }
    }
    if sub_resource == Some("status") {
        return Decision::Allow;
    }
    let spec = changed_fields("spec", &json(&old.spec), &json(&port.spec));
    if !spec.is_empty() {
        return agent.refuse(format_args!(
            "may not change a port's spec: {} of NetworkPort \"{name}\" changed; it may change only the status and its finalizer {PORT_FINALIZER}",
            spec.join(", ")
        ));
    }
    let (old_meta, new_meta) = if pod_port_owner(old).is_some() {
        (
            without_cni_annotations(&old.metadata),
            without_cni_annotations(&port.metadata),
        )
    } else {
        (old.metadata.clone(), port.metadata.clone())
    };
    let metadata = changed_metadata(&old_meta, &new_meta, Some(PORT_FINALIZER));
    if !metadata.is_empty() {
        return agent.refuse(format_args!(
            "may change of a port's metadata only its finalizer {PORT_FINALIZER} (and a pod's port's CNI annotations): {} of NetworkPort \"{name}\" changed",
            metadata.join(", ")
        ));
    }
    Decision::Allow
}

/// An agent's delete of a `NetworkPort`: only a pod's port of its own node (its CNI server's
/// DEL and sweep); a user's port is deleted by its user.
pub fn review_port_delete(agent: &NodeAgent, port: &NetworkPort) -> Decision {
    let name = format!(
        "{}/{}",
        port.namespace().unwrap_or_default(),
        port.name_any()
    );
    if port.spec.node != agent.node {
        return agent.refuse(format_args!(
            "may delete only its own node's ports: NetworkPort \"{name}\" has spec.node \"{}\"",
            port.spec.node
        ));
    }
    if pod_port_owner(port).is_none() {
        return agent.refuse(format_args!(
            "may delete only the pods' ports its CNI server made: NetworkPort \"{name}\" is a user's port"
        ));
    }
    Decision::Allow
}

/// The Pod (name, UID) a pod's port belongs to: the port carries label [`LABEL_POD_UID`] and
/// an ownerReference to a Pod of that UID.
pub fn pod_port_owner(port: &NetworkPort) -> Option<(&str, &str)> {
    let uid = port.labels().get(LABEL_POD_UID)?;
    port.owner_references()
        .iter()
        .find(|owner| owner.kind == "Pod" && owner.api_version == "v1" && owner.uid == *uid)
        .map(|owner| (owner.name.as_str(), owner.uid.as_str()))
}

fn without_cni_annotations(meta: &ObjectMeta) -> ObjectMeta {
    let mut meta = meta.clone();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| !CNI_ANNOTATIONS.contains(&key.as_str()));
    }
    meta
}

/// An agent's update of a `Node`'s status: its own Node's, and in it only the
/// `switchyard.dev/<network>` extended resources of `status.capacity` and `status.allocatable`.
/// (The status subresource of a Node also stores metadata changes, labels included.)
pub fn review_node_status(agent: &NodeAgent, node: &Node, old: &Node) -> Decision {
    let name = node.name_any();
    if name != agent.node {
        return agent.refuse(format_args!(
            "may write only its own Node's status, not Node \"{name}\"'s (metadata.name must be \"{}\")",
            agent.node
        ));
    }
    let mut changed = changed_metadata(&old.metadata, &node.metadata, None);
    let (mut before, mut after) = (json(&old.status), json(&node.status));
    for list in ["capacity", "allocatable"] {
        let resources = |status: &mut Value| match status.as_object_mut().map(|s| s.remove(list)) {
            Some(Some(Value::Object(resources))) => resources
                .into_iter()
                .filter(|(resource, _)| !resource.starts_with(RESOURCE_PREFIX))
                .collect(),
            _ => serde_json::Map::new(),
        };
        let (before, after) = (resources(&mut before), resources(&mut after));
        changed.extend(changed_fields(
            &format!("status.{list}"),
            &Value::Object(before),
            &Value::Object(after),
        ));
    }
    changed.extend(changed_fields("status", &before, &after));
    if changed.is_empty() {
        Decision::Allow
    } else {
        agent.refuse(format_args!(
            "may change in its Node only the {RESOURCE_PREFIX}<network> extended resources of status.capacity and status.allocatable: {} of Node \"{name}\" changed",
            changed.join(", ")
        ))
    }
}

/// The metadata a writer sets that differs: labels, annotations, owner references, finalizers
/// (apart from `finalizer`, which may come or go).
fn changed_metadata(old: &ObjectMeta, new: &ObjectMeta, finalizer: Option<&str>) -> Vec<String> {
    let mut changed = Vec::new();
    let map = |m: &Option<BTreeMap<String, String>>| m.clone().unwrap_or_default();
    if map(&old.labels) != map(&new.labels) {
        changed.push("metadata.labels".to_string());
    }
    if map(&old.annotations) != map(&new.annotations) {
        changed.push("metadata.annotations".to_string());
    }
    if old.owner_references.clone().unwrap_or_default()
        != new.owner_references.clone().unwrap_or_default()
    {
        changed.push("metadata.ownerReferences".to_string());
    }
    let others = |m: &ObjectMeta| -> Vec<String> {
        m.finalizers
            .iter()
            .flatten()
            .filter(|f| Some(f.as_str()) != finalizer)
            .cloned()
            .collect()
    };
    if others(old) != others(new) {
        changed.push("metadata.finalizers".to_string());
    }
    changed
}

#[cfg(test)]
mod tests;
