//! switchyard's cluster controller.
//!
//! Pure decisions the controller alone makes — network [`status`] aggregation, [`admission`]
//! decisions and the [`labels`] it keeps — over `switchyard_placement`'s index and migration
//! check, and the edges that feed and act on them: watch caches, reconcilers, the TLS
//! admission webhook and the metrics / probe endpoints.

pub mod admission;
pub mod cache;
pub mod events;
pub mod labels;
pub mod metrics;
pub mod nad;
pub mod pod_networks;
pub mod probes;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod tls;
pub mod webhook;
