//! The kubelet's gRPC APIs on its unix sockets, as the node agent uses them:
//!
//! - [`deviceplugin`] (v1beta1): the kubelet's `Registration` service on
//!   [`deviceplugin::KUBELET_SOCKET`], and the `DevicePlugin` service a plugin serves on a
//!   socket of its own in the same directory;
//! - [`podresources`] (v1, served from kubelet 1.20): which devices the kubelet allocated to
//!   which pod's containers.
//!
//! The code is generated at build time from the kubelet's own `.proto` files (vendored under
//! `proto/`, Kubernetes v1.20.2) with tonic and prost: the kubelet speaks gRPC over HTTP/2,
//! and tonic is the gRPC stack on the tokio and hyper the agent already runs on.

use std::io;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[allow(missing_docs, missing_debug_implementations, clippy::all)]
mod generated {
    pub mod v1beta1 {
        tonic::include_proto!("v1beta1");
    }
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}

/// The device plugin API, v1beta1.
pub mod deviceplugin {
    pub use crate::generated::v1beta1::*;

    /// The API version a plugin registers with.
    pub const VERSION: &str = "v1beta1";
    /// Where the kubelet serves `Registration`, and where plugins put their sockets. Fixed by
    /// the kubelet whatever its `--root-dir` says.
    pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
    /// The kubelet's socket's file name in [`DEVICE_PLUGIN_DIR`].
    pub const KUBELET_SOCKET: &str = "kubelet.sock";
    /// A device the kubelet may allocate.
    pub const HEALTHY: &str = "Healthy";
    /// A device the kubelet must not allocate (still counted in capacity).
    pub const UNHEALTHY: &str = "Unhealthy";
}

/// The pod resources API, v1.
pub mod podresources {
    pub use crate::generated::v1::*;

    /// The kubelet's pod resources socket (under its `--root-dir`, `/var/lib/kubelet` by
    /// default).
    pub const SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
}

/// A gRPC channel to a unix socket (the kubelet's, or a plugin's). The URI is required by
/// tonic and never used: every connection goes to `path`.
pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
