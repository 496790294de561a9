//! Installing the `switchyard-cni` shim into the host's CNI bin directory (the chart's
//! `install-cni` init container runs `switchyard-node-agent install-cni`).
//!
//! A runtime may run the plugin at any moment, also while a new agent version installs its
//! own: the shim is written beside its final name, made executable, synced and then renamed
//! over it, so a runtime sees the old file or the new one, never a part of one. Renaming over a
//! binary that is running is safe (writing into it in place would fail with `ETXTBSY`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The shim's file name, in the image and in the host's CNI bin directory: the `type` a
/// network configuration names.
pub const SHIM_NAME: &str = "switchyard-cni";

/// Copies the shim at `source` to `dir/switchyard-cni` (mode 0755), replacing an older one
/// atomically; returns the installed path. `dir` must exist.
pub fn install_shim(source: &Path, dir: &Path) -> io::Result<PathBuf> {
    let named = |what: &str, path: &Path| {
        let what = what.to_string();
        let path = path.display().to_string();
        move |error: io::Error| io::Error::new(error.kind(), format!("{what} {path}: {error}"))
    };
    let contents = fs::read(source).map_err(named("reading the shim", source))?;
    let target = dir.join(SHIM_NAME);
    // A dot name no runtime takes for a plugin; the pid keeps two installers apart.
    let partial = dir.join(format!(".{SHIM_NAME}.{}.partial", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = File::create(&partial)?;
        file.write_all(&contents)?;
        file.set_permissions(fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        fs::rename(&partial, &target)
    };
    if let Err(error) = write() {
        let _ = fs::remove_file(&partial);
        return Err(named("installing the shim as", &target)(error));
    }
    // The rename itself is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(named("syncing", dir))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_replaces_an_older_one_executable_and_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::write(&source, b"new shim").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join(SHIM_NAME), b"old").unwrap();

        let installed = install_shim(&source, &bin).unwrap();
        assert_eq!(installed, bin.join(SHIM_NAME));
        assert_eq!(fs::read(&installed).unwrap(), b"new shim");
        let mode = fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names: Vec<_> = fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SHIM_NAME]);
    }

    #[test]
    fn a_missing_directory_or_shim_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        let error = install_shim(&source, dir.path()).unwrap_err();
        assert!(error.to_string().contains("reading the shim"), "{error}");
        fs::write(&source, b"x").unwrap();
        let missing = dir.path().join("no-such-dir");
        let error = install_shim(&source, &missing).unwrap_err();
        assert!(error.to_string().contains("no-such-dir"), "{error}");
        assert!(!missing.exists());
    }
}
