//! What one isolated, nat, route or open network is on this node, worked out from its spec
//! alone: the bridge (name, MAC, MTU, STP), the addresses and routes on it, the forwarding it
//! needs, its firewall rules and its dnsmasq files. Pure; the edges apply it in libvirt's
//! order (`networkStartNetworkVirtual`).

use std::net::IpAddr;

use switchyard_crds::{Bridge, Network};
use switchyard_libvirt::dnsmasq::{self, DnsmasqFiles, Paths};
use switchyard_libvirt::firewall::{self, Command};
use switchyard_libvirt::{FieldError, values};

/// QEMU's (and libvirt's) locally administered MAC prefix.
pub const MAC_PREFIX: [u8; 3] = [0x52, 0x54, 0x00];

/// The alias prefix marking a bridge the agent created for a network: `switchyard-network:`
/// followed by the Network's name. A bridge without it is never touched.
pub const BRIDGE_ALIAS_PREFIX: &str = "switchyard-network:";

/// One network as this node realises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkPlan {
    /// The Network's name.
    pub network: String,
    /// The name its files are named after (libvirt's name).
    pub libvirt_name: String,
    /// The bridge.
    pub bridge: String,
    /// The bridge's MAC: `spec.mac`, else derived from the UID ([`derived_mac`]).
    pub mac: [u8; 6],
    /// `spec.mtu`.
    pub mtu: Option<u32>,
    /// STP on (libvirt's default).
    pub stp: bool,
    /// STP forward delay in seconds (libvirt's default 0).
    pub forward_delay: u32,
    /// Whether the bridge keeps IPv6 (only when the network has an IPv6 address).
    pub ipv6: bool,
    /// The bridge's addresses, in definition order.
    pub addresses: Vec<Address>,
    /// `<route>`s, through gateways on the bridge's subnets.
    pub routes: Vec<RoutePlan>,
    /// Which forwarding the node must switch on.
    pub forwarding: Forwarding,
    /// The network's firewall commands (nft rules and the tc checksum fix), for one
    /// [`firewall::script::table_script`] with the node's other networks.
    pub firewall: Vec<Command>,
    /// The dnsmasq files, when the network runs one (libvirt's `networkStartDhcpDaemon`).
    pub dnsmasq: Option<DnsmasqFiles>,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

/// A static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePlan {
    /// The destination network (host bits as given).
    pub destination: Address,
    /// The next hop.
    pub gateway: IpAddr,
    /// The metric, if given.
    pub metric: Option<u32>,
}

/// `ip_forward` / IPv6 `forwarding` to switch on (never off: libvirt never resets them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// `net.ipv4.ip_forward`.
    pub ipv4: bool,
    /// `net.ipv6.conf.all.forwarding`.
    pub ipv6: bool,
}

/// Where the node keeps a network's files and which table holds its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The state directory (dnsmasq files, pid files, lease files).
    pub state_dir: String,
    /// The nftables table of the node's networks.
    pub table: String,
}

impl Layout {
    /// The pid file of a network's dnsmasq (the agent's mark on the process).
    pub fn pid_file(&self, libvirt_name: &str) -> String {
        format!("{}/{libvirt_name}.pid", self.state_dir)
    }

    /// The lease file dnsmasq keeps for a network (libvirt's `net-dhcp-leases` source).
    pub fn lease_file(&self, libvirt_name: &str) -> String {
        format!("{}/{libvirt_name}.leases", self.state_dir)
    }

    /// The dnsmasq paths of the generators.
    pub fn dnsmasq_paths(&self, libvirt_name: &str) -> Paths {
        Paths {
            state_dir: self.state_dir.clone(),
            pid_file: Some(self.pid_file(libvirt_name)),
        }
    }
}

/// Why a network cannot be realised on the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field of the spec.
    #[error("{0}")]
    Field(String),
}

impl From<FieldError> for PlanError {
    fn from(error: FieldError) -> Self {
        Self::Field(error.to_string())
    }
}

impl From<dnsmasq::DnsmasqError> for PlanError {
    fn from(error: dnsmasq::DnsmasqError) -> Self {
        Self::Field(error.to_string())
    }
}

