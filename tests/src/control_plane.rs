//! A real local Kubernetes control plane: etcd and kube-apiserver v1.20 on 127.0.0.1.
//!
//! Everything lives in one temporary directory (certificates, tokens, etcd data, logs,
//! kubeconfig) that is removed on drop. The processes are started with a parent-death signal,
//! so they die with the process that started them even when it panics or is killed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::{ServingCertificate, openssl};
use crate::procs::spawn_tied;

/// The token of the `admin` user (group `system:masters`) in every control plane started here.
const ADMIN_TOKEN_PREFIX: &str = "switchyard-admin";

/// Why the control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// A file could not be written or a process could not be spawned.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A binary the control plane needs is not installed.
    #[error("{0} not found; run scripts/install-deps.sh first")]
    Missing(String),
    /// The apiserver did not become ready in time.
    #[error("{component} did not become ready within {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        /// etcd or kube-apiserver.
        component: &'static str,
        /// How long it was given.
        seconds: u64,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ControlPlaneError {
    let what = what.into();
    move |source| ControlPlaneError::Io { what, source }
}

/// What a control plane serves beyond the default (an apiserver alone, RBAC authorization).
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// Nodes whose kubelets will register: each gets a `system:node:<name>` token
    /// ([`ControlPlane::node_token`]), and the apiserver authorizes with `Node,RBAC` and admits
    /// with `NodeRestriction`, as a real cluster does.
    pub nodes: Vec<String>,
    /// Also start kube-scheduler and kube-controller-manager (as their own users), so pods are
    /// placed and Deployments, DaemonSets and service-account tokens are made.
    pub kube_controllers: bool,
    /// A unix socket speaking HTTP CONNECT through which the apiserver reaches the cluster
    /// network: kubelets and webhook endpoints (the egress selector's `cluster` selection).
    /// Webhook Services then resolve to their endpoints, not to cluster IPs.
    pub cluster_egress_socket: Option<PathBuf>,
    /// Further addresses the serving certificate is valid for.
    pub serving_ips: Vec<IpAddr>,
    /// Flags for the kube-apiserver after the usual ones (a later flag wins).
    pub apiserver_flags: Vec<String>,
}

/// A running etcd + kube-apiserver pair, optionally with the scheduler and controller-manager.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Child,
    /// kube-scheduler and kube-controller-manager, with their log names, when started.
    controllers: Vec<(&'static str, Child)>,
    node_tokens: BTreeMap<String, String>,
    /// The apiserver's program and arguments, to start it again on the same port and etcd.
    apiserver_command: (OsString, Vec<OsString>),
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// A kubeconfig for the admin user.
    pub kubeconfig: PathBuf,
    /// The admin's bearer token.
    pub token: String,
    /// The CA that signed the apiserver's serving certificate (PEM file).
    pub ca_file: PathBuf,
}

/// Where the cached kube-apiserver lives (see scripts/install-deps.sh).
pub fn kube_apiserver_binary() -> PathBuf {
    cached_binary("kube-apiserver")
}

