//! What a port really gets: portgroup selection and the merge of the port's own settings with
//! its portgroup's and its network's, as libvirt's `networkAllocatePort` does it
//! (bridge_driver.c, virnetdevvportprofile.c) — with one deliberate difference: a port naming
//! a portgroup the network lacks is an error here, where libvirt silently ignores the name.
//!
//! Precedence, as in libvirt:
//! - virtualport: the port's, the network's and the portgroup's are merged attribute by
//!   attribute; the same attribute with two different values is an error, as is a type
//!   mismatch.
//! - vlan and trustGuestRxFilters: the port's, else the portgroup's, else the network's.
//! - bandwidth: the port's, else the portgroup's. A network-level `<bandwidth>` limits the
//!   network as a whole; it is never copied into a port (see [`admit_floor`]).

use std::fmt;

use switchyard_crds::{
    Bandwidth, InterfaceRequest, MacvtapMode, NetworkPortSpec, NetworkSpec, PortGroup, VirtualPort,
    VirtualPortType, Vlan,
};

use crate::modes::{self, Realisation};

/// What a port asks for, borrowed from a `NetworkPort` or a migration check's interface.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PortRequest<'a> {
    /// The portgroup the port names, if any.
    pub portgroup: Option<&'a str>,
    /// The port's own virtualport settings.
    pub virtualport: Option<&'a VirtualPort>,
    /// The port's own VLAN tags.
    pub vlan: Option<&'a Vlan>,
    /// The port's own traffic limits.
    pub bandwidth: Option<&'a Bandwidth>,
    /// The port's own `trustGuestRxFilters`.
    pub trust_guest_rx_filters: Option<bool>,
}

impl<'a> PortRequest<'a> {
    /// The request a `NetworkPort` makes.
    pub fn from_port(spec: &'a NetworkPortSpec) -> Self {
        Self {
            portgroup: spec.portgroup.as_deref(),
            virtualport: spec.virtualport.as_ref(),
            vlan: spec.vlan.as_ref(),
            bandwidth: spec.bandwidth.as_ref(),
            trust_guest_rx_filters: spec.trust_guest_rx_filters,
        }
    }

    /// The request an interface of a `MigrationCheck` makes (it carries no bandwidth or trust
    /// setting of its own).
    pub fn from_interface(interface: &'a InterfaceRequest) -> Self {
        Self {
            portgroup: interface.portgroup.as_deref(),
            virtualport: interface.virtualport.as_ref(),
            vlan: interface.vlan.as_ref(),
            bandwidth: None,
            trust_guest_rx_filters: None,
        }
    }
}

/// How switchyard's node agent realises a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A macvtap link in this mode on a device of the network's pool (libvirt's `direct`).
    Macvtap(MacvtapMode),
    /// A port on the network's host bridge (`<bridge name>`, or the node group's bridge).
    Bridge,
}

/// The settings a port really gets, after portgroup selection and merging.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectivePort {
    /// The portgroup that applied, if any.
    pub portgroup: Option<String>,
    /// The merged virtualport. For 802.1Qbg a missing `instanceid`, and for openvswitch a
    /// missing `interfaceid`, are left out: the agent generates one per port, as libvirt does.
    pub virtualport: Option<VirtualPort>,
    /// The VLAN tags that apply.
    pub vlan: Option<Vlan>,
    /// The per-port traffic limits that apply.
    pub bandwidth: Option<Bandwidth>,
    /// The `trustGuestRxFilters` that applies.
    pub trust_guest_rx_filters: Option<bool>,
    /// How the port is realised. Whether it needs a device of its own follows from this and
    /// the virtualport: `switchyard_placement::exclusive`.
    pub connection: Connection,
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The port (or interface) itself.
    Port,
    /// A portgroup of the network, by name.
    Portgroup(String),
    /// The network's own definition.
    Network,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Port => f.write_str("the port"),
            Origin::Portgroup(name) => write!(f, "portgroup '{name}'"),
            Origin::Network => f.write_str("the network"),
        }
    }
}

