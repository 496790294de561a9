//! The kernel edge: creating, listing and deleting the agent's links over rtnetlink, inside the
//! node's network namespace. No `ip` processes.
//!
//! Every link created here is in the owned link group, named from the port UID, and carries the
//! UID in its alias (see [`crate::ownership`]). Every delete path checks ownership against the
//! kernel first, so a link the agent did not create (say, another macvtap on the same uplink) is
//! never removed.

mod bridge;
mod dump;
mod group;
mod macvtap;
mod netns;
mod observe;
mod pod;
mod tc;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use switchyard_libvirt::values;
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::ownership::{LinkGroups, LinkRef};

pub use bridge::{BridgePortRequest, BridgePorts, KERNEL_MAX_BRIDGE_PORTS};
pub use group::BatchDeletion;
pub use macvtap::MacvtapRequest;
pub use netns::NetnsTarget;
pub use observe::DeviceState;
pub use pod::{PodLink, PodLinkError, PodMacvtapRequest, PodNamespace, PodVethRequest};
pub use tc::MissingTcFeature;

use netns::NamespaceWorker;

/// How often one create is tried when its name keeps being taken (the old link replaced, and
/// the name taken again) or a cached ifindex was stale: a bound, not a loop.
const CREATE_ATTEMPTS: u32 = 3;

/// What one attempt of a link create came to, as the caller's attempt decides it.
#[derive(Debug)]
enum Attempt<T> {
    /// The link is there: created now, or this port's own found as asked.
    Done(T),
    /// Try the create again: the name was taken (EEXIST) and the caller resolved the existing
    /// link by removing it, or a cached ifindex was stale. Says why, for the log.
    Again(&'static str),
}

/// Runs `attempt` (given its 1-based number) until it is [`Attempt::Done`] or fails, at most
/// [`CREATE_ATTEMPTS`] times; the caller's attempt decides what an existing link means
/// (adopt it, replace it, or refuse). Every create path goes through here, so none can loop
/// on EEXIST when someone keeps taking the name.
///
/// A plain closure returning a future rather than an async closure: the latter's futures are
/// not provably `Send`, which the agent's reconcile tasks need.
async fn bounded_create<T, E, F>(name: &str, mut attempt: impl FnMut(u32) -> F) -> Result<T, E>
where
    F: Future<Output = Result<Attempt<T>, E>>,
    E: From<NetlinkError>,
{
    for number in 1..=CREATE_ATTEMPTS {
        match attempt(number).await? {
            Attempt::Done(created) => return Ok(created),
            Attempt::Again(why) => debug!(name, attempt = number, why, "creating the link again"),
        }
    }
    Err(NetlinkError::CreateRetries {
        name: name.to_string(),
        attempts: CREATE_ATTEMPTS,
    }
    .into())
}

/// `EEXIST`: a link of that name exists.
const EEXIST: i32 = 17;
/// `ENODEV`: no such link.
const ENODEV: i32 = 19;
/// `EINVAL`: the kernel refused the request's contents.
const EINVAL: i32 = 22;
/// `EXFULL`: a bridge has no free port number (1023 ports).
const EXFULL: i32 = 54;
/// `EOPNOTSUPP`: e.g. a group deletion meeting a link that cannot be deleted (a physical NIC).
const EOPNOTSUPP: i32 = 95;

/// What can go wrong at the kernel edge.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The namespace file could not be opened or entered, or its sysfs mounted.
    #[error("cannot enter network namespace {}: {source}", .path.display())]
    Namespace {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The link groups are zero or equal.
    #[error("invalid link groups {0:?}: both must be non-zero and distinct")]
    InvalidGroups(LinkGroups),
    /// A MAC address that is not six colon-separated hex bytes.
    #[error("invalid MAC address '{0}'")]
    InvalidMac(String),
    /// The pool device does not exist in the namespace.
    #[error("device '{0}' does not exist on the node")]
    DeviceNotFound(String),
    /// The bridge does not exist in the namespace.
    #[error("bridge '{0}' does not exist on the node")]
    BridgeNotFound(String),
    /// The bridge has no room for another port.
    #[error("bridge '{bridge}' is full: it has {ports} ports and takes at most {limit}")]
    BridgeFull {
        /// The bridge.
        bridge: String,
        /// Ports on it when the attach was refused.
        ports: u32,
        /// The limit hit: the kernel's 1023, or the agent's configured lower limit.
        limit: u32,
    },
    /// The kernel refused the macvtap on this device: passthrough needs a device with no other
    /// macvtap, and a device in passthrough takes no other.
    #[error(
        "the kernel refused a {mode} macvtap on device '{device}': it is in use in a way that mode cannot share"
    )]
    DeviceBusy {
        /// The pool device.
        device: String,
        /// The requested mode.
        mode: &'static str,
    },
    /// A link with the port's name exists and is not this port's.
    #[error("link name {name} is taken by a link that is not port {port_uid}'s")]
    NameTaken {
        /// The name.
        name: String,
        /// The port that wanted it.
        port_uid: String,
    },
    /// A link could not be created in [`CREATE_ATTEMPTS`] attempts: its name (or its peer's)
    /// was taken again after the old link was replaced, or its device's ifindex kept changing.
    #[error(
        "link {name}: not created after {attempts} attempts: its name (or its peer's) was taken again after the old link was replaced, or its device kept changing"
    )]
    CreateRetries {
        /// The link's name.
        name: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A delete was asked for a link outside the owned groups (or without the owned prefix).
    #[error("refusing to delete link {0}: it is not one of switchyard's links")]
    NotOwned(LinkRef),
    /// The link no longer exists.
    #[error("link {0} no longer exists")]
    LinkGone(LinkRef),
    /// The tap character device could not be read from sysfs.
    #[error("cannot read the tap device of {link} from sysfs: {source}")]
    TapDevice {
        /// The macvtap.
        link: LinkRef,
        /// Why.
        source: io::Error,
    },
    /// A link dump failed (read off its own socket, see `dump.rs`).
    #[error("listing links: {0}")]
    Dump(#[source] io::Error),
    /// Any other kernel refusal.
    #[error("{operation}: {source}")]
    Kernel {
        /// What was being done.
        operation: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
}

impl NetlinkError {
    /// The CamelCase reason for a port condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DeviceNotFound(_) => "DeviceMissing",
            Self::BridgeNotFound(_) => "BridgeAbsent",
            Self::BridgeFull { .. } => "BridgeFull",
            Self::DeviceBusy { .. } => "DeviceBusy",
            Self::NameTaken { .. } => "LinkNameTaken",
            Self::InvalidMac(_) => "InvalidMac",
            _ => "KernelError",
        }
    }

    fn kernel(operation: impl Into<String>, source: rtnetlink::Error) -> Self {
        Self::Kernel {
            operation: operation.into(),
            source,
        }
    }
}

