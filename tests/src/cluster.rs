//! The shared cluster and per-test environments.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::control_plane::{ControlPlane, unique_suffix};

/// Label put on cluster-scoped test objects so they are removed with the test's namespace.
pub const TEST_LABEL: &str = "switchyard.dev/test";

/// The repository root (for deploy/, scripts/ and the corpus beside it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The control plane every test of this run talks to.
#[derive(Debug)]
pub struct Cluster {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Kept alive for the whole process when this process started it.
    _owned: Option<ControlPlane>,
}

/// The shared cluster, started (and given the CRDs) on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = match std::env::var_os("SWITCHYARD_KUBECONFIG") {
            Some(path) => Cluster {
                kubeconfig: PathBuf::from(path),
                _owned: None,
            },
            None => {
                let cp = ControlPlane::start()
                    .unwrap_or_else(|e| panic!("starting the local control plane: {e}"));
                remove_at_exit(cp.dir());
                Cluster {
                    kubeconfig: cp.kubeconfig.clone(),
                    _owned: Some(cp),
                }
            }
        };
        apply_crds(&cluster.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
}

/// Applies deploy/crds/ and the other projects' CRDs switchyard works with (tests/assets/crds/:
/// Multus' NetworkAttachmentDefinition) and waits until every CRD is Established.
pub fn apply_crds(kubeconfig: &Path) -> Result<(), String> {
    let dirs = [
        repo_root().join("deploy/crds"),
        repo_root().join("tests/assets/crds"),
    ];
    let files: Vec<String> = dirs
        .iter()
        .flat_map(|dir| ["-f".to_string(), dir.display().to_string()])
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let apply = [&["apply", "--server-side", "--force-conflicts"][..], &files].concat();
    let out = kubectl_at(kubeconfig, &apply, None);
    if !out.status.success() {
        return Err(format!(
            "applying the CRDs: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let wait = [
        &["wait", "--for=condition=Established", "--timeout=60s"][..],
        &files,
    ]
    .concat();
    let out = kubectl_at(kubeconfig, &wait, None);
    if !out.status.success() {
        return Err(format!(
            "waiting for the CRDs: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Runs kubectl against a kubeconfig, with optional standard input.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed (scripts/install-deps.sh)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("writing kubectl's stdin");
    }
    child.wait_with_output().expect("waiting for kubectl")
}

/// A kube client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a valid kubeconfig");
    Client::try_from(config).expect("building a kube client")
}

/// One test's corner of the cluster: its own namespace, unique names for cluster-scoped
/// objects, and cleanup of both when dropped (also when the test fails).
pub struct TestEnv {
    /// A client with admin rights.
    pub client: Client,
    /// The test's namespace.
    pub namespace: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Creates the namespace `<test>-<unique>` (`test` is shortened to fit).
    pub async fn new(test: &str) -> Self {
        Self::on(&cluster().kubeconfig, test).await
    }

    /// Like [`TestEnv::new`], on another control plane than the shared one (a test's private
    /// [`ControlPlane`], given the CRDs with [`apply_crds`]).
    pub async fn on(kubeconfig: &Path, test: &str) -> Self {
        let mut base: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        base = base.trim_matches('-').to_string();
        let namespace = format!("{base}-{}", unique_suffix());
        let env = TestEnv {
            client: client_for(kubeconfig).await,
            namespace,
            kubeconfig: kubeconfig.to_path_buf(),
        };
        let out = env.kubectl(&["create", "namespace", &env.namespace], None);
        assert!(
            out.status.success(),
            "creating namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    /// A cluster-unique name for a cluster-scoped object of this test.
    pub fn unique(&self, name: &str) -> String {
        format!(
            "{name}-{}",
            self.namespace.rsplit('-').next().unwrap_or("x")
        )
    }

    /// The labels to put on cluster-scoped objects so they are cleaned up with the test.
    pub fn test_label(&self) -> (String, String) {
        (TEST_LABEL.to_string(), self.namespace.clone())
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_at(&self.kubeconfig, args, stdin)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let selector = format!("{TEST_LABEL}={}", self.namespace);
        let _ = self.kubectl(
            &[
                "delete",
                "networks,networknodes,nodes",
                "-l",
                &selector,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
        let _ = self.kubectl(
            &[
                "delete",
                "namespace",
                &self.namespace,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Removes the control plane's directory when the process exits (statics are never dropped).
fn remove_at_exit(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if DIR.set(dir.to_path_buf()).is_err() {
        return;
    }
    extern "C" fn cleanup() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    register_exit_handler(cleanup);
}

#[allow(unsafe_code)]
fn register_exit_handler(handler: extern "C" fn()) {
    // SAFETY: atexit(3) only stores the function pointer; the handler is a plain function
    // that touches nothing but a static initialised before registration.
    unsafe {
        libc::atexit(handler);
    }
}
