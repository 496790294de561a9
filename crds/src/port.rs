//! `NetworkPort`: one guest interface on one node, and what was really used for it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Bandwidth, Condition, VirtualPort, Vlan};

/// One guest interface attached to a network on a node (libvirt's `virNetworkPort`). The
/// node's agent picks a pool device, creates the link, and records what it used in
/// `status.actual`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "NetworkPort",
    namespaced,
    shortname = "swport",
    category = "switchyard",
    status = "NetworkPortStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "One guest interface attached to a switchyard Network on one node.",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the port is in its phase: the Ready condition's reason (e.g. NoFreeDevice while Pending, MergeConflict when Failed)"
    ),
    printcolumn(
        name = "Device",
        type_ = "string",
        json_path = ".status.actual.device",
        description = "Pool device or bridge used"
    ),
    printcolumn(
        name = "Link",
        type_ = "string",
        json_path = ".status.actual.linkName",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPortSpec {
    /// The `Network` to attach to (its `metadata.name`).
    #[schemars(length(min = 1, max = 253))]
    pub network: String,
    /// The network's portgroup to take settings from. Left out, the network's default
    /// portgroup applies, if it has one. Naming a portgroup the network lacks is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portgroup: Option<String>,
    /// The node whose agent realises the port.
    #[schemars(length(min = 1, max = 253))]
    pub node: String,
    /// The guest interface's MAC address, e.g. `52:54:00:12:34:56`.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"))]
    pub mac: String,
    /// Interface-level virtual port settings, merged with the portgroup's and the network's.
    /// Passed on to the VM's runtime in `status.actual`: switchyard does not associate the port
    /// with a switch (802.1Qbg/802.1Qbh, Open vSwitch); the runtime that plugs the guest in does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualport: Option<VirtualPort>,
    /// Interface-level VLAN tags, overriding the portgroup's and the network's. Applied by
    /// switchyard or not at all: the port fails (reason `VlanNeedsVirtualFunction` on a
    /// passthrough device that is not an SR-IOV virtual function, as libvirt refuses it;
    /// `VlanNotApplied` where the agent does not set tags yet, which today is everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    /// Interface-level traffic limits, overriding the portgroup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Interface-level `trustGuestRxFilters`, overriding the portgroup's and the network's.
    /// Passed on to the VM's runtime in `status.actual`; switchyard sets nothing for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_guest_rx_filters: Option<bool>,
    /// Who the interface belongs to (libvirt's port owner: the domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PortOwner>,
}

/// The object a port belongs to, e.g. a VirtualMachineInstance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortOwner {
    /// The owner's kind, e.g. `VirtualMachineInstance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The owner's name.
    pub name: String,
    /// The owner's UID (libvirt: the domain UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// What the node agent did with the port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPortStatus {
    /// Where the port is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PortPhase>,
    /// The `metadata.generation` the agent last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and on failure the reason (e.g. `NoFreeDevice`, `MergeConflict`,
    /// `DeviceConflict`, `BridgeFull`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What was really used, like libvirt's `<actual>` element. switchyard applies the link
    /// (`type`, `device`, `mode`, `bridge`) and `bandwidth`, and records `vlan` only for tags it
    /// applied; `virtualport` and `trustGuestRxFilters` it passes on to the VM's runtime, which
    /// applies them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<PortActual>,
}

/// The phase of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PortPhase {
    /// Accepted, not realised yet (waiting for the agent, or for a free device).
    Pending,
    /// The link exists and `actual` describes it.
    Ready,
    /// It cannot be realised; the conditions say why.
    Failed,
    /// Being deleted: the link is being removed.
    Terminating,
}

/// What a port really uses on its node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortActual {
    /// libvirt's actual interface type: `direct` (macvtap) or `bridge`.
    #[serde(rename = "type")]
    pub kind: ActualType,
    /// The pool device the macvtap sits on (direct), or the bridge's uplink-independent
    /// name (bridge: same as `bridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The macvtap mode (direct only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MacvtapMode>,
    /// The bridge the port is attached to (bridge only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// The link the agent created, e.g. `swy1a2b3c4d5e`.
    pub link_name: String,
    /// Bridge ports are veth pairs: the end handed to the guest side (e.g. moved into the
    /// VM's pod), while `linkName` is the end attached to the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_link_name: Option<String>,
    /// The link's ifindex in the node's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The macvtap's tap character device as `major:minor` (direct only). Use this, not
    /// `/dev/tapN`, whose name depends on the ifindex and so on the network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_device: Option<String>,
    /// The portgroup that applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portgroup: Option<String>,
    /// The merged virtual port settings, passed on to the VM's runtime (not applied by
    /// switchyard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualport: Option<VirtualPort>,
    /// The VLAN tags switchyard applied to the link; left out when it applied none. A port whose
    /// tags cannot be applied on its node is `Failed`, never `Ready` without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    /// The traffic limits that applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// The merged `trustGuestRxFilters`, passed on to the VM's runtime (not applied by
    /// switchyard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_guest_rx_filters: Option<bool>,
}

/// libvirt's actual interface types that switchyard realises.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActualType {
    /// A macvtap link on a pool device.
    #[default]
    Direct,
    /// A port on a host bridge.
    Bridge,
}

/// A macvtap mode: `bridge` (guests on one device reach each other inside the host), `vepa`
/// (all traffic goes through the external switch), `private` (guests on one device cannot
/// reach each other) or `passthrough` (one guest owns the device).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MacvtapMode {
    /// Guests on one device reach each other inside the host.
    Bridge,
    /// All traffic goes through the external switch.
    Vepa,
    /// Guests cannot reach each other.
    Private,
    /// One guest owns the device.
    Passthrough,
}

impl MacvtapMode {
    /// The spelling used in libvirt XML and in this API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Vepa => "vepa",
            Self::Private => "private",
            Self::Passthrough => "passthrough",
        }
    }
}
