//! What the CNI server ([`crate::cni`]) reaches of the agent's shared state: the same client,
//! caches, netlink socket and ledger the port controller uses, so a pod's port is counted and
//! placed by the same rules as any other.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;
use switchyard_crds::Network;

use super::Context;
use crate::netlink::LinkManager;
use switchyard_placement::ledger::Ledger;

impl Context {
    /// The agent's Kubernetes client.
    pub(crate) fn kube_client(&self) -> &Client {
        &self.client
    }

    /// The node this agent serves.
    pub(crate) fn node_name(&self) -> &str {
        &self.node
    }

    /// The agent's field manager.
    pub(crate) fn field_manager(&self) -> &str {
        &self.manager
    }

    /// The node namespace's links.
    pub(crate) fn link_manager(&self) -> &LinkManager {
        &self.links
    }

    /// A Network from the cache.
    pub(crate) fn cached_network(&self, name: &str) -> Option<Arc<Network>> {
        self.network(name)
    }

    /// How the network is realised on the node, from the caches, with the coexistence rule
    /// applied (see `Context::realisations`).
    pub(crate) fn cached_realisation(
        &self,
        name: &str,
    ) -> Option<switchyard_placement::realisation::NodeRealisation> {
        self.realisation(name)
    }

    /// The node's labels from the cache.
    pub(crate) fn cached_node_labels(&self) -> BTreeMap<String, String> {
        self.node_labels()
    }

    /// Runs `change` on the node's ledger (who holds which device), then asks for a report.
    pub(crate) fn with_ledger<R>(&self, change: impl FnOnce(&mut Ledger) -> R) -> R {
        let result = change(&mut self.state().ledger);
        self.report.notify_one();
        result
    }

    /// The device plugin's slots and the kubelet's pod resources socket, when the agent
    /// serves a device plugin.
    pub(crate) fn device_plugin_access(&self) -> Option<&super::DevicePluginAccess> {
        self.device_plugin.as_ref()
    }

    /// Held while one link is created (see [`Context`]'s `creating`).
    pub(crate) async fn one_link_at_a_time(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.creating.lock().await
    }
}
