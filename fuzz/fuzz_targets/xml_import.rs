//! Any text given to the XML import must give a network or an error, never a panic; and a
//! network it gives must export, import again, and export the same XML (export is a fixed
//! point), pass validation or fail it with errors, and merge a port without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_libvirt::merge::{PortRequest, effective_port};
use switchyard_libvirt::{network_from_xml, network_to_xml, validate_network};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(network) = network_from_xml(text) else { return };
    let exported = network_to_xml(&network);
    let again = network_from_xml(&exported)
        .unwrap_or_else(|e| panic!("export does not import again: {e}\n{exported}"));
    assert_eq!(network_to_xml(&again), exported, "export is not a fixed point");
    let _ = validate_network(&network.spec);
    for portgroup in network.spec.portgroups.iter().map(|pg| Some(pg.name.as_str())).chain([None]) {
        let request = PortRequest { portgroup, ..Default::default() };
        let _ = effective_port(&network.spec, &request);
    }
});
