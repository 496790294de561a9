//! `NetworkNode`: one node as the network layer sees it (like storage's `CSINode`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::port::MacvtapMode;

/// The switchyard state of one node, named after it and written by its agent: for each
/// network the node serves, every pool device with its connections, and the bridge's ports.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "NetworkNode",
    shortname = "swnode",
    category = "switchyard",
    status = "NetworkNodeStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "The switchyard network state of one node (name = node name), written by its agent.",
    printcolumn(
        name = "Networks-Ready",
        type_ = "integer",
        json_path = ".status.networksReady",
        description = "Networks ready on the node (ports can be added), of those it reports"
    ),
    printcolumn(
        name = "Ports",
        type_ = "integer",
        json_path = ".status.ports",
        description = "Ports realised on the node"
    ),
    printcolumn(
        name = "Agent-Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Not-Ready",
        type_ = "string",
        json_path = ".status.networks[?(@.ready==false)].name",
        priority = 1,
        description = "The first network not ready on the node"
    ),
    printcolumn(
        name = "Why",
        type_ = "string",
        json_path = ".status.networks[?(@.ready==false)].reason",
        priority = 1,
        description = "Why that network is not ready (its reason; status.networks has the message)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkNodeSpec {}

/// What the agent observes on its node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkNodeStatus {
    /// Networks that select this node and are ready on it.
    #[serde(default)]
    pub networks_ready: u32,
    /// Ports realised on the node.
    #[serde(default)]
    pub ports: u32,
    /// Every network that selects this node, keyed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub networks: Vec<NodeNetwork>,
    /// `Ready`: the agent has recovered its state and serves ports; `DeviceConflict` when
    /// recovery found two ports claiming one exclusive device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One network as realised on this node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetwork {
    /// The network's name.
    pub name: String,
    /// Whether ports can be added here (devices or bridge present).
    pub ready: bool,
    /// When not ready: `DeviceMissing`, `LinkDown`, `BridgeAbsent`, `NoPool` or `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When not ready: what exactly is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The macvtap mode ports get (direct networks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvtap_mode: Option<MacvtapMode>,
    /// The pool devices on this node, in pool order, keyed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub devices: Vec<PoolDevice>,
    /// The host bridge (bridge networks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeState>,
    /// Ports the network can carry on this node.
    #[serde(default)]
    pub capacity: u64,
    /// Ports in use.
    #[serde(default)]
    pub used: u64,
    /// Ports that can still be added.
    #[serde(default)]
    pub free: u64,
    /// The network's own bridge, firewall and dnsmasq (isolated, nat, route and open networks
    /// only). Each node's instance is its own L2 segment with the network's subnet and gateway,
    /// as libvirt's on each host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network: Option<VirtualNetworkStatus>,
}

/// An isolated, nat, route or open network as this node runs it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkStatus {
    /// The bridge's MAC: `spec.mac`, else `52:54:00` and three bytes of a hash of the
    /// Network's UID (the same on every node and after every restart).
    pub mac: String,
    /// Whether the bridge, firewall, addresses, routes and forwarding are in place and dnsmasq
    /// (when the network runs one) was started.
    pub realised: bool,
    /// What failed, when not realised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The network's dnsmasq; absent when it runs none (no address, or no DHCP and DNS off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsmasq: Option<DnsmasqStatus>,
    /// The DHCP leases dnsmasq holds (libvirt's `net-dhcp-leases`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<DhcpLeaseStatus>,
    /// Set when libvirt's DHCP checksum fix (tc `action csum`) could not be applied, e.g. on
    /// a kernel without `act_csum`; only very old DHCP clients notice. Not a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_fix_missing: Option<String>,
}

/// A network's dnsmasq on the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsmasqStatus {
    /// Whether it runs now.
    pub running: bool,
    /// Its process id, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How often this agent had to start it again after it exited.
    #[serde(default)]
    pub restarts: u32,
}

/// One DHCP lease, from dnsmasq's lease file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DhcpLeaseStatus {
    /// The address leased.
    pub ip_address: String,
    /// The client's MAC (IPv4) or IAID (IPv6).
    pub mac_address: String,
    /// The host name the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The client id the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When the lease expires, seconds since the epoch; 0 for an infinite lease.
    pub expiry_time: u64,
}

/// One pool device on the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolDevice {
    /// The device name.
    pub name: String,
    /// Whether the device exists in the node's network namespace.
    pub present: bool,
    /// The device's operational state.
    pub link_state: LinkState,
    /// Ports using the device.
    pub connections: u32,
    /// Whether one port holds the device exclusively (passthrough, or private with 802.1Qbh).
    #[serde(default)]
    pub exclusive: bool,
    /// The port (`namespace/name`) holding it exclusively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// A link's operational state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LinkState {
    /// Carrier up.
    Up,
    /// Down or without carrier.
    Down,
    /// Not reported by the kernel.
    #[default]
    Unknown,
    /// The device does not exist.
    Absent,
}

/// The host bridge of a bridge network on this node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BridgeState {
    /// The bridge name.
    pub name: String,
    /// Whether the bridge exists.
    pub present: bool,
    /// Ports on the bridge created by switchyard.
    pub ports: u32,
    /// All ports on the bridge, switchyard's and others'.
    pub total_ports: u32,
    /// The kernel's limit of ports per bridge (1023).
    pub max_ports: u32,
}
