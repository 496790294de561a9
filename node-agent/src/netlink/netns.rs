//! Reaching the node's network namespace: the netlink socket, and sysfs for tap devices.
//!
//! A netlink socket belongs to the namespace its creating thread was in, for its whole life.
//! sysfs shows the network namespace of whoever *mounted* it, not of the reader: from the host's
//! `/sys`, a macvtap in another namespace is invisible (`/sys/dev/char/246:N` dangles), and
//! `/sys/class/net/<name>` may even show a host link of the same name. So one dedicated thread
//! per namespace:
//!
//! 1. `unshare(CLONE_NEWNS)`: a mount namespace of its own (allowed per thread), with every
//!    mount made a slave so nothing it mounts propagates back to the host;
//! 2. `setns(CLONE_NEWNET)` into the target namespace (per thread too; other threads of the
//!    process are untouched);
//! 3. mounts a fresh sysfs on `/sys`, which then shows the target namespace;
//! 4. creates the netlink socket while holding the caller's tokio runtime handle, so the socket
//!    registers with that runtime without any `unsafe` fd juggling;
//! 5. opens that sysfs as a directory and hands the descriptor out: lookups relative to it
//!    (`openat`) see the target namespace from any thread, so a tap device read costs one
//!    `openat` + `read` on the caller's thread, not a round trip to the worker;
//! 6. opens a second, blocking netlink socket for link dumps ([`super::dump`]);
//! 7. stays alive, keeping its mount namespace, until the [`NamespaceWorker`] is dropped.
//!
//! `nix` (already a dependency of `rtnetlink`, same version and features) gives safe wrappers
//! for `unshare`, `setns`, `mount` and `openat`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::{Mode, fstatat};
use rtnetlink::sys::{AsyncSocket, TokioSocket, protocols::NETLINK_ROUTE};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::NetlinkError;
use super::dump::LinkDumper;

/// Which network namespace the agent manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    /// The namespace the process runs in (a hostNetwork pod: the node's).
    Current,
    /// A namespace file, e.g. `/run/netns/node-a` (the test sandbox's stand-in nodes).
    Path(PathBuf),
}

impl NetnsTarget {
    /// The namespace file for a name under `/run/netns`, as `ip netns add` creates it.
    pub fn named(name: &str) -> Self {
        Self::Path(Path::new("/run/netns").join(name))
    }
}

/// How the worker thread sees sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysfsView {
    /// A sysfs mounted inside the target namespace: what it shows is right.
    Private,
    /// The process's own `/sys` (a private mount was not allowed): right only when `/sys` was
    /// mounted in the current namespace, so reads are cross-checked by ifindex.
    Inherited,
}

/// The thread living in the target namespace. Dropping it ends the thread, and with it the
/// private mount namespace.
#[derive(Debug)]
pub(crate) struct NamespaceWorker {
    /// Dropped with the worker: the thread's signal to end.
    _keep_alive: mpsc::Sender<()>,
    /// The namespace's sysfs root (`/sys` as the worker sees it).
    sysfs: File,
    view: SysfsView,
    dumper: Arc<LinkDumper>,
}

impl NamespaceWorker {
    /// Starts the worker in `target` and returns it with a netlink socket of that namespace,
    /// registered with the current tokio runtime.
    pub(crate) async fn start(target: &NetnsTarget) -> Result<(Self, TokioSocket), NetlinkError> {
        let runtime = tokio::runtime::Handle::current();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (keep_alive, stop) = mpsc::channel::<()>();
        let target = target.clone();
        std::thread::Builder::new()
            .name("swy-netns".into())
            .spawn(move || {
                let setup = enter(&target, &runtime);
                let failed = setup.is_err();
                if ready_tx.send(setup).is_err() || failed {
                    return;
                }
                // Nothing is ever sent: this returns when the worker is dropped.
                let _ = stop.recv();
            })
            .map_err(NetlinkError::Socket)?;
        let Entered {
            view,
            sysfs,
            dumper,
            socket,
        } = ready_rx
            .await
            .map_err(|_| NetlinkError::Socket(io::Error::other("namespace thread died")))??;
        Ok((
            Self {
                _keep_alive: keep_alive,
                sysfs,
                view,
                dumper: Arc::new(dumper),
            },
            socket,
        ))
    }

