//! `render FILE|NAME --nftables|--dnsmasq|--hostsfile`: what a node would run or write for a
//! network — the answer to "what will this do to my host?".

use clap::ArgGroup;
use switchyard_crds::Network;
use switchyard_libvirt::dnsmasq::{self, Paths, SWITCHYARD_STATE_DIR};
use switchyard_libvirt::firewall::nftables::{network_commands, setup_commands};
use switchyard_libvirt::firewall::{
    FirewallError, SWITCHYARD_TABLE, bridge_name, check_table_name, has_firewall,
};
use switchyard_libvirt::{modes, validate_network};

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
    /// dnsmasq's configuration file. Networks without a managed bridge (not nat, route, open
    /// or isolated) get none.
    #[arg(long, group = "what")]
    dnsmasq: bool,
    /// dnsmasq's DHCP hostsfile (static hosts, one per line; empty without any).
    #[arg(long, group = "what")]
    hostsfile: bool,
    /// The directory of the dnsmasq files, as written into the configuration;
    /// `/var/lib/libvirt/dnsmasq` prints libvirt's own files.
    #[arg(long, value_name = "DIR", default_value = SWITCHYARD_STATE_DIR)]
    state_dir: String,
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
    if args.dnsmasq || args.hostsfile {
        return render_dnsmasq(&args, &name, &network);
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

/// `--dnsmasq` / `--hostsfile`: the file a node writes. A foreground dnsmasq needs no pid file.
fn render_dnsmasq(args: &Args, name: &str, network: &Network) -> Result<(), Failure> {
    if let Some(problem) = dnsmasq::line_problem(&args.state_dir) {
        return Err(Failure::Input(anyhow::anyhow!("--state-dir {problem}")));
    }
    let spec = &network.spec;
    if modes::realisation(spec) != modes::Realisation::ManagedBridge {
        eprintln!(
            "{name}: forward mode {} runs no dnsmasq; nothing to render",
            modes::mode_name(spec)
        );
        return Ok(());
    }
    if !dnsmasq::runs_dnsmasq(spec) {
        eprintln!(
            "note: {name}: a node starts no dnsmasq for this network (no address, or no DHCP or TFTP with DNS disabled); this is what it would write"
        );
    }
    let invalid = |err: dnsmasq::DnsmasqError| Failure::Invalid(format!("{name}: {err}"));
    let text = if args.hostsfile {
        dnsmasq::hostsfile(spec).map_err(invalid)?
    } else {
        let paths = Paths {
            state_dir: args.state_dir.clone(),
            pid_file: None,
        };
        dnsmasq::conf(network, &paths).map_err(invalid)?
    };
    output::emit(&text)
}
