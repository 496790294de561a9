//! Runs the local control plane (etcd + kube-apiserver v1.20 on 127.0.0.1) until SIGINT or
//! SIGTERM, with switchyard's CRDs applied. Used by scripts/test.sh and the demo.
//!
//! Usage: switchyard-control-plane [--env-file PATH] [--real-node]
//! Once ready it writes `KUBECONFIG=...` (shell syntax) to PATH, or to stdout. With
//! `--real-node` it also starts a real node (kubelet + containerd, see
//! `switchyard_tests::real_node`) with the scheduler and controller-manager, and writes
//! `SWITCHYARD_REAL_NODE` (the Node's name) and `SWITCHYARD_REAL_NODE_NETNS` (its namespace).

use anyhow::{Context, bail};
use switchyard_tests::cluster::apply_crds;
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::real_node::{RealCluster, RealNodeOptions};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "switchyard-control-plane [--env-file PATH] [--real-node]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut env_file = None;
    let mut real_node = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => env_file = Some(args.next().context("--env-file needs a path")?),
            "--real-node" => real_node = true,
            "-h" | "--help" => {
                eprintln!("usage: {USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; usage: {USAGE}"),
        }
    }
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let started = std::time::Instant::now();
    let (cp, node) = if real_node {
        let cluster =
            tokio::task::spawn_blocking(|| RealCluster::start(&RealNodeOptions::default()))
                .await??;
        (cluster.control_plane, Some(cluster.node))
    } else {
        (
            tokio::task::spawn_blocking(ControlPlane::start).await??,
            None,
        )
    };
    apply_crds(&cp.kubeconfig).map_err(anyhow::Error::msg)?;
    let mut env = format!(
        "KUBECONFIG={}\nSWITCHYARD_KUBECONFIG={}\nSWITCHYARD_APISERVER={}\n",
        cp.kubeconfig.display(),
        cp.kubeconfig.display(),
        cp.server
    );
    if let Some(node) = &node {
        env.push_str(&format!(
            "SWITCHYARD_REAL_NODE={}\nSWITCHYARD_REAL_NODE_NETNS={}\n",
            node.name(),
            node.sandbox.name()
        ));
    }
    match env_file {
        Some(path) => std::fs::write(&path, env).with_context(|| format!("writing {path}"))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(env.as_bytes())?;
        }
    }
    eprintln!(
        "control plane ready in {:.1}s: {} (logs in {})",
        started.elapsed().as_secs_f64(),
        cp.server,
        cp.dir().display()
    );
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    // The node first: its kubelet should not outlive the apiserver it reports to.
    drop(node);
    drop(cp);
    Ok(())
}
