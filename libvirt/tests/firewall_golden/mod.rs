//! libvirt's expected firewall commands (../shared/corpus/libvirt/networkxml2firewalldata,
//! v11.3.0) against the generator's, shared by the conformance test and the corpus tally.
//!
//! networkxml2firewalltest.c records every command a network's start runs, one argument per
//! line joined by ` \` + newline, shell-quoted; `base.nftables` is the table set-up the first
//! network in a process also runs. Each `<name>.xml` is imported, its commands generated for
//! libvirt's table name, and compared with `<name>-linux.nftables` command line by command
//! line, program and `-ae` included; likewise the iptables backend with `<name>-linux.iptables`
//! and `base.iptables`.

use std::fs;
use std::path::Path;

use switchyard_libvirt::firewall::{Command, FirewallError, LIBVIRT_TABLE, bridge_name};
use switchyard_libvirt::firewall::{iptables, nftables};
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

pub use switchyard_tests::firewall_golden::data_dir;
use switchyard_tests::firewall_golden::golden_commands;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
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

/// Compares the nftables backend's command sets and set-up.
pub fn nftables() -> Tally {
    compare(
        "nftables",
        nftables::setup_commands(LIBVIRT_TABLE).unwrap(),
        |spec, bridge| nftables::network_commands(spec, bridge, LIBVIRT_TABLE),
    )
}

/// Compares the iptables backend's command sets and set-up.
pub fn iptables() -> Tally {
    compare(
        "iptables",
        iptables::setup_commands(),
        iptables::network_commands,
    )
}

fn compare(
    backend: &str,
    setup: Vec<Command>,
    generate: impl Fn(&switchyard_crds::NetworkSpec, &str) -> Result<Vec<Command>, FirewallError>,
) -> Tally {
    let mut tally = Tally::default();
    let setup: Vec<Vec<String>> = setup.iter().map(|c| c.argv()).collect();
    let base_file = format!("base.{backend}");
    let base = golden_commands(&base_file);
    tally.setup = setup == base;
    if !tally.setup {
        tally
            .failures
            .push(format!("{base_file}: {}", differences(&setup, &base)));
    }

    for name in NETWORKS {
        let file = format!("{name}-linux.{backend}");
        let want = golden_commands(&file);
        let network = match network_from_xml(&read(&data_dir().join(format!("{name}.xml")))) {
            Ok(network) => network,
            Err(err) => {
                tally.failures.push(format!("{name}: import failed: {err}"));
                continue;
            }
        };
        let generated =
            bridge_name(&network.spec).and_then(|bridge| generate(&network.spec, bridge));
        match generated {
            Ok(commands) => {
                let got: Vec<Vec<String>> = commands.iter().map(|c| c.argv()).collect();
                if got == want {
                    tally.networks += 1;
                } else {
                    tally
                        .failures
                        .push(format!("{file}: {}", differences(&got, &want)));
                }
            }
            Err(err) => tally.failures.push(format!("{file}: not generated: {err}")),
        }
    }
    tally
}