impl From<firewall::FirewallError> for PlanError {
    fn from(error: firewall::FirewallError) -> Self {
        Self::Field(error.to_string())
    }
}

pub use switchyard_placement::realisation::{
    DERIVED_BRIDGE_PREFIX, derived_bridge_name, is_virtual, virtual_bridge_name as bridge_name,
};

/// The bridge's MAC when the spec gives none: `52:54:00` and the first three bytes of the
/// FNV-1a hash of the Network's UID. libvirt draws it at random once and keeps it in the
/// network's definition; a derivation gives the same answer on every node and after every
/// restart without a status write (the UID never changes), and names no other network's MAC
/// unless the 24-bit hashes collide.
pub fn derived_mac(uid: &str) -> [u8; 6] {
    let hash = fnv1a64(uid.as_bytes()).to_be_bytes();
    [
        MAC_PREFIX[0],
        MAC_PREFIX[1],
        MAC_PREFIX[2],
        hash[0],
        hash[1],
        hash[2],
    ]
}

/// The UID the derivations use (the name for an object not from the apiserver).
fn uid_of(network: &Network) -> &str {
    network
        .metadata
        .uid
        .as_deref()
        .or(network.metadata.name.as_deref())
        .unwrap_or_default()
}

/// The alias marking the bridge of `network`.
pub fn bridge_alias(network: &str) -> String {
    format!("{BRIDGE_ALIAS_PREFIX}{network}")
}

/// The Network a bridge alias names, if the alias is the agent's mark.
pub fn network_of_alias(alias: &str) -> Option<&str> {
    alias
        .strip_prefix(BRIDGE_ALIAS_PREFIX)
        .filter(|n| !n.is_empty())
}

/// The plan of `network` on this node; `network` must be [`is_virtual`].
pub fn plan(network: &Network, layout: &Layout) -> Result<VirtualNetworkPlan, PlanError> {
    let name = network
        .metadata
        .name
        .clone()
        .ok_or_else(|| PlanError::Field("metadata.name: required".into()))?;
    let uid = uid_of(network).to_string();
    let bridge_name = self::bridge_name(network);
    let mut network = network.clone();
    let spec = &mut network.spec;
    let bridge = spec.bridge.get_or_insert_with(Bridge::default);
    bridge.name = Some(bridge_name.clone());
    let stp = bridge.stp.unwrap_or(true);
    let forward_delay = bridge.delay.unwrap_or(0);
    let spec = &network.spec;
    let mac = match &spec.mac {
        Some(text) => values::parse_mac(text)
            .ok_or_else(|| PlanError::Field(format!("spec.mac: '{text}' is not a MAC address")))?,
        None => derived_mac(&uid),
    };

    let mut addresses = Vec::new();
    for (i, ip) in spec.ips.iter().enumerate() {
        let field = format!("spec.ips[{i}].address");
        let text = ip
            .address
            .as_deref()
            .ok_or_else(|| PlanError::Field(format!("{field}: the address is required")))?;
        let address = values::parse_ip(text)
            .ok_or_else(|| PlanError::Field(format!("{field}: '{text}' is not an IP address")))?;
        let prefix = switchyard_libvirt::validate::ip_prefix(ip, address)
            .ok_or_else(|| PlanError::Field(format!("spec.ips[{i}]: no valid prefix")))?;
        addresses.push(Address {
            ip: address,
            prefix,
        });
    }
    let mut routes = Vec::new();
    for (i, route) in spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        let destination = values::parse_ip(&route.address).ok_or_else(|| {
            PlanError::Field(format!(
                "{field}.address: '{}' is not an IP address",
                route.address
            ))
        })?;
        let gateway = values::parse_ip(&route.gateway).ok_or_else(|| {
            PlanError::Field(format!(
                "{field}.gateway: '{}' is not an IP address",
                route.gateway
            ))
        })?;
        let prefix = match (route.prefix, route.netmask.as_deref()) {
            (Some(prefix), _) => prefix,
            (None, Some(mask)) => values::parse_ip(mask)
                .and_then(values::netmask_prefix)
                .ok_or_else(|| {
                    PlanError::Field(format!("{field}.netmask: '{mask}' is not a netmask"))
                })?,
            (None, None) if destination.is_ipv4() => 32,
            (None, None) => 128,
        };
        routes.push(RoutePlan {
            destination: Address {
                ip: destination,
                prefix,
            },
            gateway,
            metric: route.metric,
        });
    }
    let ipv6 = addresses.iter().any(|a| a.ip.is_ipv6());
    let forwards = spec.forward.is_some();
    let forwarding = Forwarding {
        ipv4: forwards && addresses.iter().any(|a| a.ip.is_ipv4()),
        ipv6: forwards && ipv6,
    };
    let firewall = firewall::nftables::network_commands(spec, &bridge_name, &layout.table)?;
    let libvirt_name = dnsmasq::network_name(&network).unwrap_or(&name).to_string();
    let dnsmasq = if dnsmasq::runs_dnsmasq(spec) {
        Some(dnsmasq::files(
            &network,
            &layout.dnsmasq_paths(&libvirt_name),
        )?)
    } else {
        None
    };
    Ok(VirtualNetworkPlan {
        network: name,
        libvirt_name,
        bridge: bridge_name,
        mac,
        mtu: spec.mtu,
        stp,
        forward_delay,
        ipv6,
        addresses,
        routes,
        forwarding,
        firewall,
        dnsmasq,
    })
}

