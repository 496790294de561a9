//! `switchyard-controller`: see the library for what it does.

use std::io::IsTerminal;

use clap::Parser;
use switchyard_controller::run::{Args, LogFormat, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Logs go to stderr, as the apiserver's and kubectl's do.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    run(args).await?;
    Ok(())
}
