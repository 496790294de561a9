//! Simulated nodes: a Node object in the local apiserver, a network namespace with veth NICs
//! standing in for the host, and a real node-agent process bound to both.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::cluster::{TEST_LABEL, TestEnv};
use crate::netns::Sandbox;
use crate::procs::spawn_tied;

/// One simulated node. Dropping it stops its agent, deletes the Node and removes the namespace.
#[derive(Debug)]
pub struct SimulatedNode {
    /// The node's name (also its `NetworkNode`'s).
    pub name: String,
    /// Its network namespace.
    pub sandbox: Sandbox,
    kubeconfig: PathBuf,
    agent: Option<Child>,
    metrics_port: u16,
    log: tempfile::NamedTempFile,
    /// More environment for the agent, on every start (see [`SimulatedNode::set_agent_env`]).
    agent_env: Vec<(String, String)>,
    /// The agent's state directory (dnsmasq files, pid files, leases), one per node.
    pub state_dir: tempfile::TempDir,
}

impl SimulatedNode {
    /// Creates the Node (labelled with the test label and `labels`, condition Ready) and an
    /// empty namespace. Add NICs with `sandbox.add_nics`, then [`SimulatedNode::start_agent`].
    pub async fn new(env: &TestEnv, label: &str, labels: &[(&str, &str)]) -> Self {
        let name = env.unique(label);
        create_node(env, &name, labels).await;
        let sandbox = Sandbox::new(label).expect("creating the node's network namespace");
        SimulatedNode {
            name,
            sandbox,
            kubeconfig: env.kubeconfig.clone(),
            agent: None,
            metrics_port: 0,
            log: tempfile::NamedTempFile::new().expect("a log file"),
            agent_env: Vec::new(),
            state_dir: tempfile::tempdir().expect("a state directory"),
        }
    }

    /// Sets an environment variable for every later start of the agent.
    pub fn set_agent_env(&mut self, key: &str, value: &str) {
        self.agent_env.retain(|(k, _)| k != key);
        self.agent_env.push((key.to_string(), value.to_string()));
    }

    /// The agent process's id, while it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Whether the agent process is running (started and not killed or stopped).
    pub fn agent_running(&self) -> bool {
        self.agent.is_some()
    }

    /// Starts `binary` (the node agent) for this node, bound to its namespace, and waits until
    /// its `/readyz` says ready. It authenticates as the test's admin.
    pub fn start_agent(&mut self, binary: &Path) {
        let admin = self.kubeconfig.clone();
        self.start_agent_as(binary, &admin);
    }

    /// Like [`SimulatedNode::start_agent`], authenticated by `kubeconfig` instead (e.g. a
    /// ServiceAccount token, to run the agent with exactly its chart's permissions).
    pub fn start_agent_as(&mut self, binary: &Path, kubeconfig: &Path) {
        assert!(
            self.agent.is_none(),
            "the agent of {} already runs",
            self.name
        );
        self.metrics_port = free_port();
        let log = self.log.reopen().expect("the agent's log");
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", kubeconfig)
            .env("NODE_NAME", &self.name)
            .env("SWITCHYARD_NETNS", self.sandbox.path())
            .env(
                "SWITCHYARD_METRICS_ADDR",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .env("SWITCHYARD_REPORT_INTERVAL", "1")
            .env("SWITCHYARD_STATE_DIR", self.state_dir.path())
            .env(
                "RUST_LOG",
                std::env::var("SWITCHYARD_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.agent = Some(spawn_tied(cmd).expect("starting the node agent"));
        self.wait_ready(Duration::from_secs(60));
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(Ok(Some(status))) = self.agent.as_mut().map(Child::try_wait) {
                panic!(
                    "the agent of {} exited ({status}):\n{}",
                    self.name,
                    self.logs()
                );
            }
            if self
                .http_get("/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the agent of {} was not ready within {timeout:?}:\n{}",
            self.name,
            self.logs()
        );
    }

    /// Kills the agent with SIGKILL, as a crash or an OOM kill would.
    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    /// Stops the agent with SIGTERM and waits for it to exit.
    pub fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &agent.id().to_string()])
                .status();
            let _ = agent.wait();
        }
    }

    /// The agent's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// A GET on the agent's metrics address (loopback); the raw HTTP response.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// The pids the agent's pid files name (its dnsmasq processes), by file name.
    pub fn marked_pids(&self) -> Vec<(String, u32)> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.state_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pid")
                && let Some(pid) = std::fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
            {
                pids.push((name, pid));
            }
        }
        pids.sort();
        pids
    }
}

impl Drop for SimulatedNode {
    fn drop(&mut self) {
        self.kill_agent();
        // The agent's dnsmasq processes outlive it on purpose (a new agent adopts them); the
        // test's node takes them along.
        for (_, pid) in self.marked_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args([
                "delete",
                "node,networknode",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
        if std::thread::panicking() {
            eprintln!("--- agent log of {} ---\n{}", self.name, self.logs());
        }
    }
}

/// Creates a Node labelled with the test label, `kubernetes.io/hostname` and `labels`, and
/// marks it Ready as its kubelet would.
pub async fn create_node(env: &TestEnv, name: &str, labels: &[(&str, &str)]) {
    let mut node_labels: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    node_labels.insert(TEST_LABEL.into(), env.namespace.clone());
    node_labels.insert("kubernetes.io/hostname".into(), name.to_string());
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    node.metadata.labels = Some(node_labels);
    Api::<Node>::all(env.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("creating the Node");
    set_node_ready(env, name, true).await;
}

/// Sets the Node's Ready condition (there is no kubelet to do it).
pub async fn set_node_ready(env: &TestEnv, node: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": "SimulatedKubelet",
        "message": "set by the switchyard test harness",
        "lastHeartbeatTime": jiff::Timestamp::now().to_string(),
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    Api::<Node>::all(env.client.clone())
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("setting the Node's Ready condition");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