/// Why a port cannot be given effective settings. Messages say what to change; callers add
/// the network's and the port's names.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PortError {
    /// The port names a portgroup the network lacks.
    #[error(
        "portgroup '{portgroup}' does not exist in the network ({}); name one of its portgroups, or leave the portgroup out{}",
        list_or_none(available),
        if default.is_some() { " to get the default one" } else { "" }
    )]
    PortgroupNotFound {
        /// The requested name.
        portgroup: String,
        /// The network's portgroups.
        available: Vec<String>,
        /// The network's default portgroup, if any.
        default: Option<String>,
    },
    /// One virtualport attribute is set to two different values.
    #[error(
        "virtualport {attribute} conflicts: {first_value} from {first_origin} but {second_value} from {second_origin}; set it in one place only, or to the same value"
    )]
    VirtualPortConflict {
        /// The attribute, as spelled in the API (`typeid`, `profileid`...).
        attribute: &'static str,
        /// The value that was set first, in merge order (port, network, portgroup).
        first_value: String,
        /// Where it came from.
        first_origin: Origin,
        /// The conflicting value.
        second_value: String,
        /// Where it came from.
        second_origin: Origin,
    },
    /// Two levels give the virtualport different types.
    #[error(
        "virtualport type conflicts: {} from {first_origin} but {} from {second_origin}; a port has one virtualport type",
        .first_type.as_str(),
        .second_type.as_str()
    )]
    VirtualPortTypeMismatch {
        /// The type set first, in merge order.
        first_type: VirtualPortType,
        /// Where it came from.
        first_origin: Origin,
        /// The conflicting type.
        second_type: VirtualPortType,
        /// Where it came from.
        second_origin: Origin,
    },
    /// A virtualport attribute that the merged type does not have.
    #[error(
        "virtualport {attribute} from {origin} does not apply to <virtualport type='{}'>; remove it",
        .kind.as_str()
    )]
    VirtualPortExtraAttribute {
        /// The attribute.
        attribute: &'static str,
        /// The merged type.
        kind: VirtualPortType,
        /// Where the attribute came from.
        origin: Origin,
    },
    /// The merged virtualport lacks an attribute its type requires.
    #[error(
        "missing {attribute} in <virtualport type='{}'>: set it on the port, its portgroup or the network",
        .kind.as_str()
    )]
    VirtualPortIncomplete {
        /// The missing attribute.
        attribute: &'static str,
        /// The merged type.
        kind: VirtualPortType,
    },
    /// The merged virtualport type cannot be used with how the network is realised.
    #[error(
        "<virtualport type='{}'> not supported for a network which uses {uses}",
        .kind.as_str()
    )]
    VirtualPortUnsupported {
        /// The merged type.
        kind: VirtualPortType,
        /// What the network uses, e.g. `a macvtap device (forward mode 'vepa')`.
        uses: String,
    },
    /// The port would get VLAN tags on a network that cannot apply them.
    #[error(
        "the port requests vlan tags (from {origin}), but a network which uses {uses} cannot apply them; vlan tags need forward mode passthrough, or a host bridge (plain or openvswitch)"
    )]
    VlanUnsupported {
        /// Where the vlan came from.
        origin: Origin,
        /// What the network uses.
        uses: String,
    },
    /// The port asks for an inbound `floor` on a network that cannot guarantee one.
    #[error(
        "inbound floor (from {origin}) is only supported on networks with forward mode nat, route, open or isolated, not {mode}; remove the floor"
    )]
    FloorUnsupported {
        /// Where the floor came from.
        origin: Origin,
        /// The network's forward mode.
        mode: &'static str,
    },
    /// The port asks for a `floor` but the network sets no inbound limit to guarantee it from.
    #[error(
        "inbound floor {floor} cannot be guaranteed: the network has no inbound <bandwidth>; give the network an inbound average"
    )]
    FloorWithoutNetworkLimit {
        /// The requested floor, KiB/s.
        floor: u64,
    },
    /// The floors of all ports would exceed the network's inbound limit.
    #[error(
        "inbound floor {floor} would bring the network's guaranteed total to {total}, over its inbound {limit_kind} of {limit}; lower the floor or raise the network's limit"
    )]
    FloorOvercommit {
        /// The requested floor, KiB/s.
        floor: u64,
        /// The total with this port, KiB/s.
        total: u64,
        /// `average` or `peak`.
        limit_kind: &'static str,
        /// The network's limit, KiB/s.
        limit: u64,
    },
    /// A macvtap network with no devices to put macvtap links on.
    #[error(
        "forward mode '{mode}' uses macvtap links over a device pool, but the network has no forward dev, interface pool or pf; add forward.interfaces"
    )]
    NoDevicePool {
        /// The network's forward mode.
        mode: &'static str,
    },
    /// The network's forward mode is not one switchyard's agent realises.
    #[error(
        "forward mode '{mode}' is not realised by switchyard ({why}); use forward mode bridge (with a bridge name or a device pool), private, vepa or passthrough"
    )]
    Unsupported {
        /// The network's forward mode (`isolated` when there is no `<forward>`).
        mode: &'static str,
        /// What the mode would need.
        why: &'static str,
    },
}

