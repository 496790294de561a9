//! Container images built from local files, with no registry: the pod sandbox's `pause` and
//! the switchyard image (controller, agent, CLI, CNI shim), written as `docker save` archives
//! that `ctr images import` loads into a real node's containerd.
//!
//! The switchyard image holds the binaries of the cargo profile [`IMAGE_PROFILE`] (release
//! code without the release profile's build time), not the tests' debug build.
//!
//! The repository's Dockerfile stays the recipe for registries; [`DockerfileLayout`] reads the
//! layout it produces (where the binaries go, the user, the entrypoint) so a test can hold the
//! two to the same file layout.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

/// Where the Dockerfile's final stage puts the binaries.
pub const BINARY_DIR: &str = "/usr/local/bin";
/// The switchyard binaries, in the order the Dockerfile builds them. Each is its package's
/// name too (`cargo build -p <name>`).
pub const SWITCHYARD_BINARIES: [&str; 4] = [
    "switchyard-controller",
    "switchyard-node-agent",
    "kubectl-switchyard",
    "switchyard-cni",
];
/// The cargo profile (Cargo.toml) the image's binaries are built with, into
/// `target/<profile>/`: `cargo build --profile image --locked -p <each of SWITCHYARD_BINARIES>`
/// (scripts/lib.sh's `build_image_binaries`).
pub const IMAGE_PROFILE: &str = "image";
/// The controller's user in the image (distroless `nonroot`).
pub const NONROOT: &str = "65532:65532";

/// One entry of an image's single layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A directory.
    Dir {
        /// Absolute path in the image.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file copied from the local filesystem (symlinks followed).
    File {
        /// Absolute path in the image.
        path: String,
        /// Where its contents come from.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file with the given contents.
    Text {
        /// Absolute path in the image.
        path: String,
        /// Its contents.
        contents: String,
    },
}

impl LayerEntry {
    /// The entry's absolute path in the image.
    pub fn path(&self) -> &str {
        match self {
            LayerEntry::Dir { path, .. }
            | LayerEntry::File { path, .. }
            | LayerEntry::Text { path, .. } => path,
        }
    }
}

/// An image: a name, one layer, and the runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The full reference, e.g. `localhost/switchyard/pause:v1.20.2`.
    pub reference: String,
    /// The layer's entries; parent directories are added where missing.
    pub entries: Vec<LayerEntry>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `User`, when not root.
    pub user: Option<String>,
    /// `Env`.
    pub env: Vec<String>,
}

/// The pod sandbox image: the static `pause` binary alone.
pub fn pause_image(reference: &str, pause_binary: &Path) -> ImageSpec {
    ImageSpec {
        reference: reference.to_string(),
        entries: vec![LayerEntry::File {
            path: "/pause".into(),
            source: pause_binary.to_path_buf(),
            mode: 0o755,
        }],
        entrypoint: vec!["/pause".into()],
        user: None,
        env: vec![],
    }
}

/// The switchyard image from this build's binaries (`binary_dir` holds every name in
/// [`SWITCHYARD_BINARIES`]) and the shared libraries `ldd` says they load, at the paths the
/// dynamic loader looks for them: the Dockerfile's musl binaries need none, these glibc ones
/// need the loader and libc. Everything else matches the Dockerfile's final stage.
pub fn switchyard_image(reference: &str, binary_dir: &Path) -> io::Result<ImageSpec> {
    let mut entries = vec![
        LayerEntry::Dir {
            path: "/tmp".into(),
            mode: 0o1777,
        },
        LayerEntry::Text {
            path: "/etc/passwd".into(),
            contents: "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".into(),
        },
        LayerEntry::Text {
            path: "/etc/group".into(),
            contents: "root:x:0:\nnonroot:x:65532:\n".into(),
        },
        LayerEntry::Dir {
            path: "/home/nonroot".into(),
            mode: 0o700,
        },
    ];
    let mut libraries = Vec::new();
    for binary in SWITCHYARD_BINARIES {
        let source = binary_dir.join(binary);
        if !source.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has not been built: run `{}`",
                    source.display(),
                    build_command()
                ),
            ));
        }
        let ldd = Command::new("ldd").arg(&source).output()?;
        for library in shared_libraries(&String::from_utf8_lossy(&ldd.stdout)) {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
        entries.push(LayerEntry::File {
            path: format!("{BINARY_DIR}/{binary}"),
            source,
            mode: 0o755,
        });
    }
    for library in libraries {
        entries.push(LayerEntry::File {
            path: library.display().to_string(),
            source: library,
            mode: 0o755,
        });
    }
    Ok(ImageSpec {
        reference: reference.to_string(),
        entries,
        entrypoint: vec![format!("{BINARY_DIR}/{}", SWITCHYARD_BINARIES[0])],
        user: Some(NONROOT.into()),
        env: vec![format!("PATH={BINARY_DIR}:/usr/bin:/bin")],
    })
}

