//! The reconcilers: thin edges that read the index, call the pure functions and write the
//! result with the controller's field manager. Each writes only when something changed.

pub mod migration;
pub mod nads;
pub mod network;
pub mod node_labels;
pub mod port_labels;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use switchyard_retry::{Backoffs, Retry, classify_kube};

use crate::cache::Caches;
use crate::events::Publisher;
use crate::metrics::Metrics;

/// What every reconciler shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The index and stores.
    pub caches: Caches,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub events: Publisher,
    /// How long an answered `MigrationCheck` is kept (see [`migration`]).
    pub check_ttl: Duration,
    /// The namespaces each Network's NetworkAttachmentDefinitions are made in (see [`nads`]).
    pub nad_namespaces: Vec<String>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Backoffs<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context; events are reported as `switchyard-controller` from `instance` (the pod).
    pub fn new(
        client: Client,
        caches: Caches,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        Self {
            events: Publisher::new(client.clone(), instance),
            client,
            caches,
            metrics,
            check_ttl: migration::DEFAULT_TTL,
            nad_namespaces: Vec::new(),
            failures: Backoffs::new(),
        }
    }

    /// Forgets an object's failures after a successful reconcile.
    fn succeeded(&self, controller: &'static str, key: &str) {
        self.metrics.reconciled(controller);
        self.failures.succeeded(&key.to_string());
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API refused or failed a request.
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl ReconcileError {
    /// Whether retrying can help (the policy shared with the node agent, `switchyard-retry`):
    /// server errors, conflicts, throttling and connection failures can; any other 4xx means
    /// the write itself is wrong, and retrying it would only repeat the refusal until the
    /// object changes.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Api(error) => classify_kube(error) == Retry::Transient,
        }
    }
}

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// The error policy of every reconciler: transient errors are retried with exponential
/// backoff per object; a refused write waits for the object to change.
pub fn on_error<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    object: &K,
    error: &ReconcileError,
    ctx: &Context,
) -> Action {
    let key = object_key(object);
    if !error.is_transient() {
        ctx.metrics.reconcile_failed(controller, "invalid");
        tracing::warn!(controller, object = %key, %error, "refused; waiting for the object to change");
        return Action::await_change();
    }
    ctx.metrics.reconcile_failed(controller, "transient");
    let (attempt, delay) = ctx.failures.failed(key.clone());
    tracing::warn!(controller, object = %key, %error, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Now, as Kubernetes writes times (RFC 3339, seconds, UTC).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_in_seconds() {
        let now = now();
        assert_eq!(now.len(), "2026-11-01T10:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
