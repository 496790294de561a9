//! Inputs that once broke the XML import, found by `cargo +nightly fuzz run xml_import`
//! (fuzz/fuzz_targets/xml_import.rs) or by reasoning about the same property. Each file in
//! tests/fuzz-regressions/ has its outcome pinned in [`EXPECTED`]: it imports, or it is refused
//! with a given message. A network must export, import again and export the same XML.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use switchyard_libvirt::merge::{PortRequest, effective_port};
use switchyard_libvirt::{network_from_xml, network_to_xml, validate_network};

/// What each regression input gives.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// A network whose metadata keeps its content, line ends normalised to `\n`.
    ImportsWithMetadata,
    /// The import error's message.
    Refused(&'static str),
}

const EXPECTED: [(&str, Outcome); 2] = [
    (
        "metadata-carriage-returns.xml",
        Outcome::ImportsWithMetadata,
    ),
    (
        "metadata-text-between-elements.xml",
        Outcome::Refused("/network/metadata: text outside the elements"),
    ),
];

/// The fuzz target's property and the pinned outcome, for one input.
fn check(name: &str, data: &[u8], outcome: Outcome) {
    let text = std::str::from_utf8(data).unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
    let network = match (network_from_xml(text), outcome) {
        (Ok(network), Outcome::ImportsWithMetadata) => network,
        (Err(err), Outcome::Refused(message)) => {
            assert_eq!(
                err.to_string(),
                message,
                "{name}: refused for another reason"
            );
            return;
        }
        (Ok(_), Outcome::Refused(message)) => {
            panic!("{name}: imported, but should be refused with: {message}")
        }
        (Err(err), Outcome::ImportsWithMetadata) => {
            panic!("{name}: should import, but: {err}")
        }
    };
    let metadata = network
        .spec
        .libvirt_metadata
        .as_deref()
        .unwrap_or_else(|| panic!("{name}: the metadata was dropped"));
    assert!(
        metadata.contains("<app1:foo") && !metadata.contains('\r'),
        "{name}: metadata content or line ends wrong: {metadata:?}"
    );
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
    let expected: BTreeMap<&str, Outcome> = EXPECTED.into_iter().collect();
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = *expected
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name}: add its expected outcome to EXPECTED"));
        check(&name, &fs::read(&path).unwrap(), outcome);
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        expected.keys().copied().collect::<Vec<_>>(),
        "every input in EXPECTED is in {}",
        dir.display()
    );
}
