//! The agent's own path: NetworkPorts created through a private control plane until all are
//! Ready, a SIGKILL and restart with all of them Ready, and their deletion until every owned
//! link is gone from the kernel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use switchyard_crds::{Network, NetworkNode, NetworkPort, PortPhase};
use switchyard_node_agent::ownership::LinkGroups;
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::fixtures;
use switchyard_tests::netns::Sandbox;
use switchyard_tests::procs::spawn_tied;
use tokio::sync::mpsc;

use crate::Cancel;
use crate::netlink::NsHandle;
use crate::stats::Phase;

/// Label on every object the bench creates.
const BENCH_LABEL: &str = "switchyard.dev/bench";

/// How the agent is run and driven.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The release build of `switchyard-node-agent`.
    pub binary: PathBuf,
    /// Port creates in flight against the API.
    pub api_concurrency: usize,
    /// `SWITCHYARD_CONCURRENCY` for the agent; its default when `None`.
    pub agent_concurrency: Option<u16>,
    /// `RUST_LOG` for the agent.
    pub log: String,
    /// Keep the agents' logs after the run (their directory is printed).
    pub keep_logs: bool,
}

/// The agent's figures for one N.
#[derive(Debug, Clone, Default)]
pub struct AgentRun {
    /// API create → phase Ready, per port; total from the first create to the last Ready.
    pub create: Phase,
    /// `switchyard_agent_link_create_seconds`: (sum, count).
    pub link_create: (f64, u64),
    /// Agent CPU (user + system) over the create phase, seconds.
    pub create_cpu: f64,
    /// VmRSS and VmHWM of the agent with N ports Ready, KiB.
    pub rss_kib: u64,
    /// Peak RSS, KiB.
    pub hwm_kib: u64,
    /// SIGKILL'd with N ports Ready and restarted: spawn → `/readyz` 200.
    pub restart_ready: Duration,
    /// `switchyard_agent_recovery_seconds` after the restart.
    pub recovery_seconds: f64,
    /// VmRSS right after recovery, KiB.
    pub rss_after_restart_kib: u64,
    /// The API delete calls alone.
    pub delete_calls: Duration,
    /// First delete call → every owned link gone.
    pub teardown_links: Duration,
    /// Delete → every port object gone (finalizers removed).
    pub teardown_objects: Duration,
    /// Agent CPU over the teardown, seconds.
    pub teardown_cpu: f64,
}

/// Where the agents' logs go.
#[derive(Debug)]
enum Logs {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Logs {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// The private control plane, shared by every N of a run.
pub struct Bench {
    _control_plane: ControlPlane,
    logs: Logs,
    client: Client,
    kubeconfig: PathBuf,
    options: AgentOptions,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Bench {
    /// Starts a private etcd + kube-apiserver and applies the CRDs.
    pub async fn start(options: AgentOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.binary.is_file(),
            "agent binary {} not found (cargo build --release -p switchyard-node-agent)",
            options.binary.display()
        );
        let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
            .await?
            .context("starting the private control plane")?;
        let kubeconfig = control_plane.kubeconfig.clone();
        let path = kubeconfig.clone();
        tokio::task::spawn_blocking(move || switchyard_tests::cluster::apply_crds(&path))
            .await?
            .map_err(anyhow::Error::msg)?;
        let client = switchyard_tests::cluster::client_for(&kubeconfig).await;
        let logs = tempfile::Builder::new()
            .prefix("switchyard-bench-")
            .tempdir()
            .context("a directory for the agents' logs")?;
        let logs = if options.keep_logs {
            let kept = logs.keep();
            eprintln!("agent logs in {}", kept.display());
            Logs::Kept(kept)
        } else {
            Logs::Temporary(logs)
        };
        Ok(Self {
            _control_plane: control_plane,
            logs,
            client,
            kubeconfig,
            options,
        })
    }

    /// Runs the agent's path for `n` ports.
    pub async fn run(&self, n: usize, cancel: &Cancel) -> anyhow::Result<AgentRun> {
        let tag = format!("n{n}-{}", std::process::id());
        let node = format!("bench-{tag}");
        let namespace = format!("bench-{tag}");
        let scene = Scene::create(self, &node, &namespace, n).await?;
        let result = self.measure(&scene, n, cancel).await;
        scene.remove(self).await;
        result
    }

