//! The kubelet device plugin: one resource `switchyard.dev/<network>` per network the node
//! serves, so the tap device of a pod's macvtap reaches its container.
//!
//! - **Register.** For each network the node's report lists, a `DevicePlugin` server listens on
//!   `switchyard-<network>.sock` in the kubelet's device plugin directory and registers with the
//!   kubelet's `Registration` service there (API v1beta1). The kubelet then owns the extended
//!   resource: the reporter stops patching the Node's capacity (see
//!   [`crate::agent::AgentConfig::device_plugin`]).
//! - **ListAndWatch** advertises one device per port the network can carry on the node (the
//!   report's capacity, at most [`slots::MAX_SLOTS`]), healthy while the node is ready for the
//!   network; each device ID is an ifindex of the network's own block ([`slots`]).
//! - **Allocate** of ID N answers `/dev/tapN` → `/dev/tapN`, `rw`, for a direct network
//!   (nothing for a bridge network, whose pods get a veth). Nothing exists yet: the kubelet
//!   allocates at admission, containerd runs the CNI ADD at `RunPodSandbox`, and only at
//!   `CreateContainer` does it look the device up — by then ADD has created the macvtap in the
//!   pod's namespace with ifindex N ([`crate::cni`]), so `/dev/tapN` is that link's.
//! - **Restarts.** A restarted kubelet empties the directory and makes a new `kubelet.sock`:
//!   when the socket's identity changes, every server is started again and registers anew. A
//!   network the node stops serving loses its server (the kubelet marks its devices unhealthy).

mod authority;
mod pod_resources;
pub mod service;
pub mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_crds::NodeNetwork;
use switchyard_kubelet_api::deviceplugin::device_plugin_server::DevicePluginServer;
use switchyard_kubelet_api::deviceplugin::registration_client::RegistrationClient;
use switchyard_kubelet_api::deviceplugin::{
    DevicePluginOptions, KUBELET_SOCKET, RegisterRequest, VERSION,
};
use switchyard_kubelet_api::unix_channel;
use thiserror::Error;
use tokio::io::DuplexStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use pod_resources::{PodResourcesError, allocated};
use service::{Advertised, NetworkPlugin};
use slots::{BlockTable, SlotError, resource_name, socket_name};

/// How often the kubelet's socket is looked at (to notice a kubelet restart) and failed
/// registrations are tried again.
const POLL: Duration = Duration::from_secs(2);
/// How long the kubelet gets to answer `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the device plugin talks to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePluginConfig {
    /// The kubelet's device plugin directory (its `kubelet.sock` and the plugins' sockets).
    pub dir: PathBuf,
    /// The kubelet's pod resources socket, asked which slots a pod got when the CNI call
    /// names none.
    pub pod_resources: PathBuf,
    /// The networks' blocks (must outlive the agent, not the node's boot).
    pub blocks_file: PathBuf,
}

impl Default for DevicePluginConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(switchyard_kubelet_api::deviceplugin::DEVICE_PLUGIN_DIR),
            pod_resources: PathBuf::from(switchyard_kubelet_api::podresources::SOCKET),
            blocks_file: PathBuf::from("/run/switchyard/device-plugin/blocks.json"),
        }
    }
}

