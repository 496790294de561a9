//! Watches that keep the [`Index`] and the reconcilers' stores current, and tell each
//! reconciler which objects a change concerns.
//!
//! One task applies the events of all four watches (Networks, Nodes, NetworkNodes,
//! NetworkPorts), so the index has a single writer. Objects are decoded one by one: an object
//! that does not decode is logged and skipped instead of stopping its watch.
//! While a watch (re)lists, per-object triggers are held back; when the list is complete every
//! reconciler is asked to go over all its objects once.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use switchyard_crds::{NODE_LABEL_PREFIX, Network, NetworkNode, NetworkPort};
use switchyard_retry::watch::decodable;
use tokio::sync::watch;

use switchyard_placement::index::{AgentReport, Index, NodeInfo, PortKey, PortUse};
use switchyard_placement::realisation::selects;

/// The index, shared between the cache task (the only writer) and its readers.
pub type SharedIndex = Arc<RwLock<Index>>;

/// What the watches maintain.
#[derive(Clone)]
pub struct Caches {
    /// The index the pure functions read.
    pub index: SharedIndex,
    /// Networks, for the network reconciler.
    pub networks: Store<Network>,
    /// Nodes, for the node label reconciler.
    pub nodes: Store<Node>,
    /// NetworkPorts, for the port label reconciler.
    pub ports: Store<NetworkPort>,
    synced: watch::Receiver<bool>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("synced", &*self.synced.borrow())
            .finish_non_exhaustive()
    }
}

impl Caches {
    /// Whether every watch has listed its objects once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until every watch has listed its objects once. False when that will never
    /// happen because the watches stopped (at shutdown): then there is nothing to act on.
    pub async fn wait_synced(&self) -> bool {
        let mut synced = self.synced.clone();
        synced.wait_for(|s| *s).await.is_ok()
    }

    /// Reads the index.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which objects each reconciler should look at again. `*_all` asks for all of them.
#[derive(Debug)]
pub struct Triggers {
    /// Networks whose status may have changed.
    pub networks: UnboundedReceiver<ObjectRef<Network>>,
    /// Every network.
    pub networks_all: UnboundedReceiver<()>,
    /// Nodes whose `net.switchyard.dev/*` labels may have changed.
    pub nodes: UnboundedReceiver<ObjectRef<Node>>,
    /// Every node.
    pub nodes_all: UnboundedReceiver<()>,
    /// Ports that may lack their node or network label.
    pub ports: UnboundedReceiver<ObjectRef<NetworkPort>>,
    /// Every port.
    pub ports_all: UnboundedReceiver<()>,
}

#[derive(Debug, Clone)]
struct Outbox {
    networks: UnboundedSender<ObjectRef<Network>>,
    networks_all: UnboundedSender<()>,
    nodes: UnboundedSender<ObjectRef<Node>>,
    nodes_all: UnboundedSender<()>,
    ports: UnboundedSender<ObjectRef<NetworkPort>>,
    ports_all: UnboundedSender<()>,
}

impl Outbox {
    // A closed channel means its reconciler has stopped (shutdown): nothing to tell it.
    fn network(&self, name: &str) {
        let _ = self.networks.unbounded_send(ObjectRef::new(name));
    }

    fn node(&self, name: &str) {
        let _ = self.nodes.unbounded_send(ObjectRef::new(name));
    }

    fn port(&self, key: &PortKey) {
        let _ = self
            .ports
            .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
    }