/// The firewall script of all the node's networks: one table, replaced in one transaction.
/// Only nft commands go in; the tc checksum fix is applied on its own.
pub fn firewall_script(table: &str, plans: &[&VirtualNetworkPlan]) -> Result<String, PlanError> {
    let networks: Vec<Vec<Command>> = plans.iter().map(|p| p.firewall.clone()).collect();
    if networks.iter().all(Vec::is_empty) {
        // No network with rules: libvirt never sets up its table then, and neither does the
        // node; a table left from earlier goes.
        return Ok(firewall::script::remove_table_script(table)?);
    }
    Ok(firewall::script::table_script(table, &networks)?)
}

/// What dnsmasq must be told when its files change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsmasqChange {
    /// Nothing changed.
    None,
    /// Only the hostsfile or addnhosts: dnsmasq re-reads them on SIGHUP.
    Reload,
    /// The configuration: dnsmasq must be restarted.
    Restart,
}

/// How dnsmasq must react to going from `current` (what is on disk) to `wanted`.
pub fn dnsmasq_change(current: Option<&DnsmasqFiles>, wanted: &DnsmasqFiles) -> DnsmasqChange {
    match current {
        None => DnsmasqChange::Restart,
        Some(current) if current.conf != wanted.conf => DnsmasqChange::Restart,
        Some(current)
            if current.hostsfile != wanted.hostsfile || current.addn_hosts != wanted.addn_hosts =>
        {
            DnsmasqChange::Reload
        }
        Some(_) => DnsmasqChange::None,
    }
}

/// One DHCP lease from dnsmasq's lease file (`expiry mac ip hostname client-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    /// Expiry, seconds since the epoch (0: infinite).
    pub expiry: u64,
    /// The client's MAC (IPv4) or IAID (IPv6).
    pub mac: String,
    /// The address leased.
    pub ip: String,
    /// The client's host name, when it sent one.
    pub hostname: Option<String>,
    /// The client id, when it sent one.
    pub client_id: Option<String>,
}

/// The leases in a dnsmasq lease file; the `duid` line of IPv6 and malformed lines are skipped.
pub fn parse_leases(text: &str) -> Vec<LeaseEntry> {
    let optional = |s: Option<&str>| s.filter(|s| *s != "*").map(str::to_string);
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let expiry = words.next()?.parse().ok()?;
            let mac = words.next()?.to_string();
            let ip = words.next()?.to_string();
            values::parse_ip(&ip)?;
            Some(LeaseEntry {
                expiry,
                mac,
                ip,
                hostname: optional(words.next()),
                client_id: optional(words.next()),
            })
        })
        .collect()
}

/// FNV-1a, 64 bits: stable across processes and builds (the std hasher is seeded randomly).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
