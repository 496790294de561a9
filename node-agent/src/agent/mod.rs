//! The agent process: watches its node's ports, realises them, reports the node.
//!
//! Start-up: open the namespace's netlink socket, make sure the node's `NetworkNode` exists,
//! wait for the Network and Node caches, run recovery ([`recovery`]) — only then reconcile ports
//! ([`ports`]) and report ([`reporter`]), and only then is `/readyz` true.

mod cni_access;
pub mod deleter;
pub(crate) mod finalizer;
pub mod liveness;
pub mod metrics;
mod port_bandwidth;
pub mod port_status;
mod ports;
mod recovery;
mod reporter;
mod undecodable;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller, Error as ControllerError};
use kube::runtime::predicates;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use switchyard_crds::{LABEL_NODE, Network, NetworkNode, NetworkPort, agent_manager};
use switchyard_retry::watch::decodable;
use switchyard_retry::{Backoffs, Retry, classify_kube};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::netlink::{LinkManager, NetlinkError, NetnsTarget};
use crate::ownership::{LinkGroups, LinkRef};
use crate::virtual_network::{VirtualNetworkConfig, VirtualNetworkError, VirtualNetworks};
use deleter::DeleteBatcher;
use liveness::{Heartbeat, Liveness};
use metrics::Metrics;
use switchyard_placement::coexistence;
use switchyard_placement::ledger::Ledger;
use switchyard_placement::realisation::{NodeRealisation, RealisationKind};

/// How the agent is run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node this agent serves.
    pub node_name: String,
    /// The network namespace holding the node's devices.
    pub netns: NetnsTarget,
    /// The link groups marking the agent's links.
    pub groups: LinkGroups,
    /// Refuse bridge attaches at this many ports (at most the kernel's 1023).
    pub bridge_port_limit: Option<u32>,
    /// How often device presence and link state are re-read when nothing else happens.
    pub report_interval: Duration,
    /// Port reconciles in flight at once.
    pub concurrency: u16,
    /// The CNI server's socket and records; `None`: no CNI server.
    pub cni: Option<crate::cni::CniConfig>,
    /// Where and how isolated, nat, route and open networks are run.
    pub virtual_networks: VirtualNetworkConfig,
    /// How long the reconcile loop or the deletion batcher may go without progress before
    /// `/healthz` says the agent is broken.
    pub liveness_limit: Duration,
    /// The kubelet device plugin; `None`: none, and the agent itself patches the Node's
    /// `switchyard.dev/<network>` capacity (nodes without a kubelet). With it the kubelet owns
    /// those resources and the agent never writes them.
    pub device_plugin: Option<crate::device_plugin::DevicePluginConfig>,
}

