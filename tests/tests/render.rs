//! `kubectl switchyard render NAME --dnsmasq|--hostsfile` on a Network read from a real API
//! server: what the apiserver stores renders to libvirt's own files, a Network with 10,000
//! static hosts is stored and rendered in full, and a hostile value stored past admission (no
//! webhook here) is still refused, naming the field.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use switchyard_tests::bins::workspace_binary;
use switchyard_tests::cluster::{TestEnv, repo_root};

fn confdata(file: &str) -> String {
    let path = repo_root()
        .join("../shared/corpus/libvirt/networkxml2confdata")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn cli(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(workspace_binary("kubectl-switchyard"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("kubectl-switchyard runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates `spec` as Network `name`, labelled for the test's cleanup.
fn create(env: &TestEnv, name: &str, spec: Value) {
    let (key, value) = env.test_label();
    let object = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name, "labels": {key: value}}, "spec": spec});
    let out = env.kubectl(&["create", "-f", "-"], Some(&object.to_string()));
    assert!(
        out.status.success(),
        "creating {name}: {}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn render_reads_the_network_from_the_cluster() {
    let env = TestEnv::new("render").await;
    // libvirt's nat-network, as `import` gives it, stored under a unique object name with its
    // libvirt name kept: the files name the network by its libvirt name.
    let xml = repo_root().join("../shared/corpus/libvirt/networkxml2confdata/nat-network.xml");
    let imported = cli(
        Path::new("/nonexistent"),
        &["import", xml.to_str().unwrap()],
    );
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let object: Value = serde_yaml::from_str(&text(&imported.stdout)).unwrap();
    let mut spec = object["spec"].clone();
    spec["libvirtName"] = json!("default");
    let name = env.unique("nat");
    create(&env, &name, spec);

    let conf = cli(
        &env.kubeconfig,
        &[
            "render",
            &name,
            "--dnsmasq",
            "--state-dir",
            "/var/lib/libvirt/dnsmasq",
        ],
    );
    assert!(conf.status.success(), "{}", text(&conf.stderr));
    assert_eq!(text(&conf.stdout), confdata("nat-network.conf"));
    let hosts = cli(&env.kubeconfig, &["render", &name, "--hostsfile"]);
    assert!(hosts.status.success(), "{}", text(&hosts.stderr));
    assert_eq!(text(&hosts.stdout), confdata("nat-network.hostsfile"));

    let hostile = env.unique("hostile");
    create(
        &env,
        &hostile,
        json!({"bridge": {"name": "virbr4"},
            "dns": {"srvs": [{"service": "ldap", "protocol": "tcp",
                "target": "h\ndhcp-script=/tmp/x", "port": 389}]},
            "ips": [{"address": "10.4.0.1", "prefix": 24}]}),
    );
    let refused = cli(&env.kubeconfig, &["render", &hostile, "--dnsmasq"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert_eq!(text(&refused.stdout), "");
    assert!(
        text(&refused.stderr).contains("spec.dns.srvs[0].target: must not contain a line break"),
        "{}",
        text(&refused.stderr)
    );
    // 10,000 static hosts: stored by the apiserver (about 60 bytes each in JSON) and
    // rendered back in full.
    let hosts: Vec<Value> = (0..10_000u32)
        .map(|i| {
            json!({"mac": format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256),
                "name": format!("vm{i}"), "ip": format!("10.8.{}.{}", i / 250, i % 250 + 2)})
        })
        .collect();
    let big = env.unique("big");
    create(
        &env,
        &big,
        json!({"bridge": {"name": "virbr8"},
            "ips": [{"address": "10.8.255.1", "prefix": 16, "dhcp": {
                "ranges": [{"start": "10.8.100.1", "end": "10.8.199.254"}], "hosts": hosts}}]}),
    );
    let rendered = cli(&env.kubeconfig, &["render", &big, "--hostsfile"]);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let lines: Vec<String> = text(&rendered.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 10_000);
    assert_eq!(lines[9_999], "52:54:00:00:27:0f,10.8.39.251,vm9999");

    let missing = cli(&env.kubeconfig, &["render", "no-such-network", "--dnsmasq"]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
}
