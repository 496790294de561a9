//! `validate FILE...`: check definitions as `virsh net-define` would, plus switchyard's rules.

use switchyard_libvirt::{modes, names, validate_network};

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
    for file in &args.files {
        let source = Source::read(file)?;
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
        } else {
            invalid.push(format!(
                "{}: {} problem(s):\n{}",
                source.name,
                problems.len(),
                problem_lines(&problems, source.is_xml())
            ));
        }
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(Failure::Invalid(invalid.join("\n")))
    }
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