    /// The namespace's socket for link dumps.
    pub(crate) fn dumper(&self) -> Arc<LinkDumper> {
        self.dumper.clone()
    }

    /// Reads a file under the namespace's `/sys` (`relative` to it). sysfs files are generated
    /// in memory, so the read does not block the async caller in any way that matters.
    fn read(&self, relative: &Path) -> io::Result<String> {
        let fd = openat(
            &self.sysfs,
            relative,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Whether link `name` is an SR-IOV virtual function: its PCI device points at a physical
    /// function (`device/physfn`), as libvirt's `virNetDevIsVirtualFunction` reads it. A
    /// virtual link (veth, bridge) has no `device` at all.
    pub(crate) fn is_virtual_function(&self, name: &str) -> io::Result<bool> {
        let physfn = Path::new("class/net").join(name).join("device/physfn");
        match fstatat(&self.sysfs, &physfn, AtFlags::empty()) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The macvtap's tap character device as `major:minor`. The minor is allocated from a
    /// kernel-wide pool (not the ifindex), so this is the only reliable handle on the device
    /// across namespaces; `/dev/tap<ifindex>` can name another namespace's tap.
    pub(crate) fn tap_device(&self, name: &str, ifindex: u32) -> io::Result<String> {
        let dir = Path::new("class/net").join(name);
        if self.view == SysfsView::Inherited {
            let seen = self.read(&dir.join("ifindex"))?;
            if seen.trim() != ifindex.to_string() {
                return Err(io::Error::other(format!(
                    "/sys shows another link named {name} (ifindex {}, expected {ifindex}): \
                     /sys is not from the agent's network namespace",
                    seen.trim()
                )));
            }
        }
        let dev = self.read(
            &dir.join("macvtap")
                .join(format!("tap{ifindex}"))
                .join("dev"),
        )?;
        Ok(dev.trim().to_string())
    }
}

/// What the worker thread opened inside the namespace.
struct Entered {
    view: SysfsView,
    sysfs: File,
    dumper: LinkDumper,
    socket: TokioSocket,
}

/// Runs on the worker thread: enters the namespace, mounts its sysfs, opens it and the sockets.
fn enter(target: &NetnsTarget, runtime: &tokio::runtime::Handle) -> Result<Entered, NetlinkError> {
    let netns = match target {
        NetnsTarget::Current => None,
        NetnsTarget::Path(path) => {
            Some(File::open(path).map_err(|source| NetlinkError::Namespace {
                path: path.clone(),
                source,
            })?)
        }
    };
    let private_mounts = unshare(CloneFlags::CLONE_NEWNS).and_then(|()| {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
    });
    if let (Some(file), NetnsTarget::Path(path)) = (&netns, target) {
        setns(file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetlinkError::Namespace {
            path: path.clone(),
            source: errno.into(),
        })?;
    }
    let private_sysfs = private_mounts.and_then(|()| {
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
    });
    let view = match (private_sysfs, target) {
        (Ok(()), _) => SysfsView::Private,
        (Err(errno), NetnsTarget::Current) => {
            warn!(%errno, "cannot mount a private sysfs; reading the process's /sys instead");
            SysfsView::Inherited
        }
        (Err(errno), NetnsTarget::Path(path)) => {
            return Err(NetlinkError::Namespace {
                path: path.clone(),
                source: io::Error::other(format!(
                    "cannot mount a sysfs for the namespace ({errno}), needed to find tap devices"
                )),
            });
        }
    };
    let sysfs = File::open("/sys").map_err(|source| NetlinkError::Namespace {
        path: match target {
            NetnsTarget::Current => PathBuf::from("/proc/self/ns/net"),
            NetnsTarget::Path(path) => path.clone(),
        },
        source: io::Error::new(source.kind(), format!("opening its sysfs: {source}")),
    })?;
    let dumper = LinkDumper::open().map_err(NetlinkError::Socket)?;
    let _runtime = runtime.enter();
    let socket = TokioSocket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    debug!(?target, ?view, "netlink sockets open in network namespace");
    Ok(Entered {
        view,
        sysfs,
        dumper,
        socket,
    })
}
