//! The generated files read by the real dnsmasq (`dnsmasq --test`, Debian's dnsmasq-base from
//! scripts/install-deps.sh): every corpus network's configuration, with its hostsfile lines as
//! `dhcp-host=` directives (dnsmasq reads a hostsfile only after start-up, with the same
//! parser) and without its verbatim `dnsmasqOptions`, and a network with 10,000 static hosts. No process is left running: `--test`
//! only parses and exits.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use switchyard_libvirt::dnsmasq::{self, Paths};
use switchyard_libvirt::network_from_xml;

/// Runs `dnsmasq --test` on `conf` given on standard input; the error text if it refuses.
fn dnsmasq_test(conf: &str) -> Result<(), String> {
    let mut child = Command::new("dnsmasq")
        .args(["--test", "--conf-file=-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq is installed (dnsmasq-base, scripts/install-deps.sh)");
    let input = conf.to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn with_hosts(files: &dnsmasq::DnsmasqFiles) -> String {
    let hosts: String = files
        .hostsfile
        .lines()
        .map(|line| format!("dhcp-host={line}\n"))
        .collect();
    format!("{}{hosts}", files.conf)
}

#[test]
fn dnsmasq_accepts_every_generated_corpus_configuration() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt/networkxml2confdata");
    let mut checked = 0;
    let mut refused = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let mut network = network_from_xml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Verbatim options are the user's own: libvirt's dnsmasq-options.xml passes `foo=bar`,
        // which dnsmasq refuses.
        network.spec.dnsmasq_options.clear();
        let files = dnsmasq::files(&network, &Paths::libvirt_test()).unwrap();
        if let Err(err) = dnsmasq_test(&with_hosts(&files)) {
            refused.push(format!("{}: {err}", path.display()));
        }
        checked += 1;
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
    assert_eq!(checked, 27);
}

#[test]
fn dnsmasq_accepts_ten_thousand_static_hosts() {
    let hosts: String = (0..10_000u32)
        .map(|i| {
            format!(
                "        - {{mac: '52:54:00:00:{:02x}:{:02x}', name: vm{i}, ip: 10.8.{}.{}}}\n",
                i / 256,
                i % 256,
                i / 250,
                i % 250 + 2
            )
        })
        .collect();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {{name: big}}\nspec:\n  forward: {{mode: nat}}\n  bridge: {{name: virbr8}}\n  ips:\n  - address: 10.8.255.1\n    prefix: 16\n    dhcp:\n      ranges: [{{start: 10.8.100.1, end: 10.8.199.254}}]\n      hosts:\n{hosts}"
    );
    let network: switchyard_crds::Network = serde_yaml::from_str(&yaml).unwrap();
    switchyard_libvirt::validate_network(&network.spec).expect("10,000 hosts validate");
    let files = dnsmasq::files(&network, &Paths::libvirt_test()).unwrap();
    assert_eq!(files.hostsfile.lines().count(), 10_000);
    dnsmasq_test(&with_hosts(&files)).unwrap();
}

/// What validation refuses, dnsmasq refuses too (or misreads): two hosts with one address.
#[test]
fn dnsmasq_refuses_what_validation_refuses() {
    let err = dnsmasq_test(
        "dhcp-host=52:54:00:00:00:01,10.0.0.5\ndhcp-host=52:54:00:00:00:02,10.0.0.5\n",
    )
    .unwrap_err();
    assert!(
        err.contains("duplicate dhcp-host IP address 10.0.0.5"),
        "{err}"
    );
}
