//! Where switchyard's ports go, as plain functions: what the node agent, the controller, the
//! admission webhook and the kubectl plugin all decide the same way.
//!
//! - [`realisation`]: what a `Network` is on one node, from its spec and the node's labels;
//! - [`coexistence`]: which networks cannot share a node (one bridge, overlapping subnets),
//!   and which of them the node keeps;
//! - [`exclusive`]: which ports need a pool device of their own (libvirt's rule);
//! - [`ledger`]: who holds which device on a node, and which device a new port gets;
//! - [`report`]: what a node reports per network: devices, capacity, used, free;
//! - [`kernel`]: the kernel's limits these rules count with;
//! - [`port_key`]: how a port is named in logs, conditions and holders;
//! - [`index`]: the cluster's networks, nodes, agent reports and ports, by name;
//! - [`readiness`]: whether a network is ready on a node, and every reason it is not (the
//!   Network status and the migration check);
//! - [`check`]: whether guest interfaces fit on candidate nodes now (the migration check,
//!   also the admission webhook's placement verdict for a new port);
//! - [`node_marks`]: the labels and extended resources switchyard keeps on Nodes.
//!
//! Pure: no kube client, no netlink, no clock. Callers bring what they observed.

pub mod check;
pub mod coexistence;
pub mod exclusive;
pub mod index;
pub mod kernel;
pub mod ledger;
pub mod node_marks;
pub mod port_key;
pub mod readiness;
pub mod realisation;
pub mod report;
#[cfg(test)]
mod test_support;

pub use port_key::PortKey;
