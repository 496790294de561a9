//! Conformance of the firewall generators (nftables, and iptables beside it) with libvirt's own expected commands (see
//! `firewall_golden` for how they are read and compared). Prints a tally line and fails if
//! any count falls short.

mod firewall_golden;

use std::fs;

use firewall_golden::{NETWORKS, data_dir};

/// Both backends; iptables is counted beside nftables (switchyard's nodes use nftables).
#[test]
fn firewall_commands_equal_libvirts() {
    let nftables = firewall_golden::nftables();
    let iptables = firewall_golden::iptables();
    eprintln!(
        "libvirt generated: nftables {}/{} (table set-up {}/1), iptables {}/{} (chain set-up {}/1)",
        nftables.networks,
        NETWORKS.len(),
        u8::from(nftables.setup),
        iptables.networks,
        NETWORKS.len(),
        u8::from(iptables.setup)
    );
    let failures: Vec<&String> = nftables.failures.iter().chain(&iptables.failures).collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert_eq!(
        (
            nftables.networks,
            nftables.setup,
            iptables.networks,
            iptables.setup
        ),
        (NETWORKS.len(), true, NETWORKS.len(), true)
    );
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
