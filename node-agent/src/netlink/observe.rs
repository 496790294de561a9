//! Reading the namespace's links: the agent's own, and the pool devices' presence and state.

use std::collections::{BTreeSet, HashMap};
use std::io;

use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVtap, LinkAttribute, LinkInfo, LinkMessage, State,
};
use switchyard_crds::LinkState;

use super::{LinkManager, NetlinkError, format_mac, macvtap};
use crate::ownership::{LinkGroups, LinkRef, OwnedLink, OwnedLinkKind, has_owned_prefix};

/// A pool device or bridge as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The device name.
    pub name: String,
    /// Its ifindex; `None` when absent.
    pub ifindex: Option<u32>,
    /// Operational state; [`LinkState::Absent`] when the device does not exist.
    pub state: LinkState,
}

impl DeviceState {
    /// Whether the device exists.
    pub fn present(&self) -> bool {
        self.ifindex.is_some()
    }
}

/// The `IFLA_LINKINFO` entries of a link.
pub(super) fn link_infos(link: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    link.attributes
        .iter()
        .filter_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => Some(infos.iter()),
            _ => None,
        })
        .flatten()
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

fn group_of(link: &LinkMessage) -> u32 {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Group(group) => Some(*group),
            _ => None,
        })
        .unwrap_or(0)
}

fn api_state(link: &LinkMessage) -> LinkState {
    let state = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::OperState(state) => Some(*state),
        _ => None,
    });
    match state {
        Some(State::Up) => LinkState::Up,
        Some(
            State::Down
            | State::LowerLayerDown
            | State::NotPresent
            | State::Dormant
            | State::Testing,
        ) => LinkState::Down,
        _ => LinkState::Unknown,
    }
}

/// Whether a link is the agent's: in an owned group and with the owned name prefix.
pub(super) fn is_owned(link: &LinkMessage, groups: &LinkGroups) -> bool {
    groups.role(group_of(link)).is_some() && name_of(link).is_some_and(has_owned_prefix)
}

/// An owned link as the agent describes it; `None` for links it does not own. `names` maps
/// ifindexes to names, to name lower devices, bridges and peers (empty: leave them unnamed).
pub(super) fn to_owned_link(
    link: &LinkMessage,
    groups: &LinkGroups,
    names: &HashMap<u32, String>,
) -> Option<OwnedLink> {
    let group = groups.role(group_of(link))?;
    let name = name_of(link).filter(|name| has_owned_prefix(name))?;
    let mut alias = None;
    let mut mac = None;
    let mut linked = None;
    let mut controller = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfAlias(value) if !value.is_empty() => alias = Some(value.clone()),
            LinkAttribute::Address(bytes) => mac = Some(format_mac(bytes)),
            LinkAttribute::Link(index) => linked = Some(*index),
            LinkAttribute::Controller(index) => controller = Some(*index),
            _ => {}
        }
    }
    // A link whose IFLA_LINK is in another namespace also carries IFLA_LINK_NETNSID; its index
    // means nothing here.
    let linked_here = !link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)));
    let linked_name = linked
        .filter(|_| linked_here)
        .and_then(|index| names.get(&index).cloned());
    let kind = link_infos(link).find_map(|info| match info {
        LinkInfo::Kind(kind) => Some(kind.clone()),
        _ => None,
    });
    let kind = match kind {
        Some(InfoKind::MacVtap) => OwnedLinkKind::Macvtap {
            mode: link_infos(link).find_map(|info| match info {
                LinkInfo::Data(InfoData::MacVtap(data)) => data.iter().find_map(|d| match d {
                    InfoMacVtap::Mode(mode) => macvtap::api_mode(mode),
                    _ => None,
                }),
                _ => None,
            }),
            lower: linked_name,
        },
        Some(InfoKind::Veth) => OwnedLinkKind::BridgePort {
            bridge: controller.and_then(|index| names.get(&index).cloned()),
            peer: linked_name,
        },
        Some(other) => OwnedLinkKind::Other {
            kind: other.to_string(),
        },
        None => OwnedLinkKind::Other {
            kind: String::new(),
        },
    };
    Some(OwnedLink {
        link: LinkRef {
            ifindex: link.header.index,
            name: name.to_string(),
        },
        group,
        port_uid: alias,
        kind,
        mac,
        oper_state: api_state(link),
    })
}