/// The positive errno of a kernel refusal, if that is what the error is.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

/// A link the agent created (or found already created for the same port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealisedLink {
    /// The link: the macvtap, or the bridge end of the veth pair.
    pub link: LinkRef,
    /// The guest end of a bridge port's veth pair.
    pub peer: Option<LinkRef>,
    /// The macvtap's tap character device, `major:minor`.
    pub tap_device: Option<String>,
    /// Whether the link already existed for this port (a retry after a crash or a lost status
    /// write) rather than being created now.
    pub already_existed: bool,
}

/// The agent's handle on one network namespace's links.
#[derive(Debug)]
pub struct LinkManager {
    handle: rtnetlink::Handle,
    worker: NamespaceWorker,
    groups: LinkGroups,
    bridge_port_limit: u32,
    /// ifindexes of pool devices and bridges, saving a lookup per create. ifindexes are not
    /// reused, so a stale entry can only name a link that is gone (the create then fails with
    /// ENODEV and the entry is dropped), never another device.
    device_indexes: Mutex<HashMap<String, u32>>,
    /// Held for the length of every dump. Dumps share one socket (the kernel runs one dump
    /// at a time per socket), so concurrent reconciles (or a reconcile and the reporter) take
    /// turns here rather than parking blocking threads on the socket's lock.
    dumps: tokio::sync::Mutex<()>,
    connection: JoinHandle<()>,
}

impl Drop for LinkManager {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl LinkManager {
    /// Opens a netlink connection in `target` (spawned on the current tokio runtime) and the
    /// namespace's sysfs view.
    pub async fn open(target: &NetnsTarget, groups: LinkGroups) -> Result<Self, NetlinkError> {
        if !groups.is_valid() {
            return Err(NetlinkError::InvalidGroups(groups));
        }
        let (worker, socket) = NamespaceWorker::start(target).await?;
        let (connection, handle, _unsolicited) = rtnetlink::from_socket(socket);
        Ok(Self {
            handle,
            worker,
            groups,
            bridge_port_limit: KERNEL_MAX_BRIDGE_PORTS,
            device_indexes: Mutex::default(),
            dumps: tokio::sync::Mutex::new(()),
            connection: tokio::spawn(connection),
        })
    }

    /// Refuses bridge attaches once a bridge has `limit` ports, before the kernel's 1023.
    pub fn with_bridge_port_limit(mut self, limit: u32) -> Self {
        self.bridge_port_limit = limit.min(KERNEL_MAX_BRIDGE_PORTS);
        self
    }

    /// The agent's link groups.
    pub fn groups(&self) -> LinkGroups {
        self.groups
    }

    /// Whether device `name` is an SR-IOV virtual function; `false` when sysfs cannot say.
    pub fn is_virtual_function(&self, name: &str) -> bool {
        self.worker
            .is_virtual_function(name)
            .unwrap_or_else(|error| {
                tracing::warn!(device = name, %error, "cannot tell whether the device is an SR-IOV VF");
                false
            })
    }

