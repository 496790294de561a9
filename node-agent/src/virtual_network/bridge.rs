//! The bridge of a virtual network, over rtnetlink in the node's namespace: created once with
//! the network's MAC, MTU, STP settings and the agent's alias; addresses, up, routes; deleted
//! only when it carries the agent's alias.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoKind, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::sys::{AsyncSocket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::VirtualNetworkError;
use super::netns::run_in;
use super::plan::{Address, VirtualNetworkPlan, bridge_alias, network_of_alias};
use crate::netlink::NetnsTarget;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// A bridge in the namespace that carries the agent's alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedBridge {
    /// The bridge's name.
    pub name: String,
    /// The Network its alias names.
    pub network: String,
    /// Its ifindex.
    pub index: u32,
}

/// A link as the bridge code needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    /// ifindex.
    pub index: u32,
    /// Whether it is a bridge.
    pub is_bridge: bool,
    /// Its alias, if any.
    pub alias: Option<String>,
    /// Administratively up.
    pub up: bool,
}

/// A netlink connection of the namespace, for bridges.
#[derive(Debug)]
pub struct Bridges {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
}

impl Drop for Bridges {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn kernel(what: String) -> impl FnOnce(rtnetlink::Error) -> VirtualNetworkError {
    move |error| VirtualNetworkError::Kernel {
        what,
        message: error.to_string(),
    }
}

fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

impl Bridges {
    /// Opens a netlink socket inside `target`, served on the current runtime.
    pub async fn open(target: &NetnsTarget) -> Result<Self, VirtualNetworkError> {
        let runtime = tokio::runtime::Handle::current();
        let target_for_thread = target.clone();
        let socket = tokio::task::spawn_blocking(move || {
            run_in(&target_for_thread, move || {
                let _entered = runtime.enter();
                TokioSocket::new(NETLINK_ROUTE)
            })
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|error| VirtualNetworkError::Io {
            what: format!("opening a netlink socket in {target:?}"),
            message: error.to_string(),
        })?;
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The link named `name`, if it exists.
    pub async fn link(&self, name: &str) -> Result<Option<LinkFacts>, VirtualNetworkError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(facts(&link))),
            Ok(None) => Ok(None),
            Err(error) if errno(&error) == Some(ENODEV) => Ok(None),
            Err(error) => Err(kernel(format!("looking up link {name}"))(error)),
        }
    }

