//! The built `kubectl-switchyard` binary, run on libvirt's corpus and small hand-written files.
//! No cluster is involved: `export NAME` is only checked for its failure without one
//! (tests/cluster.rs runs it, and `explain-port --network NAME`, against the local apiserver).

mod common;

use std::path::{Path, PathBuf};

use common::{corpus, run};

use switchyard_libvirt::xml::canonical;

fn write_temp(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn no_arguments_prints_usage_and_exits_2() {
    let out = run(&[], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("Usage: kubectl switchyard <COMMAND>"),
        "{}",
        out.stderr
    );
    for command in ["import", "export", "validate", "explain-port"] {
        assert!(out.stderr.contains(command), "{command} missing from usage");
    }
    let help = run(&["--help"], None);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout
            .contains("Exit codes: 0 success, 1 invalid definition or port")
    );
    assert_eq!(
        run(&["import"], None).code,
        2,
        "a missing argument is a usage error"
    );
    assert_eq!(run(&["frobnicate"], None).code, 2);
}

/// import → YAML → export gives libvirt's own output, byte for byte, for every corpus network
/// that `virsh net-define` accepts.
#[test]
fn import_then_export_reproduces_libvirt_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus("networkxml2xmlin")).unwrap() {
        let input = entry.unwrap().path();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let expected = Path::new(&corpus("networkxml2xmlout")).join(&name);
        if !expected.exists() {
            continue;
        }
        let imported = run(&["import", input.to_str().unwrap()], None);
        if imported.code == 1 {
            // Refused by validation (the corpus test lists which); nothing to export.
            assert!(
                imported.stderr.contains("would refuse"),
                "{name}: {}",
                imported.stderr
            );
            continue;
        }
        assert_eq!(imported.code, 0, "{name}: {}", imported.stderr);
        assert!(
            imported
                .stdout
                .starts_with("apiVersion: switchyard.dev/v1alpha1\nkind: Network\n")
        );
        let yaml = write_temp(&dir, &format!("{name}.yaml"), &imported.stdout);
        let exported = run(&["export", yaml.to_str().unwrap()], None);
        assert_eq!(exported.code, 0, "{name}: {}", exported.stderr);
        let want = std::fs::read_to_string(&expected).unwrap();
        if exported.stdout != want {
            let formatting_only = matches!(
                (canonical(&exported.stdout), canonical(&want)),
                (Ok(got), Ok(want)) if got == want
            );
            panic!(
                "{name}: export differs from libvirt's output {}\n--- got\n{}--- want\n{want}",
                if formatting_only {
                    "only in formatting"
                } else {
                    "in content"
                },
                exported.stdout
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked, 40,
        "43 round trips minus the 3 networks validation refuses"
    );
}

#[test]
fn import_reads_stdin_and_several_files() {
    let xml = std::fs::read_to_string(corpus("networkxml2xmlin/direct-net.xml")).unwrap();
    let out = run(&["import", "-"], Some(&xml));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("name: direct-net"));

    let both = run(
        &[
            "import",
            &corpus("networkxml2xmlin/direct-net.xml"),
            &corpus("networkxml2xmlin/vepa-net.xml"),
        ],
        None,
    );
    assert_eq!(both.code, 0, "{}", both.stderr);
    assert_eq!(both.stdout.matches("kind: Network").count(), 2);
    assert!(both.stdout.contains("\n---\n"));
}