/// Why the device plugin could not start or serve a network.
#[derive(Debug, Error)]
pub enum DevicePluginError {
    /// The blocks file could not be read or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No block for the network.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The kubelet could not be reached.
    #[error("connecting to the kubelet at {}: {source}", .socket.display())]
    Connect {
        /// Its socket.
        socket: PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The kubelet refused the registration.
    #[error("the kubelet refused to register {resource}: {status}")]
    Register {
        /// The resource.
        resource: String,
        /// Its answer.
        status: tonic::Status,
    },
    /// The kubelet did not answer.
    #[error("the kubelet did not answer Register within {REGISTER_TIMEOUT:?}")]
    Timeout,
}

/// The networks' blocks, shared by the plugins (what they advertise) and the CNI server
/// (which ifindex a slot stands for).
#[derive(Debug)]
pub struct Slots {
    table: Mutex<BlockTable>,
    file: PathBuf,
}

impl Slots {
    /// The table kept in `file`.
    pub fn open(file: &Path) -> Result<Self, DevicePluginError> {
        let table = BlockTable::load(file).map_err(|source| DevicePluginError::Io {
            what: "reading the device plugin's blocks",
            path: file.to_path_buf(),
            source,
        })?;
        Ok(Self {
            table: Mutex::new(table),
            file: file.to_path_buf(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BlockTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The network's block, assigned (and saved) on first use.
    fn assign(&self, network: &str) -> Result<(u32, BlockTable), DevicePluginError> {
        let mut table = self.table();
        let (block, changed) = table.assign(network)?;
        if changed {
            table
                .save(&self.file)
                .map_err(|source| DevicePluginError::Io {
                    what: "writing the device plugin's blocks",
                    path: self.file.clone(),
                    source,
                })?;
        }
        Ok((block, table.clone()))
    }

    /// The ifindex device ID `id` of `network` stands for.
    pub fn ifindex_for(&self, network: &str, id: &str) -> Result<u32, SlotError> {
        self.table().ifindex_for(network, id)
    }
}

/// A network's running plugin; dropping it stops the server and removes its socket.
#[derive(Debug)]
struct Running {
    advertised: watch::Sender<Advertised>,
    server: JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn advertised(block: u32, network: &NodeNetwork) -> Advertised {
    Advertised {
        slots: slots::slots(block, network.capacity, network.ready),
        tap: network.macvtap_mode.is_some(),
    }
}

/// The identity of the kubelet's socket: a new one means a new kubelet.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Serves and registers a plugin per network in `networks` (the node's latest report) until
/// the task is aborted.
pub(crate) async fn run(
    config: DevicePluginConfig,
    slots: Arc<Slots>,
    mut networks: watch::Receiver<Vec<NodeNetwork>>,
) {
    let kubelet_socket = config.dir.join(KUBELET_SOCKET);
    let mut kubelet = None;
    let mut plugins: BTreeMap<String, Running> = BTreeMap::new();
    let mut unnamable = BTreeSet::new();
    loop {
        let identity = socket_identity(&kubelet_socket);
        if identity != kubelet {
            if identity.is_some() {
                info!(socket = %kubelet_socket.display(), "the kubelet's socket is new; registering every network");
            } else {
                warn!(socket = %kubelet_socket.display(), "the kubelet's socket is gone; waiting for it");
            }
            plugins.clear();
            kubelet = identity;
        }
        if kubelet.is_some() {
            let wanted = networks.borrow_and_update().clone();
            reconcile(&config, &slots, &mut plugins, &mut unnamable, &wanted).await;
        }
        tokio::select! {
            changed = networks.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn reconcile(
    config: &DevicePluginConfig,
    slots: &Slots,
    plugins: &mut BTreeMap<String, Running>,
    unnamable: &mut BTreeSet<String>,
    wanted: &[NodeNetwork],
) {
    plugins.retain(|name, _| {
        let keep = wanted.iter().any(|n| &n.name == name);
        if !keep {
            info!(network = %name, "the node no longer serves the network; its device plugin stops");
        }
        keep
    });
    for network in wanted {
        if let Some(running) = plugins.get(&network.name) {
            if running.server.is_finished() {
                warn!(network = %network.name, "the device plugin's server stopped; starting it again");
                plugins.remove(&network.name);
            } else {
                let block = match slots.assign(&network.name) {
                    Ok((block, _)) => block,
                    Err(error) => {
                        warn!(network = %network.name, %error, "no device plugin block");
                        continue;
                    }
                };
                running.advertised.send_if_modified(|current| {
                    let next = advertised(block, network);
                    let changed = *current != next;
                    *current = next;
                    changed
                });
                continue;
            }
        }
        let Some(resource) = resource_name(&network.name) else {
            if unnamable.insert(network.name.clone()) {
                warn!(network = %network.name, "the network's name cannot be a kubelet resource name (at most 63 characters); no device plugin for it");
            }
            continue;
        };
        match start(config, slots, network, &resource).await {
            Ok(running) => {
                info!(network = %network.name, %resource, socket = %running.socket.display(), "device plugin registered");
                plugins.insert(network.name.clone(), running);
            }
            Err(error) => {
                warn!(network = %network.name, %error, "starting the device plugin failed; retrying")
            }
        }
    }
}

async fn start(
    config: &DevicePluginConfig,
    slots: &Slots,
    network: &NodeNetwork,
    resource: &str,
) -> Result<Running, DevicePluginError> {
    let (block, table) = slots.assign(&network.name)?;
    let (sender, receiver) = watch::channel(advertised(block, network));
    let endpoint = socket_name(&network.name);
    let socket = config.dir.join(&endpoint);
    let io = |what| {
        let path = socket.clone();
        move |source| DevicePluginError::Io { what, path, source }
    };
    match std::fs::remove_file(&socket) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing the old socket")(error));
        }
        _ => {}
    }
    let listener =
        tokio::net::UnixListener::bind(&socket).map_err(io("listening on the plugin socket"))?;
    let plugin = NetworkPlugin {
        network: network.name.clone(),
        table,
        advertised: receiver,
    };
    let name = network.name.clone();
    let server = tokio::spawn(async move {
        // Every connection through the authority relay (see [`authority`]).
        let (connections, incoming) = tokio::sync::mpsc::channel::<DuplexStream>(8);
        let accept = async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let (ours, theirs) = tokio::io::duplex(1 << 16);
                        if connections.send(theirs).await.is_err() {
                            return;
                        }
                        tokio::spawn(async move {
                            if let Err(error) = authority::relay(stream, ours).await {
                                debug!(%error, "a kubelet connection to the device plugin ended");
                            }
                        });
                    }
                    Err(error) => {
                        warn!(%error, "accepting a device plugin connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        let incoming = futures::stream::unfold(incoming, |mut incoming| async move {
            let connection = incoming.recv().await?;
            Some((Ok::<_, std::io::Error>(connection), incoming))
        });
        let serve = tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(plugin))
            .serve_with_incoming(incoming);
        tokio::select! {
            () = accept => {}
            served = serve => if let Err(error) = served {
                warn!(network = %name, %error, "the device plugin's server failed");
            }
        }
    });
    // From here on a failure drops `running`: the server stops and the socket goes.
    let running = Running {
        advertised: sender,
        server,
        socket,
    };
    register(config, &endpoint, resource).await?;
    Ok(running)
}

async fn register(
    config: &DevicePluginConfig,
    endpoint: &str,
    resource: &str,
) -> Result<(), DevicePluginError> {
    let kubelet = config.dir.join(KUBELET_SOCKET);
    let call = async {
        let channel =
            unix_channel(&kubelet)
                .await
                .map_err(|source| DevicePluginError::Connect {
                    socket: kubelet.clone(),
                    source,
                })?;
        RegistrationClient::new(channel)
            .register(RegisterRequest {
                version: VERSION.into(),
                endpoint: endpoint.into(),
                resource_name: resource.into(),
                options: Some(DevicePluginOptions {
                    pre_start_required: false,
                    get_preferred_allocation_available: false,
                }),
            })
            .await
            .map_err(|status| DevicePluginError::Register {
                resource: resource.into(),
                status,
            })
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .map_err(|_| DevicePluginError::Timeout)??;
    Ok(())
}