/// The command that builds the image's binaries.
pub fn build_command() -> String {
    let packages: Vec<String> = SWITCHYARD_BINARIES
        .iter()
        .map(|name| format!("-p {name}"))
        .collect();
    format!(
        "cargo build --profile {IMAGE_PROFILE} --locked {}",
        packages.join(" ")
    )
}

/// The absolute library paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and the
/// loader's own `/lib64/ld-linux-x86-64.so.2 (0x…)`; the kernel's vDSO has no file.
pub fn shared_libraries(ldd_output: &str) -> Vec<PathBuf> {
    ldd_output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Every directory above `path` (`/a/b/c` gives `/a`, `/a/b`).
fn parents(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    (1..parts.len())
        .map(|n| format!("/{}", parts[..n].join("/")))
        .collect()
}

/// The layer's entries in tar order: every directory before what it holds, each path once.
pub fn layer_order(entries: &[LayerEntry]) -> Vec<LayerEntry> {
    let mut ordered: Vec<LayerEntry> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        for parent in parents(entry.path()) {
            if seen.insert(parent.clone()) {
                let explicit = entries
                    .iter()
                    .find(|e| matches!(e, LayerEntry::Dir { .. }) && e.path() == parent);
                ordered.push(explicit.cloned().unwrap_or(LayerEntry::Dir {
                    path: parent,
                    mode: 0o755,
                }));
            }
        }
        if seen.insert(entry.path().to_string()) {
            ordered.push(entry.clone());
        }
    }
    ordered
}

fn header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// A writer that hashes what passes through it.
struct Sha256Writer<W> {
    inner: W,
    digest: ring::digest::Context,
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the layer tar to `path`; returns its sha256 (hex).
fn write_layer(entries: &[LayerEntry], path: &Path) -> io::Result<String> {
    let file = BufWriter::new(File::create(path)?);
    let mut builder = tar::Builder::new(Sha256Writer {
        inner: file,
        digest: ring::digest::Context::new(&ring::digest::SHA256),
    });
    for entry in layer_order(entries) {
        let name = entry.path().trim_start_matches('/').to_string();
        match &entry {
            LayerEntry::Dir { mode, .. } => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                builder.append_data(&mut h, format!("{name}/"), io::empty())?;
            }
            LayerEntry::File { source, mode, .. } => {
                let mut file = File::open(source)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
                let size = file.metadata()?.len();
                let mut h = header(tar::EntryType::Regular, *mode, size);
                builder.append_data(&mut h, &name, &mut file)?;
            }
            LayerEntry::Text { contents, .. } => {
                let mut h = header(tar::EntryType::Regular, 0o644, contents.len() as u64);
                builder.append_data(&mut h, &name, contents.as_bytes())?;
            }
        }
    }
    let mut writer = builder.into_inner()?;
    writer.flush()?;
    Ok(hex(writer.digest.finish().as_ref()))
}

