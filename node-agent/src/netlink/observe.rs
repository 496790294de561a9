//! Reading the namespace's links: the agent's own, and the pool devices' presence and state.

use std::collections::{BTreeSet, HashMap};
use std::io;

use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVtap, LinkAttribute, LinkInfo, LinkMessage,
    MacVtapMode as KernelMacvtapMode, State,
};
use switchyard_crds::LinkState;
use switchyard_placement::kernel::fits_ifname;
use tracing::warn;

use super::dump::Dump;
use super::{LinkManager, NetlinkError, macvtap};
use crate::ownership::{LinkGroups, LinkRef, OwnedLink, OwnedLinkKind, has_owned_prefix};
use switchyard_libvirt::values::format_mac;

/// A pool device or bridge as the kernel shows it, in the form the report reads.
pub use switchyard_placement::report::DeviceState;

/// The `IFLA_LINKINFO` entries of a link.
fn link_infos(link: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    link.attributes
        .iter()
        .filter_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => Some(infos.iter()),
            _ => None,
        })
        .flatten()
}

/// A link as the agent reads it: the few facts it uses, typed. Link dumps return these, never
/// a `LinkMessage` holding some of its attributes that other code could take for a whole one;
/// a whole message from a lookup converts with [`LinkSummary::from_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LinkSummary {
    /// The ifindex.
    pub index: u32,
    /// `IFLA_IFNAME`.
    pub name: Option<String>,
    /// `IFLA_GROUP` (0 when absent, as the kernel's default group).
    pub group: u32,
    /// `IFLA_IFALIAS`, when not empty.
    pub alias: Option<String>,
    /// `IFLA_ADDRESS`, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// `IFLA_LINK` when it is an ifindex of this namespace (no `IFLA_LINK_NETNSID`).
    pub linked: Option<u32>,
    /// `IFLA_MASTER`: the bridge of a bridge port.
    pub controller: Option<u32>,
    /// `IFLA_OPERSTATE`.
    pub oper_state: LinkState,
    /// The `IFLA_INFO_KIND`.
    pub kind: Option<InfoKind>,
    /// A macvtap's mode.
    pub macvtap_mode: Option<KernelMacvtapMode>,
}