    async fn measure(&self, scene: &Scene, n: usize, cancel: &Cancel) -> anyhow::Result<AgentRun> {
        let mut agent = AgentProcess::start(self, scene)?;
        agent.wait_ready(Duration::from_secs(60), cancel).await?;
        let mut run = AgentRun::default();
        let ports = Api::<NetworkPort>::namespaced(self.client.clone(), &scene.namespace);

        // The watch is established (initial list done) before the first create.
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<(String, Instant)>();
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
        let watch = tokio::spawn(watch_ready(ports.clone(), ready_tx, synced_tx));
        synced_rx.await.context("the port watch ended")?;

        let cpu_before = agent.cpu_seconds()?;
        let started = Instant::now();
        let created: HashMap<String, Instant> = stream::iter(0..n)
            .map(|i| {
                let ports = ports.clone();
                let port = fixtures::port(
                    &scene.namespace,
                    &format!("p{i:05}"),
                    &scene.network,
                    &scene.node,
                    &fixtures::mac(i),
                );
                async move {
                    let t = Instant::now();
                    ports
                        .create(&PostParams::default(), &port)
                        .await
                        .with_context(|| format!("creating port {i}"))?;
                    anyhow::Ok((port.name_any(), t))
                }
            })
            .buffer_unordered(self.options.api_concurrency)
            .try_collect()
            .await?;
        let mut ready: HashMap<String, Instant> = HashMap::with_capacity(n);
        let deadline = started + Duration::from_secs(60) + Duration::from_millis(50) * n as u32;
        while ready.len() < n {
            cancel.check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(200)), ready_rx.recv()).await
            {
                Ok(Some((name, at))) => {
                    ready.entry(name).or_insert(at);
                }
                Ok(None) => anyhow::bail!("the port watch ended"),
                Err(_) if left.is_zero() => {
                    anyhow::bail!(
                        "only {} of {n} ports Ready after {:?}; agent log: {}",
                        ready.len(),
                        started.elapsed(),
                        agent.log_tail()
                    )
                }
                Err(_) => agent.check_alive()?,
            }
        }
        watch.abort();
        let last = ready.values().max().copied().unwrap_or(started);
        run.create = Phase {
            ops: n,
            total: last - started,
            latencies: ready
                .iter()
                .map(|(name, at)| at.saturating_duration_since(created[name]))
                .collect(),
        };
        run.create_cpu = agent.cpu_seconds()? - cpu_before;
        let metrics = agent.metrics().await?;
        run.link_create = (
            metric(&metrics, "switchyard_agent_link_create_seconds_sum").unwrap_or(f64::NAN),
            metric(&metrics, "switchyard_agent_link_create_seconds_count").unwrap_or(0.0) as u64,
        );
        // Let the reporter and the status writes settle before reading memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        (run.rss_kib, run.hwm_kib) = agent.memory()?;

        // Crash and restart with every port Ready.
        agent.kill();
        let restarted = Instant::now();
        let mut agent = AgentProcess::start(self, scene)?;
        agent.wait_ready(Duration::from_secs(60), cancel).await?;
        run.restart_ready = restarted.elapsed();
        let metrics = agent.metrics().await?;
        run.recovery_seconds =
            metric(&metrics, "switchyard_agent_recovery_seconds").unwrap_or(f64::NAN);
        tokio::time::sleep(Duration::from_secs(2)).await;
        (run.rss_after_restart_kib, _) = agent.memory()?;
        let owned = scene.links.count_owned().await?;
        anyhow::ensure!(owned == n, "{owned} owned links after the restart, not {n}");

