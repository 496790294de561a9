//! `Network`: libvirt's network definition, cluster-wide, plus which nodes serve it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Bandwidth, Condition, NodeSelector, VirtualPort, Vlan};

/// A virtual network, defined as libvirt defines one (`virsh net-define`), that guest
/// interfaces attach to by name. Each node in `nodeSelector` realises it locally: a host bridge,
/// macvtap links over a pool of host devices, or (isolated, nat, route and open networks) a
/// bridge, firewall and dnsmasq of the node's own. The same isolated, nat, route or open
/// network on N nodes is N separate L2 segments with the same subnet and gateway, as libvirt's
/// on each host: each node's dnsmasq hands out the same range on its own, and guests on two
/// nodes never share a broadcast domain. A guest can move to any node that serves a network of
/// the same name with free capacity, and finds the same gateway there.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Network",
    shortname = "swnet",
    category = "switchyard",
    status = "NetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A libvirt virtual network that guest interfaces attach to by name (cluster-scoped). An isolated, nat, route or open network is realised on every node it selects as a separate L2 segment with the same subnet and gateway, as libvirt's on each host; a guest moving between nodes finds the same network, gateway and DHCP range there.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.forward.mode",
        description = "Forward mode"
    ),
    printcolumn(
        name = "Uses",
        type_ = "string",
        json_path = ".status.uses",
        description = "The host bridge, or how many pool devices (macvtap); +N node groups when some nodes use others"
    ),
    printcolumn(
        name = "Nodes-Ready",
        type_ = "string",
        json_path = ".status.nodesReadySummary",
        description = "Nodes serving the network / nodes selected"
    ),
    printcolumn(
        name = "Used",
        type_ = "integer",
        json_path = ".status.capacityUsed",
        description = "Ports in use, summed over ready nodes"
    ),
    printcolumn(
        name = "Free",
        type_ = "integer",
        json_path = ".status.capacityFree",
        description = "Ports that can still be added, summed over ready nodes (one port needs room on one node: see Free-Per-Node)"
    ),
    printcolumn(
        name = "Free-Per-Node",
        type_ = "string",
        json_path = ".status.freePerNode",
        priority = 1,
        description = "Ports that can still be added on each ready node"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// The libvirt network name, when it is not a valid Kubernetes name (libvirt allows
    /// underscores, capitals and quotes). Left out, the libvirt name is `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt_name: Option<String>,
    /// libvirt's `<uuid>`: the network's UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// libvirt's `<title>`: a short one-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// libvirt's `<description>`: a longer human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which nodes serve this network. Left out, every node does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
    /// Per-group device names, for clusters whose nodes name their NICs or bridges
    /// differently. The first group whose selector matches a node replaces the pool, physical
    /// function or bridge name on that node; other nodes use the values in this spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub node_groups: Vec<NodeGroup>,
    /// libvirt's `<forward>`: how traffic leaves the network. Left out, the network is
    /// isolated (a bridge with no outside connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    /// libvirt's `<bridge>`: the host bridge the network uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Bridge>,
    /// libvirt's `<mac address>`: the bridge's MAC address (lower case, colon separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// libvirt's `<mtu size>`: the MTU of the network's bridge and taps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// libvirt's `<domain>`: the DNS domain of the network's DHCP clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
    /// libvirt's `<virtualport>` at network level, merged into every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualport: Option<VirtualPort>,
    /// libvirt's `<portgroup>`s, keyed by name: named sets of per-port settings a port can
    /// ask for. At most one is the default, used by ports that name none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub portgroups: Vec<PortGroup>,
    /// libvirt's `<vlan>` at network level: the default VLAN of ports that set none. A port's
    /// tags are applied by switchyard or the port fails (see a NetworkPort's `spec.vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    /// libvirt's `<bandwidth>` at network level: a limit for the network as a whole (not a
    /// per-port default). Ports' inbound `floor`s are admitted against its inbound average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// libvirt's `trustGuestRxFilters`: whether guests' MAC and multicast filter changes are
    /// applied to the host device (macvtap modes only). Portgroups and ports may override it.
    /// Passed on to the VM's runtime in a port's `status.actual`; switchyard sets nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_guest_rx_filters: Option<bool>,
    /// libvirt's `ipv6='yes'`: allow guest-to-guest IPv6 on a network with no IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// libvirt's `<port>`: defaults for every port on a bridge network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortDefaults>,
    /// libvirt's `<dns>`: the network's DNS server (nat, route, open and isolated modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// libvirt's `<ip>` elements: addresses of the host on the network, with DHCP and TFTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// libvirt's `<route>` elements: static routes through guests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// libvirt's `<dnsmasq:options>`: extra dnsmasq options, passed through verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnsmasq_options: Vec<String>,
    /// libvirt's `<metadata>`: applications' own XML, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt_metadata: Option<String>,
    /// For shared macvtap modes (vepa, private, bridge): how many ports one pool device may
    /// carry on a node; advertised as the node's extended resource capacity. Default 64.
    /// Exclusive modes always allow one; bridge networks are limited by the kernel to 1023.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_connections_per_device: Option<u32>,
}

