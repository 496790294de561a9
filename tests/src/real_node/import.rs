//! Images a test adds to a running node (beside the pause and switchyard images it starts
//! with).

use std::io;

use super::RealNode;
use crate::images::{ImageSpec, write_docker_archive};

impl RealNode {
    /// Writes `spec` as an image archive in the node's directory and imports it into the
    /// node's containerd.
    pub fn import_image(&self, spec: &ImageSpec) -> io::Result<()> {
        let file = spec
            .reference
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let archive = self.layout.path(&format!("images/{file}.tar"));
        write_docker_archive(spec, &archive, &self.layout.path("images/work"))?;
        let archive = archive.display().to_string();
        self.ctr(&["images", "import", &archive]).map(|_| ())
    }
}

impl RealNode {
    /// A file as the node's kubelet and containerd see it (in the node's mount namespace,
    /// where `/var/lib` and `/run` are the node's own).
    pub fn node_file(&self, path: &str) -> io::Result<String> {
        let pid = self
            .inner
            .as_ref()
            .map(std::process::Child::id)
            .ok_or_else(|| io::Error::other("the node is not running"))?;
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "--", "cat", path])
            .output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(format!(
                "reading {path} in the node: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Where containerd puts the node's pod network namespaces (the chart's `cni.netnsDir`).
    pub fn netns_dir(&self) -> std::path::PathBuf {
        super::config::netns_dir(&self.layout)
    }

    /// Writes a CNI configuration into the node's configuration directory (whole: containerd
    /// watches it and ignores `.tmp` files); containerd loads it for the pods created after it
    /// noticed.
    pub fn add_cni_config(&self, file: &str, config: &str) -> io::Result<()> {
        let dir = super::config::cni_conf_dir(&self.layout);
        let temporary = dir.join(format!("{file}.tmp"));
        std::fs::write(&temporary, config)?;
        std::fs::rename(&temporary, dir.join(file))
    }
}

impl RealNode {
    /// Puts `binary` into containerd's CNI bin directory as `name`, unless a plugin of that
    /// name is there already (the chart installs switchyard-cni from its image).
    pub fn ensure_cni_plugin(&self, name: &str, binary: &std::path::Path) -> io::Result<()> {
        let pid = self
            .inner
            .as_ref()
            .map(std::process::Child::id)
            .ok_or_else(|| io::Error::other("the node is not running"))?;
        let target = format!("{}/{name}", super::config::CNI_BIN_DIR);
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "--", "sh", "-c"])
            .arg(r#"[ -e "$2" ] || install -m 0755 "$1" "$2""#)
            .args(["sh"])
            .arg(binary)
            .arg(&target)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "installing {target} in the node: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}
