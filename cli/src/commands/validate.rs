//! `validate FILE...`: check definitions as `virsh net-define` would, plus switchyard's rules.

use switchyard_crds::Network;
use switchyard_libvirt::{modes, names, validate_network};
use switchyard_placement::coexistence;

use super::problem_lines;
use crate::failure::Failure;
use crate::input::Source;
use crate::output;

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// libvirt network XML or Network YAML files; - reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut invalid = Vec::new();
    let mut sources = Vec::new();
    for file in &args.files {
        sources.extend(Source::read(file)?.documents());
    }
    // The valid networks, with the document each came from.
    let mut valid: Vec<(String, Network)> = Vec::new();
    for source in sources {
        let network = match source.network() {
            Ok(network) => network,
            Err(Failure::Invalid(reason)) => {
                invalid.push(reason);
                continue;
            }
            Err(other) => return Err(other),
        };
        let mut problems = validate_network(&network.spec).err().unwrap_or_default();
        if let Some(name) = &network.metadata.name
            && !names::is_object_name(name)
        {
            problems.insert(
                0,
                switchyard_libvirt::FieldError {
                    field: "metadata.name".into(),
                    element: "/network/name".into(),
                    message: format!("'{name}' is not a valid Kubernetes name"),
                },
            );
        }
        if problems.is_empty() {
            output::emit(&format!(
                "{}: valid (forward mode {}, {}, {} portgroup(s))\n",
                source.name,
                modes::mode_name(&network.spec),
                pool(&network.spec),
                network.spec.portgroups.len()
            ))?;
            valid.push((source.name, network));
        } else {
            invalid.push(format!(
                "{}: {} problem(s):\n{}",
                source.name,
                problems.len(),
                problem_lines(&problems, source.is_xml())
            ));
        }
    }
    invalid.extend(clashes(&valid));
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(Failure::Invalid(invalid.join("\n")))
    }
}

/// The clashes between the networks of the documents, pair by pair, on a node both select
/// (when one is found from their selectors, [`coexistence::shared_node_labels`]): one line
/// each, naming both documents and both networks.
fn clashes(networks: &[(String, Network)]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, (first_source, first)) in networks.iter().enumerate() {
        for (second_source, second) in &networks[i + 1..] {
            let Some(labels) = coexistence::shared_node_labels(first, second) else {
                continue;
            };
            let node = coexistence::Node {
                name: "",
                labels: &labels,
            };
            let name = second.metadata.name.clone().unwrap_or_default();
            for clash in coexistence::clashes_with(node, second, &[first]) {
                found.push(format!(
                    "{second_source}: cannot share a node with {first_source}:\n  {}",
                    clash.message_for(&name)
                ));
            }
        }
    }
    found
}

/// A short description of the device pool.
fn pool(spec: &switchyard_crds::NetworkSpec) -> String {
    let forward = spec.forward.as_ref();
    let devices = modes::pool_devices(spec);
    if let Some(pf) = forward.and_then(|f| f.pf.as_deref()) {
        format!("the virtual functions of pf {pf}")
    } else if let Some(addresses) = forward.map(|f| f.addresses.len()).filter(|n| *n > 0) {
        format!("{addresses} PCI device(s)")
    } else if devices.is_empty() {
        "no device pool".to_string()
    } else {
        format!("pool {}", devices.join(", "))
    }
}
