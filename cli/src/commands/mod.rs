//! One module per subcommand; each has its arguments and a `run`.

mod check_migration;
mod explain_port;
mod export;
mod import;
mod render;
mod validate;

use clap::Subcommand;

use crate::failure::Failure;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert libvirt network XML into a Network, as YAML for `kubectl apply -f -`.
    Import(import::Args),
    /// Print a Network as libvirt network XML, as `virsh net-dumpxml --inactive` would.
    Export(export::Args),
    /// Check network definitions (libvirt XML or Network YAML) as `virsh net-define` would.
    Validate(validate::Args),
    /// Show the settings a port would get on a network, or exactly why it cannot attach.
    ExplainPort(explain_port::Args),
    /// Check whether a guest's interfaces fit on candidate nodes now, with the reasons.
    CheckMigration(check_migration::Args),
    /// Print what a node would run or write for a network: its nftables rules (--nftables),
    /// dnsmasq configuration (--dnsmasq) or DHCP hostsfile (--hostsfile).
    Render(render::Args),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> Result<(), Failure> {
        match self {
            Command::Import(args) => import::run(args),
            Command::Export(args) => export::run(args),
            Command::Validate(args) => validate::run(args),
            Command::ExplainPort(args) => explain_port::run(args),
            Command::CheckMigration(args) => check_migration::run(args),
            Command::Render(args) => render::run(args),
        }
    }
}

/// Problems as indented lines: the XML element for XML input, the field for YAML.
fn problem_lines(problems: &[switchyard_libvirt::FieldError], xml: bool) -> String {
    problems
        .iter()
        .map(|p| {
            if xml {
                format!("  {} ({}): {}", p.element, p.field, p.message)
            } else {
                format!("  {}: {}", p.field, p.message)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