impl LinkManager {
    /// Every link of the namespace, with the attributes the agent reads (see [`super::dump`]).
    pub(super) async fn dump_links(&self) -> Result<Vec<LinkMessage>, NetlinkError> {
        let _one_dump_at_a_time = self.dumps.lock().await;
        let dumper = self.worker.dumper();
        tokio::task::spawn_blocking(move || dumper.dump())
            .await
            .map_err(|error| NetlinkError::Dump(io::Error::other(error)))?
            .map_err(NetlinkError::Dump)
    }

    /// The agent's links (both groups), with lower devices, bridges and peers named.
    pub async fn owned_links(&self) -> Result<Vec<OwnedLink>, NetlinkError> {
        Ok(self.owned_links_and_names().await?.0)
    }

    /// [`Self::owned_links`] and [`Self::link_names`] from one dump (recovery needs both).
    pub async fn owned_links_and_names(
        &self,
    ) -> Result<(Vec<OwnedLink>, BTreeSet<String>), NetlinkError> {
        let links = self.dump_links().await?;
        let names: HashMap<u32, String> = links
            .iter()
            .filter_map(|link| name_of(link).map(|name| (link.header.index, name.to_string())))
            .collect();
        let owned = links
            .iter()
            .filter_map(|link| to_owned_link(link, &self.groups, &names))
            .collect();
        Ok((owned, names.into_values().collect()))
    }

    /// The names of every link in the namespace: what "present" means for devices and bridges.
    pub async fn link_names(&self) -> Result<BTreeSet<String>, NetlinkError> {
        Ok(self
            .dump_links()
            .await?
            .iter()
            .filter_map(|link| name_of(link).map(str::to_string))
            .collect())
    }

    /// Presence and state of the named devices, in the order asked. A few names are looked up
    /// one by one (a port's pool: the cost does not grow with the links on the node); many
    /// (the reporter's every device) with one dump.
    pub async fn device_states(&self, names: &[&str]) -> Result<Vec<DeviceState>, NetlinkError> {
        if names.len() <= LOOKUP_BY_NAME_MAX {
            let found =
                futures::future::try_join_all(names.iter().map(|name| self.device_by_name(name)))
                    .await?;
            return Ok(names
                .iter()
                .zip(found)
                .map(|(name, link)| device_state(name, link.as_ref()))
                .collect());
        }
        let links = self.dump_links().await?;
        let by_name: HashMap<&str, &LinkMessage> = links
            .iter()
            .filter_map(|link| name_of(link).map(|name| (name, link)))
            .collect();
        Ok(names
            .iter()
            .map(|name| device_state(name, by_name.get(name).copied()))
            .collect())
    }

    /// The link whose name is exactly `name`, as a dump would find it: names the kernel cannot
    /// hold are absent, and a link found through an alternative name is not this one.
    async fn device_by_name(&self, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
        if name.is_empty() || name.len() > MAX_IFNAME_LEN {
            return Ok(None);
        }
        Ok(self
            .link_by_name(name)
            .await?
            .filter(|link| name_of(link) == Some(name)))
    }
}

/// Up to this many devices are looked up by name rather than found in a dump of every link.
const LOOKUP_BY_NAME_MAX: usize = 8;

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
const MAX_IFNAME_LEN: usize = 15;

fn device_state(name: &str, link: Option<&LinkMessage>) -> DeviceState {
    match link {
        Some(link) => DeviceState {
            name: name.to_string(),
            ifindex: Some(link.header.index),
            state: api_state(link),
        },
        None => DeviceState {
            name: name.to_string(),
            ifindex: None,
            state: LinkState::Absent,
        },
    }
}
