//! The agent's Prometheus metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A reconcile's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// The kind of object an API write went to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `Node`, `NetworkNode` or `NetworkPort`.
    pub kind: &'static str,
}

/// A network's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabel {
    /// The network.
    pub network: String,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    api_writes: Family<KindLabel, Counter>,
    link_create_seconds: Histogram,
    delete_batch_seconds: Histogram,
    deleted_links: Counter,
    ports: Family<NetworkLabel, Gauge>,
    recovery_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_agent");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Port reconciles by result",
            reconciles.clone(),
        );
        let api_writes = Family::<KindLabel, Counter>::default();
        registry.register(
            "api_writes",
            "Writes the agent sent to the apiserver, by kind of object",
            api_writes.clone(),
        );
        let link_create_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "link_create_seconds",
            "Time to create one macvtap or bridge port in the kernel",
            link_create_seconds.clone(),
        );
        let delete_batch_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "delete_batch_seconds",
            "Time to delete one batch of links (one group deletion)",
            delete_batch_seconds.clone(),
        );
        let deleted_links = Counter::default();
        registry.register("deleted_links", "Links deleted", deleted_links.clone());
        let ports = Family::<NetworkLabel, Gauge>::default();
        registry.register(
            "ports",
            "Ports realised on this node, by network",
            ports.clone(),
        );
        let recovery_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "recovery_seconds",
            "How long start-up recovery took",
            recovery_seconds.clone(),
        );
        Self {
            registry,
            reconciles,
            api_writes,
            link_create_seconds,
            delete_batch_seconds,
            deleted_links,
            ports,
            recovery_seconds,
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts one write to the apiserver (`kind`: the object's kind).
    pub fn wrote(&self, kind: &'static str) {
        self.api_writes.get_or_create(&KindLabel { kind }).inc();
    }

    /// Records one link creation.
    pub fn observe_link_create(&self, took: Duration) {
        self.link_create_seconds.observe(took.as_secs_f64());
    }

    /// Records one deletion batch.
    pub fn observe_delete_batch(&self, links: usize, took: Duration) {
        self.delete_batch_seconds.observe(took.as_secs_f64());
        self.deleted_links.inc_by(links as u64);
    }

    /// Sets the realised port count of each network (networks not listed drop to 0).
    pub fn set_ports<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        self.ports.clear();
        for (network, count) in counts {
            self.ports
                .get_or_create(&NetworkLabel {
                    network: network.to_string(),
                })
                .set(count as i64);
        }
    }

    /// Records how long recovery took.
    pub fn set_recovery(&self, took: Duration) {
        self.recovery_seconds.set(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