/// `maxConnectionsPerDevice` when a network leaves it out.
pub const DEFAULT_MAX_CONNECTIONS_PER_DEVICE: u32 = 64;

impl NetworkSpec {
    /// How many ports one pool device may carry in shared macvtap modes.
    pub fn max_connections_per_device(&self) -> u32 {
        self.max_connections_per_device
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_DEVICE)
    }
}

/// Device names used instead of the spec's on one group of nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroup {
    /// The group's name (unique within the network).
    pub name: String,
    /// Which nodes belong to the group.
    pub node_selector: NodeSelector,
    /// The forward pool on these nodes, replacing `forward.interfaces` (and `forward.dev`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["dev"]))]
    pub interfaces: Vec<ForwardInterface>,
    /// The SR-IOV physical function on these nodes, replacing `forward.pf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub pf: Option<String>,
    /// The bridge name on these nodes, replacing `bridge.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub bridge: Option<String>,
}

/// libvirt's `<forward>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// How guests reach the outside: `nat`, `route` or `open` through a libvirt-style bridge;
    /// `bridge` onto an existing host bridge (or macvtap bridge mode over the pool);
    /// `vepa`, `private`, `passthrough` as macvtap modes over the pool; `hostdev` for PCI
    /// passthrough of SR-IOV virtual functions.
    pub mode: ForwardMode,
    /// libvirt's `forward dev`: the one device traffic leaves through. With a pool it must
    /// equal the pool's first interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub dev: Option<String>,
    /// hostdev mode: whether libvirt-style management detaches the device from the host driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// hostdev mode: the driver used for the devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<ForwardDriver>,
    /// The pool of host network devices (`<interface dev>`), in order. Ports are spread over
    /// it: exclusive modes take a free device, shared modes the least used (ties to the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["dev"]))]
    pub interfaces: Vec<ForwardInterface>,
    /// libvirt's `<pf dev>`: an SR-IOV physical function whose virtual functions form the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub pf: Option<String>,
    /// hostdev and passthrough modes: a pool of PCI virtual functions by address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<PciAddress>,
    /// nat mode: the addresses and ports used for masquerading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<Nat>,
}

/// libvirt's forward modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ForwardMode {
    /// NAT to the outside through a bridge libvirt-style networking manages (libvirt's default).
    #[default]
    Nat,
    /// Routed, no NAT, through a managed bridge.
    Route,
    /// Routed with no firewall rules at all.
    Open,
    /// An existing host bridge, or macvtap bridge mode over the pool.
    Bridge,
    /// macvtap private mode: guests cannot reach each other even through the switch.
    Private,
    /// macvtap VEPA mode: all traffic goes through the external switch.
    Vepa,
    /// macvtap passthrough: one guest owns each pool device.
    Passthrough,
    /// PCI passthrough of SR-IOV virtual functions.
    Hostdev,
}

impl ForwardMode {
    /// The spelling used in libvirt XML and in this API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Route => "route",
            Self::Open => "open",
            Self::Bridge => "bridge",
            Self::Private => "private",
            Self::Vepa => "vepa",
            Self::Passthrough => "passthrough",
            Self::Hostdev => "hostdev",
        }
    }
}

/// One device of the forward pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardInterface {
    /// The host network device name, e.g. `eth1` or `ens1f0`.
    #[schemars(length(min = 1, max = 15))]
    pub dev: String,
}

/// libvirt's `<forward><driver>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardDriver {
    /// The device assignment backend, `vfio` or `kvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The VFIO variant driver model, e.g. `vfio-pci-igb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A PCI address, as in libvirt's `<address type='pci'>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PciAddress {
    /// PCI domain (0-65535).
    pub domain: u16,
    /// PCI bus (0-255).
    pub bus: u8,
    /// PCI slot (0-31).
    #[schemars(range(max = 31))]
    pub slot: u8,
    /// PCI function (0-7).
    #[schemars(range(max = 7))]
    pub function: u8,
}

/// libvirt's `<forward><nat>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Nat {
    /// Also NAT IPv6 traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// Public IPv4 address ranges used for masquerading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressRange>,
    /// Source port ranges used for masquerading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// An inclusive IP address range.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressRange {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
}

/// An inclusive port range.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// libvirt's `<bridge>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bridge {
    /// The bridge device name, e.g. `br0` or `virbr0` (at most 15 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    pub name: Option<String>,
    /// Spanning tree protocol on the bridge (libvirt-managed bridges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<bool>,
    /// Forward delay in seconds (libvirt-managed bridges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u32>,
    /// Who manages the bridge's MAC table: `kernel` (learning and flooding) or `libvirt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_table_manager: Option<MacTableManager>,
    /// The firewalld zone for the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Who manages a bridge's forwarding database.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MacTableManager {
    /// The kernel learns addresses and floods unknown ones.
    Kernel,
    /// Entries are added for each guest's MAC; learning and flooding are turned off.
    Libvirt,
}

/// libvirt's `<domain>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// The DNS domain name.
    pub name: String,
    /// Answer for this domain locally only, never forwarding its queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_only: Option<bool>,
    /// Register the domain with the host's resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<bool>,
}

