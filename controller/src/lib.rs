//! switchyard's cluster controller.
//!
//! Pure decisions over an in-memory index of the cluster — [`index`], the migration
//! [`check`], network [`status`] aggregation, [`admission`] decisions and the [`labels`] the
//! controller keeps — and, with the `server` feature, the edges that feed and act on them:
//! watch caches, reconcilers, the TLS admission webhook and the metrics / probe endpoints.

pub mod admission;
pub mod check;
pub mod index;
pub mod labels;
pub mod status;

#[cfg(feature = "server")]
pub mod cache;
#[cfg(feature = "server")]
pub mod events;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod probes;
#[cfg(feature = "server")]
pub mod reconcile;
#[cfg(feature = "server")]
pub mod run;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod webhook;