#[test]
fn import_names_the_object_and_keeps_the_libvirt_name() {
    let out = run(
        &[
            "import",
            &corpus("networkxml2confdata/nat-network-name-with-quotes.xml"),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("name: default-with-quotes"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("libvirtName: default\"with\"quotes\""),
        "{}",
        out.stdout
    );

    let renamed = run(
        &[
            "import",
            "--name",
            "uplink",
            &corpus("networkxml2xmlin/direct-net.xml"),
        ],
        None,
    );
    assert_eq!(renamed.code, 0, "{}", renamed.stderr);
    assert!(renamed.stdout.contains("name: uplink"));
    assert!(renamed.stdout.contains("libvirtName: direct-net"));
    assert_eq!(
        run(
            &[
                "import",
                "--name",
                "Bad_Name",
                &corpus("networkxml2xmlin/direct-net.xml")
            ],
            None
        )
        .code,
        2
    );
}

#[test]
fn import_refuses_what_libvirt_refuses_naming_the_element() {
    let cases = [
        (
            "hostdev-duplicate.xml",
            "/network/forward/address[4]: PCI device 0000:03:00.3 can only be listed once",
        ),
        (
            "passthrough-duplicate.xml",
            "/network/forward/interface[4]/@dev: interface 'eth3' can only be listed once",
        ),
        (
            "open-network-with-forward-dev.xml",
            "/network/forward/@dev: forward mode open",
        ),
        (
            "routed-network-no-dns-extra-elements.xml",
            "/network/dns: DNS is disabled",
        ),
    ];
    for (file, expected) in cases {
        let out = run(
            &["import", &corpus(&format!("networkxml2xmlin/{file}"))],
            None,
        );
        assert_eq!(out.code, 1, "{file}");
        assert!(out.stderr.contains(expected), "{file}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn import_refuses_define_time_problems_unless_told_not_to() {
    let file = corpus("networkxml2xmlin/passthrough-pf.xml");
    let out = run(&["import", &file], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "/network/ip[1] (spec.ips[0]): <ip> is not supported with forward mode passthrough"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--skip-validation"));

    let forced = run(&["import", "--skip-validation", &file], None);
    assert_eq!(forced.code, 0);
    assert!(forced.stderr.starts_with("warning: "));
    assert!(forced.stdout.contains("pf: eth0"));
}

#[test]
fn bad_xml_gets_a_clear_error_and_exit_1() {
    let cases = [
        (
            "<network><name>n</name><forward mode='tunnel'/></network>",
            "/network/forward/@mode: 'tunnel' is not a valid mode",
        ),
        ("<network><name>n</name>", "ends inside <network>"),
        (
            "<network><name>n</name><mtu size='x'/></network>",
            "/network/mtu/@size",
        ),
    ];
    for (xml, expected) in cases {
        let out = run(&["import", "-"], Some(xml));
        assert_eq!(out.code, 1, "{xml}");
        assert!(out.stderr.contains(expected), "{xml}: {}", out.stderr);
    }
}

#[test]
fn validate_takes_xml_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let good = run(
        &["validate", &corpus("networkxml2xmlin/vepa-net.xml")],
        None,
    );
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert!(
        good.stdout.contains(
            "vepa-net.xml: valid (forward mode vepa, pool eth1, eth2, eth3, 2 portgroup(s))"
        ),
        "{}",
        good.stdout
    );

    let yaml = write_temp(
        &dir,
        "bad.yaml",
        "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: Bad_Name}
spec:
  forward: {mode: vepa, interfaces: [{dev: eth1}, {dev: eth1}]}
  vlan: {tags: [{id: 7}]}
",
    );
    let bad = run(&["validate", yaml.to_str().unwrap()], None);
    assert_eq!(bad.code, 1);
    for expected in [
        "bad.yaml: 3 problem(s):",
        "  metadata.name: 'Bad_Name' is not a valid Kubernetes name",
        "  spec.forward.interfaces[1].dev: interface 'eth1' can only be listed once",
        "  spec.vlan: forward mode vepa cannot apply vlan tags",
    ] {
        assert!(
            bad.stderr.contains(expected),
            "missing {expected:?} in {}",
            bad.stderr
        );
    }

    let port = write_temp(
        &dir,
        "port.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: NetworkPort\n",
    );
    let wrong_kind = run(&["validate", port.to_str().unwrap()], None);
    assert_eq!(wrong_kind.code, 1);
    assert!(
        wrong_kind
            .stderr
            .contains("expected a switchyard Network (kind: Network), found kind: NetworkPort")
    );

    let typo = write_temp(
        &dir,
        "typo.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {name: n}\nspec: {mtu: big}\n",
    );
    let typed = run(&["validate", typo.to_str().unwrap()], None);
    assert_eq!(typed.code, 1);
    assert!(
        typed.stderr.contains("not a valid Network: spec.mtu"),
        "{}",
        typed.stderr
    );

    let missing = run(&["validate", "/nonexistent/net.xml"], None);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .starts_with("error: reading /nonexistent/net.xml: "),
        "{}",
        missing.stderr
    );
}

/// A multi-document file: each document validated on its own (a malformed one named by its
/// index and its line in the file), and the networks that could not share a node named
/// together, as the webhook and the node agent decide it.
#[test]
fn validate_checks_every_document_and_the_clashes_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let network = |name: &str, extra: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {{name: {name}}}\nspec:\n{extra}"
        )
    };
    let file = [
        network(
            "first",
            "  forward: {mode: nat}\n  bridge: {name: virbr5}\n  ips: [{address: 10.7.0.1, prefix: 16}]\n",
        ),
        network(
            "overlaps",
            "  forward: {mode: route}\n  bridge: {name: virbr6}\n  ips: [{address: 10.9.0.1, prefix: 24}, {address: 10.7.3.1, prefix: 24}]\n",
        ),
        network(
            "same-bridge",
            "  bridge: {name: virbr5}\n  ips: [{address: 10.8.0.1, prefix: 24}]\n",
        ),
        // The same subnet on other nodes: no clash.
        network(
            "elsewhere",
            "  nodeSelector: {matchLabels: {rack: b}}\n  bridge: {name: virbr7}\n  ips: [{address: 10.6.0.1, prefix: 24}]\n",
        ),
        network(
            "rack-a",
            "  nodeSelector: {matchLabels: {rack: a}}\n  bridge: {name: virbr8}\n  ips: [{address: 10.6.0.1, prefix: 24}]\n",
        ),
    ]
    .join("---\n");
    let path = write_temp(&dir, "many.yaml", &format!("---\n{file}"));
    let p = path.to_str().unwrap();
    let out = run(&["validate", p], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for valid in 1..=5 {
        assert!(
            out.stdout
                .contains(&format!("many.yaml: document {valid}: valid")),
            "{}",
            out.stdout
        );
    }
    for expected in [
        format!(
            "{p}: document 2: cannot share a node with {p}: document 1:\n  spec.ips[1]: network 'overlaps' has subnet 10.7.3.0/24 on a node both select, which overlaps subnet 10.7.0.0/16 of network 'first' (spec.ips[0])"
        ),
        format!(
            "{p}: document 3: cannot share a node with {p}: document 1:\n  spec.bridge.name: network 'same-bridge' uses bridge 'virbr5' on a node both select, and so does network 'first' (spec.bridge.name)"
        ),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "missing {expected:?} in {}",
            out.stderr
        );
    }
    assert_eq!(
        out.stderr.matches("cannot share a node").count(),
        2,
        "{}",
        out.stderr
    );

    // Disjoint documents are valid together.
    let disjoint = [
        network(
            "a",
            "  bridge: {name: virbr5}\n  ips: [{address: 10.7.0.1, prefix: 24}]\n",
        ),
        network(
            "b",
            "  bridge: {name: virbr6}\n  ips: [{address: 10.8.0.1, prefix: 24}]\n",
        ),
    ]
    .join("---\n");
    let out = run(&["validate", "-"], Some(&disjoint));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("<stdin>: document 2: valid"),
        "{}",
        out.stdout
    );

    // A malformed second document: its index, and the line in the file.
    let malformed = format!(
        "{}---\napiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {{name: b\nspec: {{}}\n",
        network("a", "  bridge: {name: virbr5}\n")
    );
    let out = run(&["validate", "-"], Some(&malformed));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("<stdin>: document 1: valid"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("<stdin>: document 2: not YAML: ") && out.stderr.contains("line 10"),
        "{}",
        out.stderr
    );
}

