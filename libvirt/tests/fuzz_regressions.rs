//! Inputs that once broke the XML import, found by `cargo +nightly fuzz run xml_import`
//! (fuzz/fuzz_targets/xml_import.rs) or by reasoning about the same property. Each file in
//! tests/fuzz-regressions/ must give a network or an error without panicking; a network must
//! export, import again and export the same XML.

use std::fs;
use std::path::Path;

use switchyard_libvirt::merge::{PortRequest, effective_port};
use switchyard_libvirt::{network_from_xml, network_to_xml, validate_network};

/// The fuzz target's property, for one input.
fn check(name: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(network) = network_from_xml(text) else {
        return;
    };
    let exported = network_to_xml(&network);
    let again = network_from_xml(&exported)
        .unwrap_or_else(|e| panic!("{name}: export does not import again: {e}\n{exported}"));
    assert_eq!(
        network_to_xml(&again),
        exported,
        "{name}: export is not a fixed point"
    );
    let _ = validate_network(&network.spec);
    for portgroup in network
        .spec
        .portgroups
        .iter()
        .map(|pg| Some(pg.name.as_str()))
        .chain([None])
    {
        let _ = effective_port(
            &network.spec,
            &PortRequest {
                portgroup,
                ..Default::default()
            },
        );
    }
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        check(&path.file_name().unwrap().to_string_lossy(), &data);
        count += 1;
    }
    assert!(count > 0, "no regression inputs in {}", dir.display());
}
