//! What the controller's end-to-end tests share: the controller binary as a process (with a
//! throwaway TLS certificate for its webhook), the webhook registered by URL on the local
//! apiserver, and simulated nodes whose agent reports the test writes itself.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use switchyard_crds::{NetworkNode, NetworkNodeSpec};
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::pki::ServingCertificate;
use switchyard_tests::procs::spawn_tied;

/// The controller binary running against the test cluster. Killed on drop.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics: SocketAddr,
    /// The HTTPS webhook.
    pub webhook: SocketAddr,
    /// The CA that signed the webhook's certificate (PEM file).
    pub ca_file: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

impl ControllerProcess {
    /// Starts the controller (with its webhook when `webhook` is true) and waits until
    /// `/readyz` says its caches are synced.
    pub async fn start(env: &TestEnv, webhook: bool) -> Self {
        Self::start_as(&env.kubeconfig, webhook).await
    }

    /// Like [`ControllerProcess::start`], authenticated by `kubeconfig` instead of the test's
    /// admin (e.g. a ServiceAccount token, to run with exactly the chart's permissions).
    pub async fn start_as(kubeconfig: &Path, webhook: bool) -> Self {
        Self::start_with(kubeconfig, webhook, &[]).await
    }

    /// Like [`ControllerProcess::start_as`], with extra environment variables (its flags).
    pub async fn start_with(kubeconfig: &Path, webhook: bool, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let metrics = free_addr();
        let webhook_addr = free_addr();
        let log = dir.path().join("controller.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard-controller"));
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,switchyard_controller=debug")
            .env("SWITCHYARD_METRICS_ADDR", metrics.to_string())
            .env("SWITCHYARD_WEBHOOK_ADDR", webhook_addr.to_string())
            .env_remove("SWITCHYARD_TLS_CERT_FILE")
            .env_remove("SWITCHYARD_TLS_KEY_FILE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the log"));
        if webhook {
            let tls = ServingCertificate::generate(dir.path(), "switchyard-webhook-test")
                .expect("creating the webhook's certificate");
            cmd.arg(format!("--tls-cert-file={}", tls.cert.display()))
                .arg(format!("--tls-key-file={}", tls.key.display()));
        }
        let child = spawn_tied(cmd).expect("starting switchyard-controller");
        let mut controller = ControllerProcess {
            child,
            metrics,
            webhook: webhook_addr,
            ca_file: dir.path().join("ca.crt"),
            log,
            dir,
        };
        controller.wait_ready().await;
        controller
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the controller exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.metrics, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller was not ready within 60s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the controller's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most `within`) for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log (end) ---\n{}", self.log_tail());
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: the status code and body, or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// The webhook registered on the apiserver by URL for this test's objects only (those with its
/// test label). Deleted on drop, also when the test fails.
#[derive(Debug)]
pub struct WebhookRegistration {
    name: String,
    kubeconfig: PathBuf,
}