impl PortError {
    /// A CamelCase reason for Kubernetes conditions and admission responses.
    pub fn reason(&self) -> &'static str {
        match self {
            PortError::PortgroupNotFound { .. } => "PortgroupNotFound",
            PortError::VirtualPortConflict { .. }
            | PortError::VirtualPortTypeMismatch { .. }
            | PortError::VirtualPortExtraAttribute { .. } => "MergeConflict",
            PortError::VirtualPortIncomplete { .. } => "VirtualPortIncomplete",
            PortError::VirtualPortUnsupported { .. } => "VirtualPortUnsupported",
            PortError::VlanUnsupported { .. } => "VlanUnsupported",
            PortError::FloorUnsupported { .. }
            | PortError::FloorWithoutNetworkLimit { .. }
            | PortError::FloorOvercommit { .. } => "BandwidthUnavailable",
            PortError::NoDevicePool { .. } => "NoDevicePool",
            PortError::Unsupported { .. } => "Unsupported",
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "it has none".to_string()
    } else {
        format!("it has: {}", names.join(", "))
    }
}

/// The portgroup that applies to a port: the one it names, else the network's default one,
/// else none. Naming a portgroup the network lacks is an error.
pub fn select_portgroup<'n>(
    network: &'n NetworkSpec,
    requested: Option<&str>,
) -> Result<Option<&'n PortGroup>, PortError> {
    match requested {
        Some(name) => network
            .portgroups
            .iter()
            .find(|pg| pg.name == name)
            .map(Some)
            .ok_or_else(|| PortError::PortgroupNotFound {
                portgroup: name.to_string(),
                available: network
                    .portgroups
                    .iter()
                    .map(|pg| pg.name.clone())
                    .collect(),
                default: default_portgroup(network).map(|pg| pg.name.clone()),
            }),
        None => Ok(default_portgroup(network)),
    }
}

fn default_portgroup(network: &NetworkSpec) -> Option<&PortGroup> {
    network
        .portgroups
        .iter()
        .find(|pg| pg.default == Some(true))
}

/// How switchyard realises ports of this network, or why it does not.
pub fn connection(network: &NetworkSpec) -> Result<Connection, PortError> {
    let mode = modes::mode_name(network);
    match modes::realisation(network) {
        // Isolated, nat, route and open: each node makes the network's bridge itself (the
        // node agent's virtual networks), and ports attach to it like to a host bridge.
        Realisation::ManagedBridge => Ok(Connection::Bridge),
        Realisation::Hostdev => Err(PortError::Unsupported {
            mode,
            why: "it hands SR-IOV virtual functions to the guest by PCI passthrough",
        }),
        Realisation::HostBridge => Ok(Connection::Bridge),
        Realisation::Macvtap(macvtap) if modes::has_pool(network) => {
            Ok(Connection::Macvtap(macvtap))
        }
        Realisation::Macvtap(_) => Err(PortError::NoDevicePool { mode }),
    }
}

