//! `render --nftables` of the built binary on libvirt's firewall corpus: with libvirt's table
//! name its output is libvirt's golden file once the continuation lines are joined, the
//! `nft -ae` prefix dropped and the shell quoting undone. No cluster is involved.

mod common;

use std::path::PathBuf;

use common::{Output, corpus_path};
use switchyard_tests::firewall_golden::golden_commands;

fn run(args: &[&str]) -> Output {
    common::run(args, None)
}

fn data(name: &str) -> PathBuf {
    corpus_path("networkxml2firewalldata").join(name)
}

/// A golden file as the lines `render` prints: continuations joined, `# handle` echoes
/// dropped, shell quoting undone, and `nft` / `nft -ae` in front of each nft command dropped.
fn golden_lines(name: &str) -> Vec<String> {
    golden_commands(name)
        .into_iter()
        .map(|words| {
            let words = match words.first().map(String::as_str) {
                Some("nft") if words.get(1).is_some_and(|w| w == "-ae") => &words[2..],
                Some("nft") => &words[1..],
                _ => &words[..],
            };
            words.join(" ")
        })
        .collect()
}

fn printed_lines(out: &Output) -> Vec<String> {
    out.stdout.lines().map(String::from).collect()
}

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

#[test]
fn render_nftables_with_libvirts_table_prints_libvirts_commands() {
    for name in NETWORKS {
        let file = data(&format!("{name}.xml"));
        let out = run(&[
            "render",
            file.to_str().unwrap(),
            "--nftables",
            "--table",
            "libvirt_network",
        ]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_eq!(
            printed_lines(&out),
            golden_lines(&format!("{name}-linux.nftables")),
            "{name}"
        );
    }
    let out = run(&[
        "render",
        data("nat-default.xml").to_str().unwrap(),
        "--nftables",
        "--table",
        "libvirt_network",
        "--with-setup",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut want = golden_lines("base.nftables");
    want.extend(golden_lines("nat-default-linux.nftables"));
    assert_eq!(printed_lines(&out), want);
    assert!(
        out.stdout
            .contains("insert rule ip libvirt_network guest_output iif virbr0 counter reject\n")
    );
}

#[test]
fn the_default_table_is_switchyards_own() {
    let out = run(&[
        "render",
        data("isolated.xml").to_str().unwrap(),
        "--nftables",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("insert rule ip switchyard_network guest_output iif virbr0 counter reject\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("libvirt_network"));
}

#[test]
fn open_networks_print_nothing_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.xml");
    std::fs::write(
        &open,
        "<network><name>o</name><forward mode='open'/><bridge name='virbr5'/>\
         <ip address='10.5.0.1' prefix='24'/></network>",
    )
    .unwrap();
    let out = run(&["render", open.to_str().unwrap(), "--nftables"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);

    let no_bridge = dir.path().join("no-bridge.xml");
    std::fs::write(
        &no_bridge,
        "<network><name>n</name><forward mode='nat'/><ip address='10.6.0.1' prefix='24'/></network>",
    )
    .unwrap();
    let out = run(&["render", no_bridge.to_str().unwrap(), "--nftables"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("spec.bridge.name"), "{}", out.stderr);

    let isolated = data("isolated.xml");
    let out = run(&[
        "render",
        isolated.to_str().unwrap(),
        "--nftables",
        "--table",
        "x;flush ruleset",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("table name 'x;flush ruleset'"),
        "{}",
        out.stderr
    );

    let out = run(&["render", isolated.to_str().unwrap()]);
    assert_eq!(out.code, 2, "what to render is required");
}