impl WebhookRegistration {
    /// Registers `controller`'s webhook for Networks and NetworkPorts carrying the test label,
    /// and waits until the apiserver calls it.
    pub async fn register(env: &TestEnv, controller: &ControllerProcess) -> Self {
        let name = format!("switchyard-test-{}", env.namespace);
        let ca = std::fs::read(&controller.ca_file).expect("reading the webhook CA");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
        let (key, value) = env.test_label();
        let webhook = |kind: &str, scope: &str| {
            json!({
                "name": format!("{kind}.validate.switchyard.dev"),
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "objectSelector": {"matchLabels": {key.clone(): value.clone()}},
                "clientConfig": {
                    "url": format!("https://{}/validate-{kind}", controller.webhook),
                    "caBundle": ca_bundle,
                },
                "rules": [{
                    "apiGroups": ["switchyard.dev"],
                    "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [kind],
                    "scope": scope,
                }],
            })
        };
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {key.clone(): value.clone()}},
            "webhooks": [webhook("networks", "Cluster"), webhook("networkports", "Namespaced")],
        });
        Self::create(env, name, &config).await
    }

    /// Registers the chart's own ValidatingWebhookConfiguration (deploy/switchyard.yaml: every
    /// webhook with its rules and failure policy) pointed at `controller` by URL. It selects
    /// no objects by label, so only a test with a control plane of its own may use it.
    pub async fn from_chart(env: &TestEnv, controller: &ControllerProcess) -> Self {
        let path = switchyard_tests::cluster::repo_root().join("deploy/switchyard.yaml");
        let text = std::fs::read_to_string(&path).expect("reading deploy/switchyard.yaml");
        let mut config: serde_json::Value = text
            .split("\n---")
            .map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).expect("YAML"))
            .find(|doc| doc["kind"] == "ValidatingWebhookConfiguration")
            .expect("deploy/switchyard.yaml has a ValidatingWebhookConfiguration");
        let ca = std::fs::read(&controller.ca_file).expect("reading the webhook CA");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
        let webhooks = config["webhooks"].as_array_mut().expect("webhooks");
        for webhook in webhooks.iter_mut() {
            let path = webhook["clientConfig"]["service"]["path"]
                .as_str()
                .expect("a webhook served at a path")
                .to_string();
            webhook["clientConfig"] = json!({
                "url": format!("https://{}{path}", controller.webhook),
                "caBundle": ca_bundle,
            });
        }
        config["metadata"] = json!({"name": config["metadata"]["name"].clone()});
        let name = config["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        Self::create(env, name, &config).await
    }

    /// Creates the configuration and waits until the apiserver calls it.
    async fn create(env: &TestEnv, name: String, config: &serde_json::Value) -> Self {
        let (key, value) = env.test_label();
        let registration = WebhookRegistration {
            name,
            kubeconfig: env.kubeconfig.clone(),
        };
        let out = env.kubectl(&["create", "-f", "-"], Some(&config.to_string()));
        assert!(
            out.status.success(),
            "registering the webhook: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The apiserver picks webhook configurations up asynchronously: probe with a dry run
        // of a network the webhook refuses until it does.
        let probe = json!({
            "apiVersion": "switchyard.dev/v1alpha1",
            "kind": "Network",
            "metadata": {"name": env.unique("webhook-probe"), "labels": {key: value}},
            "spec": {"forward": {"mode": "vepa", "dev": "eth9", "interfaces": [{"dev": "eth1"}]}},
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = env.kubectl(
                &["create", "--dry-run=server", "-f", "-"],
                Some(&probe.to_string()),
            );
            if String::from_utf8_lossy(&out.stderr).contains("denied the request") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook was not called within 30s; last answer: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        registration
    }
}

impl Drop for WebhookRegistration {
    fn drop(&mut self) {
        let _ = switchyard_tests::cluster::kubectl_at(
            &self.kubeconfig,
            &[
                "delete",
                "validatingwebhookconfiguration",
                &self.name,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}

/// Creates a Node with the test label and `labels`, Ready as a kubelet would report it.
pub async fn simulated_node(env: &TestEnv, name: &str, labels: &[(&str, &str)]) {
    switchyard_tests::nodes::create_node(env, name, labels).await;
}

/// Writes the node's `NetworkNode` status as its agent would: `networks` is the list of
/// per-network reports; the agent is Ready.
pub async fn agent_reports(env: &TestEnv, node: &str, networks: serde_json::Value) {
    let api: Api<NetworkNode> = Api::all(env.client.clone());
    if api
        .get_opt(node)
        .await
        .expect("reading the NetworkNode")
        .is_none()
    {
        let mut object = NetworkNode::new(node, NetworkNodeSpec {});
        object.metadata.labels = Some([env.test_label()].into_iter().collect());
        api.create(&PostParams::default(), &object)
            .await
            .expect("creating the NetworkNode");
    }
    let ready = networks.as_array().map_or(0, |n| {
        n.iter().filter(|n| n["ready"] == json!(true)).count()
    });
    let status = json!({"status": {
        "networksReady": ready,
        "networks": networks,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Recovered", "message": "simulated by the test"}],
    }});
    api.patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("writing the agent's report");
}

/// Polls `probe` until it returns `Some`, for at most `within`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kubectl-switchyard binary of this build (built on demand when missing, e.g. when only
/// this package's tests were built).
pub fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/kubectl-switchyard
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("kubectl-switchyard");
    if !binary.is_file() {
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "kubectl-switchyard",
                "--bin",
                "kubectl-switchyard",
            ])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(switchyard_tests::cluster::repo_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building kubectl-switchyard failed");
    }
    binary
}

/// Runs `kubectl-switchyard` against the test cluster.
pub fn cli(env: &TestEnv, args: &[&str]) -> std::process::Output {
    Command::new(cli_binary())
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl-switchyard")
}
