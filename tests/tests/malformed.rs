//! Malformed and hostile inputs get clear errors, never a panic: libvirt XML and Network /
//! NetworkPort YAML through the built `kubectl-switchyard` (truncated, wrong types, unknown
//! modes and fields, oversized, deeply nested, entity bombs, not UTF-8), and custom-resource
//! fields at their schema limits against the real apiserver, each refusal naming the field.
//!
//! The libvirt crate's unit tests check the XML reader's limits as a library; here the whole
//! program is run, so exit codes, messages and the absence of panics are what a user sees.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use switchyard_crds::Network;
use switchyard_tests::bins::{output_with_stdin, workspace_binary};
use switchyard_tests::cluster::TestEnv;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl-switchyard` with `stdin`, never against a cluster.
fn cli(args: &[&str], stdin: &[u8]) -> Run {
    let mut command = Command::new(workspace_binary("kubectl-switchyard"));
    command
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    // The program may stop reading early (an oversized document): a broken pipe is fine.
    let (output, _written) = output_with_stdin(command, stdin.to_vec());
    Run {
        // Killed by a signal (a stack overflow aborts with SIGABRT / SIGSEGV) counts as a crash.
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The run refused the input the way the CLI promises: exit `code` (1 invalid, 2 unreadable),
/// no panic, nothing on stdout, and a message containing `expected`.
fn assert_refused(what: &str, run: &Run, code: i32, expected: &str) {
    assert!(
        run.code != 101 && !run.stderr.contains("panicked"),
        "{what}: kubectl-switchyard panicked:\n{}",
        run.stderr
    );
    assert_eq!(
        run.code, code,
        "{what}: exit code {} (want {code}); stderr:\n{}",
        run.code, run.stderr
    );
    assert!(
        run.stderr.contains(expected),
        "{what}: stderr does not contain {expected:?}:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "{what}: printed output for refused input:\n{}",
        run.stdout
    );
}

/// A document through `import FILE` and `validate -`: both must refuse it with `expected`.
fn refuse_both(dir: &Path, what: &str, document: &[u8], code: i32, expected: &str) {
    let file = dir.join(format!(
        "{}.xml",
        what.replace(|c: char| !c.is_alphanumeric(), "-")
    ));
    std::fs::write(&file, document).expect("writing the test document");
    let import = cli(&["import", file.to_str().unwrap()], b"");
    assert_refused(&format!("import {what}"), &import, code, expected);
    let validate = cli(&["validate", "-"], document);
    assert_refused(&format!("validate {what}"), &validate, code, expected);
}

fn net(body: &str) -> String {
    format!("<network><name>n</name>{body}</network>")
}

#[test]
fn hostile_and_malformed_xml_is_refused_naming_the_element() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let long_name = "a".repeat(70_000);
    let deep = format!(
        "<metadata>{}{}</metadata>",
        "<x:a xmlns:x='urn:deep'>".repeat(100),
        "</x:a>".repeat(100)
    );
    let padding = "<!-- padding padding padding -->".repeat(52_000);
    let laughs = "<?xml version='1.0'?><!DOCTYPE network [<!ENTITY lol 'lol'>\
        <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
        <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>\
        <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>\
        <network><name>&lol3;</name></network>";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated inside an element",
            "<network><name>n</name><forward mode='vepa'><interface dev='eth0'/>".into(),
            "the document ends inside <forward>",
        ),
        (
            "truncated inside a tag",
            "<network><name>n</na".into(),
            "line 1, column 17: syntax error",
        ),
        (
            "negative mtu",
            net("<mtu size='-5'/>"),
            "/network/mtu/@size: '-5' is not a whole number",
        ),
        (
            "text for a rate",
            net("<forward mode='bridge'><interface dev='eth0'/></forward><bandwidth><inbound average='fast'/></bandwidth>"),
            "/network/bandwidth/inbound/@average: 'fast' is not a whole number",
        ),
        (
            "vlan tag 4096",
            net("<forward mode='bridge'><interface dev='eth0'/></forward><vlan><tag id='4096'/></vlan>"),
            "/network/vlan/tag[1]/@id: '4096' is not a whole number from 0 to 4095",
        ),
        (
            "text for a portgroup's vlan tag",
            net("<forward mode='bridge'><interface dev='eth0'/></forward><portgroup name='a'><vlan><tag id='x'/></vlan></portgroup>"),
            "/network/portgroup[1]/vlan/tag[1]/@id: 'x' is not a whole number",
        ),
        (
            "unknown forward mode",
            net("<forward mode='macvlan'/>"),
            "/network/forward/@mode: 'macvlan' is not a valid mode",
        ),
        (
            "unknown element",
            net("<frobnicate/>"),
            "/network: unknown element <frobnicate> in <network>",
        ),
        (
            "unknown attribute",
            net("<forward mode='vepa' frob='1'><interface dev='eth0'/></forward>"),
            "/network/forward/@frob: unknown attribute 'frob' on <forward>",
        ),
        (
            "missing required attribute",
            net("<forward mode='vepa'><interface/></forward>"),
            "/network/forward/interface[1]/@dev: <interface> needs the attribute 'dev'",
        ),
        (
            "device name of 16 characters",
            net("<forward mode='vepa'><interface dev='eth0123456789abc'/></forward>"),
            "/network/forward/interface[1]/@dev (spec.forward.interfaces[0].dev): device name 'eth0123456789abc' is longer than the kernel's 15 characters",
        ),
        (
            "70 kB attribute",
            net(&format!("<bridge name='{long_name}'/>")),
            "attribute name of <bridge> is 70000 bytes, over the limit of 65536",
        ),
        (
            "1.6 MiB document",
            net(&padding),
            "over the limit of 1572864",
        ),
        (
            "100 levels of nesting",
            net(&deep),
            "elements are nested deeper than 64 levels",
        ),
        (
            "billion laughs",
            laughs.into(),
            "DOCTYPE declarations are not accepted",
        ),
        (
            "external entity",
            "<!DOCTYPE network [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]><network><name>&xxe;</name></network>".into(),
            "DOCTYPE declarations are not accepted",
        ),
        (
            "undeclared entity",
            "<network><name>&lol;</name></network>".into(),
            "line 1, column 16: unknown entity &lol;",
        ),
        (
            "two root elements",
            "<network><name>n</name></network><network/>".into(),
            "content after the root element",
        ),
    ];
    for (what, document, expected) in &cases {
        refuse_both(dir.path(), what, document.as_bytes(), 1, expected);
    }

    // Not UTF-8: unreadable input (exit 2), saying so and naming the file.
    let latin1 = b"<network><name>r\xe9seau</name></network>";
    let file = dir.path().join("latin1.xml");
    std::fs::write(&file, latin1).unwrap();
    let import = cli(&["import", file.to_str().unwrap()], b"");
    assert_refused(
        "import latin-1",
        &import,
        2,
        &format!(
            "error: reading {}: stream did not contain valid UTF-8",
            file.display()
        ),
    );
    let validate = cli(&["validate", "-"], latin1);
    assert_refused(
        "validate latin-1",
        &validate,
        2,
        "error: reading standard input: stream did not contain valid UTF-8",
    );
    eprintln!(
        "malformed XML: {} documents refused by import and validate, with the element named, in {:.1}s",
        cases.len() + 1,
        started.elapsed().as_secs_f64()
    );
}

const NETWORK: &str =
    "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {name: uplink}\n";

#[test]
fn malformed_yaml_is_refused_naming_the_field() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pool = "forward: {mode: vepa, interfaces: [{dev: eth0}]}";
    let aliases = "a: &a [x, x, x, x, x, x, x, x, x]\n\
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n\
        h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n\
        kind: Network\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unclosed flow",
            format!("{NETWORK}spec: {{forward: [\n"),
            "not YAML: did not find expected node content",
        ),
        (
            "tab indentation",
            format!("{NETWORK}spec:\n\tforward: {{mode: vepa}}\n"),
            "not YAML: found character that cannot start any token at line 5 column 1",
        ),
        (
            "text for a number",
            format!("{NETWORK}spec: {{{pool}, maxConnectionsPerDevice: many}}\n"),
            "not a valid Network: spec.maxConnectionsPerDevice: invalid type: string \"many\", expected u32",
        ),
        (
            "a string for a list",
            format!("{NETWORK}spec: {{forward: {{mode: vepa, interfaces: eth0}}}}\n"),
            "not a valid Network: spec.forward.interfaces: invalid type: string \"eth0\", expected a sequence",
        ),
        (
            "unknown forward mode",
            format!("{NETWORK}spec: {{forward: {{mode: tunnel}}}}\n"),
            "spec.forward.mode: unknown variant `tunnel`",
        ),
        (
            "vlan id beyond u16",
            format!(
                "{NETWORK}spec: {{{pool}, portgroups: [{{name: a, vlan: {{tags: [{{id: 70000}}]}}}}]}}\n"
            ),
            "spec.portgroups[0].vlan.tags[0].id: invalid value: integer `70000`, expected u16",
        ),
        (
            "vlan tag 4096",
            format!(
                "{NETWORK}spec: {{forward: {{mode: bridge, interfaces: [{{dev: eth0}}]}}, vlan: {{tags: [{{id: 4096}}]}}}}\n"
            ),
            "spec.vlan.tags[0].id: vlan tag id 4096 is too large (maximum 4095)",
        ),
        (
            "maxConnectionsPerDevice 0",
            format!("{NETWORK}spec: {{{pool}, maxConnectionsPerDevice: 0}}\n"),
            "spec.maxConnectionsPerDevice: 0 is out of range 1-4096",
        ),
        (
            "maxConnectionsPerDevice 4097",
            format!("{NETWORK}spec: {{{pool}, maxConnectionsPerDevice: 4097}}\n"),
            "spec.maxConnectionsPerDevice: 4097 is out of range 1-4096",
        ),
        (
            "device name of 16 characters",
            format!(
                "{NETWORK}spec: {{forward: {{mode: vepa, interfaces: [{{dev: eth0123456789abc}}]}}}}\n"
            ),
            "spec.forward.interfaces[0].dev: device name 'eth0123456789abc' is longer than the kernel's 15 characters",
        ),
        (
            "misspelt field",
            format!("{NETWORK}spec: {{forwrd: {{mode: vepa, interfaces: [{{dev: eth0}}]}}}}\n"),
            "not a valid Network: unknown field(s) spec.forwrd",
        ),
        (
            "unknown nested fields",
            format!(
                "{NETWORK}spec: {{forward: {{mode: vepa, frob: 1, interfaces: [{{dev: eth0, speed: 10}}]}}}}\n"
            ),
            "unknown field(s) spec.forward.frob, spec.forward.interfaces[0].speed",
        ),
        (
            "alias bomb",
            aliases.into(),
            "not YAML: repetition limit exceeded",
        ),
        (
            "5,000 levels of nesting",
            format!(
                "{NETWORK}spec: {{{pool}, libvirtMetadata: {}{}}}\n",
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            "not YAML: recursion limit exceeded",
        ),
        (
            "another API version",
            "apiVersion: v1\nkind: Network\nmetadata: {name: uplink}\n".into(),
            "expected apiVersion: switchyard.dev/v1alpha1, found 'v1'",
        ),
        (
            "no kind",
            "metadata: {name: uplink}\n".into(),
            "expected a switchyard Network (kind: Network), found no kind",
        ),
    ];
    for (what, document, expected) in &cases {
        let file = dir.path().join("network.yaml");
        std::fs::write(&file, document).unwrap();
        let run = cli(&["validate", file.to_str().unwrap()], b"");
        assert_refused(&format!("validate ({what})"), &run, 1, expected);
    }

    // What is kept is checked too: a live object read back with every server field still
    // validates, so the unknown-field check does not refuse what kubectl prints.
    let live = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata:\n  name: uplink\n  uid: 0b6f0c1e-2c43-4f39-9c0e-2a8e5b7c1d11\n  resourceVersion: '42'\n  generation: 3\n  creationTimestamp: '2026-01-01T00:00:00Z'\n  labels: {{}}\n  managedFields:\n  - {{manager: kubectl, operation: Apply, apiVersion: switchyard.dev/v1alpha1, fieldsType: FieldsV1, fieldsV1: {{'f:spec': {{'f:forward': {{}}}}}}}}\nspec:\n  {pool}\n  portgroups: []\nstatus:\n  nodesSelected: 1\n  nodesReady: 1\n  conditions:\n  - {{type: Ready, status: 'True', reason: Serving, message: ok, lastTransitionTime: '2026-01-01T00:00:00Z'}}\n"
    );
    let file = dir.path().join("live.yaml");
    std::fs::write(&file, &live).unwrap();
    let run = cli(&["validate", file.to_str().unwrap()], b"");
    assert_eq!(run.code, 0, "a live object was refused:\n{}", run.stderr);

    // Ports, read by explain-port.
    let network = dir.path().join("net.yaml");
    std::fs::write(&network, format!("{NETWORK}spec: {{{pool}}}\n")).unwrap();
    let port = dir.path().join("port.yaml");
    for (what, spec, expected) in [
        (
            "misspelt port field",
            "{network: uplink, node: n1, mac: '52:54:00:00:00:01', vlna: {tags: [{id: 3}]}}",
            "port.yaml: not a valid NetworkPort: unknown field(s) spec.vlna",
        ),
        (
            "port without a node",
            "{network: uplink, mac: '52:54:00:00:00:01'}",
            "port.yaml: not a valid NetworkPort: spec: missing field `node`",
        ),
    ] {
        std::fs::write(
            &port,
            format!("apiVersion: switchyard.dev/v1alpha1\nkind: NetworkPort\nmetadata: {{name: p, namespace: default}}\nspec: {spec}\n"),
        )
        .unwrap();
        let run = cli(
            &[
                "explain-port",
                "--network",
                network.to_str().unwrap(),
                "--port",
                port.to_str().unwrap(),
            ],
            b"",
        );
        assert_refused(what, &run, 1, expected);
    }

    let run = cli(
        &["validate", "-"],
        b"kind: Network\nmetadata: {name: caf\xe9}\n",
    );
    assert_refused(
        "validate latin-1 YAML",
        &run,
        2,
        "error: reading standard input: stream did not contain valid UTF-8",
    );
    eprintln!(
        "malformed YAML: {} documents refused naming the field, in {:.1}s",
        cases.len() + 3,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Custom-resource fields at their schema limits, on the real apiserver (v1.20 prints paths
// without list indices: `spec.vlan.tags.id`).

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Submits `object` with a server-side dry run: everything the apiserver checks, nothing kept.
fn dry_run(env: &TestEnv, object: &Value) -> std::process::Output {
    env.kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&object.to_string()),
    )
}

fn network_object(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name}, "spec": spec})
}

fn port_object(namespace: &str, name: &str, spec: Value) -> Value {
    let mut full = json!({"network": "uplink", "node": "node-1", "mac": "52:54:00:00:00:01"});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "NetworkPort",
        "metadata": {"name": name, "namespace": namespace}, "spec": full})
}

/// A DNS subdomain of exactly `len` characters: 63-character labels joined by dots.
fn subdomain(len: usize) -> String {
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            name.push('.');
        }
        let label = (len - name.len()).min(63);
        name.push_str(&"a".repeat(label));
    }
    name
}

#[tokio::test]
async fn custom_resource_fields_at_schema_limits() {
    let started = Instant::now();
    let env = TestEnv::new("limits").await;
    let ns = env.namespace.clone();
    let name = env.unique("limits");
    let vepa = |extra: Value| {
        let mut spec = json!({"forward": {"mode": "vepa", "interfaces": [{"dev": "eth0"}]}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        network_object(&name, spec)
    };
    let bridge_pool = |vlan: u32| {
        network_object(
            &name,
            json!({"forward": {"mode": "bridge", "interfaces": [{"dev": "eth0"}]},
                "vlan": {"tags": [{"id": vlan}]}}),
        )
    };
    let pool = |dev: &str| {
        network_object(
            &name,
            json!({"forward": {"mode": "vepa", "interfaces": [{"dev": dev}]}}),
        )
    };
    let accepted: Vec<(&str, Value)> = vec![
        ("vlan tag 4095", bridge_pool(4095)),
        (
            "maxConnectionsPerDevice 1",
            vepa(json!({"maxConnectionsPerDevice": 1})),
        ),
        (
            "maxConnectionsPerDevice 4096",
            vepa(json!({"maxConnectionsPerDevice": 4096})),
        ),
        ("15-character device name", pool("eth0123456789ab")),
        (
            "15-character bridge name",
            network_object(
                &name,
                json!({"forward": {"mode": "bridge"}, "bridge": {"name": "br0123456789abc"}}),
            ),
        ),
        (
            "253-character Network name",
            network_object(
                &subdomain(253),
                json!({"forward": {"mode": "vepa", "interfaces": [{"dev": "eth0"}]}}),
            ),
        ),
        (
            "253-character NetworkPort name",
            port_object(&ns, &subdomain(253), json!({})),
        ),
        (
            "253-character network and node references",
            port_object(
                &ns,
                "refs",
                json!({"network": subdomain(253), "node": subdomain(253)}),
            ),
        ),
        (
            "253-character portgroup name",
            vepa(json!({"portgroups": [{"name": "p".repeat(253)}]})),
        ),
        (
            "virtualport typeid 16777215",
            vepa(
                json!({"virtualport": {"type": "802.1Qbg", "typeid": 16_777_215, "managerid": 255}}),
            ),
        ),
    ];
    for (what, object) in &accepted {
        let out = dry_run(&env, object);
        assert!(out.status.success(), "{what} was refused: {}", stderr(&out));
    }

    // Each refusal names the field and the limit.
    let refused: Vec<(&str, Value, &[&str])> = vec![
        (
            "vlan tag 4096",
            bridge_pool(4096),
            &[
                "spec.vlan.tags.id: Invalid value: 4096",
                "less than or equal to 4095",
            ],
        ),
        (
            "a port's vlan tag 4096",
            port_object(&ns, "vlan", json!({"vlan": {"tags": [{"id": 4096}]}})),
            &[
                "spec.vlan.tags.id: Invalid value: 4096",
                "less than or equal to 4095",
            ],
        ),
        (
            "maxConnectionsPerDevice 0",
            vepa(json!({"maxConnectionsPerDevice": 0})),
            &[
                "spec.maxConnectionsPerDevice: Invalid value: 0",
                "greater than or equal to 1",
            ],
        ),
        (
            "maxConnectionsPerDevice 4097",
            vepa(json!({"maxConnectionsPerDevice": 4097})),
            &[
                "spec.maxConnectionsPerDevice: Invalid value: 4097",
                "less than or equal to 4096",
            ],
        ),
        (
            "16-character device name",
            pool("eth0123456789abc"),
            &[
                "spec.forward.interfaces.dev: Invalid value: \"eth0123456789abc\"",
                "at most 15 chars long",
            ],
        ),
        (
            "empty device name",
            pool(""),
            &["spec.forward.interfaces.dev", "at least 1 chars long"],
        ),
        (
            "16-character bridge name",
            network_object(
                &name,
                json!({"forward": {"mode": "bridge"}, "bridge": {"name": "br0123456789abcd"}}),
            ),
            &[
                "spec.bridge.name: Invalid value: \"br0123456789abcd\"",
                "at most 15 chars long",
            ],
        ),
        (
            "254-character Network name",
            network_object(&subdomain(254), json!({"forward": {"mode": "vepa"}})),
            &[
                "metadata.name: Invalid value:",
                "must be no more than 253 characters",
            ],
        ),
        (
            "254-character NetworkPort name",
            port_object(&ns, &subdomain(254), json!({})),
            &[
                "metadata.name: Invalid value:",
                "must be no more than 253 characters",
            ],
        ),
        (
            "254-character network reference",
            port_object(&ns, "refs", json!({"network": "n".repeat(254)})),
            &["spec.network: Invalid value:", "at most 253 chars long"],
        ),
        (
            "254-character node reference",
            port_object(&ns, "refs", json!({"node": "n".repeat(254)})),
            &["spec.node: Invalid value:", "at most 253 chars long"],
        ),
        (
            "254-character portgroup name",
            vepa(json!({"portgroups": [{"name": "p".repeat(254)}]})),
            &[
                "spec.portgroups.name: Invalid value:",
                "at most 253 chars long",
            ],
        ),
        (
            "virtualport typeid 16777216",
            vepa(json!({"virtualport": {"type": "802.1Qbg", "typeid": 16_777_216}})),
            &["spec.virtualport.typeid: Invalid value: 16777216"],
        ),
        (
            "virtualport managerid 256",
            vepa(json!({"virtualport": {"type": "802.1Qbg", "managerid": 256}})),
            &["spec.virtualport.managerid: Invalid value: 256"],
        ),
        (
            "PCI slot 32",
            network_object(
                &name,
                json!({"forward": {"mode": "hostdev", "addresses": [{"domain": 0, "bus": 1, "slot": 32, "function": 0}]}}),
            ),
            &[
                "spec.forward.addresses.slot: Invalid value: 32",
                "less than or equal to 31",
            ],
        ),
        (
            "a pool device listed twice",
            network_object(
                &name,
                json!({"forward": {"mode": "vepa", "interfaces": [{"dev": "eth0"}, {"dev": "eth0"}]}}),
            ),
            &["spec.forward.interfaces[1]: Duplicate value"],
        ),
        (
            "a portgroup named twice",
            vepa(json!({"portgroups": [{"name": "gold"}, {"name": "gold"}]})),
            &["spec.portgroups[1]: Duplicate value"],
        ),
        (
            "an unknown forward mode",
            network_object(&name, json!({"forward": {"mode": "macvlan"}})),
            &["spec.forward.mode: Unsupported value: \"macvlan\""],
        ),
    ];
    for (what, object, expected) in &refused {
        let out = dry_run(&env, object);
        let message = stderr(&out);
        assert!(!out.status.success(), "{what} was accepted");
        for part in *expected {
            assert!(
                message.contains(part),
                "{what}: the refusal does not say {part:?}:\n{message}"
            );
        }
    }

    // A misspelt field is caught by kubectl against the published schema, not dropped.
    let out = env.kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&network_object(&name, json!({"forwrd": {"mode": "vepa"}})).to_string()),
    );
    assert!(!out.status.success(), "a misspelt field was accepted");
    assert!(
        stderr(&out).contains("unknown field \"forwrd\""),
        "{}",
        stderr(&out)
    );

    // Very long lists are kept whole; an object past etcd's limit is refused with the reason.
    let long = network_object(
        &name,
        json!({
            "forward": {"mode": "vepa", "interfaces": (0..4096).map(|i| json!({"dev": format!("e{i}")})).collect::<Vec<_>>()},
            "portgroups": (0..2000).map(|i| json!({"name": format!("pg{i}"), "vlan": {"tags": [{"id": i % 4096}]}})).collect::<Vec<_>>(),
        }),
    );
    let mut long: Network = serde_json::from_value(long).unwrap();
    long.metadata.labels = Some([env.test_label()].into_iter().collect());
    let networks: Api<Network> = Api::all(env.client.clone());
    networks
        .create(&PostParams::default(), &long)
        .await
        .expect("a network with 4,096 pool devices and 2,000 portgroups");
    let back = networks.get(&name).await.unwrap();
    assert_eq!(back.spec.forward.as_ref().unwrap().interfaces.len(), 4096);
    assert_eq!(back.spec.portgroups.len(), 2000);
    assert_eq!(
        back.spec.portgroups[1999].vlan.as_ref().unwrap().tags[0].id,
        1999
    );

    let huge = network_object(
        &env.unique("huge"),
        json!({"forward": {"mode": "vepa", "interfaces": [{"dev": "eth0"}]},
            "dnsmasqOptions": vec!["x".repeat(1000); 2000]}),
    );
    let out = env.kubectl(&["create", "-f", "-"], Some(&huge.to_string()));
    assert!(!out.status.success(), "a 2 MB network was stored");
    assert!(
        stderr(&out).contains("request is too large"),
        "{}",
        stderr(&out)
    );
    eprintln!(
        "schema limits: {} accepted, {} refused naming the field, 4,096-device / 2,000-portgroup lists kept, oversize refused, in {:.1}s",
        accepted.len(),
        refused.len() + 2,
        started.elapsed().as_secs_f64()
    );
}