/// Values written into dnsmasq's files must be one line (CVE-2026-61477): `validate` names
/// each field, for YAML and for libvirt XML (`&#10;`).
#[test]
fn validate_refuses_line_breaks_in_dnsmasq_values() {
    let yaml = "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: n}
spec:
  bridge: {name: virbr5}
  dns:
    srvs: [{service: ldap, protocol: tcp, target: \"h\\ndhcp-script=/tmp/x\", port: 389}]
    hosts: [{ip: 10.5.0.9, hostnames: [\"a\\rb\"]}]
  ips:
  - address: 10.5.0.1
    prefix: 24
    dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: 'vm,ignore', ip: 10.5.0.7}]}
";
    let out = run(&["validate", "-"], Some(yaml));
    assert_eq!(out.code, 1, "{}", out.stderr);
    for expected in [
        "  spec.dns.srvs[0].target: must not contain a line break",
        "  spec.dns.hosts[0].hostnames[0]: must not contain a line break",
        "  spec.ips[0].dhcp.hosts[0].name: host name 'vm,ignore' must not contain ','",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in {}",
            out.stderr
        );
    }
    let xml = "<network><name>n</name><bridge name='virbr5'/>\
        <dns><txt name='t' value='v&#10;dhcp-script=/tmp/x'/></dns>\
        <ip address='10.5.0.1' prefix='24'/></network>";
    let out = run(&["validate", "-"], Some(xml));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("/network/dns/txt[1]/@value") && out.stderr.contains("line break"),
        "{}",
        out.stderr
    );
}