/// libvirt's `<portgroup>`: settings a port gets by naming the group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortGroup {
    /// The portgroup's name (unique within the network).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Whether ports that name no portgroup get this one. At most one portgroup is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Virtual port settings, merged with the network's and the port's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualport: Option<VirtualPort>,
    /// VLAN tags, used when the port sets none (overriding the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    /// Per-port traffic limits, used when the port sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Overrides the network's `trustGuestRxFilters` for ports in this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_guest_rx_filters: Option<bool>,
}

/// libvirt's `<port>` on a network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortDefaults {
    /// Isolate every port from the others (bridge networks): guests reach only the uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolated: Option<bool>,
}

/// libvirt's `<dns>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    /// Whether the network runs a DNS server at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Forward queries for names without a domain part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_plain_names: Option<bool>,
    /// Upstream servers, optionally per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<DnsForwarder>,
    /// Static host entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<DnsHost>,
    /// TXT records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txts: Vec<DnsTxt>,
    /// SRV records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub srvs: Vec<DnsSrv>,
}

/// An upstream DNS server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsForwarder {
    /// The server's address. Left out with a domain: resolve that domain locally only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Only queries in this domain go to this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The server's port, when not 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A static DNS host entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsHost {
    /// The address.
    pub ip: String,
    /// Names that resolve to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// A DNS TXT record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsTxt {
    /// The record name.
    pub name: String,
    /// The record text.
    pub value: String,
}

/// A DNS SRV record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSrv {
    /// The service name, e.g. `ldap`.
    pub service: String,
    /// The protocol, `tcp` or `udp`.
    pub protocol: String,
    /// The domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The target host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The priority (lower first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// The weight among equal priorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
}

/// libvirt's `<ip>`: an address of the host on the network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpConfig {
    /// `ipv4` or `ipv6`. Left out, IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<IpFamily>,
    /// The host's address on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Prefix length (alternative to `netmask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
    pub prefix: Option<u8>,
    /// IPv4 netmask, e.g. `255.255.255.0` (alternative to `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    /// Answer reverse lookups for this range locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ptr: Option<bool>,
    /// The TFTP server's root directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_root: Option<String>,
    /// The DHCP server on this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<Dhcp>,
}

/// An IP address family.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum IpFamily {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// libvirt's `<dhcp>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dhcp {
    /// Dynamic address ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<DhcpRange>,
    /// Static leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<DhcpHost>,
    /// BOOTP / PXE boot settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootp: Option<Bootp>,
}

/// A DHCP address range.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DhcpRange {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
    /// Lease time for this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A static DHCP lease.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DhcpHost {
    /// The client's MAC address (IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The client's DHCP unique identifier (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The client's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address given to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Lease time for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A DHCP lease time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The lease length in `unit`s; 0 means infinite.
    pub expiry: u64,
    /// `seconds`, `minutes` (the default) or `hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<LeaseUnit>,
}

/// A lease time unit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LeaseUnit {
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
}

/// libvirt's `<bootp>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bootp {
    /// The boot file name.
    pub file: String,
    /// The TFTP server, when not the host itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// libvirt's `<route>`: a static route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `ipv4` or `ipv6`. Left out, IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<IpFamily>,
    /// The destination network address.
    pub address: String,
    /// Destination prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
    pub prefix: Option<u8>,
    /// Destination IPv4 netmask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    /// The next hop.
    pub gateway: String,
    /// The route metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// What the controller observes of the network across the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes the selector matches.
    #[serde(default)]
    pub nodes_selected: u32,
    /// Selected nodes whose agent reports the network ready.
    #[serde(default)]
    pub nodes_ready: u32,
    /// `nodesReady/nodesSelected`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_ready_summary: Option<String>,
    /// Devices in the forward pool (as given in the spec).
    #[serde(default)]
    pub pool_size: u32,
    /// What the network uses on nodes no node group overrides: `bridge br0`, `pool of 2`, or
    /// `unsupported (reason)`; ` +N node groups` when some nodes use other devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Ports the ready nodes can carry in all.
    #[serde(default)]
    pub capacity_total: u64,
    /// Ports in use on the ready nodes.
    #[serde(default)]
    pub capacity_used: u64,
    /// Ports that can still be added on the ready nodes.
    #[serde(default)]
    pub capacity_free: u64,
    /// Ports that can still be added on each ready node, by name (`node-a=3, node-b=0`; the
    /// first 20 nodes, then how many more; `no ready node`): a port needs room on its own
    /// node, which the sum does not show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_per_node: Option<String>,
    /// Selected nodes that cannot serve the network, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unready_nodes: Vec<UnreadyNode>,
    /// `Ready` (some node serves it), `Valid` (the spec passed validation) and, when the
    /// controller generates NetworkAttachmentDefinitions, `AttachmentDefinitions`. A map by
    /// type, so each of the controller's writers applies only its own conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A node that should serve the network but cannot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadyNode {
    /// The node name.
    pub node: String,
    /// CamelCase reason, e.g. `DeviceMissing`, `LinkDown`, `BridgeAbsent`, `NoAgent`.
    pub reason: String,
    /// What exactly is wrong.
    pub message: String,
}