/// The image configuration (`docker inspect`'s `Config` and the layer's diff id).
pub fn image_config(spec: &ImageSpec, layer_sha256: &str) -> serde_json::Value {
    let mut config = json!({
        "Entrypoint": spec.entrypoint,
        "Env": spec.env,
    });
    if let Some(user) = &spec.user {
        config["User"] = json!(user);
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha256}")]},
    })
}

/// Writes `spec` as a `docker save` archive at `archive` (`manifest.json`, the config, one
/// uncompressed layer); `work` holds the layer while it is hashed.
pub fn write_docker_archive(spec: &ImageSpec, archive: &Path, work: &Path) -> io::Result<()> {
    fs::create_dir_all(work)?;
    let layer_path = work.join("layer.tar");
    let layer_sha = write_layer(&spec.entries, &layer_path)?;
    let config = serde_json::to_vec(&image_config(spec, &layer_sha))?;
    let config_sha = hex(ring::digest::digest(&ring::digest::SHA256, &config).as_ref());
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_sha}.json"),
        "RepoTags": [spec.reference],
        "Layers": [format!("{layer_sha}/layer.tar")],
    }]))?;

    let mut builder = tar::Builder::new(BufWriter::new(File::create(archive)?));
    let mut add = |name: String, data: &[u8]| -> io::Result<()> {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        builder.append_data(&mut h, name, data)
    };
    add(format!("{config_sha}.json"), &config)?;
    add("manifest.json".into(), &manifest)?;
    let mut layer = File::open(&layer_path)?;
    let size = layer.metadata()?.len();
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    builder.append_data(&mut h, format!("{layer_sha}/layer.tar"), &mut layer)?;
    builder.into_inner()?.flush()?;
    fs::remove_file(layer_path)
}

/// What an image archive holds: its tag, configuration and the paths of its layer.
#[derive(Debug, Clone)]
pub struct ArchiveContents {
    /// `RepoTags[0]`.
    pub reference: String,
    /// The image configuration.
    pub config: serde_json::Value,
    /// Every path in the layer, absolute, directories without a trailing slash.
    pub layer_paths: Vec<String>,
}

/// Reads back an archive [`write_docker_archive`] wrote.
pub fn read_docker_archive(archive: &Path) -> io::Result<ArchiveContents> {
    let mut files = std::collections::BTreeMap::new();
    let mut layer_paths = Vec::new();
    let mut outer = tar::Archive::new(File::open(archive)?);
    for entry in outer.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.display().to_string();
        if name.ends_with("/layer.tar") {
            let mut layer = tar::Archive::new(&mut entry);
            for inner in layer.entries()? {
                let path = inner?.path()?.display().to_string();
                layer_paths.push(format!("/{}", path.trim_end_matches('/')));
            }
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            files.insert(name, data);
        }
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let manifest: serde_json::Value = serde_json::from_slice(
        files
            .get("manifest.json")
            .ok_or_else(|| bad("no manifest.json"))?,
    )?;
    let reference = manifest[0]["RepoTags"][0]
        .as_str()
        .ok_or_else(|| bad("manifest.json has no RepoTags"))?
        .to_string();
    let config_name = manifest[0]["Config"]
        .as_str()
        .ok_or_else(|| bad("manifest.json has no Config"))?;
    let config = serde_json::from_slice(
        files
            .get(config_name)
            .ok_or_else(|| bad("the config named by manifest.json is missing"))?,
    )?;
    Ok(ArchiveContents {
        reference,
        config,
        layer_paths,
    })
}

/// The file layout the Dockerfile's final stage produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileLayout {
    /// Absolute paths of the switchyard binaries in the image.
    pub binaries: Vec<String>,
    /// `USER`.
    pub user: String,
    /// `ENTRYPOINT` (exec form).
    pub entrypoint: Vec<String>,
}

