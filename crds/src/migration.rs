//! `MigrationCheck`: can these guest interfaces move to these nodes?

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, VirtualPort, Vlan};

/// A question to the controller: could a guest with these interfaces run (or be migrated)
/// on these nodes right now? The controller answers in `status`, per node: once on creation,
/// again when the spec changes or the `switchyard.dev/recheck` annotation is set. The
/// controller deletes a check one hour (its `--check-ttl`) after its last answer.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "MigrationCheck",
    namespaced,
    shortname = "swmc",
    category = "switchyard",
    status = "MigrationCheckStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Asks whether a guest's interfaces can move to candidate nodes; answered in status once (again on a spec change or the switchyard.dev/recheck annotation); deleted an hour (the controller's --check-ttl) after the last answer.",
    printcolumn(name = "Eligible", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationCheckSpec {
    /// The guest's interfaces.
    #[schemars(length(min = 1))]
    pub interfaces: Vec<InterfaceRequest>,
    /// Candidate nodes. Left empty, every node is checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// Annotation asking the controller to answer a `MigrationCheck` again (any value). A check is
/// answered once when created and again when its spec changes, not whenever the cluster does:
/// the answer is a snapshot at `status.answeredAt`. The controller removes the annotation once
/// the new answer is written.
pub const ANNOTATION_RECHECK: &str = "switchyard.dev/recheck";

/// One guest interface, as a port would request it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceRequest {
    /// A label for the interface in answers, e.g. `net0`. Left out, its position is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The network.
    pub network: String,
    /// The portgroup, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portgroup: Option<String>,
    /// Interface-level virtual port settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualport: Option<VirtualPort>,
    /// Interface-level VLAN tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
}

/// The controller's answer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationCheckStatus {
    /// The `metadata.generation` answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the answer was computed (RFC 3339). It is not kept current: set the
    /// `switchyard.dev/recheck` annotation to ask again. The controller deletes the check an
    /// hour (its `--check-ttl`) after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// `eligible/checked`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The nodes where every interface fits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_nodes: Vec<String>,
    /// The verdict for each checked node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeVerdict>,
    /// `Checked` once the answer is filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Whether one node can take the guest, and if not why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    /// The node.
    pub node: String,
    /// True when every interface fits.
    pub eligible: bool,
    /// Every reason the node cannot take the guest (empty when eligible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<IneligibleReason>,
}

/// One reason a node cannot take an interface.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IneligibleReason {
    /// The interface concerned (its name or position); left out for node-wide reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// What kind of problem it is.
    pub code: ReasonCode,
    /// The details, e.g. which portgroup or which conflicting values.
    pub message: String,
}

/// Why a node cannot take an interface.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ReasonCode {
    /// No such node.
    NodeNotFound,
    /// The node is not Ready, or its agent is not.
    NodeNotReady,
    /// No such network.
    NetworkNotFound,
    /// The network does not select the node.
    NetworkNotOnNode,
    /// The network selects the node but is not ready there (device or bridge missing).
    NetworkNotReady,
    /// The network has no such portgroup.
    PortgroupNotFound,
    /// Virtual port or VLAN settings conflict.
    MergeConflict,
    /// The settings are not allowed on this network (e.g. openvswitch on macvtap).
    Unsupported,
    /// No free device for an exclusive mode.
    NoFreeDevice,
    /// Every device is at its connection limit, or the bridge is full.
    CapacityExhausted,
}
