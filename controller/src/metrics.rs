//! The controller's Prometheus metrics, exposed on `/metrics` in the Prometheus text format.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use switchyard_placement::index::Index;

/// Which reconciler a count is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `network`, `migrationcheck`, `node-labels` or `port-labels`.
    pub controller: &'static str,
}

/// A failed reconcile: which reconciler, and whether it will be retried.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The reconciler.
    pub controller: &'static str,
    /// `transient` (retried with backoff) or `invalid` (waits for the object to change).
    pub kind: &'static str,
}

/// Where a migration check was asked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `migrationcheck` (the custom resource) or `webhook` (a NetworkPort's creation).
    pub source: &'static str,
}

/// One admission review's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `networks` or `networkports`.
    pub resource: &'static str,
    /// `true` or `false`.
    pub allowed: &'static str,
}

/// A network, for per-network gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabels {
    /// The network's name.
    pub network: String,
}

/// The reconcilers, as named in metrics.
pub const CONTROLLERS: [&str; 4] = ["network", "migrationcheck", "node-labels", "port-labels"];

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    check_duration: Family<CheckLabels, Histogram>,
    admission_reviews: Family<AdmissionLabels, Counter>,
    ports: Family<NetworkLabels, Gauge>,
    /// Serialises scrapes: the port gauges are rebuilt from the index on each one.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics under the `switchyard` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("switchyard");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by reconciler",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reconciler and kind",
            reconcile_errors.clone(),
        );
        // 1 µs to about 65 ms: a check is expected in the microseconds; the tail shows trouble.
        let check_duration = Family::<CheckLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-6, 2.0, 17))
        });
        registry.register(
            "migration_check_duration_seconds",
            "Time to answer one migration check from the cache",
            check_duration.clone(),
        );
        let admission_reviews = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by resource and outcome",
            admission_reviews.clone(),
        );
        let ports = Family::<NetworkLabels, Gauge>::default();
        registry.register("network_ports", "NetworkPorts per network", ports.clone());
        // Every series exists from the start, at zero: "nothing happened" reads differently
        // from "not exported".
        for controller in CONTROLLERS {
            reconciles
                .get_or_create(&ControllerLabels { controller })
                .inc_by(0);
            for kind in ["transient", "invalid"] {
                reconcile_errors
                    .get_or_create(&ErrorLabels { controller, kind })
                    .inc_by(0);
            }
        }
        for source in ["migrationcheck", "webhook"] {
            drop(check_duration.get_or_create(&CheckLabels { source }));
        }
        for resource in ["networks", "networkports"] {
            for allowed in ["true", "false"] {
                admission_reviews
                    .get_or_create(&AdmissionLabels { resource, allowed })
                    .inc_by(0);
            }
        }
        Self {
            registry: root,
            reconciles,
            reconcile_errors,
            check_duration,
            admission_reviews,
            ports,
            scrape: Mutex::new(()),
        }
    }

    /// Counts a reconcile.
    pub fn reconciled(&self, controller: &'static str) {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &'static str, kind: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { controller, kind })
            .inc();
    }

    /// Records how long a migration check took.
    pub fn checked(&self, source: &'static str, took: Duration) {
        self.check_duration
            .get_or_create(&CheckLabels { source })
            .observe(took.as_secs_f64());
    }

    /// Counts an admission review.
    pub fn reviewed(&self, resource: &'static str, allowed: bool) {
        self.admission_reviews
            .get_or_create(&AdmissionLabels {
                resource,
                allowed: if allowed { "true" } else { "false" },
            })
            .inc();
    }

    /// The metrics in the Prometheus text format, with per-network port counts taken from the
    /// index now.
    pub fn render(&self, index: &Index) -> Result<String, std::fmt::Error> {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.ports.clear();
        for network in index.networks() {
            let name = kube::ResourceExt::name_any(network.as_ref());
            self.ports
                .get_or_create(&NetworkLabels { network: name })
                .set(0);
        }
        for (network, count) in index.port_counts() {
            self.ports
                .get_or_create(&NetworkLabels {
                    network: network.to_string(),
                })
                .set(count as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use switchyard_crds::{Network, NetworkPort, NetworkPortSpec, NetworkSpec};
    use switchyard_placement::index::PortUse;

    #[test]
    fn renders_counters_histogram_and_ports_per_network() {
        let metrics = Metrics::new();
        metrics.reconciled("network");
        metrics.reconciled("network");
        metrics.reconcile_failed("network", "transient");
        metrics.checked("webhook", Duration::from_micros(3));
        metrics.reviewed("networkports", false);

        let mut index = Index::new();
        index.upsert_network(Arc::new(Network::new("empty", NetworkSpec::default())));
        let mut port = NetworkPort::new(
            "p",
            NetworkPortSpec {
                network: "busy".into(),
                node: "a".into(),
                mac: "52:54:00:00:00:01".into(),
                ..Default::default()
            },
        );
        port.metadata.namespace = Some("vms".into());
        index.upsert_port(PortUse::from_port(&port));

        let text = metrics.render(&index).unwrap();
        assert!(text.contains("switchyard_reconciles_total{controller=\"port-labels\"} 0\n"));
        assert!(
            text.contains("switchyard_reconciles_total{controller=\"network\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "switchyard_reconcile_errors_total{controller=\"network\",kind=\"transient\"} 1\n"
        ));
        assert!(
            text.contains(
                "switchyard_migration_check_duration_seconds_bucket{source=\"webhook\",le=\"4e-06\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE switchyard_migration_check_duration_seconds histogram"));
        assert!(
            text.contains("switchyard_network_ports{network=\"busy\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_network_ports{network=\"empty\"} 0\n"),
            "{text}"
        );
        assert!(text.contains(
            "switchyard_admission_reviews_total{resource=\"networkports\",allowed=\"false\"} 1\n"
        ));
    }
}
