//! Conformance of the nftables generator with libvirt's own expected commands (see
//! `firewall_golden` for how they are read and compared). Prints a tally line and fails if
//! any count falls short.

mod firewall_golden;

use std::fs;

use firewall_golden::{NETWORKS, data_dir};

#[test]
fn nftables_commands_equal_libvirts() {
    let tally = firewall_golden::nftables();
    eprintln!(
        "libvirt generated: nftables {}/{} (table set-up {}/1)",
        tally.networks,
        NETWORKS.len(),
        u8::from(tally.setup)
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n\n"));
    assert_eq!((tally.networks, tally.setup), (NETWORKS.len(), true));
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