#[test]
fn export_of_a_file_and_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write_temp(
        &dir,
        "net.yaml",
        "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: uplink}
spec:
  forward: {mode: passthrough, dev: ens1f0}
",
    );
    let out = run(&["export", yaml.to_str().unwrap()], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "<network>\n  <name>uplink</name>\n  <forward dev='ens1f0' mode='passthrough'>\n    <interface dev='ens1f0'/>\n  </forward>\n</network>\n"
    );

    let missing_file = run(&["export", "nope.yaml"], None);
    assert_eq!(missing_file.code, 2, "{}", missing_file.stderr);
    assert!(missing_file.stderr.contains("nope.yaml: no such file"));

    let no_cluster = run(&["export", "uplink"], None);
    assert_eq!(no_cluster.code, 3, "{}", no_cluster.stderr);
    assert!(
        no_cluster.stderr.starts_with("error: finding the cluster"),
        "{}",
        no_cluster.stderr
    );
}

#[test]
fn explain_port_shows_merged_settings_and_their_origins() {
    let dir = tempfile::tempdir().unwrap();
    let network = write_temp(
        &dir,
        "net.yaml",
        "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {name: sriov}
spec:
  forward: {mode: passthrough, interfaces: [{dev: ens1f0}, {dev: ens1f1}]}
  vlan: {tags: [{id: 10}]}
  trustGuestRxFilters: true
  portgroups:
  - {name: tenant, vlan: {tags: [{id: 20}]}, trustGuestRxFilters: false}
",
    );
    let port = write_temp(
        &dir,
        "port.yaml",
        "apiVersion: switchyard.dev/v1alpha1
kind: NetworkPort
metadata: {name: vm1-net0, namespace: default}
spec:
  network: sriov
  node: node-1
  mac: '52:54:00:00:00:01'
  portgroup: tenant
  vlan: {tags: [{id: 30}]}
",
    );
    let out = run(
        &[
            "explain-port",
            "--network",
            network.to_str().unwrap(),
            "--port",
            port.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "connection           macvtap, mode passthrough, over ens1f0, ens1f1 (exclusive: a pool device no other port uses)",
        "portgroup            tenant (named by the port)",
        "vlan                 tag 30 (from the port)",
        "trustGuestRxFilters  no (from portgroup 'tenant')",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }

    let plain = run(
        &["explain-port", "--network", network.to_str().unwrap()],
        None,
    );
    assert!(
        plain
            .stdout
            .contains("vlan                 tag 10 (from the network)"),
        "{}",
        plain.stdout
    );
    assert!(plain.stdout.contains("portgroup            none"));
}

#[test]
fn explain_port_says_exactly_why_a_port_fails() {
    let vepa = corpus("networkxml2xmlin/vepa-net.xml");
    let out = run(&["explain-port", "--network", &vepa], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("the port cannot attach (MergeConflict):"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(
        "virtualport typeid conflicts: 1193047 from the network but 2193047 from portgroup 'bob'"
    ));

    let missing = run(
        &["explain-port", "--network", &vepa, "--portgroup", "carol"],
        None,
    );
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("(PortgroupNotFound)"));
    assert!(
        missing
            .stderr
            .contains("portgroup 'carol' does not exist in the network (it has: bob, alice)")
    );

    // A nat network's ports attach to the bridge each node makes for it.
    let nat = run(
        &[
            "explain-port",
            "--network",
            &corpus("networkxml2xmlin/nat-network.xml"),
        ],
        None,
    );
    assert_eq!(nat.code, 0, "{}", nat.stderr);
    assert!(nat.stdout.contains("bridge virbr0"), "{}", nat.stdout);
    let hostdev = run(
        &[
            "explain-port",
            "--network",
            &corpus("networkxml2xmlin/hostdev.xml"),
        ],
        None,
    );
    assert_eq!(hostdev.code, 1);
    assert!(hostdev.stderr.contains("(Unsupported)"));

    let direct = run(
        &[
            "explain-port",
            "--network",
            &corpus("networkxml2xmlin/direct-net.xml"),
        ],
        None,
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    assert!(direct.stdout.contains("macvtap, mode bridge, over eth10 (shared: the least-used pool device, ties to the first listed)"));
}