        // Teardown: every port deleted through the API (as many in flight as the creates;
        // kube-apiserver's delete-collection runs one worker and would measure the apiserver),
        // then watch the kernel until the last owned link is gone.
        let cpu_before = agent.cpu_seconds()?;
        let started = Instant::now();
        stream::iter(0..n)
            .map(|i| {
                let ports = ports.clone();
                async move {
                    ports
                        .delete(&format!("p{i:05}"), &DeleteParams::default())
                        .await
                        .with_context(|| format!("deleting port {i}"))
                }
            })
            .buffer_unordered(self.options.api_concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        run.delete_calls = started.elapsed();
        let deadline = started + Duration::from_secs(60) + Duration::from_millis(50) * n as u32;
        while scene.links.count_owned().await? > 0 {
            cancel.check()?;
            agent.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "links still there after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        run.teardown_links = started.elapsed();
        loop {
            cancel.check()?;
            let left = ports
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            if left == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{left} port objects still there after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.teardown_objects = started.elapsed();
        run.teardown_cpu = agent.cpu_seconds()? - cpu_before;
        agent.stop();
        Ok(run)
    }
}

/// Sends (name, when) the first time the watch shows each port Ready; signals once the initial
/// list is done.
async fn watch_ready(
    ports: Api<NetworkPort>,
    ready: mpsc::UnboundedSender<(String, Instant)>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut events = std::pin::pin!(watcher(ports, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let port = match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
                continue;
            }
            Ok(watcher::Event::Apply(port) | watcher::Event::InitApply(port)) => port,
            Ok(_) => continue,
            Err(error) => {
                eprintln!("port watch: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if fixtures::phase(&port) == Some(PortPhase::Ready)
            && ready.send((port.name_any(), Instant::now())).is_err()
        {
            return;
        }
    }
}

/// The value of an unlabelled metric sample.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// One node's worth of objects: a Node, a Network over its uplink, a namespace for the ports,
/// and the node's network namespace.
struct Scene {
    node: String,
    network: String,
    namespace: String,
    sandbox: Sandbox,
    links: OwnedLinks,
}

impl Scene {
    async fn create(bench: &Bench, node: &str, namespace: &str, n: usize) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new("agent").context("creating the node's namespace")?;
        sandbox.add_nic("up0").context("adding the node's uplink")?;
        let links = OwnedLinks {
            ns: NsHandle::open(&sandbox.path()).await?,
            groups: LinkGroups::DEFAULT,
        };
        let scene = Self {
            node: node.to_string(),
            network: node.to_string(),
            namespace: namespace.to_string(),
            sandbox,
            links,
        };
        let client = &bench.client;
        let labels = serde_json::json!({BENCH_LABEL: node, "kubernetes.io/hostname": node});
        let node_object: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": labels},
        }))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node_object)
            .await
            .context("creating the Node")?;
        let now = jiff::Timestamp::now().to_string();
        let status = serde_json::json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "SimulatedKubelet",
            "message": "set by switchyard-bench", "lastHeartbeatTime": now, "lastTransitionTime": now,
        }]}});
        Api::<Node>::all(client.clone())
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .context("setting the Node Ready")?;
        let network: Network = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
            "metadata": {"name": node, "labels": {BENCH_LABEL: node}},
            "spec": {
                "nodeSelector": {"matchLabels": {BENCH_LABEL: node}},
                "forward": {"mode": "vepa", "interfaces": [{"dev": "up0"}]},
                // The schema's cap; at least N.
                "maxConnectionsPerDevice": 4096.max(n),
            },
        }))?;
        Api::<Network>::all(client.clone())
            .create(&PostParams::default(), &network)
            .await
            .context("creating the Network")?;
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .context("creating the namespace")?;
        Ok(scene)
    }

    /// Removes the API objects (best effort); the sandbox goes on drop, with any link left.
    async fn remove(self, bench: &Bench) {
        let client = &bench.client;
        let dp = DeleteParams::default();
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&self.namespace, &dp)
            .await;
        let _ = Api::<Network>::all(client.clone())
            .delete(&self.network, &dp)
            .await;
        let _ = Api::<NetworkNode>::all(client.clone())
            .delete(&self.node, &dp)
            .await;
        let _ = Api::<Node>::all(client.clone())
            .delete(&self.node, &dp)
            .await;
    }
}

/// Counts the agent's links in the node's namespace.
struct OwnedLinks {
    ns: NsHandle,
    groups: LinkGroups,
}

impl OwnedLinks {
    async fn count_owned(&self) -> anyhow::Result<usize> {
        self.ns
            .count_in_groups(&[self.groups.owned, self.groups.doomed])
            .await
    }
}

/// The agent process; killed on drop.
struct AgentProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl AgentProcess {
    fn start(bench: &Bench, scene: &Scene) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = bench.logs.path().join(format!("{}.log", scene.node));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(&bench.options.binary);
        cmd.env("KUBECONFIG", &bench.kubeconfig)
            .env("NODE_NAME", &scene.node)
            .env("SWITCHYARD_NETNS", scene.sandbox.path())
            .env("SWITCHYARD_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", &bench.options.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(concurrency) = bench.options.agent_concurrency {
            cmd.env("SWITCHYARD_CONCURRENCY", concurrency.to_string());
        }
        let child = spawn_tied(cmd).context("starting the agent")?;
        Ok(Self { child, port, log })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a DaemonSet rollout would.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("the agent exited ({status}): {}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    async fn wait_ready(&mut self, timeout: Duration, cancel: &Cancel) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            cancel.check()?;
            self.check_alive()?;
            if self
                .get("/readyz")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "the agent was not ready within {timeout:?}: {}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A GET on the agent's loopback address; the raw HTTP response. (Plain std I/O on a
    /// blocking thread: the bench's tokio has no io-util feature.)
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let port = self.port;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            anyhow::Ok(response)
        })
        .await?
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        self.get("/metrics").await
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        let path = Path::new("/proc")
            .join(self.child.id().to_string())
            .join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = self.proc_file("status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// User + system CPU time so far, seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = self.proc_file("stat")?;
        // Fields after the parenthesised command: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11)
            .zip(fields.get(12))
            .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
            .context("parsing /proc/<pid>/stat")?;
        Ok(ticks as f64 / clock_ticks())
    }
}

/// `sysconf(_SC_CLK_TCK)`, via getconf (100 on every Linux build in practice).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
