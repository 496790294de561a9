//! Bridge ports: a veth pair whose one end is attached to the network's bridge and whose other
//! end is handed to the guest side.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use tracing::{debug, info};

use super::{
    Attempt, EEXIST, ENODEV, EXFULL, LinkManager, NetlinkError, RealisedLink, errno, observe,
    parse_mac,
};
use crate::ownership::{LinkRef, link_name, peer_link_name};

/// The kernel's limit of ports per bridge; the next attach fails with `EXFULL`.
pub use switchyard_placement::kernel::MAX_BRIDGE_PORTS as KERNEL_MAX_BRIDGE_PORTS;
/// Ports on a bridge, as the report counts them.
pub use switchyard_placement::report::BridgePorts;

/// A bridge port to create for a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgePortRequest<'a> {
    /// The port's UID: names both ends and goes into the bridge end's alias.
    pub port_uid: &'a str,
    /// The bridge to attach to.
    pub bridge: &'a str,
    /// The guest's MAC: the guest end gets it; the bridge end gets it with the first byte
    /// `fe`, as libvirt does for taps, so the bridge never adopts a guest's MAC as its own.
    pub mac: &'a str,
}

impl LinkManager {
    /// Creates the port's veth pair: the bridge end named [`link_name`], attached to the
    /// bridge, up, in the owned group, aliased with the port UID; the guest end named
    /// [`peer_link_name`], up, with the guest's MAC. A full bridge gives
    /// [`NetlinkError::BridgeFull`]. Idempotent like [`LinkManager::create_macvtap`].
    pub async fn create_bridge_port(
        &self,
        request: &BridgePortRequest<'_>,
    ) -> Result<RealisedLink, NetlinkError> {
        super::bounded_create(&link_name(request.port_uid), move |_| {
            self.create_bridge_port_attempt(request)
        })
        .await
    }

