//! `export NAME|FILE.yaml`: a Network → libvirt network XML.

use switchyard_libvirt::{network_to_xml, validate_network};

use super::problem_lines;
use crate::failure::Failure;
use crate::input;
use crate::output;

/// Arguments of `export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Network's name in the cluster, or a file holding one as YAML (libvirt XML is accepted
    /// too, and comes back in libvirt's canonical form); - reads standard input.
    #[arg(value_name = "NAME|FILE.yaml")]
    source: String,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (name, network) = input::network(&args.source)?;
    if let Err(problems) = validate_network(&network.spec) {
        eprintln!(
            "warning: {name}: `virsh net-define` would refuse this network:\n{}",
            problem_lines(&problems, false)
        );
    }
    output::emit(&network_to_xml(&network))
}
