//! dnsmasq as the agent's supervised child, one per network: in the foreground, logging to the
//! agent's stderr, restarted when it exits, sent SIGHUP when its hostsfile or addnhosts file
//! changes. Its pid file (under the state directory) is the agent's mark on the process: a
//! restarted agent adopts the dnsmasq a pid file names when that process runs with this
//! network's configuration file, and never signals any other process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard_libvirt::dnsmasq::DnsmasqFiles;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::VirtualNetworkError;
use super::netns::command;
use crate::netlink::NetnsTarget;

/// The dnsmasq binary (Debian's `dnsmasq-base`).
pub const DNSMASQ: &str = "dnsmasq";

/// How long dnsmasq is given to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Pause before restarting a dnsmasq that exited.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often an adopted dnsmasq (not the agent's child) is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

/// Where one network's dnsmasq keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqPaths {
    /// `--conf-file`.
    pub conf: PathBuf,
    /// The DHCP hostsfile.
    pub hostsfile: PathBuf,
    /// The addn-hosts file.
    pub addn_hosts: PathBuf,
    /// The pid file (the agent's mark).
    pub pid_file: PathBuf,
    /// `--dhcp-leasefile`.
    pub lease_file: PathBuf,
}

impl DnsmasqPaths {
    fn conf_argument(&self) -> String {
        format!("--conf-file={}", self.conf.display())
    }
}

/// The files as they are on disk now, if all three are there.
pub fn read_files(paths: &DnsmasqPaths) -> Option<DnsmasqFiles> {
    Some(DnsmasqFiles {
        conf: std::fs::read_to_string(&paths.conf).ok()?,
        hostsfile: std::fs::read_to_string(&paths.hostsfile).ok()?,
        addn_hosts: std::fs::read_to_string(&paths.addn_hosts).ok()?,
    })
}

/// Writes the three files, each through a temporary file and a rename. The conf is 0600 as
/// libvirt writes it (dnsmasq reads it as root, before dropping privileges); the hosts files
/// are re-read on SIGHUP after the drop, so they stay world-readable.
pub fn write_files(paths: &DnsmasqPaths, files: &DnsmasqFiles) -> Result<(), VirtualNetworkError> {
    write_atomic(&paths.conf, &files.conf, 0o600)?;
    write_atomic(&paths.hostsfile, &files.hostsfile, 0o644)?;
    write_atomic(&paths.addn_hosts, &files.addn_hosts, 0o644)
}

fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), VirtualNetworkError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |error: std::io::Error| VirtualNetworkError::Io {
        what: format!("writing {}", path.display()),
        message: error.to_string(),
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).map_err(io)?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// The pid a pid file names, when that process is a dnsmasq running `paths.conf`.
pub fn running_pid(paths: &DnsmasqPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&paths.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    runs_conf(pid, paths).then_some(pid)
}

/// Whether process `pid` is a dnsmasq with this network's configuration file.
fn runs_conf(pid: u32, paths: &DnsmasqPaths) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty command line: it no longer runs anything.
    let wanted = paths.conf_argument();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == wanted.as_bytes())
        && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(true)
}

/// Signals the dnsmasq a pid file names (only if it runs this conf); `false` if none runs.
pub fn signal_marked(paths: &DnsmasqPaths, signal: Signal) -> bool {
    match running_pid(paths) {
        Some(pid) => kill(Pid::from_raw(pid as i32), signal).is_ok(),
        None => false,
    }
}

/// Stops the dnsmasq a pid file names (SIGTERM, then SIGKILL after a grace period) and
/// removes the pid file. Used for networks no supervisor runs for (left from before a
/// restart).
pub async fn stop_marked(paths: &DnsmasqPaths) {
    if let Some(pid) = running_pid(paths) {
        terminate(pid, paths).await;
    }
    let _ = std::fs::remove_file(&paths.pid_file);
}

async fn terminate(pid: u32, paths: &DnsmasqPaths) {
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while runs_conf(pid, paths) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if runs_conf(pid, paths) {
        let _ = kill(target, Signal::SIGKILL);
    }
}

/// A supervised dnsmasq.
#[derive(Debug)]
pub struct Supervised {
    paths: DnsmasqPaths,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Supervises the network's dnsmasq: adopts the one its pid file names, or starts one.
    pub fn start(target: NetnsTarget, paths: DnsmasqPaths, network: String) -> Self {
        let pid = Arc::new(AtomicU32::new(0));
        let restarts = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(supervise(
            target,
            paths.clone(),
            network,
            pid.clone(),
            restarts.clone(),
            stopped,
        ));
        Self {
            paths,
            pid,
            restarts,
            stop: Some(stop),
            task,
        }
    }

    /// The running dnsmasq's pid (0 between runs).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// How often it had to be started again.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Acquire)
    }

    /// Tells dnsmasq to re-read its hostsfile and addnhosts.
    pub fn reload(&self) {
        let pid = self.pid();
        if pid != 0 && runs_conf(pid, &self.paths) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
        }
    }

    /// Stops supervising and stops dnsmasq; removes the pid file.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Dropped without `stop` (the agent ends): dnsmasq keeps serving, for the next agent
        // to adopt.
        self.task.abort();
    }
}

async fn supervise(
    target: NetnsTarget,
    paths: DnsmasqPaths,
    network: String,
    pid_slot: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut first = true;
    loop {
        let adopted = if first { running_pid(&paths) } else { None };
        let mut child = None;
        let pid = match adopted {
            Some(pid) => {
                info!(%network, pid, "dnsmasq adopted");
                pid
            }
            None => match spawn(&target, &paths) {
                Ok(spawned) => {
                    let pid = spawned.id().unwrap_or(0);
                    if let Err(error) = std::fs::write(&paths.pid_file, format!("{pid}\n")) {
                        warn!(%network, %error, "writing dnsmasq's pid file");
                    }
                    if !first {
                        restarts.fetch_add(1, Ordering::AcqRel);
                    }
                    info!(%network, pid, "dnsmasq started");
                    child = Some(spawned);
                    pid
                }
                Err(error) => {
                    warn!(%network, %error, "starting dnsmasq");
                    0
                }
            },
        };
        first = false;
        pid_slot.store(pid, Ordering::Release);
        let exited = async {
            match child.as_mut() {
                Some(child) => child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                None if pid == 0 => String::from("not started"),
                None => {
                    while runs_conf(pid, &paths) {
                        tokio::time::sleep(ADOPTED_POLL).await;
                    }
                    String::from("exited")
                }
            }
        };
        tokio::select! {
            status = exited => {
                pid_slot.store(0, Ordering::Release);
                warn!(%network, pid, %status, "dnsmasq ended; starting it again");
            }
            _ = &mut stopped => {
                if pid != 0 {
                    terminate(pid, &paths).await;
                }
                if let Some(mut child) = child {
                    let _ = child.wait().await;
                }
                pid_slot.store(0, Ordering::Release);
                let _ = std::fs::remove_file(&paths.pid_file);
                info!(%network, pid, "dnsmasq stopped");
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RESTART_DELAY) => {}
            _ = &mut stopped => {
                let _ = std::fs::remove_file(&paths.pid_file);
                return;
            }
        }
    }
}

fn spawn(target: &NetnsTarget, paths: &DnsmasqPaths) -> std::io::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::from(command(target, DNSMASQ));
    command
        .arg("--keep-in-foreground")
        .arg("--log-facility=-")
        .arg(paths.conf_argument())
        .arg(format!("--dhcp-leasefile={}", paths.lease_file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // dnsmasq outlives the agent on purpose (a restarted agent adopts it).
        .kill_on_drop(false);
    command.spawn()
}
