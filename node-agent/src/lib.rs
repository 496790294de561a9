//! switchyard node agent: realises a node's `NetworkPort`s as kernel links.
//!
//! - [`allocator`]: which pool device a port gets (pure);
//! - [`bandwidth`]: a port's `<bandwidth>` as libvirt's tc objects (pure plan and encoding);
//! - [`plan`]: recovery at start-up, desired vs observed (pure);
//! - [`ownership`]: what marks a link as the agent's (names, groups, alias);
//! - [`netlink`]: the kernel edge over rtnetlink, inside the node's network namespace;
//! - [`realisation`], [`report`]: how a network is realised on this node, and what the node
//!   reports (pure);
//! - [`cni`]: the CNI server: pod interfaces for `switchyard-cni`, with crash-safe records;
//! - [`agent`]: the process: watches, reconciles ports, recovers at start-up, reports;
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.

pub mod agent;
pub mod allocator;
pub mod bandwidth;
pub mod cni;
pub mod http;
pub mod netlink;
pub mod ownership;
pub mod plan;
pub mod port_key;
pub mod realisation;
pub mod report;

pub use port_key::PortKey;
