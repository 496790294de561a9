//! libvirt's expected dnsmasq files (../shared/corpus/libvirt/networkxml2confdata, libvirt
//! v11.3.0, read where they lie) compared with the generator's, shared by
//! dnsmasq_conformance.rs and corpus.rs. For every `<name>.xml` the configuration must equal
//! `<name>.conf` byte for byte, and the hostsfile must equal `<name>.hostsfile` where that
//! exists and be empty where it does not (libvirt's networkxml2conftest.c: state directory
//! /var/lib/libvirt/dnsmasq, no pid file).

use std::fs;
use std::path::{Path, PathBuf};

use switchyard_libvirt::dnsmasq::{self, Paths};
use switchyard_libvirt::network_from_xml;

fn confdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/libvirt/networkxml2confdata")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The outcome of comparing every corpus network: (matching, total) per file kind, and what
/// differed.
pub struct Tally {
    pub conf: (usize, usize),
    pub hostsfile: (usize, usize),
    pub failures: Vec<String>,
}

pub fn compare_corpus() -> Tally {
    let mut inputs: Vec<PathBuf> = fs::read_dir(confdata())
        .expect("listing networkxml2confdata")
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    inputs.sort();
    let mut tally = Tally {
        conf: (0, 0),
        hostsfile: (0, 0),
        failures: Vec::new(),
    };
    let paths = Paths::libvirt_test();
    for input in &inputs {
        let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
        let want_conf = read(&input.with_extension("conf"));
        let hostsfile_path = input.with_extension("hostsfile");
        let want_hosts = hostsfile_path.exists().then(|| read(&hostsfile_path));
        tally.conf.1 += 1;
        if want_hosts.is_some() {
            tally.hostsfile.1 += 1;
        }
        let network = match network_from_xml(&read(input)) {
            Ok(network) => network,
            Err(err) => {
                tally.failures.push(format!("{stem}: import failed: {err}"));
                continue;
            }
        };
        match dnsmasq::conf(&network, &paths) {
            Ok(got) if got == want_conf => tally.conf.0 += 1,
            Ok(got) => tally.failures.push(format!(
                "{stem}.conf differs\n--- got\n{got}--- want\n{want_conf}"
            )),
            Err(err) => tally.failures.push(format!("{stem}.conf: {err}")),
        }
        match (dnsmasq::hostsfile(&network.spec), want_hosts) {
            (Ok(got), Some(want)) if got == want => tally.hostsfile.0 += 1,
            (Ok(got), None) if got.is_empty() => {}
            (Ok(got), want) => tally.failures.push(format!(
                "{stem}.hostsfile differs\n--- got\n{got}--- want\n{}",
                want.as_deref().unwrap_or("(no file: no hosts)\n")
            )),
            (Err(err), _) => tally.failures.push(format!("{stem}.hostsfile: {err}")),
        }
    }
    tally
}
