//! `import FILE.xml...`: libvirt network XML → Network YAML.

use anyhow::anyhow;
use switchyard_libvirt::{names, validate_network};

use super::problem_lines;
use crate::failure::Failure;
use crate::input::Source;
use crate::output;

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// libvirt network XML files (e.g. from `virsh net-dumpxml --inactive NAME`); - reads
    /// standard input. Several files give several YAML documents.
    #[arg(required = true, value_name = "FILE.xml")]
    files: Vec<String>,
    /// The Network's name (with one file only). By default it is derived from <name>, and the
    /// libvirt name is kept in spec.libvirtName when it is not a valid Kubernetes name.
    #[arg(long)]
    name: Option<String>,
    /// Print the YAML even when `virsh net-define` would refuse the definition (the problems
    /// are still reported on standard error).
    #[arg(long)]
    skip_validation: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    if args.name.is_some() && args.files.len() > 1 {
        return Err(Failure::Input(anyhow!(
            "--name can only be used with a single file"
        )));
    }
    if let Some(name) = args.name.as_deref().filter(|n| !names::is_object_name(n)) {
        return Err(Failure::Input(anyhow!(
            "--name {name}: not a valid Kubernetes name (lower-case letters, digits, '-' and '.')"
        )));
    }
    let mut documents = Vec::new();
    let mut refused = Vec::new();
    for file in &args.files {
        let source = Source::read(file)?;
        let mut network = source.network()?;
        if let Some(name) = &args.name {
            let libvirt_name = network
                .spec
                .libvirt_name
                .take()
                .or(network.metadata.name.take());
            network.spec.libvirt_name = libvirt_name.filter(|n| n != name);
            network.metadata.name = Some(name.clone());
        }
        if let Err(problems) = validate_network(&network.spec) {
            let report = format!(
                "{}: `virsh net-define` would refuse this network:\n{}",
                source.name,
                problem_lines(&problems, true)
            );
            if args.skip_validation {
                eprintln!("warning: {report}");
            } else {
                refused.push(report);
                continue;
            }
        }
        let yaml = serde_yaml::to_string(&network)
            .map_err(|e| Failure::Input(anyhow!("writing YAML for {}: {e}", source.name)))?;
        documents.push(yaml);
    }
    if !refused.is_empty() {
        return Err(Failure::Invalid(format!(
            "{}\n(use --skip-validation to print the YAML anyway)",
            refused.join("\n")
        )));
    }
    output::emit(&documents.join("---\n"))
}
