//! The peer: Debian's reference CNI `macvlan` plugin, run the way a container runtime runs it.
//!
//! One plugin process per operation, one at a time (a runtime's single worker): `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` in the environment and the network
//! configuration on stdin. The plugin looks `master` up in its own network namespace, so it is
//! spawned from a thread that entered the sandbox's "host" namespace (children inherit the
//! forking thread's namespace) and no `ip netns exec` is added to its cost. The per-pod
//! namespaces exist before the clock starts and are removed afterwards.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use nix::sched::{CloneFlags, setns};
use switchyard_tests::netns::Sandbox;

use crate::Cancel;
use crate::stats::Phase;

/// Where Debian's containernetworking-plugins puts the plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";

/// ADD and DEL of the plugin for N pods.
#[derive(Debug, Clone, Default)]
pub struct Cni {
    /// Pods run (may be capped below N).
    pub pods: usize,
    /// ADD, one pod at a time.
    pub add: Phase,
    /// DEL, one pod at a time.
    pub del: Phase,
}

/// Pod namespaces `swyt-cni<i>-<pid>-<i>` (the test sandboxes' pattern, so a killed run's are
/// swept), removed on drop.
struct PodNamespaces {
    names: Vec<String>,
}

impl PodNamespaces {
    fn create(count: usize) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let pods = Self {
            names: (0..count)
                .map(|i| format!("swyt-cni{i}-{pid}-{i}"))
                .collect(),
        };
        ip_batch(pods.names.iter().map(|n| format!("netns add {n}")))
            .context("creating the pods' namespaces")?;
        Ok(pods)
    }

    fn path(&self, i: usize) -> PathBuf {
        Path::new("/run/netns").join(&self.names[i])
    }
}

impl Drop for PodNamespaces {
    fn drop(&mut self) {
        // `-force` goes on past a name already gone.
        if let Err(error) = ip_batch(self.names.iter().map(|n| format!("netns del {n}"))) {
            eprintln!("removing the CNI pods' namespaces: {error:#}");
        }
    }
}

fn ip_batch(lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    {
        let mut stdin = child.stdin.take().context("ip's stdin")?;
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs ADD then DEL for `pods` pods on the uplink of a fresh sandbox.
pub fn run(pods: usize, cancel: &Cancel) -> anyhow::Result<Cni> {
    let plugin = Path::new(CNI_PATH).join("macvlan");
    anyhow::ensure!(
        plugin.is_file(),
        "{} not found: install containernetworking-plugins (scripts/install-deps.sh)",
        plugin.display()
    );
    let host = Sandbox::new("cnihost").context("creating the CNI host namespace")?;
    host.add_nic("up0").context("adding the CNI uplink")?;
    let namespaces = PodNamespaces::create(pods)?;
    let host_ns = File::open(host.path()).context("opening the CNI host namespace")?;
    let cancel = cancel.clone();
    let (add, del) = std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<(Phase, Phase)> {
                // Only this thread (and the plugins it forks) enters the host namespace.
                setns(&host_ns, CloneFlags::CLONE_NEWNET).context("setns into the CNI host")?;
                let add = each(pods, &cancel, |i| {
                    invoke(&plugin, "ADD", i, &namespaces.path(i))
                })?;
                let del = each(pods, &cancel, |i| {
                    invoke(&plugin, "DEL", i, &namespaces.path(i))
                })?;
                Ok((add, del))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the CNI thread panicked"))?
    })?;
    Ok(Cni { pods, add, del })
}

fn each(
    pods: usize,
    cancel: &Cancel,
    mut op: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Phase> {
    let mut latencies = Vec::with_capacity(pods);
    let started = Instant::now();
    for i in 0..pods {
        cancel.check()?;
        let t = Instant::now();
        op(i)?;
        latencies.push(t.elapsed());
    }
    Ok(Phase {
        ops: pods,
        total: started.elapsed(),
        latencies,
    })
}

/// One plugin invocation, as a runtime makes it.
fn invoke(plugin: &Path, command: &str, pod: usize, netns: &Path) -> anyhow::Result<()> {
    let netconf = r#"{"cniVersion":"1.0.0","name":"bench","type":"macvlan","master":"up0","mode":"bridge","ipam":{}}"#;
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("bench{pod:05}"))
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_PATH)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", plugin.display()))?;
    child
        .stdin
        .take()
        .context("the plugin's stdin")?
        .write_all(netconf.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "CNI {command} of pod {pod}: {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