/// Reads the layout from the Dockerfile's text: the binaries its build stage copies into
/// `/out/` (`for bin in …; do cp …/$bin /out/`), the `COPY --from=build /out/ <dir>` of the
/// final stage, its `USER` and `ENTRYPOINT`.
pub fn dockerfile_layout(dockerfile: &str) -> Result<DockerfileLayout, String> {
    // Join continuation lines so each instruction is one line.
    let joined = dockerfile.replace("\\\n", " ");
    let final_stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .ok_or("the Dockerfile has no second FROM (final stage)")?;
    let names: Vec<String> = joined
        .lines()
        .find_map(|line| {
            let after = line.split_once("for bin in ")?.1;
            let list = after.split_once(';')?.0;
            Some(list.split_whitespace().map(str::to_string).collect())
        })
        .ok_or("no `for bin in …;` loop names the binaries")?;
    let copy_dir = final_stage
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("COPY --from=build /out/ ")?;
            Some(rest.trim().trim_end_matches('/').to_string())
        })
        .ok_or("the final stage has no `COPY --from=build /out/ <dir>`")?;
    let instruction = |name: &str| {
        final_stage
            .lines()
            .find_map(|line| line.trim().strip_prefix(name).map(|r| r.trim().to_string()))
    };
    let user = instruction("USER ").ok_or("the final stage has no USER")?;
    let entrypoint: Vec<String> = serde_json::from_str(
        &instruction("ENTRYPOINT ").ok_or("the final stage has no ENTRYPOINT")?,
    )
    .map_err(|e| format!("ENTRYPOINT is not in exec (JSON) form: {e}"))?;
    Ok(DockerfileLayout {
        binaries: names.iter().map(|n| format!("{copy_dir}/{n}")).collect(),
        user,
        entrypoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths_and_the_loader_but_not_the_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(
            shared_libraries(out),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(shared_libraries("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn layer_order_puts_parents_first_once_and_keeps_explicit_modes() {
        let entries = vec![
            LayerEntry::Text {
                path: "/etc/passwd".into(),
                contents: String::new(),
            },
            LayerEntry::Dir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
            LayerEntry::Text {
                path: "/etc/group".into(),
                contents: String::new(),
            },
            LayerEntry::Text {
                path: "/tmp/x".into(),
                contents: String::new(),
            },
        ];
        let ordered = layer_order(&entries);
        let paths: Vec<&str> = ordered.iter().map(LayerEntry::path).collect();
        assert_eq!(
            paths,
            ["/etc", "/etc/passwd", "/tmp", "/etc/group", "/tmp/x"]
        );
        assert!(ordered.contains(&LayerEntry::Dir {
            path: "/tmp".into(),
            mode: 0o1777
        }));
    }

    #[test]
    fn dockerfile_layout_reads_binaries_user_and_entrypoint() {
        let text = "FROM rust AS build\nRUN cargo build \\\n && for bin in a b; do \\\n      cp \"x/$bin\" /out/; \\\n    done\nFROM distroless\nCOPY --from=build /out/ /usr/local/bin/\nUSER 1:2\nENTRYPOINT [\"/usr/local/bin/a\"]\n";
        assert_eq!(
            dockerfile_layout(text).unwrap(),
            DockerfileLayout {
                binaries: vec!["/usr/local/bin/a".into(), "/usr/local/bin/b".into()],
                user: "1:2".into(),
                entrypoint: vec!["/usr/local/bin/a".into()],
            }
        );
        let err = dockerfile_layout("FROM a\nFROM b\nUSER 1\n").unwrap_err();
        assert!(err.contains("for bin in"), "{err}");
    }

    #[test]
    fn archive_round_trips_reference_config_and_layer() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("pause");
        fs::write(&source, b"binary").unwrap();
        let spec = pause_image("localhost/x/pause:1", &source);
        let archive = dir.path().join("pause.tar");
        write_docker_archive(&spec, &archive, &dir.path().join("work")).unwrap();
        let read = read_docker_archive(&archive).unwrap();
        assert_eq!(read.reference, "localhost/x/pause:1");
        assert_eq!(read.layer_paths, ["/pause"]);
        assert_eq!(read.config["config"]["Entrypoint"], json!(["/pause"]));
        assert_eq!(read.config["os"], "linux");
    }
}