/// The settings a port gets on a network, or exactly why it cannot be attached.
pub fn effective_port(
    network: &NetworkSpec,
    request: &PortRequest,
) -> Result<EffectivePort, PortError> {
    explain_port(network, request).map(|explained| explained.port)
}

/// An effective port with where each of its settings came from, for people asking why.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The settings the port gets.
    pub port: EffectivePort,
    /// Whether the portgroup was named by the port (`true`) or is the network's default.
    pub portgroup_named: bool,
    /// Where the vlan came from.
    pub vlan_from: Option<Origin>,
    /// Where the bandwidth came from.
    pub bandwidth_from: Option<Origin>,
    /// Where `trustGuestRxFilters` came from.
    pub trust_from: Option<Origin>,
}

/// [`effective_port`], with the origin of each setting.
pub fn explain_port(
    network: &NetworkSpec,
    request: &PortRequest,
) -> Result<Explanation, PortError> {
    let connection = connection(network)?;
    let portgroup = select_portgroup(network, request.portgroup)?;
    let portgroup_origin =
        || Origin::Portgroup(portgroup.map(|pg| pg.name.clone()).unwrap_or_default());

    let virtualport = merge_virtualports(&[
        (request.virtualport, Origin::Port),
        (network.virtualport.as_ref(), Origin::Network),
        (
            portgroup.and_then(|pg| pg.virtualport.as_ref()),
            portgroup_origin(),
        ),
    ])?;

    let (vlan, vlan_from) = first_set(&[
        (request.vlan, Origin::Port),
        (
            portgroup.and_then(|pg| pg.vlan.as_ref()),
            portgroup_origin(),
        ),
        (network.vlan.as_ref(), Origin::Network),
    ]);
    let (bandwidth, bandwidth_from) = first_set(&[
        (request.bandwidth, Origin::Port),
        (
            portgroup.and_then(|pg| pg.bandwidth.as_ref()),
            portgroup_origin(),
        ),
    ]);
    let (trust_guest_rx_filters, trust_from) = first_set(&[
        (request.trust_guest_rx_filters.as_ref(), Origin::Port),
        (
            portgroup.and_then(|pg| pg.trust_guest_rx_filters.as_ref()),
            portgroup_origin(),
        ),
        (network.trust_guest_rx_filters.as_ref(), Origin::Network),
    ]);

    let uses = describe_connection(network, connection);
    if let Some(vport) = &virtualport {
        check_virtualport_fits(vport, connection, &uses)?;
    }
    if let (Some(vlan), Some(origin)) = (vlan, &vlan_from)
        && !vlan.tags.is_empty()
        && !vlan_fits(connection, virtualport.as_ref())
    {
        return Err(PortError::VlanUnsupported {
            origin: origin.clone(),
            uses,
        });
    }
    if let (Some(bandwidth), Some(origin)) = (bandwidth, &bandwidth_from)
        && inbound_floor(bandwidth).is_some()
    {
        // Only libvirt's managed bridges can guarantee a floor, and switchyard realises none.
        return Err(PortError::FloorUnsupported {
            origin: origin.clone(),
            mode: modes::mode_name(network),
        });
    }

    Ok(Explanation {
        port: EffectivePort {
            portgroup: portgroup.map(|pg| pg.name.clone()),
            virtualport,
            vlan: vlan.cloned(),
            bandwidth: bandwidth.cloned(),
            trust_guest_rx_filters: trust_guest_rx_filters.copied(),
            connection,
        },
        portgroup_named: request.portgroup.is_some(),
        vlan_from,
        bandwidth_from,
        trust_from,
    })
}

fn first_set<'a, T>(candidates: &[(Option<&'a T>, Origin)]) -> (Option<&'a T>, Option<Origin>) {
    candidates
        .iter()
        .find_map(|(value, origin)| value.map(|v| (Some(v), Some(origin.clone()))))
        .unwrap_or((None, None))
}

