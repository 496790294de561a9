//! A real Kubernetes node beside a private control plane: kubelet v1.20 and containerd with
//! runc, running pods from images built here (see [`crate::images`]).
//!
//! The node lives in a network namespace of its own (stand-in NICs are veth pairs there) and,
//! through `ip netns exec`, in a private mount namespace where every host path containerd and
//! the kubelet hard-code is a private mount. Its processes are under the cgroup root `/<id>`.
//! Nothing routes between the node and the host: the node reaches the apiserver through a relay
//! of the `kubernetes` Service address, the apiserver reaches kubelet and webhooks through an
//! HTTP CONNECT proxy on a unix socket (see [`relay`]). Host interfaces, routes, firewall and
//! sysctls are never touched: the kubelet runs with `--protect-kernel-defaults` and is shown
//! the values it wants in its mount namespace only.
//!
//! Dropping the node kills every process under its cgroup root, removes the cgroups, the
//! namespace and its directory; the next node started removes what a killed test process left.

pub mod cgroups;
pub mod config;
mod import;
pub mod relay;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::image_binary_dir;
use crate::control_plane::{
    ControlPlane, ControlPlaneError, ControlPlaneOptions, cached_binary, which,
};
use crate::images;
use crate::netns::{Nic, Sandbox};
use crate::procs::spawn_tied;
use config::{KUBELET_SYSCTLS, KUBERNETES_SERVICE_IP, NODE_IP, NODE_PREFIX, NodeLayout};
use relay::Relays;

/// The label of the node's namespace: ids are `swyt-rn-<pid>-<n>` (see [`Sandbox`]).
const SANDBOX_LABEL: &str = "rn";
const ID_PREFIX: &str = "swyt-rn-";

/// The switchyard image as imported into every real node (chart values `image.repository`,
/// `image.tag`, `image.pullPolicy=Never`).
pub const SWITCHYARD_IMAGE_REPOSITORY: &str = "localhost/switchyard/switchyard";
/// The tag of [`SWITCHYARD_IMAGE_REPOSITORY`].
pub const SWITCHYARD_IMAGE_TAG: &str = "dev";

