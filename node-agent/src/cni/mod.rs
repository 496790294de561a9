//! The CNI server: pod interfaces for `switchyard-cni`, served on a unix socket only root can
//! open (directory 0700, socket 0600; default `/run/switchyard/cni.sock`).
//!
//! **ADD** of a pod interface: the Network comes from the configuration's `network` (or
//! `name`), the pod from `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`). A
//! NetworkPort owned by the Pod (`spec.owner`: the pod's VirtualMachineInstance when it has
//! one, else the Pod) is created, or adopted from an earlier sandbox of the same pod. Its MAC
//! is `runtimeConfig.mac`, else `CNI_ARGS` `MAC=`, else derived from the owner's UID and the
//! interface name ([`naming::derived_mac`]), so a migration's source and target pods agree.
//! The device is allocated on the agent's own ledger by the rules every port follows, and the
//! macvtap is created directly in `CNI_NETNS` as `CNI_IFNAME` with a node-unique ifindex (see
//! [`crate::netlink::PodMacvtapRequest`]). On a bridge network the pod gets the end of a veth
//! pair instead, created in `CNI_NETNS` in the same request that attaches the other end to the
//! bridge ([`crate::netlink::PodVethRequest`]); that end is outside the agent's link group, so
//! the node's own recovery leaves it to these records. The API's refusal of the port (the admission
//! webhook's) and the allocator's become CNI errors carrying the same messages.
//!
//! **Records and crash safety.** The agent is the only allocator on its node, so the records
//! it keeps under `/run/switchyard/cni/` (one file per attachment, [`records`]), together with
//! the NetworkPorts, are the whole truth about pod interfaces, as libvirt's
//! `/run/libvirt/network/*.xml` status files are for its ports. Each step is recorded before
//! it is taken:
//!
//! | step | record written before | a SIGKILL right after leaves | recovery |
//! |---|---|---|---|
//! | ADD starts | `adding` (port name, chosen ifindex) | maybe a port, maybe a link | undo: delete the link (by name *and* ifindex, in the pod's namespace), delete the port |
//! | ADD succeeds | `ready` (device, tap, MTU) | a finished attachment | keep: count its device |
//! | DEL starts | `deleting` | maybe the link, maybe the port | finish: delete both, then the record |
//!
//! A runtime that saw an ADD fail (its connection broke) DELs, as the spec requires; one whose
//! DEL could not reach the agent was told success (the shim's choice), and the sweep below
//! finds the attachment's namespace gone. So after a restart no port is lost and no link is
//! left behind, also in namespaces the node's link dump cannot see.
//!
//! **Live migration** (KubeVirt): the source and target pods' ADDs give the same MAC; once the
//! VMI's `status.migrationState` says the migration completed, the source node's agent sets
//! the source link down at once and marks the port `MigratedAway`; a failed or aborted
//! migration releases the target's attachment and leaves the source up ([`migration`]).
//!
//! **GC** releases the attachments of one configuration `name` that
//! `cni.dev/valid-attachments` (or the older `cni.dev/attachments`) leaves out. Multus and
//! containerd 1.6 never call it, so a **sweep** every `sweep_interval` also releases
//! attachments whose namespace or pod is gone, records whose port was deleted, and pod ports
//! no record knows.

mod attach;
pub mod install;
pub mod migration;
mod migration_watch;
pub mod naming;
pub mod records;
mod server;
mod sweep;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use switchyard_crds::NetworkPort;
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::agent::Context;
use records::{Record, RecordStore};

pub use switchyard_crds::{
    ANNOTATION_CNI_CONTAINER_ID as ANNOTATION_CONTAINER_ID,
    ANNOTATION_CNI_IFNAME as ANNOTATION_IFNAME, ANNOTATION_CNI_NETNS as ANNOTATION_NETNS,
    LABEL_POD_UID,
};

/// Whether a port is a pod interface the CNI server made (the port controller leaves those
/// alone: their links live in pod namespaces).
pub fn made_by_cni(port: &NetworkPort) -> bool {
    port.labels().contains_key(LABEL_POD_UID)
}

/// Where the CNI server listens and keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The socket `switchyard-cni` connects to.
    pub socket: PathBuf,
    /// The records' directory.
    pub state_dir: PathBuf,
    /// How often attachments whose pod or namespace is gone are looked for.
    pub sweep_interval: Duration,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(switchyard_cni::DEFAULT_SOCKET),
            state_dir: PathBuf::from("/run/switchyard/cni"),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// Why the CNI server could not start.
#[derive(Debug, Error)]
pub enum CniStartError {
    /// The records' directory or the socket could not be set up.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Recovery could not list the node's pod ports.
    #[error("listing the node's pod ports: {0}")]
    Kube(#[from] kube::Error),
}

/// The CNI server's state: the records, behind one lock. ADD, DEL, GC and the sweep each hold
/// it for their whole length, so they never interleave on the node (the spec wants shared
/// resources locked; the kernel serialises link creation anyway).
pub(crate) struct Cni {
    ctx: Arc<Context>,
    store: RecordStore,
    records: tokio::sync::Mutex<Vec<Record>>,
}

impl std::fmt::Debug for Cni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cni").finish_non_exhaustive()
    }
}

/// The running server; dropping it stops the socket and the sweep.
#[derive(Debug)]
pub struct CniServer {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for CniServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Recovers from the records, then serves the socket and sweeps. Runs before the agent is
/// ready: until recovery is done the socket does not exist (STATUS says not available).
pub(crate) async fn start(
    ctx: Arc<Context>,
    config: CniConfig,
) -> Result<CniServer, CniStartError> {
    let store = RecordStore::open(&config.state_dir).map_err(|source| CniStartError::Io {
        what: "opening the CNI records directory",
        path: config.state_dir.clone(),
        source,
    })?;
    let (records, unreadable) = store.load().map_err(|source| CniStartError::Io {
        what: "reading the CNI records",
        path: config.state_dir.clone(),
        source,
    })?;
    for (path, why) in unreadable {
        warn!(path = %path.display(), %why, "ignoring a file that is not a CNI record");
    }
    let cni = Arc::new(Cni {
        ctx,
        store,
        records: tokio::sync::Mutex::new(records),
    });
    let recovered = sweep::recover(&cni).await?;
    info!(
        kept = recovered.kept,
        undone = recovered.undone,
        orphans = recovered.orphans,
        "CNI records recovered"
    );
    let listener = server::bind(&config.socket).map_err(|source| CniStartError::Io {
        what: "listening on",
        path: config.socket.clone(),
        source,
    })?;
    info!(socket = %config.socket.display(), "CNI server listening");
    let serving = tokio::spawn(server::serve(cni.clone(), listener));
    let sweeping = tokio::spawn(sweep::run(cni.clone(), config.sweep_interval));
    let migrations = tokio::spawn(migration_watch::run(cni));
    Ok(CniServer {
        tasks: vec![serving, sweeping, migrations],
    })
}