fn inbound_floor(bandwidth: &Bandwidth) -> Option<u64> {
    bandwidth
        .inbound
        .as_ref()
        .and_then(|limit| limit.floor)
        .filter(|floor| *floor > 0)
}

fn describe_connection(network: &NetworkSpec, connection: Connection) -> String {
    let mode = modes::mode_name(network);
    match connection {
        Connection::Macvtap(_) => format!("a macvtap device (forward mode '{mode}')"),
        Connection::Bridge => format!("a bridge device (forward mode '{mode}')"),
    }
}

/// libvirt: macvtap ports take 802.1Qbg or 802.1Qbh profiles, bridge ports openvswitch or
/// midonet ones.
fn check_virtualport_fits(
    vport: &VirtualPort,
    connection: Connection,
    uses: &str,
) -> Result<(), PortError> {
    let Some(kind) = vport.kind else {
        return Ok(());
    };
    let fits = match connection {
        Connection::Macvtap(_) => matches!(kind, VirtualPortType::Qbg | VirtualPortType::Qbh),
        Connection::Bridge => matches!(
            kind,
            VirtualPortType::OpenVswitch | VirtualPortType::Midonet
        ),
    };
    if fits {
        Ok(())
    } else {
        Err(PortError::VirtualPortUnsupported {
            kind,
            uses: uses.to_string(),
        })
    }
}

/// libvirt applies vlan tags on macvtap passthrough (through the SR-IOV VF) and on host
/// bridges, plain or openvswitch.
fn vlan_fits(connection: Connection, vport: Option<&VirtualPort>) -> bool {
    match connection {
        Connection::Macvtap(mode) => mode == MacvtapMode::Passthrough,
        Connection::Bridge => vport
            .and_then(|v| v.kind)
            .is_none_or(|kind| kind == VirtualPortType::OpenVswitch),
    }
}

/// One virtualport attribute: its name, which types have it, how to read it.
struct Attribute {
    name: &'static str,
    types: &'static [VirtualPortType],
    get: fn(&VirtualPort) -> Option<String>,
    set: fn(&mut VirtualPort, &VirtualPort),
}

const QBG: &[VirtualPortType] = &[VirtualPortType::Qbg];
const PROFILE_TYPES: &[VirtualPortType] = &[VirtualPortType::Qbh, VirtualPortType::OpenVswitch];
const INTERFACE_TYPES: &[VirtualPortType] =
    &[VirtualPortType::OpenVswitch, VirtualPortType::Midonet];

const ATTRIBUTES: &[Attribute] = &[
    Attribute {
        name: "managerid",
        types: QBG,
        get: |v| v.managerid.map(|x| x.to_string()),
        set: |to, from| to.managerid = from.managerid,
    },
    Attribute {
        name: "typeid",
        types: QBG,
        get: |v| v.typeid.map(|x| x.to_string()),
        set: |to, from| to.typeid = from.typeid,
    },
    Attribute {
        name: "typeidversion",
        types: QBG,
        get: |v| v.typeidversion.map(|x| x.to_string()),
        set: |to, from| to.typeidversion = from.typeidversion,
    },
    Attribute {
        name: "instanceid",
        types: QBG,
        get: |v| v.instanceid.as_ref().map(|x| x.to_ascii_lowercase()),
        set: |to, from| to.instanceid = from.instanceid.clone(),
    },
    Attribute {
        name: "profileid",
        types: PROFILE_TYPES,
        get: |v| v.profileid.clone(),
        set: |to, from| to.profileid = from.profileid.clone(),
    },
    Attribute {
        name: "interfaceid",
        types: INTERFACE_TYPES,
        get: |v| v.interfaceid.as_ref().map(|x| x.to_ascii_lowercase()),
        set: |to, from| to.interfaceid = from.interfaceid.clone(),
    },
];

