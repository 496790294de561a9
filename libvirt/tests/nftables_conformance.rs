//! Conformance of the firewall generator with libvirt's own expected commands
//! (../shared/corpus/libvirt/networkxml2firewalldata, libvirt v11.3.0), read where they lie.
//!
//! networkxml2firewalltest.c records every command a network's start runs, one argument per
//! line joined by ` \` + newline, shell-quoted; `base.nftables` is the table set-up the first
//! network in a process also runs. Each `<name>.xml` is imported, its commands generated for
//! libvirt's table name, and compared with `<name>-linux.nftables` command line by command
//! line, program and `-ae` included. The test prints a tally line and fails if any falls short.

use std::fs;
use std::path::{Path, PathBuf};

use switchyard_libvirt::firewall::nftables::{network_commands, setup_commands};
use switchyard_libvirt::firewall::{LIBVIRT_TABLE, bridge_name};
use switchyard_libvirt::network_from_xml;

/// The 11 networks of networkxml2firewalltest.c.
const NETWORKS: [&str; 11] = [
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

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt/networkxml2firewalldata")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A golden file as command lines: continuations joined, the dry run's `# handle` echoes
/// dropped, shell quoting undone.
fn golden_commands(path: &Path) -> Vec<Vec<String>> {
    read(path)
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

#[test]
fn nftables_commands_equal_libvirts() {
    let mut failures = Vec::new();

    let setup: Vec<Vec<String>> = setup_commands(LIBVIRT_TABLE)
        .unwrap()
        .iter()
        .map(|c| c.argv())
        .collect();
    let base = golden_commands(&data_dir().join("base.nftables"));
    let setup_ok = setup == base;
    if !setup_ok {
        failures.push(format!("base.nftables: {}", differences(&setup, &base)));
    }

    let mut equal = 0;
    for name in NETWORKS {
        let xml = read(&data_dir().join(format!("{name}.xml")));
        let want = golden_commands(&data_dir().join(format!("{name}-linux.nftables")));
        let network = match network_from_xml(&xml) {
            Ok(network) => network,
            Err(err) => {
                failures.push(format!("{name}: import failed: {err}"));
                continue;
            }
        };
        let generated = bridge_name(&network.spec)
            .and_then(|bridge| network_commands(&network.spec, bridge, LIBVIRT_TABLE));
        match generated {
            Ok(commands) => {
                let got: Vec<Vec<String>> = commands.iter().map(|c| c.argv()).collect();
                if got == want {
                    equal += 1;
                } else {
                    failures.push(format!("{name}: {}", differences(&got, &want)));
                }
            }
            Err(err) => failures.push(format!("{name}: not generated: {err}")),
        }
    }

    eprintln!(
        "libvirt generated: nftables {equal}/{} (table set-up {}/1)",
        NETWORKS.len(),
        u8::from(setup_ok)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!((equal, setup_ok), (NETWORKS.len(), true));
}

/// Every network in the data directory is one of the 11, so none is left unchecked.
#[test]
fn the_list_covers_the_corpus() {
    let mut found: Vec<String> = fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix("-linux.nftables").map(String::from)
        })
        .collect();
    found.sort();
    assert_eq!(found, NETWORKS);
}