/// Why the agent stopped.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The kernel side could not be opened or read.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A Kubernetes call failed at start-up.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: kube::Error,
    },
    /// A cache never filled.
    #[error("the {0} cache did not sync within {CACHE_SYNC_TIMEOUT:?}")]
    CacheSync(&'static str),
    /// The port controller stopped before recovery was done (a signal).
    #[error("stopped before recovery was done")]
    Stopped,
    /// The CNI server could not recover or open its socket.
    #[error("CNI server: {0}")]
    Cni(#[from] crate::cni::CniStartError),
    /// The virtual networks' state directory or netlink socket could not be opened.
    #[error("virtual networks: {0}")]
    VirtualNetworks(#[from] VirtualNetworkError),
    /// The link deletion thread could not be started.
    #[error("starting the link deletion thread: {0}")]
    DeleterThread(std::io::Error),
    /// The device plugin's blocks could not be read.
    #[error("device plugin: {0}")]
    DevicePlugin(#[from] crate::device_plugin::DevicePluginError),
}

/// Why one reconcile failed (it is retried with backoff).
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// A Kubernetes call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The kernel refused something unexpected.
    #[error("kernel: {0}")]
    Netlink(#[from] NetlinkError),
    /// The link deletion task reported a failure.
    #[error("deleting the link: {0}")]
    Delete(String),
    /// The port has no UID or namespace (not from the apiserver).
    #[error("port has no {0}")]
    Incomplete(&'static str),
}

impl ReconcileError {
    /// Whether retrying can help. The kernel's refusals are retried (a device busy now, a
    /// transient lack of memory) except for a request that can never pass as it is.
    fn retry(&self) -> Retry {
        match self {
            Self::Kube(error) => classify_kube(error),
            Self::Netlink(NetlinkError::InvalidMac(_) | NetlinkError::InvalidGroups(_))
            | Self::Incomplete(_) => Retry::Invalid,
            Self::Netlink(_) | Self::Delete(_) => Retry::Transient,
        }
    }
}

/// A port the agent realised: the link it made (for deletion without a kernel lookup), the
/// pool device or bridge the kernel shows it on (to correct a status that says otherwise) and
/// the bandwidth on the link (`None` until applied or adopted in this process).
#[derive(Debug, Clone)]
struct Realised {
    link: LinkRef,
    device: Option<String>,
    bandwidth: Option<port_bandwidth::AppliedBandwidth>,
}

/// A decision recovery made about a port that must stand until the port's spec changes (a lost
/// link, a lost device conflict), kept here rather than only in a status write that may fail.
#[derive(Debug, Clone)]
struct HeldFailure {
    /// The port's generation when the decision was made.
    generation: Option<i64>,
    reason: &'static str,
    message: String,
}

/// What the agent knows that the kernel and the API do not say directly.
#[derive(Debug, Default)]
struct State {
    ledger: Ledger,
    realised: HashMap<String, Realised>,
    /// Ports whose cleanup task is running.
    cleaning: HashSet<String>,
    /// Recovery's failures by port UID, written to the port by its reconciles (and retried
    /// like any write) until its spec changes.
    held: HashMap<String, HeldFailure>,
    /// Ports failed because their bandwidth cannot be applied, by UID: not tried again while
    /// the same generation asks for the same bandwidth.
    bandwidth_refused: HashMap<String, port_bandwidth::Refusal>,
}

/// Shared by the reconciler, the reporter and the HTTP endpoints.
pub struct Context {
    client: Client,
    node: String,
    manager: String,
    links: Arc<LinkManager>,
    deleter: DeleteBatcher,
    /// Held while one link is created. The kernel creates links one at a time anyway (under
    /// the RTNL lock, in the sending task's `sendmsg`), so reconciles queueing here instead of
    /// on the socket cost no throughput, and `link_create_seconds` measures the kernel work of
    /// one link rather than the wait behind every other reconcile's.
    creating: tokio::sync::Mutex<()>,
    /// Bounds the API calls cleanup tasks make at once (as the reconcile concurrency bounds
    /// the reconciles'), so a thousand deletions do not open a thousand connections.
    api_slots: tokio::sync::Semaphore,
    state: Mutex<State>,
    networks: Store<Network>,
    nodes: Store<Node>,
    report: Notify,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// Consecutive reconcile failures per port, for backoff.
    failures: Backoffs<String>,
    virtual_networks: Arc<VirtualNetworks>,
    liveness: Liveness,
    /// The networks of the latest fresh report, for the device plugin.
    served: tokio::sync::watch::Sender<Vec<switchyard_crds::NodeNetwork>>,
    /// With a device plugin: the networks' slots, and the kubelet's pod resources socket.
    device_plugin: Option<DevicePluginAccess>,
}

/// What the CNI server needs of the device plugin.
#[derive(Debug)]
pub(crate) struct DevicePluginAccess {
    pub(crate) slots: Arc<crate::device_plugin::Slots>,
    pub(crate) pod_resources: std::path::PathBuf,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Whether recovery is done and ports are being served.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether the reconcile loop and the deletion batcher are alive; else which is not.
    pub fn is_alive(&self) -> Result<(), String> {
        self.liveness.check()
    }

    /// The Prometheus exposition of the agent's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts as they were: still the best we know.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node_labels(&self) -> BTreeMap<String, String> {
        self.nodes
            .get(&ObjectRef::new(&self.node))
            .map(|node| node.labels().clone())
            .unwrap_or_default()
    }

    /// How each network selecting this node is realised here. A network that cannot share the
    /// node with an older one (the same bridge, overlapping subnets: see
    /// [`switchyard_placement::coexistence`]) is `NetworkConflict`: no bridge, no dnsmasq, no
    /// ports, and its report says why, while the older one runs untouched. Every decision of
    /// the agent about where a network's ports go starts here.
    fn realisations(&self) -> Vec<NodeRealisation> {
        let labels = self.node_labels();
        let networks = self.networks.state();
        let networks: Vec<&Network> = networks.iter().map(|n| &**n).collect();
        coexistence::realise_on_node(
            coexistence::Node {
                name: &self.node,
                labels: &labels,
            },
            &networks,
        )
    }

    /// How the network named `name` is realised here ([`Self::realisations`]); `None` when it
    /// does not select the node.
    fn realisation(&self, name: &str) -> Option<NodeRealisation> {
        self.realisations().into_iter().find(|r| r.network == name)
    }

    /// The isolated, nat, route and open networks this node runs: those selecting it that no
    /// older network refuses ([`Self::realisations`]).
    fn virtual_networks_wanted(&self) -> Vec<Arc<Network>> {
        self.realisations()
            .into_iter()
            .filter(|r| matches!(r.kind, RealisationKind::Bridge { .. }))
            .filter_map(|r| self.network(&r.network))
            .filter(|network| crate::virtual_network::plan::is_virtual(network))
            .collect()
    }

    fn network(&self, name: &str) -> Option<Arc<Network>> {
        self.networks.get(&ObjectRef::new(name))
    }
}

/// A running agent: its shared context, and the task driving it.
#[derive(Debug)]
pub struct Agent {
    /// Shared with the HTTP endpoints.
    pub context: Arc<Context>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Opens the namespace, recovers, and starts serving ports in the background. Returns once
    /// recovery is done (the agent is ready) or failed.
    pub async fn start(client: Client, config: AgentConfig) -> Result<Self, AgentError> {
        let mut links = LinkManager::open(&config.netns, config.groups).await?;
        if let Some(limit) = config.bridge_port_limit {
            links = links.with_bridge_port_limit(limit);
        }
        let links = Arc::new(links);
        let metrics = Arc::new(Metrics::new());
        let node = config.node_name.clone();
        let manager = agent_manager(&node);
        ensure_network_node(&client, &node, &manager).await?;

        // Every cache keeps trimmed objects (see `trim_metadata`): with thousands of ports the
        // agent's memory is mostly its port cache.
        let (networks, networks_writer) = reflector::store::<Network>();
        let network_events = decodable(
            watcher(
                Api::<DeserializeGuard<Network>>::all(client.clone()),
                watcher::Config::default(),
            ),
            // A Network's status is the controller's: the warning is the whole report here.
            |_| {},
        )
        .modify(|network| trim_metadata(&mut network.metadata));
        let network_events = watch::recovering(network_events, "Network")
            .reflect(networks_writer)
            .touched_objects()
            // Only a new spec (generation) wakes the agent. The controller rewrites a network's
            // status whenever any node's counts move: were that a trigger, every agent would
            // re-reconcile the network's ports and re-report on every port created anywhere. The
            // cache above still holds the latest object; a deleted network is seen by the next
            // periodic report, and its ports keep their links until they are deleted.
            .predicate_filter(predicates::generation, PredicateConfig::default());
        let (nodes, nodes_writer) = reflector::store::<Node>();
        let node_events = watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={node}")),
        )
        // Only the labels and the agent's own extended resources are read; the rest of a
        // node's status (images, conditions) is most of its size.
        .modify(|node| {
            trim_metadata(&mut node.metadata);
            node.spec = None;
            node.status = node.status.take().map(reporter::own_resources_only);
        });
        let node_events = watch::recovering(node_events, "Node")
            .reflect(nodes_writer)
            .touched_objects();
        let (ports, ports_writer) = reflector::store::<NetworkPort>();
        // The controller itself waits on this store's readiness, and a store wakes only one
        // waiter (kube-runtime's `DelayedInit` keeps the last waker): a second wait there can
        // sleep until its timeout. So the first complete list is signalled from the stream.
        let (ports_listed_tx, ports_listed) = futures::channel::oneshot::channel::<()>();
        let mut ports_listed_tx = Some(ports_listed_tx);
        // A port that does not decode is told so on its status (see `undecodable`), and
        // recovery leaves its link alone.
        let (undecodable_tx, undecodable_rx) = futures::channel::mpsc::unbounded();
        let undecodable_uids = Arc::new(Mutex::new(HashSet::new()));
        let seen_undecodable = undecodable_uids.clone();
        let port_events = decodable(
            watcher(
                Api::<DeserializeGuard<NetworkPort>>::all(client.clone()),
                watcher::Config::default()
                    .labels(&format!("{LABEL_NODE}={node}"))
                    .page_size(PORT_LIST_PAGE),
            ),
            move |invalid| {
                if let Some(uid) = &invalid.metadata.uid {
                    seen_undecodable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(uid.clone());
                }
                let _ = undecodable_tx.unbounded_send(invalid);
            },
        )
        .modify(|port| trim_metadata(&mut port.metadata));
        let port_events = watch::recovering(port_events, "NetworkPort")
            .reflect(ports_writer)
            .inspect(move |event| {
                if matches!(event, Ok(watcher::Event::InitDone))
                    && let Some(listed) = ports_listed_tx.take()
                {
                    let _ = listed.send(());
                }
            })
            .applied_objects();

        let liveness_tick = Liveness::tick(config.liveness_limit);
        let reconciler_heart = Heartbeat::new("reconcile loop");
        let deleter_heart = Heartbeat::new("deletion batcher");
        let deleter = DeleteBatcher::start(
            links.clone(),
            metrics.clone(),
            deleter_heart.clone(),
            liveness_tick,
        )
        .map_err(AgentError::DeleterThread)?;
        let context = Arc::new(Context {
            deleter,
            liveness: Liveness::new(
                vec![reconciler_heart.clone(), deleter_heart],
                config.liveness_limit,
            ),
            creating: tokio::sync::Mutex::new(()),
            api_slots: tokio::sync::Semaphore::new(usize::from(config.concurrency.max(1))),
            client: client.clone(),
            node: node.clone(),
            manager,
            links,
            state: Mutex::new(State::default()),
            networks: networks.clone(),
            nodes: nodes.clone(),
            report: Notify::new(),
            ready: AtomicBool::new(false),
            metrics,
            failures: Backoffs::new(),
            virtual_networks: Arc::new(
                VirtualNetworks::open(config.virtual_networks.clone()).await?,
            ),
            served: tokio::sync::watch::Sender::new(Vec::new()),
            device_plugin: match &config.device_plugin {
                Some(plugin) => Some(DevicePluginAccess {
                    slots: Arc::new(crate::device_plugin::Slots::open(&plugin.blocks_file)?),
                    pod_resources: plugin.pod_resources.clone(),
                }),
                None => None,
            },
        });

        let undecodable_ports = tokio::spawn(undecodable::report(context.clone(), undecodable_rx));
        // The node's labels decide which networks it serves: a change is worth a report.
        let report_ctx = context.clone();
        let node_watch = tokio::spawn(node_events.for_each(move |event| {
            if let Err(error) = event {
                warn!(%error, "node watch");
            }
            report_ctx.report.notify_one();
            futures::future::ready(())
        }));
        // The controller runs from the start, so its caches are the ones recovery reads (one
        // list of the ports, not two). Until recovery is done its reconciles do nothing (see
        // `ports::reconcile`); then every cached port is reconciled once.
        let (recovered, on_recovered) = futures::channel::oneshot::channel::<()>();
        let network_ports = ports.clone();
        let report_ctx = context.clone();
        let controller = Controller::for_stream(port_events, ports.clone())
            .with_config(ControllerConfig::default().concurrency(config.concurrency))
            .watches_stream(network_events, move |network| {
                report_ctx.report.notify_one();
                let name = network.name_any();
                network_ports
                    .state()
                    .into_iter()
                    .filter(|port| port.spec.network == name)
                    .map(|port| ObjectRef::from_obj(&*port))
                    .collect::<Vec<_>>()
            })
            .reconcile_all_on(futures::stream::once(async move {
                let _ = on_recovered.await;
            }))
            .reconcile_on(liveness_probes(liveness_tick))
            .shutdown_on_signal();
        let ctx = context.clone();
        let mut controller_task = tokio::spawn(async move {
            controller
                .run(ports::reconcile, ports::error_policy, ctx)
                .for_each(|result| {
                    // Every finished reconcile, and every probe coming out of the runner as
                    // "not found", shows the loop is alive.
                    reconciler_heart.beat();
                    // Reconcile failures are logged by `ports::error_policy`; a failing watch
                    // (the ports' or the networks') is retried with backoff, and said here.
                    if let Err(ControllerError::QueueError(error)) = result {
                        warn!(%error, "watch failed; retrying with backoff");
                    }
                    futures::future::ready(())
                })
                .await;
            node_watch.abort();
            undecodable_ports.abort();
            info!("port controller stopped");
        });

        let started = std::time::Instant::now();
        let caches = async {
            wait_for_cache(&networks, "Network").await?;
            wait_for_cache(&nodes, "Node").await?;
            tokio::time::timeout(CACHE_SYNC_TIMEOUT, ports_listed)
                .await
                .map_err(|_| AgentError::CacheSync("NetworkPort"))?
                .map_err(|_| AgentError::CacheSync("NetworkPort"))
        };
        tokio::select! {
            synced = caches => synced?,
            _ = &mut controller_task => return Err(AgentError::Stopped),
        }
        // The virtual networks' bridges first, so that their ports find them.
        context
            .virtual_networks
            .reconcile(&context.virtual_networks_wanted())
            .await;
        let vnet_ctx = context.clone();
        let virtual_networks = tokio::spawn(context.virtual_networks.clone().run(
            move || vnet_ctx.virtual_networks_wanted(),
            VIRTUAL_NETWORK_INTERVAL,
        ));
        let undecodable = undecodable_uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        recovery::recover(&context, ports.state(), &undecodable, started.elapsed()).await?;
        // Pod ports are recovered from the CNI records before any other port is placed.
        let cni = match &config.cni {
            Some(cni) => Some(crate::cni::start(context.clone(), cni.clone()).await?),
            None => None,
        };
        context.metrics.set_recovery(started.elapsed());
        info!(node = %node, took_ms = started.elapsed().as_millis() as u64, "recovery done");
        context.ready.store(true, Ordering::Release);
        let _ = recovered.send(());

        let reporter = tokio::spawn(reporter::run(context.clone(), config.report_interval));
        let device_plugin = match (&config.device_plugin, &context.device_plugin) {
            (Some(plugin), Some(access)) => Some(tokio::spawn(crate::device_plugin::run(
                plugin.clone(),
                access.slots.clone(),
                context.served.subscribe(),
            ))),
            _ => None,
        };
        let task = tokio::spawn(async move {
            let _ = controller_task.await;
            reporter.abort();
            if let Some(device_plugin) = device_plugin {
                device_plugin.abort();
            }
            drop(cni);
            virtual_networks.abort();
        });
        Ok(Self { context, task })
    }

    /// Waits until the agent stops (on SIGTERM or SIGINT).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Ports per page of the start-up list. A page is held whole, managed fields and all, until
/// its ports are trimmed into the cache; each page is also a round trip and an etcd read. With
/// 4,000 ports, pages of 100 cost recovery 0.2 s more than pages of 500 and saved 6 MiB of
/// peak heap: recovery time is what the agent's readiness waits on.
const PORT_LIST_PAGE: u32 = 500;

/// How often the virtual networks are brought in line with the Networks (and a dnsmasq that
/// stopped noticed).
const VIRTUAL_NETWORK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the caches may take to fill at start-up.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of the port the liveness probes ask for: not a valid object name, so no port ever
/// has it, and the controller answers each probe with "object not found" once a reconcile slot
/// takes it — which only a loop that still schedules and runs reconciles does.
const LIVENESS_PROBE: &str = "(liveness probe)";

/// A request to reconcile [`LIVENESS_PROBE`] every `tick`.
fn liveness_probes(tick: Duration) -> impl futures::Stream<Item = ObjectRef<NetworkPort>> {
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(tick).await;
        Some((ObjectRef::new(LIVENESS_PROBE), ()))
    })
}

async fn wait_for_cache<K>(store: &Store<K>, kind: &'static str) -> Result<(), AgentError>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    tokio::time::timeout(CACHE_SYNC_TIMEOUT, store.wait_until_ready())
        .await
        .map_err(|_| AgentError::CacheSync(kind))?
        .map_err(|_| AgentError::CacheSync(kind))
}

/// Creates the node's `NetworkNode` if it does not exist (server-side apply creates it).
async fn ensure_network_node(client: &Client, node: &str, manager: &str) -> Result<(), AgentError> {
    let api = Api::<NetworkNode>::all(client.clone());
    let object = serde_json::json!({
        "apiVersion": NetworkNode::api_version(&()),
        "kind": NetworkNode::kind(&()),
        "metadata": {"name": node},
        "spec": {},
    });
    api.patch(
        node,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|source| AgentError::Kube {
        what: "creating the node's NetworkNode",
        source,
    })
}

/// Drops what the agent never reads and what makes up most of a cached object: managed fields
/// and annotations (`kubectl apply` keeps a whole copy of the object in one).
fn trim_metadata(metadata: &mut kube::api::ObjectMeta) {
    metadata.managed_fields = None;
    metadata.annotations = None;
}

/// The current time, RFC 3339, for condition transition times.
fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_wait_for_a_change_and_trouble_is_retried() {
        let api = |code| {
            ReconcileError::Kube(kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            )))
        };
        assert_eq!(api(422).retry(), Retry::Invalid);
        assert_eq!(api(404).retry(), Retry::Invalid);
        assert_eq!(api(409).retry(), Retry::Transient);
        assert_eq!(api(503).retry(), Retry::Transient);
        assert_eq!(
            ReconcileError::Netlink(NetlinkError::InvalidMac("x".into())).retry(),
            Retry::Invalid
        );
        assert_eq!(
            ReconcileError::Netlink(NetlinkError::DeviceNotFound("eth0".into())).retry(),
            Retry::Transient
        );
        assert_eq!(ReconcileError::Incomplete("uid").retry(), Retry::Invalid);
    }
}