/// Why a real node could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RealNodeError {
    /// A file, namespace, cgroup or process could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The control plane did not start.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// A program the node needs is not installed.
    #[error("{0} not found; run scripts/install-deps.sh first")]
    Missing(String),
    /// The node did not become Ready.
    #[error("node {node} did not become Ready within {seconds}s:\n{logs}")]
    NotReady {
        /// The Node's name.
        node: String,
        /// How long it was given.
        seconds: u64,
        /// The ends of the node's logs.
        logs: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RealNodeError {
    let what = what.into();
    move |source| RealNodeError::Io { what, source }
}

/// What node to start.
#[derive(Debug, Clone)]
pub struct RealNodeOptions {
    /// The Node's name.
    pub name: String,
    /// Stand-in NICs besides `eth0` (the node's address): veth pairs `<name>`/`<name>-sw`.
    pub nics: Vec<String>,
}

impl Default for RealNodeOptions {
    fn default() -> Self {
        Self {
            name: "realnode".into(),
            nics: vec!["eth1".into()],
        }
    }
}

/// A control plane (apiserver with `Node,RBAC` and `NodeRestriction`, scheduler,
/// controller-manager) and one real node registered with it.
#[derive(Debug)]
pub struct RealCluster {
    /// The node; dropped before the control plane.
    pub node: RealNode,
    /// The control plane.
    pub control_plane: ControlPlane,
}

impl RealCluster {
    /// Starts the control plane and the node and waits until the Node is Ready (about 30 s).
    /// Blocking; call it from `spawn_blocking` in async tests.
    pub fn start(options: &RealNodeOptions) -> Result<Self, RealNodeError> {
        sweep_stale();
        let kubelet = cached_binary("kubelet");
        let pause = cached_binary("pause");
        for bin in [&kubelet, &pause] {
            if !bin.is_file() {
                return Err(RealNodeError::Missing(bin.display().to_string()));
            }
        }
        for program in [
            "containerd",
            "ctr",
            "runc",
            "containerd-shim-runc-v2",
            "setpriv",
        ] {
            which(program).ok_or_else(|| RealNodeError::Missing(program.into()))?;
        }

        let sandbox =
            Sandbox::new(SANDBOX_LABEL).map_err(io_err("creating the node's network namespace"))?;
        let layout = NodeLayout {
            id: sandbox.name().to_string(),
            name: options.name.clone(),
            dir: std::env::temp_dir().join(sandbox.name()),
        };
        let mut node = RealNode {
            layout,
            inner: None,
            relays: None,
            nics: Vec::new(),
            sandbox,
        };
        node.prepare(options)?;

        let control_plane = ControlPlane::start_with_options(&ControlPlaneOptions {
            nodes: vec![options.name.clone()],
            kube_controllers: true,
            cluster_egress_socket: Some(node.layout.egress_socket()),
            serving_ips: vec![KUBERNETES_SERVICE_IP.parse().expect("an IP address")],
            apiserver_flags: Vec::new(),
        })?;
        node.start(&control_plane, &kubelet, &pause)?;
        let mut cluster = RealCluster {
            node,
            control_plane,
        };
        cluster.wait_ready(Duration::from_secs(120))?;
        Ok(cluster)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), RealNodeError> {
        let start = Instant::now();
        let not_ready = |node: &mut RealNode, extra: String| RealNodeError::NotReady {
            node: node.layout.name.clone(),
            seconds: start.elapsed().as_secs(),
            logs: format!("{extra}{}", node.logs()),
        };
        loop {
            if let Some(Ok(Some(status))) = self.node.inner.as_mut().map(Child::try_wait) {
                return Err(not_ready(
                    &mut self.node,
                    format!("the node's processes exited ({status})\n"),
                ));
            }
            let exited = self.control_plane.exited_controllers();
            if !exited.is_empty() {
                return Err(not_ready(&mut self.node, exited.join("\n")));
            }
            let out = Command::new("kubectl")
                .arg(format!(
                    "--kubeconfig={}",
                    self.control_plane.kubeconfig.display()
                ))
                .args([
                    "get",
                    "node",
                    &self.node.layout.name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .stderr(Stdio::null())
                .output()
                .map_err(io_err("running kubectl"))?;
            if out.status.success() && out.stdout == b"True" {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(not_ready(&mut self.node, String::new()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A kubelet and containerd in a network and mount namespace of their own.
#[derive(Debug)]
pub struct RealNode {
    layout: NodeLayout,
    /// `ip netns exec <id> sh node.sh`: containerd and the kubelet are its children.
    inner: Option<Child>,
    relays: Option<Relays>,
    /// The stand-in NICs besides `eth0`.
    pub nics: Vec<Nic>,
    /// The node's network namespace; removed last.
    pub sandbox: Sandbox,
}

impl RealNode {
    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// The directory with the node's configuration and logs.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The last lines of the kubelet's, containerd's and the node script's logs.
    pub fn logs(&self) -> String {
        ["node.log", "containerd.log", "kubelet.log"]
            .iter()
            .map(|log| {
                let text = fs::read_to_string(self.layout.path(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {log}:\n{}\n",
                    lines[lines.len().saturating_sub(25)..].join("\n")
                )
            })
            .collect()
    }

    /// `program` run inside the node's mount and network namespaces, where the host paths
    /// its kubelet and containerd see (`/run`, `/var/lib`, `/opt`) are the node's own.
    pub fn command(&self, program: &str) -> io::Result<Command> {
        let pid = self
            .inner
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| io::Error::other("the node is not running"))?;
        let mut command = Command::new("nsenter");
        command.args(["-t", &pid.to_string(), "-m", "-n", "--", program]);
        Ok(command)
    }

    /// Runs `ctr` against the node's containerd (namespace `k8s.io`), inside the node's mount
    /// namespace.
    pub fn ctr(&self, args: &[&str]) -> io::Result<String> {
        let out = self
            .command("ctr")?
            .arg("--address")
            .arg(self.layout.containerd_socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(format!(
                "ctr {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// The network, directories and configuration that do not depend on the control plane.
    fn prepare(&mut self, options: &RealNodeOptions) -> Result<(), RealNodeError> {
        let net = |e| RealNodeError::Io {
            what: "setting up the node's network namespace".into(),
            source: e,
        };
        let eth0 = self.sandbox.add_nic("eth0").map_err(net)?;
        self.sandbox
            .ip(&[
                "addr",
                "add",
                &format!("{NODE_IP}/{NODE_PREFIX}"),
                "dev",
                &eth0.name,
            ])
            .map_err(net)?;
        self.sandbox
            .ip(&[
                "addr",
                "add",
                &format!("{KUBERNETES_SERVICE_IP}/32"),
                "dev",
                "lo",
            ])
            .map_err(net)?;
        for nic in &options.nics {
            self.nics.push(self.sandbox.add_nic(nic).map_err(net)?);
        }
        for dir in [
            "containerd/root",
            "containerd/state",
            "containerd/opt",
            "runc",
            "cni/net.d",
            "cni/ipam",
            "log",
            "sysctl",
            "tmp",
            "kubelet-pki",
            "volume-plugins",
            "images/work",
        ] {
            fs::create_dir_all(self.layout.path(dir))
                .map_err(io_err(format!("creating {dir} of the node")))?;
        }
        let write = |rel: &str, text: &str| {
            fs::write(self.layout.path(rel), text).map_err(io_err(format!("writing {rel}")))
        };
        write(
            "containerd/config.toml",
            &config::containerd_config(&self.layout),
        )?;
        write(
            "cni/net.d/10-switchyard-node.conflist",
            &config::cni_conflist(&self.layout),
        )?;
        for (key, value) in KUBELET_SYSCTLS {
            write(&format!("sysctl/{}", key.replace('/', ".")), value)?;
        }
        cgroups::create(&self.layout.id).map_err(io_err(format!(
            "creating the cgroup root /{}",
            self.layout.id
        )))?;
        Ok(())
    }

    /// Writes what needs the control plane, builds the images, starts the relays and the node.
    fn start(
        &mut self,
        cp: &ControlPlane,
        kubelet: &Path,
        pause: &Path,
    ) -> Result<(), RealNodeError> {
        let token = cp
            .node_token(&self.layout.name)
            .expect("the control plane was started for this node");
        fs::write(
            self.layout.path("kubelet.kubeconfig"),
            config::kubelet_kubeconfig(&cp.ca_file, token),
        )
        .map_err(io_err("writing the kubelet's kubeconfig"))?;

        let images = self.build_images(pause)?;

        let apiserver: SocketAddr = cp
            .server
            .trim_start_matches("https://")
            .parse()
            .expect("the apiserver listens on an IP address and port");
        let api_in_node: SocketAddr = format!("{KUBERNETES_SERVICE_IP}:443")
            .parse()
            .expect("a socket address");
        self.relays = Some(
            Relays::start(
                &self.sandbox.path(),
                api_in_node,
                apiserver,
                &self.layout.egress_socket(),
            )
            .map_err(io_err("starting the node's relays"))?,
        );

        let script = self.layout.path("node.sh");
        fs::write(&script, config::node_script(&self.layout, &images, kubelet))
            .map_err(io_err("writing node.sh"))?;
        let log =
            fs::File::create(self.layout.path("node.log")).map_err(io_err("creating node.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.layout.id, "sh"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("opening node.log"))?)
            .stderr(log);
        self.inner = Some(spawn_tied(cmd).map_err(io_err("starting the node"))?);
        Ok(())
    }

    /// The pause and switchyard image archives, in the node's directory.
    fn build_images(&self, pause: &Path) -> Result<Vec<PathBuf>, RealNodeError> {
        let binary_dir = image_binary_dir();
        let switchyard = images::switchyard_image(
            &format!("{SWITCHYARD_IMAGE_REPOSITORY}:{SWITCHYARD_IMAGE_TAG}"),
            &binary_dir,
        )
        .map_err(io_err("describing the switchyard image"))?;
        let specs = [
            ("pause.tar", images::pause_image(config::PAUSE_IMAGE, pause)),
            ("switchyard.tar", switchyard),
        ];
        let mut archives = Vec::new();
        for (file, spec) in specs {
            let archive = self.layout.path(&format!("images/{file}"));
            images::write_docker_archive(&spec, &archive, &self.layout.path("images/work"))
                .map_err(io_err(format!("writing the image archive {file}")))?;
            archives.push(archive);
        }
        Ok(archives)
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            let _ = inner.kill();
            let _ = inner.wait();
        }
        if let Err(error) = cgroups::kill_and_remove(&self.layout.id, Duration::from_secs(30)) {
            eprintln!("could not stop real node {}: {error}", self.layout.name);
        }
        self.relays = None;
        if let Err(error) = fs::remove_dir_all(&self.layout.dir)
            && error.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "could not remove {} of real node {}: {error}",
                self.layout.dir.display(),
                self.layout.name
            );
        }
    }
}

/// Removes what real nodes of killed test processes left: their processes and cgroups, their
/// namespaces and their directories.
pub fn sweep_stale() {
    for id in cgroups::stale_roots(ID_PREFIX) {
        if let Err(error) = cgroups::kill_and_remove(&id, Duration::from_secs(30)) {
            eprintln!("could not remove the stale real node {id}: {error}");
        }
    }
    if let Err(error) = Sandbox::sweep_stale() {
        eprintln!("could not remove stale namespaces: {error}");
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(ID_PREFIX) {
            continue;
        }
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