    /// Looks a link up by name; `None` when it does not exist.
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.next().await {
            Some(Ok(link)) => Ok(Some(link)),
            Some(Err(error)) if errno(&error) == Some(ENODEV) => Ok(None),
            Some(Err(error)) => Err(NetlinkError::kernel(
                format!("looking up link {name}"),
                error,
            )),
            None => Ok(None),
        }
    }

    /// The ifindex of a pool device or bridge, and whether it came from the cache; `None` when
    /// the device does not exist.
    async fn device_index(&self, name: &str) -> Result<Option<(u32, bool)>, NetlinkError> {
        if let Some(index) = self.cached_indexes().get(name) {
            return Ok(Some((*index, true)));
        }
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(None);
        };
        self.cached_indexes()
            .insert(name.to_string(), link.header.index);
        Ok(Some((link.header.index, false)))
    }

    /// Drops a device's cached ifindex (the kernel said it is gone).
    fn forget_device(&self, name: &str) {
        self.cached_indexes().remove(name);
    }

    fn cached_indexes(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // The map holds plain values; a panic elsewhere cannot leave it inconsistent.
        self.device_indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks a link up by ifindex; `None` when it does not exist.
    async fn link_by_index(&self, ifindex: u32) -> Result<Option<LinkMessage>, NetlinkError> {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        match links.next().await {
            Some(Ok(link)) => Ok(Some(link)),
            Some(Err(error)) if errno(&error) == Some(ENODEV) => Ok(None),
            Some(Err(error)) => Err(NetlinkError::kernel(
                format!("looking up link #{ifindex}"),
                error,
            )),
            None => Ok(None),
        }
    }

    /// Creates a link with `NLM_F_ECHO`, so the kernel (6.3 and later) answers with the new
    /// link and no second lookup is needed; older kernels answer with a plain ACK, then `None`.
    async fn create_echoed(
        &self,
        message: LinkMessage,
    ) -> Result<Option<LinkMessage>, rtnetlink::Error> {
        use rtnetlink::packet_core::{
            NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST,
        };
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewLink(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
        let mut responses = self.handle.clone().request(request)?;
        let mut created = None;
        while let Some(response) = responses.next().await {
            match response.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    created = Some(link)
                }
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    return Err(rtnetlink::Error::NetlinkError(error));
                }
                _ => {}
            }
        }
        Ok(created)
    }

    /// The ifindex of a freshly created link: from the echo, or by name.
    async fn created_index(
        &self,
        echoed: Option<LinkMessage>,
        name: &str,
    ) -> Result<u32, NetlinkError> {
        if let Some(link) = echoed {
            return Ok(link.header.index);
        }
        debug!(name, "no echo from the kernel; looking the new link up");
        self.link_by_name(name)
            .await?
            .map(|link| link.header.index)
            .ok_or_else(|| {
                NetlinkError::kernel(
                    format!("finding link {name} right after creating it"),
                    rtnetlink::Error::RequestFailed,
                )
            })
    }
}

/// A MAC address to give a link, in libvirt's spellings ([`values::parse_mac`]).
fn parse_mac(mac: &str) -> Result<[u8; 6], NetlinkError> {
    values::parse_mac(mac).ok_or_else(|| NetlinkError::InvalidMac(mac.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_create_whose_name_is_always_taken_gives_up_after_the_bound() {
        let mut calls = Vec::new();
        let outcome: Result<(), NetlinkError> = bounded_create("syt1234567890", |n| {
            calls.push(n);
            async { Ok(Attempt::Again("name taken again")) }
        })
        .await;
        assert_eq!(
            calls,
            [1, 2, 3],
            "tried exactly CREATE_ATTEMPTS times, numbered"
        );
        let error = outcome.unwrap_err();
        assert!(
            matches!(&error, NetlinkError::CreateRetries { name, attempts: 3 } if name == "syt1234567890"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("syt1234567890") && message.contains("3 attempts"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_create_that_succeeds_on_a_later_attempt_or_fails_stops_there() {
        let mut calls = 0;
        let created: Result<u32, NetlinkError> = bounded_create("l", |n| {
            calls += 1;
            async move {
                Ok(if n < 2 {
                    Attempt::Again("stale ifindex")
                } else {
                    Attempt::Done(7)
                })
            }
        })
        .await;
        assert_eq!((created.unwrap(), calls), (7, 2));

        let mut calls = 0;
        let refused: Result<(), NetlinkError> = bounded_create("l", |_| {
            calls += 1;
            async { Err(NetlinkError::DeviceNotFound("eth9".into())) }
        })
        .await;
        assert!(matches!(refused, Err(NetlinkError::DeviceNotFound(_))));
        assert_eq!(calls, 1, "an error is not retried");
    }

    #[test]
    fn a_mac_that_does_not_parse_is_an_invalid_mac_naming_it() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:0f").unwrap(),
            [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]
        );
        assert!(
            matches!(parse_mac("zz:54:00:ab:cd:0f"), Err(NetlinkError::InvalidMac(m)) if m == "zz:54:00:ab:cd:0f")
        );
    }
}