    fn everything(&self) {
        let _ = self.networks_all.unbounded_send(());
        let _ = self.nodes_all.unbounded_send(());
        let _ = self.ports_all.unbounded_send(());
    }
}

/// One event of one of the four watches.
enum Update {
    Network(Event<Network>),
    Node(Event<Node>),
    Agent(Event<NetworkNode>),
    Port(Event<NetworkPort>),
}

/// A watch of one kind (all namespaces), decoded object by object (one that does not decode
/// is skipped with a warning, [`decodable`]) and retried with backoff.
pub fn typed_watch<K>(
    client: Client,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + Default
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<DeserializeGuard<K>> = Api::all(client);
    // The controller has nothing to add to the warning about an object it cannot decode.
    decodable(
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
        |_| {},
    )
    // Managed fields are large and nothing here reads them.
    .modify(|object| object.meta_mut().managed_fields = None)
}

/// Starts nothing yet: returns the caches, the triggers, and the future that runs the watches
/// (it ends only if every watch ends, which they do not on their own).
pub fn caches(
    client: Client,
) -> (
    Caches,
    Triggers,
    impl std::future::Future<Output = ()> + Send,
) {
    let (network_store, network_writer) = reflector::store();
    let (node_store, node_writer) = reflector::store();
    let (port_store, port_writer) = reflector::store();
    let (synced_tx, synced_rx) = watch::channel(false);
    let index = SharedIndex::default();

    let (networks_tx, networks) = unbounded();
    let (networks_all_tx, networks_all) = unbounded();
    let (nodes_tx, nodes) = unbounded();
    let (nodes_all_tx, nodes_all) = unbounded();
    let (ports_tx, ports) = unbounded();
    let (ports_all_tx, ports_all) = unbounded();
    let outbox = Outbox {
        networks: networks_tx,
        networks_all: networks_all_tx,
        nodes: nodes_tx,
        nodes_all: nodes_all_tx,
        ports: ports_tx,
        ports_all: ports_all_tx,
    };

    let updates = stream::select_all([
        typed_watch(client.clone())
            .reflect(network_writer)
            .filter_map(|r| async { log_error("networks", r).map(Update::Network) })
            .boxed(),
        typed_watch(client.clone())
            .reflect(node_writer)
            .filter_map(|r| async { log_error("nodes", r).map(Update::Node) })
            .boxed(),
        // Agent reports live in the index only: no reconciler iterates over them.
        typed_watch::<NetworkNode>(client.clone())
            .filter_map(|r| async { log_error("networknodes", r).map(Update::Agent) })
            .boxed(),
        typed_watch(client)
            .reflect(port_writer)
            .filter_map(|r| async { log_error("networkports", r).map(Update::Port) })
            .boxed(),
    ]);
    let mut feeder = Feeder {
        index: index.clone(),
        outbox,
        relisting: Default::default(),
        listed: HashSet::new(),
        synced: synced_tx,
    };
    let run = updates.for_each(move |update| {
        feeder.apply(update);
        futures::future::ready(())
    });
    let caches = Caches {
        index,
        networks: network_store,
        nodes: node_store,
        ports: port_store,
        synced: synced_rx,
    };
    let triggers = Triggers {
        networks,
        networks_all,
        nodes,
        nodes_all,
        ports,
        ports_all,
    };
    (caches, triggers, run)
}

fn log_error<T>(kind: &'static str, result: watcher::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(kind, %error, "watch failed; retrying with backoff");
            None
        }
    }
}

const KINDS: usize = 4;

/// Applies watch events to the index and works out whom they concern.
struct Feeder {
    index: SharedIndex,
    outbox: Outbox,
    /// Per kind, the keys seen so far while it relists (`None` when not relisting).
    relisting: [Option<HashSet<String>>; KINDS],
    /// Kinds that have listed at least once.
    listed: HashSet<usize>,
    synced: watch::Sender<bool>,
}

const NETWORKS: usize = 0;
const NODES: usize = 1;
const AGENTS: usize = 2;
const PORTS: usize = 3;

impl Feeder {
    fn apply(&mut self, update: Update) {
        match update {
            Update::Network(event) => {
                self.on_event(NETWORKS, event, Self::apply_network, Self::remove_network)
            }
            Update::Node(event) => self.on_event(NODES, event, Self::apply_node, Self::remove_node),
            Update::Agent(event) => {
                self.on_event(AGENTS, event, Self::apply_agent, Self::remove_agent)
            }
            Update::Port(event) => self.on_event(PORTS, event, Self::apply_port, Self::remove_port),
        }
    }

    fn on_event<K: ResourceExt>(
        &mut self,
        kind: usize,
        event: Event<K>,
        apply: fn(&mut Self, &K, bool),
        remove: fn(&mut Self, &str, bool),
    ) {
        match event {
            Event::Init => self.relisting[kind] = Some(HashSet::new()),
            Event::InitApply(object) => {
                if let Some(seen) = self.relisting[kind].as_mut() {
                    seen.insert(key_of(&object));
                }
                apply(self, &object, false);
            }
            Event::InitDone => {
                let seen = self.relisting[kind].take().unwrap_or_default();
                let gone: Vec<String> = self
                    .keys(kind)
                    .into_iter()
                    .filter(|key| !seen.contains(key))
                    .collect();
                for key in gone {
                    remove(self, &key, false);
                }
                self.listed.insert(kind);
                if self.listed.len() == KINDS {
                    if !*self.synced.borrow() {
                        tracing::info!("caches synced");
                    }
                    self.synced.send_replace(true);
                    self.outbox.everything();
                }
            }
            Event::Apply(object) => apply(self, &object, self.is_synced()),
            Event::Delete(object) => remove(self, &key_of(&object), self.is_synced()),
        }
    }

    fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn keys(&self, kind: usize) -> Vec<String> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        match kind {
            NETWORKS => index.network_names(),
            NODES => index.node_names().into_iter().map(str::to_string).collect(),
            AGENTS => index.agent_names(),
            _ => index
                .port_keys()
                .into_iter()
                .map(|k| format!("{}/{}", k.namespace, k.name))
                .collect(),
        }
    }

    fn apply_network(&mut self, network: &Network, notify: bool) {
        let name = network.name_any();
        let old = self.write().upsert_network(Arc::new(network.clone()));
        if notify && old.as_deref() != Some(network) {
            self.network_changed(&name, old.as_deref(), Some(network));
        }
    }

    fn remove_network(&mut self, name: &str, notify: bool) {
        let old = self.write().remove_network(name);
        if notify && old.is_some() {
            self.network_changed(name, old.as_deref(), None);
        }
    }

    /// A network's status and the node labels it implies may change.
    fn network_changed(&self, name: &str, old: Option<&Network>, new: Option<&Network>) {
        self.outbox.network(name);
        let label = format!("{NODE_LABEL_PREFIX}{name}");
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        for (node, info) in index.nodes() {
            let concerned = info.labels.contains_key(&label)
                || old.is_some_and(|n| selects(&n.spec, &info.labels))
                || new.is_some_and(|n| selects(&n.spec, &info.labels));
            if concerned {
                self.outbox.node(node);
            }
        }
    }

    fn apply_node(&mut self, node: &Node, notify: bool) {
        let name = node.name_any();
        let info = NodeInfo::from_node(node);
        let old = self.write().upsert_node(&name, info.clone());
        if notify && old.as_ref() != Some(&info) {
            self.node_changed(
                &name,
                &[old.as_ref().map(|o| &o.labels), Some(&info.labels)],
            );
        }
    }

    fn remove_node(&mut self, name: &str, notify: bool) {
        let old = self.write().remove_node(name);
        if let (true, Some(old)) = (notify, old) {
            self.node_changed(name, &[Some(&old.labels)]);
        }
    }

    /// The networks selecting the node (before or after) and its labels.
    fn node_changed(&self, name: &str, label_sets: &[Option<&BTreeMap<String, String>>]) {
        self.outbox.node(name);
        let label_sets: Vec<&BTreeMap<String, String>> =
            label_sets.iter().flatten().copied().collect();
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        for network in index.networks_selecting(&label_sets) {
            self.outbox.network(&network.name_any());
        }
    }

    fn apply_agent(&mut self, node: &NetworkNode, notify: bool) {
        let name = node.name_any();
        let report = AgentReport::from_network_node(node);
        let old = self.write().upsert_agent(&name, report.clone());
        if notify && old.as_ref() != Some(&report) {
            self.agent_changed(&name, old.as_ref(), Some(&report));
        }
    }

    fn remove_agent(&mut self, name: &str, notify: bool) {
        let old = self.write().remove_agent(name);
        if let (true, Some(old)) = (notify, old) {
            self.agent_changed(name, Some(&old), None);
        }
    }

    /// The networks the agent reports (before or after) or that select its node, and the
    /// node's labels.
    fn agent_changed(&self, name: &str, old: Option<&AgentReport>, new: Option<&AgentReport>) {
        let reported = old
            .into_iter()
            .chain(new)
            .flat_map(|report| report.networks.keys());
        for network in reported {
            self.outbox.network(network);
        }
        let labels = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .node(name)
            .map(|info| info.labels.clone());
        self.node_changed(name, &[labels.as_ref()]);
    }

    fn apply_port(&mut self, port: &NetworkPort, notify: bool) {
        let used = PortUse::from_port(port);
        let key = used.key.clone();
        let needs_labels = used.needs_labels;
        self.write().upsert_port(used);
        if notify && needs_labels {
            self.outbox.port(&key);
        }
    }

    fn remove_port(&mut self, key: &str, _notify: bool) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        self.write().remove_port(&PortKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
}

/// The key the feeder tracks relists by: `name`, or `namespace/name` for namespaced kinds.
fn key_of<K: ResourceExt>(object: &K) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}
