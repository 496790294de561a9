//! Links inside pod network namespaces, for the CNI path ([`crate::cni`]).
//!
//! A pod's macvtap is created **directly in the pod's namespace**: the request goes out on the
//! node namespace's socket (where the lower device is) with `IFLA_NET_NS_FD` naming the pod's
//! namespace and `ifi_index` a node-unique ifindex the caller picked. Creating it on the node
//! and moving it would re-register it: the tap device's minor changes and `/dev/tap<ifindex>`
//! can then name another namespace's macvtap (see research/integration-paths.md §3). The
//! kernel applies the name, MAC, MTU, mode and `IFF_UP` of the one request in the pod's
//! namespace; nothing of the link ever exists on the node.
//!
//! Reading and deleting such a link needs a socket and a sysfs of the pod's namespace:
//! [`PodNamespace`] is a [`NamespaceWorker`] there, opened per call and dropped after it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::StreamExt;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoMacVtap, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkMacVtap, LinkMessageBuilder, LinkUnspec, LinkVeth};
use switchyard_crds::MacvtapMode;
use tokio::task::JoinHandle;

use super::macvtap::{api_mode, kernel_mode};
use super::netns::NamespaceWorker;
use super::{
    Attempt, EEXIST, EINVAL, ENODEV, EXFULL, LinkManager, NetlinkError, NetnsTarget, errno,
};

/// `EBUSY`: the requested ifindex is taken in the target namespace.
const EBUSY: i32 = 16;
/// `EAFNOSUPPORT`: the namespace has no IPv6 on the link.
const EAFNOSUPPORT: i32 = 97;

/// A macvtap to create inside a pod's namespace.
#[derive(Debug, Clone, Copy)]
pub struct PodMacvtapRequest<'a> {
    /// The pod's namespace, opened.
    pub netns: &'a File,
    /// The name inside it (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// The ifindex to give it: node-unique, so `/dev/tap<ifindex>` is this link's.
    pub ifindex: u32,
    /// The pool device on the node.
    pub lower: &'a str,
    /// The macvtap mode.
    pub mode: MacvtapMode,
    /// The MAC address.
    pub mac: [u8; 6],
    /// The MTU; the lower device's when `None`.
    pub mtu: Option<u32>,
}

/// A veth pair for a bridge network: the pod end created inside the pod's namespace, the other
/// attached to the node's bridge.
#[derive(Debug, Clone, Copy)]
pub struct PodVethRequest<'a> {
    /// The pod's namespace, opened.
    pub netns: &'a File,
    /// The pod end's name (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// The ifindex of both ends (each in its own namespace), chosen by the caller: it
    /// identifies the pod end on undo.
    pub ifindex: u32,
    /// The bridge end's name on the node. It is not in the agent's link group: the node's
    /// recovery must not take it for a NetworkPort's link; the CNI records own it.
    pub host_name: &'a str,
    /// The bridge.
    pub bridge: &'a str,
    /// The guest's MAC (the pod end's); the bridge end gets it with the first byte `fe`.
    pub mac: [u8; 6],
    /// The MTU of both ends; the kernel's default when `None`.
    pub mtu: Option<u32>,
}

/// Why a pod link could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PodLinkError {
    /// The name is taken in the pod's namespace.
    #[error("an interface named '{0}' already exists in the pod's network namespace")]
    NameExists(String),
    /// The ifindex is taken in the pod's namespace (pick another).
    #[error("ifindex {0} is taken in the pod's network namespace")]
    IndexTaken(u32),
    /// Anything else.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// A link in a pod's namespace as the CNI path checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    /// Its ifindex there.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: Option<String>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Whether it is administratively up.
    pub up: bool,
    /// Its macvtap mode, if it is a macvtap.
    pub macvtap_mode: Option<MacvtapMode>,
}

impl LinkManager {
    /// Creates a macvtap on the node's `lower` directly inside a pod's namespace (see the
    /// module docs), down: [`PodNamespace::bring_up`] finishes it. A name already taken in the
    /// pod's namespace is [`PodLinkError::NameExists`], never replaced: that link is not ours.
    pub async fn create_pod_macvtap(
        &self,
        request: &PodMacvtapRequest<'_>,
    ) -> Result<(), PodLinkError> {
        super::bounded_create(request.ifname, move |_| {
            self.create_pod_macvtap_attempt(request)
        })
        .await
    }

