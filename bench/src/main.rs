//! switchyard-bench: the node agent against the raw rtnetlink floor and the reference CNI
//! `macvlan` plugin, inside private network namespaces, with a private control plane.
//!
//! Run it as root through `scripts/bench.sh` (release builds). Everything it creates lives in
//! network namespaces it creates and removes (also on error or Ctrl-C), the control plane and
//! agents are its children and die with it, and all traffic stays on 127.0.0.1.

// A command-line tool whose output is its table: printing to stdout is its job.
#![allow(clippy::print_stdout)]

mod agent;
mod cni;
mod floor;
mod machine;
mod netlink;
mod report;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use switchyard_tests::netns::Sandbox;

/// Benchmarks switchyard's node agent against the kernel floor and the CNI macvlan plugin.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,4000")]
    sizes: Vec<usize>,
    /// Leave out the CNI peer.
    #[arg(long)]
    skip_cni: bool,
    /// Run the CNI peer for at most this many pods per N (DEL costs ~20 ms each).
    #[arg(long)]
    cni_max: Option<usize>,
    /// Leave out the agent (floor and CNI only).
    #[arg(long)]
    skip_agent: bool,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The agent binary; default: switchyard-node-agent beside this binary.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Port creates in flight against the API.
    #[arg(long, default_value_t = 32)]
    api_concurrency: usize,
    /// The agent's SWITCHYARD_CONCURRENCY (its own default when left out).
    #[arg(long)]
    agent_concurrency: Option<u16>,
    /// The agent's RUST_LOG.
    #[arg(long, default_value = "info")]
    agent_log: String,
    /// Keep the agents' logs (their directory is printed).
    #[arg(long)]
    keep_logs: bool,
}

/// Set on Ctrl-C: every loop checks it and unwinds, so the Drop guards clean up.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Fails once cancelled.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.0.load(Ordering::Relaxed), "interrupted");
        Ok(())
    }

    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "run as root (it creates network namespaces): scripts/bench.sh"
    );
    anyhow::ensure!(!args.sizes.is_empty(), "--sizes needs at least one size");
    let cancel = Cancel::default();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: cleaning up (Ctrl-C again to quit at once)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                // Children die with us (parent-death signal); the next run sweeps namespaces.
                std::process::exit(130);
            }
        }
    });
    if let Ok(removed) = Sandbox::sweep_stale()
        && !removed.is_empty()
    {
        eprintln!("removed {} namespaces left by killed runs", removed.len());
    }

    let machine = machine::Machine::detect();
    let started = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| String::new(), |t| t.to_string());
    let header = report::machine(&machine, &started);
    println!("{header}");

    let bench = if args.skip_agent {
        None
    } else {
        let binary = match &args.agent_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("the bench binary's directory")?
                .join("switchyard-node-agent"),
        };
        eprintln!("starting a private control plane");
        Some(
            agent::Bench::start(agent::AgentOptions {
                binary,
                api_concurrency: args.api_concurrency.max(1),
                agent_concurrency: args.agent_concurrency,
                log: args.agent_log.clone(),
                keep_logs: args.keep_logs,
            })
            .await?,
        )
    };

    let mut tables = Vec::new();
    for &n in &args.sizes {
        cancel.check()?;
        let load_before = machine::load_average();
        eprintln!("N = {n}: raw rtnetlink floor");
        let floor = floor::run(n, &cancel).await.context("the floor")?;
        settle().await;
        let agent = match &bench {
            Some(bench) => {
                eprintln!("N = {n}: the agent");
                let run = bench.run(n, &cancel).await.context("the agent")?;
                settle().await;
                Some(run)
            }
            None => None,
        };
        let cni = if args.skip_cni {
            None
        } else {
            let pods = args.cni_max.map_or(n, |max| n.min(max));
            eprintln!("N = {n}: CNI macvlan, {pods} pods");
            let cancel = cancel.clone();
            let run = tokio::task::spawn_blocking(move || cni::run(pods, &cancel))
                .await?
                .context("the CNI peer")?;
            settle().await;
            Some(run)
        };
        let table = report::size(&report::SizeResult {
            n,
            load: (load_before, machine::load_average()),
            floor,
            agent,
            cni,
        });
        println!("{table}");
        tables.push(table);
    }
    if let Some(path) = &args.output {
        let mut text = header;
        text.push('\n');
        for table in &tables {
            text.push_str(table);
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// A pause between phases: namespace teardown and RCU callbacks of the last phase finish in
/// the background and would otherwise be charged to the next.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
