//! `render FILE|NAME --nftables`: what a node would run for a network — the answer to "what
//! will this do to my host?".

use clap::ArgGroup;
use switchyard_libvirt::firewall::nftables::{network_commands, setup_commands};
use switchyard_libvirt::firewall::{
    FirewallError, SWITCHYARD_TABLE, bridge_name, check_table_name, has_firewall,
};
use switchyard_libvirt::validate_network;

use super::problem_lines;
use crate::failure::Failure;
use crate::input;
use crate::output;

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("what").required(true)))]
pub struct Args {
    /// libvirt network XML or Network YAML, - for standard input, or a Network's name in the
    /// cluster.
    #[arg(value_name = "FILE|NAME")]
    source: String,
    /// The firewall commands, one per line in the order applied: nft commands in nft's own
    /// syntax (as `nft -f` reads them), the DHCP checksum fix as `tc ...`. Open networks and
    /// modes without a managed bridge get none.
    #[arg(long, group = "what")]
    nftables: bool,
    /// The nftables table the rules go into; `libvirt_network` prints libvirt's own commands.
    #[arg(long, value_name = "NAME", default_value = SWITCHYARD_TABLE)]
    table: String,
    /// With --nftables: first the table and chain set-up a node runs before its first network.
    #[arg(long, requires = "nftables")]
    with_setup: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    check_table_name(&args.table).map_err(|err| Failure::Input(err.into()))?;
    let (name, network) = input::network(&args.source)?;
    if let Err(problems) = validate_network(&network.spec) {
        return Err(Failure::Invalid(format!(
            "{name}: not rendered, a node refuses this network:\n{}",
            problem_lines(&problems, false)
        )));
    }
    // Open networks and unmanaged modes get no rules, and so never cause the set-up either.
    if !has_firewall(&network.spec) {
        return Ok(());
    }
    let invalid = |err: FirewallError| Failure::Invalid(format!("{name}: {err}"));
    let mut commands = Vec::new();
    if args.with_setup {
        commands.extend(setup_commands(&args.table).map_err(invalid)?);
    }
    let bridge = bridge_name(&network.spec).map_err(invalid)?;
    commands.extend(network_commands(&network.spec, bridge, &args.table).map_err(invalid)?);
    let text: String = commands.iter().map(|c| format!("{c}\n")).collect();
    output::emit(&text)
}
