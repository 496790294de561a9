//! The reconcilers: thin edges that read the index, call the pure functions and write the
//! result with the controller's field manager. Each writes only when something changed.

pub mod migration;
pub mod network;
pub mod node_labels;
pub mod port_labels;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

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
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
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
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets an object's failures after a successful reconcile.
    fn succeeded(&self, controller: &'static str, key: &str) {
        self.metrics.reconciled(controller);
        self.failures().remove(key);
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
    /// Whether retrying can help: server errors, conflicts, throttling and connection
    /// failures can; any other 4xx means the write itself is wrong, and retrying it would
    /// only repeat the refusal until the object changes.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Api(kube::Error::Api(status)) => {
                !(400..500).contains(&status.code) || matches!(status.code, 409 | 429)
            }
            ReconcileError::Api(_) => true,
        }
    }
}

/// The first retry waits this long; each further failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between retries of one object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
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
    let attempt = {
        let mut failures = ctx.failures();
        let count = failures.entry(key.clone()).or_default();
        *count += 1;
        *count
    };
    let delay = backoff(attempt);
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
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(20), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn client_errors_wait_and_server_errors_retry() {
        let api = |code| {
            ReconcileError::Api(kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            )))
        };
        assert!(!api(422).is_transient());
        assert!(!api(403).is_transient());
        assert!(api(409).is_transient());
        assert!(api(429).is_transient());
        assert!(api(500).is_transient());
    }

    #[test]
    fn now_is_rfc3339_in_seconds() {
        let now = now();
        assert_eq!(now.len(), "2026-11-01T10:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
