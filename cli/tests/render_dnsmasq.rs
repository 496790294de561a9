//! `render --dnsmasq` and `render --hostsfile` of the built binary: with libvirt's state
//! directory it prints libvirt's own files for every network of its conf corpus, byte for
//! byte. No cluster is involved (tests/tests/render.rs renders a Network read from a real API
//! server).

mod common;

use std::path::PathBuf;

use common::{corpus_path, run};

fn confdata() -> PathBuf {
    corpus_path("networkxml2confdata")
}

#[test]
fn libvirts_state_dir_prints_libvirts_files() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(confdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    inputs.sort();
    let (mut confs, mut hostsfiles) = (0, 0);
    for input in &inputs {
        let file = input.to_str().unwrap();
        let conf = run(
            &[
                "render",
                file,
                "--dnsmasq",
                "--state-dir",
                "/var/lib/libvirt/dnsmasq",
            ],
            None,
        );
        assert_eq!(conf.code, 0, "{file}: {}", conf.stderr);
        let want = std::fs::read_to_string(input.with_extension("conf")).unwrap();
        assert_eq!(conf.stdout, want, "{file}");
        confs += 1;
        let hosts = run(&["render", file, "--hostsfile"], None);
        assert_eq!(hosts.code, 0, "{file}: {}", hosts.stderr);
        match std::fs::read_to_string(input.with_extension("hostsfile")) {
            Ok(want) => {
                assert_eq!(hosts.stdout, want, "{file}");
                hostsfiles += 1;
            }
            Err(_) => assert_eq!(hosts.stdout, "", "{file}: libvirt generates no hosts"),
        }
    }
    assert_eq!((confs, hostsfiles), (27, 14));
}

#[test]
fn paths_default_to_switchyards_state_dir_and_follow_state_dir() {
    let input = confdata().join("nat-network.xml");
    let file = input.to_str().unwrap();
    let default = run(&["render", file, "--dnsmasq"], None);
    assert_eq!(default.code, 0, "{}", default.stderr);
    assert!(
        default
            .stdout
            .contains("\ndhcp-hostsfile=/var/lib/switchyard/dnsmasq/default.hostsfile\naddn-hosts=/var/lib/switchyard/dnsmasq/default.addnhosts\n"),
        "{}",
        default.stdout
    );
    let elsewhere = run(
        &["render", file, "--dnsmasq", "--state-dir", "/srv/d"],
        None,
    );
    assert!(
        elsewhere
            .stdout
            .contains("\ndhcp-hostsfile=/srv/d/default.hostsfile\n")
    );
    assert!(
        !elsewhere.stdout.contains("pid-file"),
        "a foreground dnsmasq needs none"
    );
    let bad = run(&["render", file, "--dnsmasq", "--state-dir", "/a\nb"], None);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--state-dir must not contain a line break"),
        "{}",
        bad.stderr
    );
}

#[test]
fn networks_without_dnsmasq_and_hostile_ones() {
    let vepa =
        "<network><name>v</name><forward mode='vepa'><interface dev='eth1'/></forward></network>";
    let out = run(&["render", "-", "--dnsmasq"], Some(vepa));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert!(
        out.stderr.contains("forward mode vepa runs no dnsmasq"),
        "{}",
        out.stderr
    );

    let no_dns = confdata().join("routed-network-no-dns.xml");
    let out = run(&["render", no_dns.to_str().unwrap(), "--dnsmasq"], None);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr
            .contains("a node starts no dnsmasq for this network"),
        "{}",
        out.stderr
    );

    let hostile = "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: h}
spec:
  bridge: {name: virbr3}
  dns: {txts: [{name: t, value: \"v\\ndhcp-script=/tmp/x\"}]}
  ips: [{address: 10.3.0.1, prefix: 24}]
";
    let out = run(&["render", "-", "--dnsmasq"], Some(hostile));
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("spec.dns.txts[0].value: must not contain a line break"),
        "{}",
        out.stderr
    );
    let both = run(&["render", "-", "--dnsmasq", "--hostsfile"], Some(hostile));
    assert_eq!(both.code, 2, "one thing at a time: {}", both.stderr);
}