/// A binary scripts/install-deps.sh caches beside the apiserver: `kubelet`, `kube-scheduler`,
/// `kube-controller-manager`, `pause`, `helm`.
pub fn cached_binary(name: &str) -> PathBuf {
    if let Some(cache) = std::env::var_os("SWITCHYARD_CACHE") {
        return PathBuf::from(cache).join("bin").join(name);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("switchyard/bin").join(name)
}

fn require_file(path: PathBuf) -> Result<PathBuf, ControlPlaneError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ControlPlaneError::Missing(path.display().to_string()))
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the apiserver
    /// reports ready (about 2 s).
    pub fn start() -> Result<Self, ControlPlaneError> {
        Self::start_with_options(&ControlPlaneOptions::default())
    }

    /// Like [`ControlPlane::start`], with `extra` flags for the kube-apiserver after the usual
    /// ones (a later flag wins, e.g. `--max-mutating-requests-inflight=1200` for a load test).
    pub fn start_with(extra: &[&str]) -> Result<Self, ControlPlaneError> {
        Self::start_with_options(&ControlPlaneOptions {
            apiserver_flags: extra.iter().map(|f| f.to_string()).collect(),
            ..ControlPlaneOptions::default()
        })
    }

    /// Starts a control plane with `options` and waits until the apiserver reports ready.
    pub fn start_with_options(options: &ControlPlaneOptions) -> Result<Self, ControlPlaneError> {
        let apiserver_bin = require_file(kube_apiserver_binary())?;
        let controller_bins = if options.kube_controllers {
            Some((
                require_file(cached_binary("kube-scheduler"))?,
                require_file(cached_binary("kube-controller-manager"))?,
            ))
        } else {
            None
        };
        let etcd_bin = which("etcd").ok_or_else(|| ControlPlaneError::Missing("etcd".into()))?;
        // etcd's data on tmpfs when there is one: fsync on disk dominates start-up and writes.
        let base = Path::new("/dev/shm");
        let dir = tempfile::Builder::new()
            .prefix("switchyard-cp-")
            .tempdir_in(if base.is_dir() {
                base.to_path_buf()
            } else {
                std::env::temp_dir()
            })
            .map_err(io_err("creating the control plane directory"))?;
        let d = dir.path().to_path_buf();

        let pki = Pki::generate(&d, &options.serving_ips)?;
        let token = format!("{ADMIN_TOKEN_PREFIX}-{}", unique_suffix());
        let mut tokens = format!("{token},admin,admin-uid,\"system:masters\"\n");
        let node_tokens: BTreeMap<String, String> = options
            .nodes
            .iter()
            .map(|node| (node.clone(), format!("switchyard-node-{}", unique_suffix())))
            .collect();
        for (node, node_token) in &node_tokens {
            tokens.push_str(&format!(
                "{node_token},system:node:{node},node-{node},\"system:nodes\"\n"
            ));
        }
        let controller_tokens = [
            ("kube-scheduler", "system:kube-scheduler"),
            ("kube-controller-manager", "system:kube-controller-manager"),
        ]
        .map(|(component, user)| (component, user, format!("{component}-{}", unique_suffix())));
        if options.kube_controllers {
            for (component, user, controller_token) in &controller_tokens {
                tokens.push_str(&format!("{controller_token},{user},{component}-uid,\"\"\n"));
            }
        }
        fs::write(d.join("tokens.csv"), tokens).map_err(io_err("writing tokens.csv"))?;

        let [etcd_client, etcd_peer, apiserver_port] = free_ports()?;
        let mut etcd = Command::new(etcd_bin);
        etcd.arg("--name=switchyard")
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=switchyard=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(log_file(&d, "etcd.log")?);
        let etcd = spawn_tied(etcd).map_err(io_err("starting etcd"))?;

        let mut apiserver = Command::new(&apiserver_bin);
        apiserver
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg("--insecure-port=0")
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .args(apiserver_options(&d, options)?)
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            .arg("--enable-priority-and-fairness=false")
            .arg("--event-ttl=10m")
            .arg("--v=1")
            .args(&options.apiserver_flags)
            .stdout(Stdio::null())
            .stderr(log_file(&d, "kube-apiserver.log")?);
        let apiserver_command = (
            apiserver.get_program().to_os_string(),
            apiserver.get_args().map(|a| a.to_os_string()).collect(),
        );
        let apiserver = spawn_tied(apiserver).map_err(io_err("starting kube-apiserver"))?;

        let server = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = d.join("kubeconfig");
        fs::write(&kubeconfig, kubeconfig_yaml(&server, &pki.ca_cert, &token))
            .map_err(io_err("writing the kubeconfig"))?;

        let mut cp = ControlPlane {
            ca_file: pki.ca_cert.clone(),
            dir,
            etcd,
            apiserver,
            controllers: Vec::new(),
            node_tokens,
            apiserver_command,
            server,
            kubeconfig,
            token,
        };
        cp.wait_ready(Duration::from_secs(60))?;
        if let Some((scheduler_bin, kcm_bin)) = controller_bins {
            for (component, _, controller_token) in &controller_tokens {
                let kubeconfig = d.join(format!("{component}.kubeconfig"));
                fs::write(
                    &kubeconfig,
                    kubeconfig_yaml(&cp.server, &pki.ca_cert, controller_token),
                )
                .map_err(io_err(format!("writing the kubeconfig of {component}")))?;
            }
            let kubeconfig_arg = |component: &str| {
                format!(
                    "--kubeconfig={}",
                    d.join(format!("{component}.kubeconfig")).display()
                )
            };
            let mut scheduler = Command::new(scheduler_bin);
            scheduler
                .arg(kubeconfig_arg("kube-scheduler"))
                .args([
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
                    "--v=1",
                ])
                .stdout(Stdio::null())
                .stderr(log_file(&d, "kube-scheduler.log")?);
            let scheduler = spawn_tied(scheduler).map_err(io_err("starting kube-scheduler"))?;
            cp.controllers.push(("kube-scheduler", scheduler));
            let mut kcm = Command::new(kcm_bin);
            kcm.arg(kubeconfig_arg("kube-controller-manager"))
                .arg(format!(
                    "--service-account-private-key-file={}",
                    pki.sa_key.display()
                ))
                .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
                // Its default, /usr/libexec/kubernetes/…, would be created on the host.
                .arg(format!(
                    "--flex-volume-plugin-dir={}",
                    d.join("flexvolume").display()
                ))
                // Node IPAM needs a cluster CIDR; each real node brings its own pod range.
                .args([
                    "--use-service-account-credentials=true",
                    "--controllers=*,-nodeipam",
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
                    "--v=1",
                ])
                .stdout(Stdio::null())
                .stderr(log_file(&d, "kube-controller-manager.log")?);
            let kcm = spawn_tied(kcm).map_err(io_err("starting kube-controller-manager"))?;
            cp.controllers.push(("kube-controller-manager", kcm));
        }
        Ok(cp)
    }

    /// Writes a kubeconfig named `name` beside the admin's that authenticates with the bearer
    /// `token` (a ServiceAccount's, say) and returns its path.
    pub fn write_kubeconfig(&self, name: &str, token: &str) -> io::Result<PathBuf> {
        let path = self.dir.path().join(name);
        fs::write(&path, kubeconfig_yaml(&self.server, &self.ca_file, token))?;
        Ok(path)
    }

    /// The bearer token of node `name`'s kubelet (user `system:node:<name>`), when the control
    /// plane was started for that node.
    pub fn node_token(&self, name: &str) -> Option<&str> {
        self.node_tokens.get(name).map(String::as_str)
    }

    /// The scheduler and controller-manager that have exited, with the end of their logs
    /// (empty while they run, or when they were not started).
    pub fn exited_controllers(&mut self) -> Vec<String> {
        let dir = self.dir.path().to_path_buf();
        self.controllers
            .iter_mut()
            .filter_map(|(component, child)| {
                let status = child.try_wait().ok().flatten()?;
                Some(format!(
                    "{component} exited ({status}):\n{}",
                    tail(&dir.join(format!("{component}.log")))
                ))
            })
            .collect()
    }

    /// The directory holding the kubeconfig, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), ControlPlaneError> {
        let start = Instant::now();
        loop {
            for (component, child, log) in [
                ("etcd", &mut self.etcd, "etcd.log"),
                ("kube-apiserver", &mut self.apiserver, "kube-apiserver.log"),
            ] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(ControlPlaneError::NotReady {
                        component,
                        seconds: start.elapsed().as_secs(),
                        log: self.dir.path().join(log).display().to_string(),
                        tail: format!("(exited: {status})\n{}", tail(&self.dir.path().join(log))),
                    });
                }
            }
            let ready = Command::new("kubectl")
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .args(["get", "--raw=/readyz"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
                .map(|o| o.status.success() && o.stdout.starts_with(b"ok"))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let log = self.dir.path().join("kube-apiserver.log");
                return Err(ControlPlaneError::NotReady {
                    component: "kube-apiserver",
                    seconds: timeout.as_secs(),
                    tail: tail(&log),
                    log: log.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills (SIGKILL) just the kube-apiserver, as a crash or a control-plane node loss would;
    /// etcd and its data stay. Clients see refused connections until
    /// [`ControlPlane::restart_apiserver`].
    pub fn stop_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }

    /// Starts the kube-apiserver again with the same flags (same port, certificates, tokens and
    /// etcd), its log appended to the first one's, and waits until it reports ready.
    pub fn restart_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        self.stop_apiserver();
        let (program, args) = &self.apiserver_command;
        let log = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .map_err(io_err("opening kube-apiserver.log"))?;
        let mut apiserver = Command::new(program);
        apiserver.args(args).stdout(Stdio::null()).stderr(log);
        self.apiserver = spawn_tied(apiserver).map_err(io_err("restarting kube-apiserver"))?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Stops the scheduler and controller-manager, the apiserver, then etcd. Also done on drop.
    pub fn stop(&mut self) {
        for (_, child) in &mut self.controllers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The throwaway certificates and keys of one control plane.
struct Pki {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

/// The apiserver's authorization, admission and egress flags for `options`; writes the egress
/// selector configuration into `dir` when one is asked for.
fn apiserver_options(
    dir: &Path,
    options: &ControlPlaneOptions,
) -> Result<Vec<String>, ControlPlaneError> {
    let mut args = Vec::new();
    if options.nodes.is_empty() {
        args.push("--authorization-mode=RBAC".to_string());
    } else {
        args.push("--authorization-mode=Node,RBAC".to_string());
        args.push("--enable-admission-plugins=NodeRestriction".to_string());
        // A node's Hostname does not resolve here; its InternalIP is reached through the
        // cluster egress.
        args.push("--kubelet-preferred-address-types=InternalIP".to_string());
    }
    if let Some(socket) = &options.cluster_egress_socket {
        let file = dir.join("egress-selector.yaml");
        fs::write(&file, egress_selector_yaml(socket))
            .map_err(io_err("writing the egress selector configuration"))?;
        args.push(format!("--egress-selector-config-file={}", file.display()));
        args.push("--enable-aggregator-routing=true".to_string());
    }
    Ok(args)
}

fn egress_selector_yaml(socket: &Path) -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: {}
",
        socket.display()
    )
}

impl Pki {
    fn generate(dir: &Path, extra_ips: &[IpAddr]) -> Result<Self, ControlPlaneError> {
        let serving = ServingCertificate::generate_for(dir, "switchyard-test", extra_ips)
            .map_err(io_err("creating the apiserver's certificates"))?;
        let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
        let s = |path: &Path| path.display().to_string();
        openssl(&["genrsa", "-out", &s(&sa_key), "2048"])
            .and_then(|()| openssl(&["rsa", "-in", &s(&sa_key), "-pubout", "-out", &s(&sa_pub)]))
            .map_err(io_err("creating the service-account key pair"))?;
        Ok(Pki {
            ca_cert: serving.ca_cert,
            serving_cert: serving.cert,
            serving_key: serving.key,
            sa_key,
            sa_pub,
        })
    }
}

fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: switchyard-local
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: switchyard-local
  context:
    cluster: switchyard-local
    user: admin
current-context: switchyard-local
",
        ca = ca.display()
    )
}

/// Three distinct free TCP ports on 127.0.0.1. The listeners are held until all three are
/// chosen so the kernel does not hand out the same port twice.
fn free_ports() -> Result<[u16; 3], ControlPlaneError> {
    let listeners = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("choosing free ports"))?;
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
    Ok([
        port(0).map_err(io_err("choosing free ports"))?,
        port(1).map_err(io_err("choosing free ports"))?,
        port(2).map_err(io_err("choosing free ports"))?,
    ])
}

fn log_file(dir: &Path, name: &str) -> Result<fs::File, ControlPlaneError> {
    fs::File::create(dir.join(name)).map_err(io_err(format!("creating {name}")))
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A short string unique to this process and moment.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}{n:x}", std::process::id() & 0xffff, nanos & 0xfff)
}
