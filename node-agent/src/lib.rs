//! switchyard node agent: realises a node's `NetworkPort`s as kernel links.
//!
//! - [`bandwidth`]: a port's `<bandwidth>` as libvirt's tc objects (pure plan and encoding);
//! - [`plan`]: recovery at start-up, desired vs observed (pure);
//! - [`ownership`]: what marks a link as the agent's (names, groups, alias);
//! - [`netlink`]: the kernel edge over rtnetlink, inside the node's network namespace;
//! - how a network is realised on the node, which device a port gets and what the node
//!   reports are `switchyard_placement`'s, shared with the controller;
//! - [`cni`]: the CNI server: pod interfaces for `switchyard-cni`, with crash-safe records;
//! - [`device_plugin`]: the kubelet device plugin that hands pods their `/dev/tapN`;
//! - [`virtual_network`]: isolated, nat, route and open networks: bridge, nftables, dnsmasq;
//! - [`agent`]: the process: watches, reconciles ports, recovers at start-up, reports;
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`cleanup`]: what the agents and the controller leave in the cluster, removed once they
//!   are gone (the chart's post-delete hook).

pub mod agent;
pub mod bandwidth;
pub mod cleanup;
pub mod cni;
pub mod device_plugin;
pub mod http;
pub mod netlink;
pub mod ownership;
pub mod plan;
pub mod virtual_network;
pub mod vlan;
