//! switchyard node agent: realises a node's `NetworkPort`s as kernel links.
//!
//! - [`allocator`]: which pool device a port gets (pure);
//! - [`plan`]: recovery at start-up, desired vs observed (pure);
//! - [`ownership`]: what marks a link as the agent's (names, groups, alias);
//! - [`netlink`]: the kernel edge over rtnetlink, inside the node's network namespace.

pub mod allocator;
pub mod netlink;
pub mod ownership;
pub mod plan;
pub mod port_key;

pub use port_key::PortKey;