    /// Every bridge carrying the agent's alias.
    pub async fn owned_bridges(&self) -> Result<Vec<OwnedBridge>, VirtualNetworkError> {
        let mut links = self.handle.link().get().execute();
        let mut owned = Vec::new();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(kernel("listing links".into()))?
        {
            let link_facts = facts(&link);
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            });
            if let (true, Some(alias), Some(name)) =
                (link_facts.is_bridge, link_facts.alias.as_deref(), name)
                && let Some(network) = network_of_alias(alias)
            {
                owned.push(OwnedBridge {
                    name,
                    network: network.to_string(),
                    index: link_facts.index,
                });
            }
        }
        Ok(owned)
    }

    /// Makes the plan's bridge exist (created down, with MAC, MTU, STP and the alias), or
    /// adopts the agent's own bridge of that name as it is — never re-created, so its ports
    /// stay. Returns its ifindex and whether it was created now. A link of that name without
    /// the agent's alias for this network is refused.
    pub async fn ensure_bridge(
        &self,
        plan: &VirtualNetworkPlan,
    ) -> Result<(u32, bool), VirtualNetworkError> {
        let alias = bridge_alias(&plan.network);
        if let Some(existing) = self.link(&plan.bridge).await? {
            if existing.is_bridge && existing.alias.as_deref() == Some(alias.as_str()) {
                if let Some(mtu) = plan.mtu {
                    let message = LinkUnspec::new_with_index(existing.index).mtu(mtu).build();
                    self.handle
                        .link()
                        .set(message)
                        .execute()
                        .await
                        .map_err(kernel(format!("setting the MTU of {}", plan.bridge)))?;
                }
                return Ok((existing.index, false));
            }
            return Err(VirtualNetworkError::Conflict(format!(
                "a link named {} exists and is not the bridge switchyard made for network '{}'; it is left alone",
                plan.bridge, plan.network
            )));
        }
        let stp = if plan.stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        };
        // The forward delay is in clock ticks of USER_HZ (100 per second), as in sysfs; the
        // kernel applies it before the STP state (br_changelink), which it must be: with STP
        // on, a delay below 2 s is refused.
        let mut builder = LinkMessageBuilder::<LinkBridge>::new(&plan.bridge)
            .forward_delay(plan.forward_delay.saturating_mul(100))
            .stp_state(stp)
            .address(plan.mac.to_vec());
        if let Some(mtu) = plan.mtu {
            builder = builder.mtu(mtu);
        }
        match self.handle.link().add(builder.build()).execute().await {
            Ok(()) => {}
            Err(error) if errno(&error) == Some(EEXIST) => {
                return Err(VirtualNetworkError::Conflict(format!(
                    "a link named {} appeared while creating it",
                    plan.bridge
                )));
            }
            Err(error) => {
                return Err(kernel(format!("creating bridge {}", plan.bridge))(error));
            }
        }
        let created = self.link(&plan.bridge).await?.ok_or_else(|| {
            VirtualNetworkError::Conflict(format!("bridge {} vanished after creation", plan.bridge))
        })?;
        // The kernel ignores IFLA_IFALIAS in a creation request; the mark is set right after.
        // (An agent killed in between leaves an unmarked bridge, which it then refuses to
        // adopt: a conflict to resolve by hand, never a bridge taken over by mistake.)
        let mark = LinkUnspec::new_with_index(created.index)
            .alias(alias)
            .build();
        self.handle
            .link()
            .set(mark)
            .execute()
            .await
            .map_err(kernel(format!("marking bridge {}", plan.bridge)))?;
        info!(bridge = %plan.bridge, network = %plan.network, "bridge created");
        Ok((created.index, true))
    }

    /// Puts the plan's addresses on the bridge (replacing the same ones, so repeating is
    /// harmless), brings it up, then adds its routes (a failing route is logged, as libvirt
    /// ignores it).
    pub async fn configure(
        &self,
        index: u32,
        plan: &VirtualNetworkPlan,
    ) -> Result<(), VirtualNetworkError> {
        for Address { ip, prefix } in &plan.addresses {
            self.handle
                .address()
                .add(index, *ip, *prefix)
                .replace()
                .execute()
                .await
                .map_err(kernel(format!("adding {ip}/{prefix} to {}", plan.bridge)))?;
        }
        let up = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(kernel(format!("bringing {} up", plan.bridge)))?;
        for route in &plan.routes {
            let message = match (route.destination.ip, route.gateway) {
                (IpAddr::V4(dst), IpAddr::V4(gw)) => {
                    let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                        .destination_prefix(dst, route.destination.prefix)
                        .gateway(gw);
                    if let Some(metric) = route.metric {
                        b = b.priority(metric);
                    }
                    b.build()
                }
                (IpAddr::V6(dst), IpAddr::V6(gw)) => {
                    let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                        .destination_prefix(dst, route.destination.prefix)
                        .gateway(gw);
                    if let Some(metric) = route.metric {
                        b = b.priority(metric);
                    }
                    b.build()
                }
                _ => {
                    warn!(network = %plan.network, ?route, "route and gateway families differ; skipped");
                    continue;
                }
            };
            if let Err(error) = self.handle.route().add(message).replace().execute().await {
                warn!(network = %plan.network, ?route, %error, "adding a route failed (ignored, as libvirt does)");
            }
        }
        Ok(())
    }

    /// Deletes the bridge `name` if it carries the agent's alias for `network` (its addresses
    /// and routes go with it); a missing bridge is not an error.
    pub async fn delete_owned(
        &self,
        name: &str,
        network: &str,
    ) -> Result<bool, VirtualNetworkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        if !link.is_bridge || link.alias.as_deref() != Some(bridge_alias(network).as_str()) {
            return Ok(false);
        }
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => {
                info!(bridge = %name, network, "bridge deleted");
                Ok(true)
            }
            Err(error) if errno(&error) == Some(ENODEV) => Ok(false),
            Err(error) => Err(kernel(format!("deleting bridge {name}"))(error)),
        }
    }
}

fn facts(link: &LinkMessage) -> LinkFacts {
    let mut is_bridge = false;
    let mut alias = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfAlias(a) if !a.is_empty() => alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                is_bridge |= infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)));
            }
            _ => {}
        }
    }
    LinkFacts {
        index: link.header.index,
        is_bridge,
        alias,
        up: link
            .header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up),
    }
}
