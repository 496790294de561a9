//! The tap probe: a program run as a VM pod's container on the real node that reports the tap
//! devices the container was given and the links they belong to (`src/bin/tap-probe.rs`), and
//! the image that carries it.

use std::io;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::images::{ImageSpec, LayerEntry, shared_libraries};

/// The probe image's reference on a real node.
pub const TAP_PROBE_IMAGE: &str = "localhost/switchyard/tap-probe:dev";

/// An image of the probe `binary` and the shared libraries `ldd` says it loads, run as root
/// (a tap device node is root's).
pub fn tap_probe_image(binary: &Path) -> io::Result<ImageSpec> {
    let ldd = Command::new("ldd").arg(binary).output()?;
    let mut entries = vec![LayerEntry::File {
        path: "/tap-probe".into(),
        source: binary.to_path_buf(),
        mode: 0o755,
    }];
    for library in shared_libraries(&String::from_utf8_lossy(&ldd.stdout)) {
        entries.push(LayerEntry::File {
            path: library.display().to_string(),
            source: library,
            mode: 0o755,
        });
    }
    Ok(ImageSpec {
        reference: TAP_PROBE_IMAGE.into(),
        entries,
        entrypoint: vec!["/tap-probe".into()],
        user: None,
        env: vec![],
    })
}

/// What the probe printed.
#[derive(Debug, Clone, Deserialize)]
pub struct TapReport {
    /// Every tap character device in the container's `/dev`.
    pub taps: Vec<TapSeen>,
}

/// One tap device as the container sees it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TapSeen {
    /// `/dev/tapN`.
    pub path: String,
    /// N.
    pub ifindex: Option<u32>,
    /// Its major:minor.
    pub device: Option<String>,
    /// `ok`, or why it did not open read-write.
    pub open: String,
    /// The link with ifindex N in the pod's network namespace.
    pub link: Option<String>,
    /// That link's MAC.
    pub mac: Option<String>,
    /// The major:minor of that link's tap device, from the pod namespace's sysfs.
    pub sysfs_device: Option<String>,
}