    /// One attempt of [`Self::create_pod_macvtap`]; a stale cached ifindex asks
    /// [`super::bounded_create`] for another.
    async fn create_pod_macvtap_attempt(
        &self,
        request: &PodMacvtapRequest<'_>,
    ) -> Result<Attempt<()>, PodLinkError> {
        let (lower_index, cached) = self
            .device_index(request.lower)
            .await?
            .ok_or_else(|| NetlinkError::DeviceNotFound(request.lower.to_string()))?;
        let mut builder = LinkMacVtap::new(request.ifname, lower_index, kernel_mode(request.mode))
            .address(request.mac.to_vec())
            .link_group(self.groups.owned)
            .index(request.ifindex)
            .setns_by_fd(request.netns.as_raw_fd());
        if let Some(mtu) = request.mtu {
            builder = builder.mtu(mtu);
        }
        // No NLM_F_ECHO here: the kernel would echo from the pod's namespace.
        match self.handle.link().add(builder.build()).execute().await {
            Ok(()) => Ok(Attempt::Done(())),
            Err(error) if errno(&error) == Some(EEXIST) => {
                Err(PodLinkError::NameExists(request.ifname.to_string()))
            }
            Err(error) if errno(&error) == Some(EBUSY) => {
                Err(PodLinkError::IndexTaken(request.ifindex))
            }
            Err(error) if errno(&error) == Some(ENODEV) && cached => {
                self.forget_device(request.lower);
                Ok(Attempt::Again("the device's cached ifindex was stale"))
            }
            Err(error) if errno(&error) == Some(ENODEV) => Err(PodLinkError::Netlink(
                NetlinkError::DeviceNotFound(request.lower.to_string()),
            )),
            Err(error) if errno(&error) == Some(EINVAL) => {
                Err(PodLinkError::Netlink(NetlinkError::DeviceBusy {
                    device: request.lower.to_string(),
                    mode: request.mode.as_str(),
                }))
            }
            Err(error) => Err(PodLinkError::Netlink(NetlinkError::kernel(
                format!(
                    "creating macvtap {} on {} in the pod's namespace",
                    request.ifname, request.lower
                ),
                error,
            ))),
        }
    }
}

impl LinkManager {
    /// Creates a bridge network's veth pair in one request (see [`PodVethRequest`]): the pod
    /// end down (brought up by [`PodNamespace::bring_up`]), the bridge end up and attached.
    /// Returns the bridge end's ifindex. A pod end name already taken is
    /// [`PodLinkError::NameExists`], never replaced.
    pub async fn create_pod_veth(&self, request: &PodVethRequest<'_>) -> Result<u32, PodLinkError> {
        super::bounded_create(request.host_name, move |_| {
            self.create_pod_veth_attempt(request)
        })
        .await
    }

    /// One attempt of [`Self::create_pod_veth`]; a stale cached ifindex asks
    /// [`super::bounded_create`] for another.
    async fn create_pod_veth_attempt(
        &self,
        request: &PodVethRequest<'_>,
    ) -> Result<Attempt<u32>, PodLinkError> {
        let (bridge_index, cached) = self
            .device_index(request.bridge)
            .await?
            .ok_or_else(|| NetlinkError::BridgeNotFound(request.bridge.to_string()))?;
        if self.bridge_port_limit < super::KERNEL_MAX_BRIDGE_PORTS {
            let ports = self.bridge_ports(request.bridge).await?;
            if ports.total >= self.bridge_port_limit {
                return Err(PodLinkError::Netlink(NetlinkError::BridgeFull {
                    bridge: request.bridge.to_string(),
                    ports: ports.total,
                    limit: self.bridge_port_limit,
                }));
            }
        }
        let mut host_mac = request.mac;
        host_mac[0] = 0xfe;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(request.ifname.to_string())
            .address(request.mac.to_vec())
            .index(request.ifindex)
            .setns_by_fd(request.netns.as_raw_fd());
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(request.host_name.to_string())
            .address(host_mac.to_vec())
            // The kernel honours the peer's ifindex only when this end asks for one too
            // (`veth_newlink`); the same number is free on the node, being from the range.
            .index(request.ifindex)
            .controller(bridge_index)
            .up();
        if let Some(mtu) = request.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let message = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        match self.handle.link().add(message).execute().await {
            Ok(()) => {}
            Err(error) if errno(&error) == Some(EEXIST) => {
                return Err(PodLinkError::NameExists(request.ifname.to_string()));
            }
            Err(error) if errno(&error) == Some(EBUSY) => {
                return Err(PodLinkError::IndexTaken(request.ifindex));
            }
            Err(error) if errno(&error) == Some(EXFULL) => {
                let ports = self.bridge_ports(request.bridge).await?;
                return Err(PodLinkError::Netlink(NetlinkError::BridgeFull {
                    bridge: request.bridge.to_string(),
                    ports: ports.total,
                    limit: super::KERNEL_MAX_BRIDGE_PORTS,
                }));
            }
            Err(error) if errno(&error) == Some(ENODEV) && cached => {
                self.forget_device(request.bridge);
                return Ok(Attempt::Again("the bridge's cached ifindex was stale"));
            }
            Err(error) if errno(&error) == Some(ENODEV) => {
                return Err(PodLinkError::Netlink(NetlinkError::BridgeNotFound(
                    request.bridge.to_string(),
                )));
            }
            Err(error) => {
                return Err(PodLinkError::Netlink(NetlinkError::kernel(
                    format!(
                        "creating veth {} on {} for the pod's {}",
                        request.host_name, request.bridge, request.ifname
                    ),
                    error,
                )));
            }
        }
        self.link_by_name(request.host_name)
            .await?
            .map(|link| Attempt::Done(link.header.index))
            .ok_or_else(|| {
                PodLinkError::Netlink(NetlinkError::LinkGone(crate::ownership::LinkRef {
                    ifindex: 0,
                    name: request.host_name.to_string(),
                }))
            })
    }
}