    /// One attempt of [`Self::create_bridge_port`]; a name taken again after the old link was
    /// replaced (or a stale cached ifindex) asks [`super::bounded_create`] for another.
    async fn create_bridge_port_attempt(
        &self,
        request: &BridgePortRequest<'_>,
    ) -> Result<Attempt<RealisedLink>, NetlinkError> {
        let guest_mac = parse_mac(request.mac)?;
        let mut bridge_mac = guest_mac;
        bridge_mac[0] = 0xfe;
        let name = link_name(request.port_uid);
        let peer_name = peer_link_name(request.port_uid);
        let (bridge_index, cached) = self
            .device_index(request.bridge)
            .await?
            .ok_or_else(|| NetlinkError::BridgeNotFound(request.bridge.to_string()))?;

        if self.bridge_port_limit < super::KERNEL_MAX_BRIDGE_PORTS {
            let ports = self.bridge_ports(request.bridge).await?;
            if ports.total >= self.bridge_port_limit {
                return Err(NetlinkError::BridgeFull {
                    bridge: request.bridge.to_string(),
                    ports: ports.total,
                    limit: self.bridge_port_limit,
                });
            }
        }

        // The guest end is brought up after creation: asked for inside the creation request,
        // the kernel opens it before the pair is linked and answers ENOTCONN.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.clone())
            .address(guest_mac.to_vec())
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .address(bridge_mac.to_vec())
            .link_group(self.groups.owned)
            .alias(request.port_uid)
            .controller(bridge_index)
            .up()
            .build();
        let (ifindex, echoed, already_existed) = match self.create_echoed(message).await {
            Ok(echoed) => (
                self.created_index(echoed.clone(), &name).await?,
                echoed,
                false,
            ),
            Err(error) if errno(&error) == Some(EXFULL) => {
                let ports = self.bridge_ports(request.bridge).await?;
                return Err(NetlinkError::BridgeFull {
                    bridge: request.bridge.to_string(),
                    ports: ports.total,
                    limit: KERNEL_MAX_BRIDGE_PORTS,
                });
            }
            Err(error) if errno(&error) == Some(ENODEV) && cached => {
                self.forget_device(request.bridge);
                return Ok(Attempt::Again("the bridge's cached ifindex was stale"));
            }
            Err(error) if errno(&error) == Some(ENODEV) => {
                return Err(NetlinkError::BridgeNotFound(request.bridge.to_string()));
            }
            Err(error) if errno(&error) == Some(EEXIST) => {
                match self
                    .existing_bridge_port(&name, request, bridge_index)
                    .await?
                {
                    Some(existing) => (existing.header.index, Some(existing), true),
                    None => return Ok(Attempt::Again("this port's old link was replaced")),
                }
            }
            Err(error) => {
                return Err(NetlinkError::kernel(
                    format!("creating bridge port {name} on {}", request.bridge),
                    error,
                ));
            }
        };
        let link = LinkRef {
            ifindex,
            name: name.clone(),
        };
        let peer_index = echoed.as_ref().and_then(|message| {
            message.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(index) => Some(*index),
                _ => None,
            })
        });
        let peer_index = match peer_index {
            Some(index) => index,
            None => self
                .link_by_name(&peer_name)
                .await?
                .map(|peer| peer.header.index)
                .ok_or_else(|| {
                    NetlinkError::LinkGone(LinkRef {
                        ifindex: 0,
                        name: peer_name.clone(),
                    })
                })?,
        };
        let peer = LinkRef {
            ifindex: peer_index,
            name: peer_name,
        };
        let alias = LinkAttribute::IfAlias(request.port_uid.to_string());
        let has_alias = echoed
            .as_ref()
            .is_some_and(|message| message.attributes.contains(&alias));
        let set_alias = async {
            if has_alias {
                return Ok(());
            }
            debug!(link = %link, "setting the bridge port's alias");
            let change = LinkUnspec::new_with_index(ifindex)
                .alias(request.port_uid)
                .build();
            self.handle
                .link()
                .change(change)
                .execute()
                .await
                .map_err(|error| NetlinkError::kernel(format!("setting alias of {link}"), error))
        };
        let peer_up = async {
            let change = LinkUnspec::new_with_index(peer.ifindex).up().build();
            self.handle
                .link()
                .change(change)
                .execute()
                .await
                .map_err(|error| NetlinkError::kernel(format!("setting {peer} up"), error))
        };
        let (alias_set, peer_set) = futures::join!(set_alias, peer_up);
        alias_set?;
        peer_set?;
        info!(link = %link, bridge = request.bridge, peer = %peer, already_existed, "bridge port ready");
        Ok(Attempt::Done(RealisedLink {
            link,
            peer: Some(peer),
            tap_device: None,
            already_existed,
        }))
    }

    /// The existing link named for this port: returned if it is this port's veth on this
    /// bridge, deleted (then `None`) if it is this port's but differs, refused if not ours.
    async fn existing_bridge_port(
        &self,
        name: &str,
        request: &BridgePortRequest<'_>,
        bridge_index: u32,
    ) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, NetlinkError> {
        let Some(existing) = self.link_by_name(name).await? else {
            return Ok(None);
        };
        if !self.belongs_to_port(&existing, request.port_uid) {
            return Err(NetlinkError::NameTaken {
                name: name.to_string(),
                port_uid: request.port_uid.to_string(),
            });
        }
        let summary = observe::LinkSummary::from_message(&existing);
        let is_veth = summary.kind == Some(InfoKind::Veth);
        let on_bridge = summary.controller == Some(bridge_index);
        if is_veth && on_bridge {
            return Ok(Some(existing));
        }
        let stale = LinkRef {
            ifindex: existing.header.index,
            name: name.to_string(),
        };
        info!(link = %stale, "replacing this port's bridge port: it differs from the request");
        self.delete_link(&stale).await?;
        Ok(None)
    }

    /// Counts the ports on a bridge, with a dump the kernel filters by master.
    pub async fn bridge_ports(&self, bridge: &str) -> Result<BridgePorts, NetlinkError> {
        let bridge_index = self
            .link_by_name(bridge)
            .await?
            .ok_or_else(|| NetlinkError::BridgeNotFound(bridge.to_string()))?
            .header
            .index;
        let mut request = self.handle.link().get();
        request
            .message_mut()
            .attributes
            .push(LinkAttribute::Controller(bridge_index));
        let ports: Vec<_> = {
            let _one_dump_at_a_time = self.dumps.lock().await;
            request.execute().try_collect().await.map_err(|error| {
                NetlinkError::kernel(format!("listing ports of {bridge}"), error)
            })?
        };
        // The filter is the kernel's; keep only true ports in case an old kernel ignores it.
        let ports: Vec<_> = ports
            .into_iter()
            .filter(|link| {
                link.attributes
                    .contains(&LinkAttribute::Controller(bridge_index))
            })
            .collect();
        Ok(BridgePorts {
            total: ports.len() as u32,
            owned: ports
                .iter()
                .filter(|link| {
                    observe::is_owned(&observe::LinkSummary::from_message(link), &self.groups)
                })
                .count() as u32,
        })
    }
}
