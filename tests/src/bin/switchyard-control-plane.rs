//! Runs the local control plane (etcd + kube-apiserver v1.20 on 127.0.0.1) until SIGINT or
//! SIGTERM, with switchyard's CRDs applied. Used by scripts/test.sh and the demo.
//!
//! Usage: switchyard-control-plane [--env-file PATH]
//! Once ready it writes `KUBECONFIG=...` (shell syntax) to PATH, or to stdout.

use anyhow::{Context, bail};
use switchyard_tests::cluster::apply_crds;
use switchyard_tests::control_plane::ControlPlane;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut env_file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => env_file = Some(args.next().context("--env-file needs a path")?),
            "-h" | "--help" => {
                eprintln!("usage: switchyard-control-plane [--env-file PATH]");
                return Ok(());
            }
            other => bail!(
                "unknown argument {other:?}; usage: switchyard-control-plane [--env-file PATH]"
            ),
        }
    }
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let started = std::time::Instant::now();
    let cp = tokio::task::spawn_blocking(ControlPlane::start).await??;
    apply_crds(&cp.kubeconfig).map_err(anyhow::Error::msg)?;
    let env = format!(
        "KUBECONFIG={}\nSWITCHYARD_KUBECONFIG={}\nSWITCHYARD_APISERVER={}\n",
        cp.kubeconfig.display(),
        cp.kubeconfig.display(),
        cp.server
    );
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
    drop(cp);
    Ok(())
}
