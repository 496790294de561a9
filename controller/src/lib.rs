//! switchyard's cluster controller.
//!
//! Pure decisions over an in-memory index of the cluster — [`index`], the migration
//! [`check`], network [`status`] aggregation and [`admission`] decisions — and, with the
//! `server` feature, the edges that feed and act on them: watch caches, reconcilers, the TLS
//! admission webhook and the metrics / probe endpoints.

pub mod admission;
pub mod check;
pub mod index;
pub mod status;