/// A socket and sysfs view inside one pod's network namespace.
#[derive(Debug)]
pub struct PodNamespace {
    handle: rtnetlink::Handle,
    worker: NamespaceWorker,
    connection: JoinHandle<()>,
}

impl Drop for PodNamespace {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl PodNamespace {
    /// Enters the namespace at `path` (a worker thread there, see [`NamespaceWorker`]).
    pub async fn open(path: &Path) -> Result<Self, NetlinkError> {
        let (worker, socket) =
            NamespaceWorker::start(&NetnsTarget::Path(path.to_path_buf())).await?;
        let (connection, handle, _unsolicited) = rtnetlink::from_socket(socket);
        Ok(Self {
            handle,
            worker,
            connection: tokio::spawn(connection),
        })
    }

    /// The link named `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<PodLink>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        let message = match links.next().await {
            Some(Ok(link)) => link,
            Some(Err(error)) if errno(&error) == Some(ENODEV) => return Ok(None),
            Some(Err(error)) => {
                return Err(NetlinkError::kernel(
                    format!("looking up {name} in the pod's namespace"),
                    error,
                ));
            }
            None => return Ok(None),
        };
        Ok(Some(pod_link(&message)))
    }

    /// Deletes the link `name` if it is there with `ifindex` (so a link someone else made under
    /// that name is left alone); whether it was deleted.
    pub async fn delete(&self, name: &str, ifindex: u32) -> Result<bool, NetlinkError> {
        match self.link(name).await? {
            Some(link) if link.ifindex == ifindex => {}
            _ => return Ok(false),
        }
        match self.handle.link().del(ifindex).execute().await {
            Ok(()) => Ok(true),
            Err(error) if errno(&error) == Some(ENODEV) => Ok(false),
            Err(error) => Err(NetlinkError::kernel(
                format!("deleting {name} in the pod's namespace"),
                error,
            )),
        }
    }

    /// Turns IPv6 address generation off on a new link, so it sends nothing of its own before
    /// the guest does (no link-local address, no DAD), then sets it up. Two requests: the
    /// kernel applies `IFF_UP` before `IFLA_AF_SPEC` within one, and refuses the latter on
    /// creation. A namespace without IPv6 has nothing to turn off.
    ///
    /// The MAC is set again on the way: a passthrough macvtap takes its lower device's at
    /// creation, and setting it afterwards puts the guest's on the wire (as libvirt does).
    pub async fn bring_up(&self, ifindex: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let quiet = LinkUnspec::new_with_index(ifindex)
            .address(mac.to_vec())
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        match self.handle.link().set(quiet).execute().await {
            Ok(()) => {}
            Err(error) if errno(&error) == Some(EAFNOSUPPORT) => {}
            Err(error) => {
                return Err(NetlinkError::kernel(
                    format!("turning IPv6 address generation off on #{ifindex}"),
                    error,
                ));
            }
        }
        let up = LinkUnspec::new_with_index(ifindex).up().build();
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(|error| NetlinkError::kernel(format!("setting #{ifindex} up"), error))
    }

    /// Sets the link `ifindex` down (a live migration's source once the VM runs elsewhere).
    pub async fn set_down(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let down = LinkUnspec::new_with_index(ifindex).down().build();
        self.handle
            .link()
            .set(down)
            .execute()
            .await
            .map_err(|error| NetlinkError::kernel(format!("setting #{ifindex} down"), error))
    }

    /// The macvtap's tap device, `major:minor`, as the namespace's own sysfs shows it.
    pub fn tap_device(&self, name: &str, ifindex: u32) -> std::io::Result<String> {
        self.worker.tap_device(name, ifindex)
    }
}

fn pod_link(message: &LinkMessage) -> PodLink {
    let mut link = PodLink {
        ifindex: message.header.index,
        mac: None,
        mtu: None,
        up: message.header.flags.contains(LinkFlags::Up),
        macvtap_mode: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Address(bytes) => {
                link.mac = Some(switchyard_libvirt::values::format_mac(bytes))
            }
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            _ => {}
        }
    }
    let infos = || {
        message
            .attributes
            .iter()
            .flat_map(|attribute| match attribute {
                LinkAttribute::LinkInfo(infos) => infos.as_slice(),
                _ => &[],
            })
    };
    let is_macvtap = infos().any(|i| matches!(i, LinkInfo::Kind(InfoKind::MacVtap)));
    if is_macvtap {
        link.macvtap_mode = infos().find_map(|info| match info {
            LinkInfo::Data(InfoData::MacVtap(data)) => data.iter().find_map(|item| match item {
                InfoMacVtap::Mode(mode) => api_mode(mode),
                _ => None,
            }),
            _ => None,
        });
    }
    link
}
