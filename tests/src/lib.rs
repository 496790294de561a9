//! End-to-end test harness: a real local kube-apiserver, one namespace per test, kubectl.
//!
//! A test run shares one control plane: the one `scripts/test.sh` started (its kubeconfig in
//! `SWITCHYARD_KUBECONFIG`), or else one this process starts on first use and that dies with it.

pub mod bins;
pub mod cluster;
pub mod control_plane;
pub mod controller;
pub mod firewall_golden;
pub mod fixtures;
pub mod images;
pub mod metrics;
pub mod netns;
pub mod nodes;
pub mod pki;
pub mod procs;
pub mod real_node;
pub mod tap_probe;
