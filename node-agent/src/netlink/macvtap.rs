//! macvtap links on pool devices.

use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkMessage, MacVtapMode as KernelMode,
};
use rtnetlink::{LinkMacVtap, LinkUnspec};
use switchyard_crds::MacvtapMode;
use tracing::{debug, info};

use super::observe::LinkSummary;
use super::{
    Attempt, EEXIST, EINVAL, ENODEV, LinkManager, NetlinkError, RealisedLink, errno, observe,
    parse_mac,
};
use crate::ownership::{LinkRef, link_name};

/// A macvtap to create for a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacvtapRequest<'a> {
    /// The port's UID: names the link and goes into its alias.
    pub port_uid: &'a str,
    /// The pool device the allocator picked.
    pub lower: &'a str,
    /// The macvtap mode.
    pub mode: MacvtapMode,
    /// The guest's MAC address.
    pub mac: &'a str,
}

pub(super) fn kernel_mode(mode: MacvtapMode) -> KernelMode {
    match mode {
        MacvtapMode::Bridge => KernelMode::Bridge,
        MacvtapMode::Vepa => KernelMode::Vepa,
        MacvtapMode::Private => KernelMode::Private,
        MacvtapMode::Passthrough => KernelMode::Passthrough,
    }
}

pub(super) fn api_mode(mode: &KernelMode) -> Option<MacvtapMode> {
    match mode {
        KernelMode::Bridge => Some(MacvtapMode::Bridge),
        KernelMode::Vepa => Some(MacvtapMode::Vepa),
        KernelMode::Private => Some(MacvtapMode::Private),
        KernelMode::Passthrough => Some(MacvtapMode::Passthrough),
        _ => None,
    }
}

impl LinkManager {
    /// Creates the port's macvtap on `lower`, up, in the owned group, aliased with the port UID,
    /// and returns it with its tap device. Idempotent: if this port's link already exists as
    /// asked it is returned; if it exists differently (another device or mode) it is replaced.
    pub async fn create_macvtap(
        &self,
        request: &MacvtapRequest<'_>,
    ) -> Result<RealisedLink, NetlinkError> {
        super::bounded_create(&link_name(request.port_uid), move |_| {
            self.create_macvtap_attempt(request)
        })
        .await
    }

    /// One attempt of [`Self::create_macvtap`]; a name taken again after the old link was
    /// replaced (or a stale cached ifindex) asks [`super::bounded_create`] for another.
    async fn create_macvtap_attempt(
        &self,
        request: &MacvtapRequest<'_>,
    ) -> Result<Attempt<RealisedLink>, NetlinkError> {
        let mac = parse_mac(request.mac)?;
        let name = link_name(request.port_uid);
        let (lower_index, cached) = self
            .device_index(request.lower)
            .await?
            .ok_or_else(|| NetlinkError::DeviceNotFound(request.lower.to_string()))?;

        let message = LinkMacVtap::new(&name, lower_index, kernel_mode(request.mode))
            .address(mac.to_vec())
            .link_group(self.groups.owned)
            .alias(request.port_uid)
            .up()
            .build();
        let (ifindex, echoed, already_existed) = match self.create_echoed(message).await {
            Ok(echoed) => {
                let ifindex = self.created_index(echoed.clone(), &name).await?;
                (ifindex, echoed, false)
            }
            Err(error) if errno(&error) == Some(EEXIST) => {
                match self.existing_macvtap(&name, request, lower_index).await? {
                    Some(existing) => (existing.header.index, Some(existing), true),
                    // It was this port's, but not as asked: it is gone now, create afresh.
                    None => return Ok(Attempt::Again("this port's old link was replaced")),
                }
            }
            Err(error) if errno(&error) == Some(ENODEV) && cached => {
                self.forget_device(request.lower);
                return Ok(Attempt::Again("the device's cached ifindex was stale"));
            }
            Err(error) if errno(&error) == Some(ENODEV) => {
                return Err(NetlinkError::DeviceNotFound(request.lower.to_string()));
            }
            Err(error) if errno(&error) == Some(EINVAL) => {
                return Err(NetlinkError::DeviceBusy {
                    device: request.lower.to_string(),
                    mode: request.mode.as_str(),
                });
            }
            Err(error) => {
                return Err(NetlinkError::kernel(
                    format!("creating macvtap {name} on {}", request.lower),
                    error,
                ));
            }
        };
        let link = LinkRef {
            ifindex,
            name: name.clone(),
        };
        // The tap device exists from creation on: read it before waiting on the kernel again.
        let tap_device =
            self.worker
                .tap_device(&name, ifindex)
                .map_err(|source| NetlinkError::TapDevice {
                    link: link.clone(),
                    source,
                })?;
        self.finish_macvtap(&link, request, &mac, echoed.as_ref())
            .await?;
        info!(
            link = %link, lower = request.lower, mode = request.mode.as_str(),
            mac = request.mac, tap = %tap_device, already_existed, "macvtap ready"
        );
        Ok(Attempt::Done(RealisedLink {
            link,
            peer: None,
            tap_device: Some(tap_device),
            already_existed,
        }))
    }

