//! libvirt's own virtual networks (isolated, nat, route, open) on this node, as libvirt's
//! `networkStartNetworkVirtual` makes them, in its order: the bridge (MAC, MTU, STP), its IPv6
//! sysctls, the firewall (one nftables table of the agent's own, loaded atomically), the
//! addresses, up, the routes, IP forwarding, then dnsmasq. Teardown runs in reverse.
//!
//! - [`plan`]: what a network is on the node (pure, unit-tested);
//! - [`bridge`]: the bridge over rtnetlink;
//! - [`firewall`]: `nft -f -` and the best-effort tc checksum fix;
//! - [`dnsmasq`]: the supervised dnsmasq processes.
//!
//! What the agent creates carries its mark, and only what carries it is ever removed: bridges
//! by their alias ([`plan::BRIDGE_ALIAS_PREFIX`]), rules by living in the agent's own table,
//! dnsmasq processes by the pid files in the agent's state directory. A restarted agent adopts
//! them as they are: the bridge is not re-created (its ports stay), the table is replaced by
//! the same contents in one transaction (no duplicate rule), the running dnsmasq keeps
//! serving with its lease file.
//!
//! Every node's instance of a network is its own L2 segment with the network's subnet and
//! gateway, as libvirt's on each host: guests on two nodes never share a broadcast domain, and
//! each node's dnsmasq hands out the same range on its own.

pub mod bridge;
pub mod dnsmasq;
pub mod firewall;
mod netns;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use switchyard_crds::Network;
use tracing::{info, warn};

use crate::netlink::NetnsTarget;
use bridge::Bridges;
use dnsmasq::{DnsmasqPaths, Supervised};
use plan::{DnsmasqChange, Layout, LeaseEntry, PlanError, VirtualNetworkPlan};

/// Where the agent keeps dnsmasq files, pid files and lease files by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/switchyard/networks";

/// How the node's virtual networks are run.
#[derive(Debug, Clone)]
pub struct VirtualNetworkConfig {
    /// The node's network namespace.
    pub netns: NetnsTarget,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The nftables table (both families).
    pub table: String,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirtualNetworkError {
    /// The spec cannot be realised.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The kernel refused.
    #[error("{what}: {message}")]
    Kernel {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        message: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {message}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
    /// Something of that name exists and is not the agent's.
    #[error("{0}")]
    Conflict(String),
    /// nft refused the table.
    #[error("nft refused the table: {0}")]
    Firewall(String),
}

/// What the node reports of one virtual network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualNetworkState {
    /// The bridge.
    pub bridge: String,
    /// The bridge's MAC.
    pub mac: String,
    /// Whether every step up to dnsmasq's start succeeded.
    pub realised: bool,
    /// The failure, when not realised.
    pub error: Option<String>,
    /// dnsmasq: `None` when the network runs none.
    pub dnsmasq: Option<DnsmasqState>,
    /// The leases in dnsmasq's lease file.
    pub leases: Vec<LeaseEntry>,
    /// Why libvirt's DHCP checksum fix is missing, if it is (a condition, not a failure).
    pub checksum_fix_missing: Option<String>,
}

/// A network's dnsmasq as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsmasqState {
    /// Its pid; 0 while it is being started again.
    pub pid: u32,
    /// How often it had to be started again by this agent.
    pub restarts: u32,
}

#[derive(Debug, Default)]
struct Applied {
    /// The plans applied, by Network name.
    plans: BTreeMap<String, VirtualNetworkPlan>,
    /// The table script last loaded.
    script: Option<String>,
    supervisors: BTreeMap<String, Supervised>,
    /// Bridges whose checksum fix was tried, and its outcome.
    checksum: BTreeMap<String, Option<String>>,
    forwarding: plan::Forwarding,
}

/// The node's virtual networks.
#[derive(Debug)]
pub struct VirtualNetworks {
    config: VirtualNetworkConfig,
    layout: Layout,
    bridges: Bridges,
    applied: tokio::sync::Mutex<Applied>,
    states: Mutex<BTreeMap<String, VirtualNetworkState>>,
}

