//! `kubectl-switchyard`: a kubectl plugin (`kubectl switchyard ...`) that is also usable on its
//! own. It moves network definitions between libvirt XML and switchyard `Network` objects,
//! checks them, and explains what a port would get.
//!
//! Exit codes: 0 success; 1 the definition or port is invalid (the reasons are printed);
//! 2 usage error or unreadable input; 3 the cluster could not be reached or lacks the object.

mod cluster;
mod commands;
mod failure;
mod input;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Command;

/// Manage switchyard networks as libvirt defines them.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-switchyard",
    bin_name = "kubectl switchyard",
    version,
    after_help = "Exit codes: 0 success, 1 invalid definition or port, 2 usage error or unreadable input, 3 cluster unreachable or object not found.\nFILE may be - for standard input. The cluster is found as kubectl finds it (KUBECONFIG, ~/.kube/config, in-cluster)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.code())
        }
    }
}