impl LinkSummary {
    /// The summary of a link message (whole, or with the attributes the dump keeps).
    pub(super) fn from_message(link: &LinkMessage) -> Self {
        let mut summary = Self {
            index: link.header.index,
            name: None,
            group: 0,
            alias: None,
            mac: None,
            linked: None,
            controller: None,
            oper_state: api_state(link),
            kind: None,
            macvtap_mode: None,
        };
        let mut linked_elsewhere = false;
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(name) => summary.name = Some(name.clone()),
                LinkAttribute::Group(group) => summary.group = *group,
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => {
                    summary.alias = Some(alias.clone())
                }
                LinkAttribute::Address(bytes) => summary.mac = Some(format_mac(bytes)),
                LinkAttribute::Link(index) => summary.linked = Some(*index),
                LinkAttribute::Controller(index) => summary.controller = Some(*index),
                LinkAttribute::LinkNetNsId(_) => linked_elsewhere = true,
                _ => {}
            }
        }
        // A link whose IFLA_LINK is in another namespace also carries IFLA_LINK_NETNSID; its
        // index means nothing here.
        if linked_elsewhere {
            summary.linked = None;
        }
        for info in link_infos(link) {
            match info {
                LinkInfo::Kind(kind) => summary.kind = Some(kind.clone()),
                LinkInfo::Data(InfoData::MacVtap(data)) => {
                    summary.macvtap_mode = data.iter().find_map(|d| match d {
                        InfoMacVtap::Mode(mode) => Some(*mode),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        summary
    }

    /// Whether the name is exactly `name`.
    pub(super) fn is_named(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }
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
pub(super) fn is_owned(link: &LinkSummary, groups: &LinkGroups) -> bool {
    groups.role(link.group).is_some() && link.name.as_deref().is_some_and(has_owned_prefix)
}

/// An owned link as the agent describes it; `None` for links it does not own. `names` maps
/// ifindexes to names, to name lower devices, bridges and peers (empty: leave them unnamed).
pub(super) fn to_owned_link(
    link: &LinkSummary,
    groups: &LinkGroups,
    names: &HashMap<u32, String>,
) -> Option<OwnedLink> {
    let group = groups.role(link.group)?;
    let name = link.name.as_deref().filter(|name| has_owned_prefix(name))?;
    let linked_name = link.linked.and_then(|index| names.get(&index).cloned());
    let kind = match &link.kind {
        Some(InfoKind::MacVtap) => OwnedLinkKind::Macvtap {
            mode: link.macvtap_mode.as_ref().and_then(macvtap::api_mode),
            lower: linked_name,
        },
        Some(InfoKind::Veth) => OwnedLinkKind::BridgePort {
            bridge: link.controller.and_then(|index| names.get(&index).cloned()),
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
            ifindex: link.index,
            name: name.to_string(),
        },
        group,
        port_uid: link.alias.clone(),
        kind,
        mac: link.mac.clone(),
        oper_state: link.oper_state,
    })
}

impl LinkManager {
    /// Every link of the namespace, as the agent reads links (see [`super::dump`]). A link
    /// with an attribute the parser refuses is kept with what could be read when it is not the
    /// agent's (its name and state are all the agent reads of such a link), with a warning;
    /// one that may be the agent's fails the dump, as recovery must not misjudge its own links.
    pub(super) async fn dump_links(&self) -> Result<Vec<LinkSummary>, NetlinkError> {
        let _one_dump_at_a_time = self.dumps.lock().await;
        let dumper = self.worker.dumper();
        let dump = tokio::task::spawn_blocking(move || dumper.dump())
            .await
            .map_err(|error| NetlinkError::Dump(io::Error::other(error)))?
            .map_err(NetlinkError::Dump)?;
        keep_readable(dump)
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
            .filter_map(|link| link.name.clone().map(|name| (link.index, name)))
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
            .into_iter()
            .filter_map(|link| link.name)
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
        let by_name: HashMap<&str, &LinkSummary> = links
            .iter()
            .filter_map(|link| link.name.as_deref().map(|name| (name, link)))
            .collect();
        Ok(names
            .iter()
            .map(|name| device_state(name, by_name.get(name).copied()))
            .collect())
    }

    /// The link whose name is exactly `name`, as a dump would find it: names the kernel cannot
    /// hold are absent, and a link found through an alternative name is not this one.
    async fn device_by_name(&self, name: &str) -> Result<Option<LinkSummary>, NetlinkError> {
        if !fits_ifname(name) {
            return Ok(None);
        }
        Ok(self
            .link_by_name(name)
            .await?
            .map(|link| LinkSummary::from_message(&link))
            .filter(|link| link.is_named(name)))
    }
}

/// The dump's links, with the unreadable ones that are certainly not the agent's kept as far as
/// they were read; an unreadable link that may be the agent's is an error.
pub(super) fn keep_readable(dump: Dump) -> Result<Vec<LinkSummary>, NetlinkError> {
    let mut links = dump.links;
    for unreadable in dump.unreadable {
        let link = &unreadable.partial;
        // Every link of the agent's has the owned prefix; the group may be among what could
        // not be read.
        let foreign = link
            .name
            .as_deref()
            .is_some_and(|name| !has_owned_prefix(name));
        if !foreign {
            return Err(NetlinkError::Dump(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "link #{} ({}) may be switchyard's and cannot be read: {}",
                    link.index,
                    link.name.as_deref().unwrap_or("no name read"),
                    unreadable.error
                ),
            )));
        }
        warn!(
            ifindex = link.index,
            name = link.name.as_deref().unwrap_or_default(),
            error = %unreadable.error,
            "a link that is not switchyard's has attributes the agent cannot read; reading only its name and state"
        );
        links.push(unreadable.partial);
    }
    Ok(links)
}

/// Up to this many devices are looked up by name rather than found in a dump of every link.
const LOOKUP_BY_NAME_MAX: usize = 8;

fn device_state(name: &str, link: Option<&LinkSummary>) -> DeviceState {
    match link {
        Some(link) => DeviceState {
            name: name.to_string(),
            ifindex: Some(link.index),
            state: link.oper_state,
        },
        None => DeviceState {
            name: name.to_string(),
            ifindex: None,
            state: LinkState::Absent,
        },
    }
}