/// Merges virtualports in priority order (libvirt: interface, network, portgroup). An
/// attribute set in two places must have one value; two types must agree. With no type
/// anywhere the result is `None`, as in libvirt (untyped parameters alone configure nothing).
pub fn merge_virtualports(
    levels: &[(Option<&VirtualPort>, Origin)],
) -> Result<Option<VirtualPort>, PortError> {
    let mut kind: Option<(VirtualPortType, &Origin)> = None;
    for (vport, origin) in levels {
        let Some(this) = vport.and_then(|v| v.kind) else {
            continue;
        };
        match kind {
            Some((first, first_origin)) if first != this => {
                return Err(PortError::VirtualPortTypeMismatch {
                    first_type: first,
                    first_origin: first_origin.clone(),
                    second_type: this,
                    second_origin: origin.clone(),
                });
            }
            Some(_) => {}
            None => kind = Some((this, origin)),
        }
    }
    let Some((kind, _)) = kind else {
        return Ok(None);
    };

    let mut merged = VirtualPort {
        kind: Some(kind),
        ..Default::default()
    };
    for attribute in ATTRIBUTES {
        let mut first: Option<(String, &Origin)> = None;
        for (vport, origin) in levels {
            let Some(vport) = vport else { continue };
            let Some(value) = (attribute.get)(vport) else {
                continue;
            };
            if !attribute.types.contains(&kind) {
                return Err(PortError::VirtualPortExtraAttribute {
                    attribute: attribute.name,
                    kind,
                    origin: origin.clone(),
                });
            }
            match &first {
                Some((first_value, first_origin)) if *first_value != value => {
                    return Err(PortError::VirtualPortConflict {
                        attribute: attribute.name,
                        first_value: first_value.clone(),
                        first_origin: (*first_origin).clone(),
                        second_value: value,
                        second_origin: origin.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    (attribute.set)(&mut merged, vport);
                    first = Some((value, origin));
                }
            }
        }
    }
    check_complete(&merged, kind)?;
    Ok(Some(merged))
}

/// libvirt's `virNetDevVPortProfileCheckComplete`, leaving out the ids the agent generates.
fn check_complete(vport: &VirtualPort, kind: VirtualPortType) -> Result<(), PortError> {
    let missing = match kind {
        VirtualPortType::Qbg => [
            ("managerid", vport.managerid.is_none()),
            ("typeid", vport.typeid.is_none()),
            ("typeidversion", vport.typeidversion.is_none()),
        ]
        .into_iter()
        .find(|(_, missing)| *missing)
        .map(|(name, _)| name),
        VirtualPortType::Qbh => vport.profileid.is_none().then_some("profileid"),
        VirtualPortType::Midonet => vport.interfaceid.is_none().then_some("interfaceid"),
        VirtualPortType::OpenVswitch => None,
    };
    match missing {
        Some(attribute) => Err(PortError::VirtualPortIncomplete { attribute, kind }),
        None => Ok(()),
    }
}

/// Admission of a port's inbound `floor` against the network's inbound limit, as libvirt's
/// `networkCheckBandwidth`: the floors of all ports on the network (`floors_in_use`, not
/// counting this port) plus this one must not exceed the network's inbound peak (when set)
/// nor its inbound average. A port without a floor, or a network without an inbound limit
/// and a port without a floor, always fits.
pub fn admit_floor(
    network: &NetworkSpec,
    floors_in_use: u64,
    requested: Option<&Bandwidth>,
) -> Result<(), PortError> {
    let Some(floor) = requested.and_then(inbound_floor) else {
        return Ok(());
    };
    let Some(limit) = network.bandwidth.as_ref().and_then(|b| b.inbound.as_ref()) else {
        return Err(PortError::FloorWithoutNetworkLimit { floor });
    };
    let total = floors_in_use.saturating_add(floor);
    if let Some(peak) = limit.peak.filter(|p| *p > 0)
        && total > peak
    {
        return Err(PortError::FloorOvercommit {
            floor,
            total,
            limit_kind: "peak",
            limit: peak,
        });
    }
    let average = limit.average.unwrap_or(0);
    if total > average {
        return Err(PortError::FloorOvercommit {
            floor,
            total,
            limit_kind: "average",
            limit: average,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
