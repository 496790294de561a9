//! libvirt's expected firewall commands (../shared/corpus/libvirt/networkxml2firewalldata,
//! v11.3.0) against the generator's, shared by the conformance test and the corpus tally.
//!
//! networkxml2firewalltest.c records every command a network's start runs, one argument per
//! line joined by ` \` + newline, shell-quoted; `base.nftables` is the table set-up the first
//! network in a process also runs. Each `<name>.xml` is imported, its commands generated for
//! libvirt's table name, and compared with `<name>-linux.nftables` command line by command
//! line, program and `-ae` included.

use std::fs;
use std::path::{Path, PathBuf};

use switchyard_libvirt::firewall::nftables::{network_commands, setup_commands};
use switchyard_libvirt::firewall::{LIBVIRT_TABLE, bridge_name};
use switchyard_libvirt::network_from_xml;

/// The 11 networks of networkxml2firewalltest.c.
pub const NETWORKS: [&str; 11] = [
    "forward-dev",
    "isolated",
    "nat-default",
    "nat-ipv6",
    "nat-ipv6-masquerade",
    "nat-many-ips",
    "nat-no-dhcp",
    "nat-port-range",
    "nat-port-range-ipv6",
    "nat-tftp",
    "route-default",
];

/// How many of libvirt's command sets the generator reproduces, and how each other one differs.
#[derive(Debug, Default)]
pub struct Tally {
    /// Networks whose commands equal their `-linux.nftables` file.
    pub networks: usize,
    /// Whether the set-up equals `base.nftables`.
    pub setup: bool,
    /// What differs, per file.
    pub failures: Vec<String>,
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt/networkxml2firewalldata")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A golden file as command lines: continuations joined, the dry run's `# handle` echoes
/// dropped, shell quoting undone.
fn golden_commands(file: &str) -> Vec<Vec<String>> {
    read(&data_dir().join(file))
        .replace(" \\\n", " ")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("# handle"))
        .map(|line| shlex::split(line).unwrap_or_else(|| panic!("unbalanced quoting: {line}")))
        .collect()
}

fn differences(got: &[Vec<String>], want: &[Vec<String>]) -> String {
    let show = |c: &[Vec<String>]| {
        c.iter()
            .map(|argv| format!("  {argv:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("--- got\n{}\n--- want\n{}", show(got), show(want))
}

/// Compares every command set and the set-up.
pub fn nftables() -> Tally {
    let mut tally = Tally::default();
    let setup: Vec<Vec<String>> = setup_commands(LIBVIRT_TABLE)
        .unwrap()
        .iter()
        .map(|c| c.argv())
        .collect();
    let base = golden_commands("base.nftables");
    tally.setup = setup == base;
    if !tally.setup {
        tally
            .failures
            .push(format!("base.nftables: {}", differences(&setup, &base)));
    }

    for name in NETWORKS {
        let want = golden_commands(&format!("{name}-linux.nftables"));
        let network = match network_from_xml(&read(&data_dir().join(format!("{name}.xml")))) {
            Ok(network) => network,
            Err(err) => {
                tally.failures.push(format!("{name}: import failed: {err}"));
                continue;
            }
        };
        let generated = bridge_name(&network.spec)
            .and_then(|bridge| network_commands(&network.spec, bridge, LIBVIRT_TABLE));
        match generated {
            Ok(commands) => {
                let got: Vec<Vec<String>> = commands.iter().map(|c| c.argv()).collect();
                if got == want {
                    tally.networks += 1;
                } else {
                    tally
                        .failures
                        .push(format!("{name}: {}", differences(&got, &want)));
                }
            }
            Err(err) => tally.failures.push(format!("{name}: not generated: {err}")),
        }
    }
    tally
}