impl VirtualNetworks {
    /// Opens the namespace's netlink socket and the state directory.
    pub async fn open(config: VirtualNetworkConfig) -> Result<Self, VirtualNetworkError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |error: std::io::Error| VirtualNetworkError::Io {
            what: format!("preparing {}", config.state_dir.display()),
            message: error.to_string(),
        };
        std::fs::create_dir_all(&config.state_dir).map_err(io)?;
        // dnsmasq re-reads its hosts files after dropping root: it must be able to reach them.
        std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io)?;
        let bridges = Bridges::open(&config.netns).await?;
        let layout = Layout {
            state_dir: config.state_dir.display().to_string(),
            table: config.table.clone(),
        };
        Ok(Self {
            config,
            layout,
            bridges,
            applied: tokio::sync::Mutex::default(),
            states: Mutex::default(),
        })
    }

    /// What the node reports of each virtual network it serves, by Network name.
    pub fn states(&self) -> BTreeMap<String, VirtualNetworkState> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for state in states.values_mut() {
            state.leases.clear();
        }
        let applied = self.applied.try_lock().ok();
        for (name, state) in &mut states {
            if let Some(applied) = &applied
                && let Some(supervisor) = applied.supervisors.get(name)
            {
                state.dnsmasq = Some(DnsmasqState {
                    pid: supervisor.pid(),
                    restarts: supervisor.restarts(),
                });
            }
            if state.dnsmasq.is_some()
                && let Ok(text) = std::fs::read_to_string(self.lease_file_of(name, &applied))
            {
                state.leases = plan::parse_leases(&text);
            }
        }
        states
    }

    fn lease_file_of(
        &self,
        network: &str,
        applied: &Option<tokio::sync::MutexGuard<'_, Applied>>,
    ) -> PathBuf {
        let libvirt_name = applied
            .as_ref()
            .and_then(|a| a.plans.get(network))
            .map_or(network, |p| p.libvirt_name.as_str());
        PathBuf::from(self.layout.lease_file(libvirt_name))
    }

    fn paths(&self, libvirt_name: &str) -> DnsmasqPaths {
        let paths = self.layout.dnsmasq_paths(libvirt_name);
        DnsmasqPaths {
            conf: PathBuf::from(paths.conf_file(libvirt_name)),
            hostsfile: PathBuf::from(paths.hostsfile(libvirt_name)),
            addn_hosts: PathBuf::from(paths.addn_hosts(libvirt_name)),
            pid_file: PathBuf::from(self.layout.pid_file(libvirt_name)),
            lease_file: PathBuf::from(self.layout.lease_file(libvirt_name)),
        }
    }

    /// Makes the node's virtual networks exactly `wanted` (the isolated, nat, route and open
    /// networks selecting this node): realises new ones, adopts what exists, tears down what no
    /// network asks for any more. `wanted` holds no two networks that clash (one bridge,
    /// overlapping subnets): the agent leaves out the newer of two by
    /// `switchyard_placement::coexistence`, the same rule the webhook and the CLI apply.
    pub async fn reconcile(&self, wanted: &[Arc<Network>]) {
        let mut applied = self.applied.lock().await;
        let mut states = BTreeMap::new();
        let mut plans: BTreeMap<String, VirtualNetworkPlan> = BTreeMap::new();
        for network in wanted {
            let name = network.metadata.name.clone().unwrap_or_default();
            match plan::plan(network, &self.layout) {
                Ok(plan) => {
                    plans.insert(name, plan);
                }
                Err(error) => {
                    states.insert(
                        name,
                        VirtualNetworkState {
                            error: Some(error.to_string()),
                            ..Default::default()
                        },
                    );
                }
            }
        }

        // Teardown first, in reverse: dnsmasq of networks that go (or whose plan no longer
        // runs one), including those a previous agent left behind.
        let gone: Vec<String> = applied
            .supervisors
            .keys()
            .filter(|n| plans.get(*n).is_none_or(|p| p.dnsmasq.is_none()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(supervisor) = applied.supervisors.remove(&name) {
                supervisor.stop().await;
            }
        }
        let kept_names: BTreeSet<String> = plans
            .values()
            .filter(|p| p.dnsmasq.is_some())
            .map(|p| p.libvirt_name.clone())
            .collect();
        self.stop_unclaimed_dnsmasq(&kept_names).await;

        // The bridges, with their IPv6 sysctls.
        let mut ready: BTreeMap<String, (u32, bool)> = BTreeMap::new();
        for plan in plans.values() {
            match self.bridge_step(plan).await {
                Ok(made) => {
                    ready.insert(plan.network.clone(), made);
                }
                Err(error) => {
                    warn!(network = %plan.network, %error, "bridge");
                    states.insert(plan.network.clone(), failed(plan, error.to_string()));
                }
            }
        }

        // The firewall: one table for all the node's networks, in one transaction.
        let firewalled: Vec<&VirtualNetworkPlan> = plans
            .values()
            .filter(|p| ready.contains_key(&p.network))
            .collect();
        let firewall_error = match plan::firewall_script(&self.config.table, &firewalled) {
            Ok(script) if applied.script.as_ref() == Some(&script) => None,
            Ok(script) => match firewall::load(&self.config.netns, &script).await {
                Ok(()) => {
                    applied.script = Some(script);
                    None
                }
                Err(error) => Some(error.to_string()),
            },
            Err(error) => Some(error.to_string()),
        };
        if let Some(error) = &firewall_error {
            warn!(%error, "firewall");
        }
        for plan in &firewalled {
            if !applied.checksum.contains_key(&plan.bridge) && !plan.firewall.is_empty() {
                let outcome = firewall::checksum_fix(&self.config.netns, &plan.firewall)
                    .await
                    .err();
                if let Some(why) = &outcome {
                    info!(bridge = %plan.bridge, %why, "DHCP checksum fix unavailable (best effort)");
                }
                applied.checksum.insert(plan.bridge.clone(), outcome);
            }
        }

        // Bridges no network asks for (only the agent's own, by alias).
        match self.bridges.owned_bridges().await {
            Ok(owned) => {
                for bridge in owned {
                    let still = plans
                        .get(&bridge.network)
                        .is_some_and(|p| p.bridge == bridge.name);
                    if !still {
                        if let Err(error) = self
                            .bridges
                            .delete_owned(&bridge.name, &bridge.network)
                            .await
                        {
                            warn!(bridge = %bridge.name, %error, "deleting a bridge no network asks for");
                        }
                        applied.checksum.remove(&bridge.name);
                    }
                }
            }
            Err(error) => warn!(%error, "listing the agent's bridges"),
        }
        self.remove_files_of_gone(&applied, &plans);

        // Addresses, up, routes; forwarding; dnsmasq.
        let mut forwarding = plan::Forwarding::default();
        for plan in plans.values() {
            let Some(&(index, created)) = ready.get(&plan.network) else {
                continue;
            };
            if let Some(error) = &firewall_error
                && !plan.firewall.is_empty()
            {
                states.insert(
                    plan.network.clone(),
                    failed(plan, format!("firewall: {error}")),
                );
                continue;
            }
            // An unchanged plan on a bridge that was there is in place already: addresses are
            // not re-sent every round (dnsmasq watches them).
            let in_place = !created && applied.plans.get(&plan.network) == Some(plan);
            if !in_place && let Err(error) = self.bridges.configure(index, plan).await {
                states.insert(plan.network.clone(), failed(plan, error.to_string()));
                continue;
            }
            forwarding.ipv4 |= plan.forwarding.ipv4;
            forwarding.ipv6 |= plan.forwarding.ipv6;
            let mut state = VirtualNetworkState {
                bridge: plan.bridge.clone(),
                mac: switchyard_libvirt::values::format_mac(&plan.mac),
                realised: true,
                checksum_fix_missing: applied.checksum.get(&plan.bridge).cloned().flatten(),
                ..Default::default()
            };
            states.insert(plan.network.clone(), state.clone());
            if let Err(error) = self.forwarding_step(&mut applied, forwarding).await {
                state.realised = false;
                state.error = Some(error.to_string());
                states.insert(plan.network.clone(), state);
                continue;
            }
            if let Err(error) = self.dnsmasq_step(&mut applied, plan).await {
                state.realised = false;
                state.error = Some(error.to_string());
            }
            if plan.dnsmasq.is_some() {
                state.dnsmasq = Some(DnsmasqState::default());
            }
            states.insert(plan.network.clone(), state);
        }
        // Only what is fully in place counts as applied: a failed step is tried again.
        applied.plans = plans
            .into_iter()
            .filter(|(name, _)| states.get(name).is_some_and(|s| s.realised))
            .collect();
        *self.states.lock().unwrap_or_else(|e| e.into_inner()) = states;
    }

    async fn bridge_step(
        &self,
        plan: &VirtualNetworkPlan,
    ) -> Result<(u32, bool), VirtualNetworkError> {
        let (index, created) = self.bridges.ensure_bridge(plan).await?;
        if created {
            let conf = Path::new("/proc/sys/net/ipv6/conf").join(&plan.bridge);
            let disable = if plan.ipv6 { "0" } else { "1" };
            netns::write_sysctls(
                &self.config.netns,
                vec![(conf.join("disable_ipv6"), disable)],
                true,
            )
            .await
            .map_err(|error| VirtualNetworkError::Io {
                what: "IPv6 sysctls".into(),
                message: error.to_string(),
            })?;
            netns::write_sysctls(
                &self.config.netns,
                vec![(conf.join("accept_ra"), "0"), (conf.join("autoconf"), "0")],
                plan.ipv6,
            )
            .await
            .or_else(|error| {
                // With IPv6 disabled on the bridge these files may be gone; nothing to do.
                if plan.ipv6 { Err(error) } else { Ok(()) }
            })
            .map_err(|error| VirtualNetworkError::Io {
                what: "IPv6 sysctls".into(),
                message: error.to_string(),
            })?;
        }
        Ok((index, created))
    }

    async fn forwarding_step(
        &self,
        applied: &mut Applied,
        wanted: plan::Forwarding,
    ) -> Result<(), VirtualNetworkError> {
        let mut writes = Vec::new();
        if wanted.ipv4 && !applied.forwarding.ipv4 {
            writes.push((PathBuf::from("/proc/sys/net/ipv4/ip_forward"), "1"));
        }
        if wanted.ipv6 && !applied.forwarding.ipv6 {
            writes.push((PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"), "1"));
        }
        if writes.is_empty() {
            return Ok(());
        }
        netns::write_sysctls(&self.config.netns, writes, false)
            .await
            .map_err(|error| VirtualNetworkError::Io {
                what: "IP forwarding".into(),
                message: error.to_string(),
            })?;
        applied.forwarding.ipv4 |= wanted.ipv4;
        applied.forwarding.ipv6 |= wanted.ipv6;
        Ok(())
    }

    async fn dnsmasq_step(
        &self,
        applied: &mut Applied,
        plan: &VirtualNetworkPlan,
    ) -> Result<(), VirtualNetworkError> {
        let Some(files) = &plan.dnsmasq else {
            return Ok(());
        };
        let paths = self.paths(&plan.libvirt_name);
        let change = plan::dnsmasq_change(dnsmasq::read_files(&paths).as_ref(), files);
        if change != DnsmasqChange::None {
            dnsmasq::write_files(&paths, files)?;
        }
        match applied.supervisors.get(&plan.network) {
            Some(supervisor) if change == DnsmasqChange::Reload => supervisor.reload(),
            Some(_) if change == DnsmasqChange::Restart => {
                // A new configuration: libvirt's networkRestartDhcpDaemon, stop and start.
                if let Some(old) = applied.supervisors.remove(&plan.network) {
                    old.stop().await;
                }
                let supervisor =
                    Supervised::start(self.config.netns.clone(), paths, plan.network.clone());
                applied.supervisors.insert(plan.network.clone(), supervisor);
            }
            Some(_) => {}
            None => {
                // No supervisor yet (a start, or an agent restart): a dnsmasq left running is
                // adopted if it read these very files, told to re-read its hosts files if
                // only those changed, and replaced if its configuration did.
                match change {
                    DnsmasqChange::Restart => dnsmasq::stop_marked(&paths).await,
                    DnsmasqChange::Reload => {
                        dnsmasq::signal_marked(&paths, nix::sys::signal::Signal::SIGHUP);
                    }
                    DnsmasqChange::None => {}
                }
                let supervisor =
                    Supervised::start(self.config.netns.clone(), paths, plan.network.clone());
                applied.supervisors.insert(plan.network.clone(), supervisor);
            }
        }
        Ok(())
    }

    /// Stops the dnsmasq processes the agent's pid files name whose network is not kept
    /// (a network deleted while no agent ran).
    async fn stop_unclaimed_dnsmasq(&self, kept: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.config.state_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".pid")) else {
                continue;
            };
            if kept.contains(name) {
                continue;
            }
            info!(network = name, "stopping a dnsmasq no network asks for");
            dnsmasq::stop_marked(&self.paths(name)).await;
        }
    }

    /// Removes the files of networks that are gone (libvirt removes them when a network is
    /// undefined).
    fn remove_files_of_gone(
        &self,
        applied: &Applied,
        plans: &BTreeMap<String, VirtualNetworkPlan>,
    ) {
        for (name, old) in &applied.plans {
            let stays = plans
                .get(name)
                .is_some_and(|p| p.libvirt_name == old.libvirt_name && p.dnsmasq.is_some());
            if old.dnsmasq.is_some() && !stays {
                let paths = self.paths(&old.libvirt_name);
                for file in [
                    &paths.conf,
                    &paths.hostsfile,
                    &paths.addn_hosts,
                    &paths.lease_file,
                    &paths.pid_file,
                ] {
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

fn failed(plan: &VirtualNetworkPlan, error: String) -> VirtualNetworkState {
    VirtualNetworkState {
        bridge: plan.bridge.clone(),
        mac: switchyard_libvirt::values::format_mac(&plan.mac),
        error: Some(error),
        ..Default::default()
    }
}

/// The node's report of a virtual network: the bridge entry says whether ports can attach; a
/// network whose firewall, addresses or dnsmasq failed is not ready, with the failure as its
/// message.
pub fn report_into(entry: &mut switchyard_crds::NodeNetwork, state: &VirtualNetworkState) {
    use switchyard_crds::{DhcpLeaseStatus, DnsmasqStatus, VirtualNetworkStatus};
    entry.virtual_network = Some(VirtualNetworkStatus {
        mac: state.mac.clone(),
        realised: state.realised,
        error: state.error.clone(),
        dnsmasq: state.dnsmasq.as_ref().map(|d| DnsmasqStatus {
            running: d.pid != 0,
            pid: (d.pid != 0).then_some(d.pid),
            restarts: d.restarts,
        }),
        leases: state
            .leases
            .iter()
            .map(|lease| DhcpLeaseStatus {
                ip_address: lease.ip.clone(),
                mac_address: lease.mac.clone(),
                hostname: lease.hostname.clone(),
                client_id: lease.client_id.clone(),
                expiry_time: lease.expiry,
            })
            .collect(),
        checksum_fix_missing: state.checksum_fix_missing.clone(),
    });
    if !state.realised && entry.ready {
        entry.ready = false;
        entry.reason = Some("NotRealised".into());
        entry.message = state.error.clone();
        entry.free = 0;
    }
}

impl VirtualNetworks {
    /// Reconciles every `interval`, with the networks `wanted` returns each time, until the
    /// task is aborted. dnsmasq processes outlive the loop (a restarted agent adopts them).
    pub async fn run<F>(self: Arc<Self>, wanted: F, interval: std::time::Duration)
    where
        F: Fn() -> Vec<Arc<Network>> + Send + 'static,
    {
        loop {
            tokio::time::sleep(interval).await;
            self.reconcile(&wanted()).await;
        }
    }
}