    /// Sets what creation could not: the alias when the kernel dropped it, and a passthrough
    /// macvtap's MAC. In passthrough the macvtap takes its lower device's MAC at creation, and
    /// setting it afterwards sets the lower device's MAC too (the kernel restores the lower's
    /// own MAC when the macvtap is deleted), which is how the guest's MAC reaches the wire.
    async fn finish_macvtap(
        &self,
        link: &LinkRef,
        request: &MacvtapRequest<'_>,
        mac: &[u8; 6],
        echoed: Option<&LinkMessage>,
    ) -> Result<(), NetlinkError> {
        let has = |wanted: &LinkAttribute| {
            echoed.is_some_and(|message| message.attributes.iter().any(|a| a == wanted))
        };
        let alias_missing = !has(&LinkAttribute::IfAlias(request.port_uid.to_string()));
        let mac_missing = !has(&LinkAttribute::Address(mac.to_vec()));
        if !alias_missing && !mac_missing {
            return Ok(());
        }
        let mut change = LinkUnspec::new_with_index(link.ifindex);
        if alias_missing {
            change = change.alias(request.port_uid);
        }
        if mac_missing {
            change = change.address(mac.to_vec());
        }
        debug!(link = %link, alias_missing, mac_missing, "completing macvtap");
        self.handle
            .link()
            .change(change.build())
            .execute()
            .await
            .map_err(|error| {
                NetlinkError::kernel(format!("setting alias and MAC of {link}"), error)
            })
    }

    /// The existing link named for this port. Returns it if it is this port's macvtap as asked;
    /// deletes it and returns `None` if it is this port's but differs; fails if it is not ours.
    async fn existing_macvtap(
        &self,
        name: &str,
        request: &MacvtapRequest<'_>,
        lower_index: u32,
    ) -> Result<Option<LinkMessage>, NetlinkError> {
        let Some(existing) = self.link_by_name(name).await? else {
            // Deleted in between: creating again will do.
            return Ok(None);
        };
        if !self.belongs_to_port(&existing, request.port_uid) {
            return Err(NetlinkError::NameTaken {
                name: name.to_string(),
                port_uid: request.port_uid.to_string(),
            });
        }
        let summary = LinkSummary::from_message(&existing);
        let is_macvtap = summary.kind == Some(InfoKind::MacVtap);
        let same_lower = summary.linked == Some(lower_index);
        let same_mode = summary.macvtap_mode == Some(kernel_mode(request.mode));
        if is_macvtap && same_lower && same_mode {
            return Ok(Some(existing));
        }
        let stale = LinkRef {
            ifindex: existing.header.index,
            name: name.to_string(),
        };
        info!(link = %stale, "replacing this port's link: it differs from the request");
        self.delete_link(&stale).await?;
        Ok(None)
    }

    /// Whether a link is in an owned group and is this port's: its alias is the UID, or it has
    /// no alias (a crash before the alias was set) and the name derived from the UID.
    pub(super) fn belongs_to_port(&self, link: &LinkMessage, port_uid: &str) -> bool {
        let summary = LinkSummary::from_message(link);
        let Some(owned) = observe::to_owned_link(&summary, &self.groups, &Default::default())
        else {
            return false;
        };
        match owned.port_uid {
            Some(uid) => uid == port_uid,
            None => owned.link.name == link_name(port_uid),
        }
    }
}
