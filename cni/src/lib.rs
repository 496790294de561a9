//! switchyard's CNI plugin, as a library: what the `switchyard-cni` shim and the node agent
//! both need to agree on.
//!
//! The shim is a thin forwarder (see `src/bin/switchyard-cni.rs`): it reads the CNI call (the
//! `CNI_*` variables and the network configuration on stdin), sends it to the node agent over a
//! unix socket only root can open, and prints the agent's answer. Everything here is pure:
//!
//! - [`error`]: CNI error results, with the spec's codes;
//! - [`version`]: which spec versions are spoken, and `VERSION`'s answer;
//! - [`call`]: one CNI call, parsed and checked (environment, `CNI_ARGS`, network configuration);
//! - [`result`]: the ADD result in the caller's spec version, merged with a `prevResult`;
//! - [`wire`]: the request and reply on the agent's socket.

pub mod call;
pub mod error;
pub mod result;
pub mod version;
pub mod wire;

pub use call::{Attachment, Call, Command, NetConf};
pub use error::CniError;

/// The agent's socket when the network configuration names none. Its directory is created
/// 0700 and the socket 0600 by the agent, so only root can call it.
pub const DEFAULT_SOCKET: &str = "/run/switchyard/cni.sock";
