//! The switchyard.dev API on the real local apiserver: CRDs, schema, server-side apply.

use kube::api::{Api, Patch, PatchParams};
use switchyard_crds::*;
use switchyard_tests::cluster::TestEnv;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What users type and see, as the apiserver serves it: each resource's short name, the
/// `switchyard` category, a status subresource, and the printer columns of `kubectl get`
/// (names, types, `-o wide` priority, and cells that show the right fields). The harness only
/// waited for the CRDs to be Established, which says nothing of these.
#[tokio::test]
async fn crds_serve_short_names_categories_and_printer_columns() {
    let env = TestEnv::new("crd-discovery").await;
    let ns = env.namespace.clone();

    let discovery = env
        .client
        .list_api_group_resources("switchyard.dev/v1alpha1")
        .await
        .expect("discovery of switchyard.dev/v1alpha1");
    for (plural, short_name, namespaced) in [
        ("networks", "swnet", false),
        ("networkports", "swport", true),
        ("networknodes", "swnode", false),
        ("migrationchecks", "swmc", true),
    ] {
        let resource = discovery
            .resources
            .iter()
            .find(|r| r.name == plural)
            .unwrap_or_else(|| panic!("{plural} is not served"));
        assert_eq!(
            resource.short_names.as_deref(),
            Some(&[short_name.to_string()][..]),
            "{plural}"
        );
        assert_eq!(
            resource.categories.as_deref(),
            Some(&["switchyard".to_string()][..]),
            "{plural}"
        );
        assert_eq!(resource.namespaced, namespaced, "{plural}");
        let status = format!("{plural}/status");
        assert!(
            discovery.resources.iter().any(|r| r.name == status),
            "{status} is not served"
        );
    }

    let net_name = env.unique("columns");
    let node_name = env.unique("columns-node");
    let label = env.test_label();
    let objects = format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {{name: {net_name}, labels: {{{l}: {v}}}}}
spec: {{forward: {{mode: vepa, interfaces: [{{dev: eth1}}, {{dev: eth2}}]}}}}
---
apiVersion: switchyard.dev/v1alpha1
kind: NetworkPort
metadata: {{name: vm1-net0, namespace: {ns}}}
spec: {{network: {net_name}, node: {node_name}, mac: "52:54:00:00:00:01"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: NetworkNode
metadata: {{name: {node_name}, labels: {{{l}: {v}}}}}
spec: {{}}
---
apiVersion: switchyard.dev/v1alpha1
kind: MigrationCheck
metadata: {{name: vm1, namespace: {ns}}}
spec: {{interfaces: [{{name: net0, network: {net_name}}}], nodes: [{node_name}]}}
"#,
        l = label.0,
        v = label.1
    );
    let out = env.kubectl(&["apply", "-f", "-"], Some(&objects));
    assert!(out.status.success(), "kubectl apply: {}", stderr(&out));
    for (resource, name, namespace, status) in [
        (
            "swnet",
            net_name.as_str(),
            None,
            r#"{"status": {"poolSize": 2, "uses": "pool of 2", "nodesReadySummary": "1/3", "capacityUsed": 5, "capacityFree": 7, "freePerNode": "node-a=7, node-b=0"}}"#,
        ),
        (
            "swport",
            "vm1-net0",
            Some(ns.as_str()),
            r#"{"status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False", "reason": "NoFreeDevice", "message": "every device is held"}], "actual": {"type": "direct", "mode": "vepa", "device": "eth1", "linkName": "swy0123456789"}}}"#,
        ),
        (
            "swnode",
            node_name.as_str(),
            None,
            r#"{"status": {"networksReady": 1, "ports": 4, "networks": [{"name": "fine", "ready": true}, {"name": "sriov", "ready": false, "reason": "DeviceMissing", "message": "eth2 is absent"}], "conditions": [{"type": "Ready", "status": "True", "reason": "Recovered", "message": "counts rebuilt"}]}}"#,
        ),
        (
            "swmc",
            "vm1",
            Some(ns.as_str()),
            r#"{"status": {"summary": "1/1"}}"#,
        ),
    ] {
        let mut args = vec![
            "patch",
            resource,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ];
        if let Some(namespace) = namespace {
            args.extend(["-n", namespace]);
        }
        let out = env.kubectl(&args, None);
        assert!(
            out.status.success(),
            "patching {resource} {name}: {}",
            stderr(&out)
        );
    }

    // The category lists all four kinds.
    let out = env.kubectl(&["get", "switchyard", "-n", &ns, "-o", "name"], None);
    assert!(
        out.status.success(),
        "kubectl get switchyard: {}",
        stderr(&out)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for object in [
        format!("network.switchyard.dev/{net_name}"),
        "networkport.switchyard.dev/vm1-net0".to_string(),
        format!("networknode.switchyard.dev/{node_name}"),
        "migrationcheck.switchyard.dev/vm1".to_string(),
    ] {
        assert!(
            listed.lines().any(|l| l == object),
            "{object} missing from `kubectl get switchyard`:\n{listed}"
        );
    }

    // What a person sees: the wide columns of `kubectl get` name the bridge or pool, the free
    // ports per node, and the first network a node cannot serve and why.
    for (resource, name, wanted) in [
        (
            "swnet",
            net_name.as_str(),
            ["pool of 2", "node-a=7, node-b=0"],
        ),
        ("swnode", node_name.as_str(), ["sriov", "DeviceMissing"]),
    ] {
        let out = env.kubectl(&["get", resource, name, "-o", "wide"], None);
        assert!(
            out.status.success(),
            "kubectl get {resource}: {}",
            stderr(&out)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        for text in wanted {
            assert!(
                shown.contains(text),
                "kubectl get {resource} -o wide lacks {text}:\n{shown}"
            );
        }
    }

    // Each column (name, type, priority) and what its cell must show of the object served in
    // the same row (a controller of another test may rewrite status at any time).
    let tables = [
        (
            format!("/apis/switchyard.dev/v1alpha1/networks/{net_name}"),
            vec![
                ("Name", "string", 0, Shows::Field("/metadata/name")),
                ("Mode", "string", 0, Shows::Field("/spec/forward/mode")),
                ("Uses", "string", 0, Shows::Field("/status/uses")),
                (
                    "Nodes-Ready",
                    "string",
                    0,
                    Shows::Field("/status/nodesReadySummary"),
                ),
                ("Used", "integer", 0, Shows::Field("/status/capacityUsed")),
                ("Free", "integer", 0, Shows::Field("/status/capacityFree")),
                (
                    "Free-Per-Node",
                    "string",
                    1,
                    Shows::Field("/status/freePerNode"),
                ),
                ("Age", "date", 0, Shows::Age),
            ],
        ),
        (
            format!("/apis/switchyard.dev/v1alpha1/namespaces/{ns}/networkports/vm1-net0"),
            vec![
                ("Name", "string", 0, Shows::Field("/metadata/name")),
                ("Network", "string", 0, Shows::Field("/spec/network")),
                ("Node", "string", 0, Shows::Field("/spec/node")),
                ("Phase", "string", 0, Shows::Field("/status/phase")),
                ("Reason", "string", 0, Shows::ReadyReason),
                ("Device", "string", 0, Shows::Field("/status/actual/device")),
                ("Link", "string", 1, Shows::Field("/status/actual/linkName")),
                ("Age", "date", 0, Shows::Age),
            ],
        ),
        (
            format!("/apis/switchyard.dev/v1alpha1/networknodes/{node_name}"),
            vec![
                ("Name", "string", 0, Shows::Field("/metadata/name")),
                (
                    "Networks-Ready",
                    "integer",
                    0,
                    Shows::Field("/status/networksReady"),
                ),
                ("Ports", "integer", 0, Shows::Field("/status/ports")),
                ("Agent-Ready", "string", 0, Shows::ReadyCondition),
                ("Not-Ready", "string", 1, Shows::FirstNotReady("name")),
                ("Why", "string", 1, Shows::FirstNotReady("reason")),
                ("Age", "date", 0, Shows::Age),
            ],
        ),
        (
            format!("/apis/switchyard.dev/v1alpha1/namespaces/{ns}/migrationchecks/vm1"),
            vec![
                ("Name", "string", 0, Shows::Field("/metadata/name")),
                ("Eligible", "string", 0, Shows::Field("/status/summary")),
                ("Age", "date", 0, Shows::Age),
            ],
        ),
    ];
    for (path, columns) in tables {
        let request = http::Request::get(format!("{path}?includeObject=Object"))
            .header(
                http::header::ACCEPT,
                "application/json;as=Table;v=v1;g=meta.k8s.io",
            )
            .body(Vec::new())
            .unwrap();
        let table: serde_json::Value = env
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("the table of {path}: {e}"));
        let served: Vec<(&str, &str, i64)> = table["columnDefinitions"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not a table: {table}"))
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default(),
                    c["type"].as_str().unwrap_or_default(),
                    c["priority"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        let wanted: Vec<(&str, &str, i64)> = columns.iter().map(|c| (c.0, c.1, c.2)).collect();
        assert_eq!(served, wanted, "{path}: printer columns");
        let row = &table["rows"][0];
        let object = &row["object"];
        for (i, (name, _, _, shows)) in columns.iter().enumerate() {
            let shown = &row["cells"][i];
            match shows.value(object) {
                Some(value) => {
                    assert!(
                        !value.is_null(),
                        "{path}: the object has no {name}: {object}"
                    );
                    assert_eq!(shown, &value, "{path}: column {name}");
                }
                None => assert!(shown.is_string(), "{path}: column {name} shows {shown}"),
            }
        }
    }
}

/// What a printer column shows of its object.
#[derive(Debug)]
enum Shows {
    /// The field at this JSON pointer.
    Field(&'static str),
    /// The status of the Ready condition.
    ReadyCondition,
    /// The reason of the Ready condition.
    ReadyReason,
    /// This field of the first network in `status.networks` that is not ready.
    FirstNotReady(&'static str),
    /// The object's age: a duration, checked only for presence.
    Age,
}

impl Shows {
    /// The cell's expected value, or `None` for a value this test does not compute.
    fn value(&self, object: &serde_json::Value) -> Option<serde_json::Value> {
        match self {
            Shows::Field(pointer) => Some(object.pointer(pointer).cloned().unwrap_or_default()),
            Shows::ReadyCondition => Some(
                object["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| c["status"].clone())
                    .unwrap_or_default(),
            ),
            Shows::ReadyReason => Some(
                object["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| c["reason"].clone())
                    .unwrap_or_default(),
            ),
            Shows::FirstNotReady(field) => Some(
                object["status"]["networks"]
                    .as_array()
                    .and_then(|ns| ns.iter().find(|n| n["ready"] == false))
                    .map(|n| n[*field].clone())
                    .unwrap_or_default(),
            ),
            Shows::Age => None,
        }
    }
}

/// A Network with every field set, as a user would write it in YAML.
fn full_network(name: &str, label: (String, String)) -> Network {
    let yaml = format!(
        r#"
apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata:
  name: {name}
  labels:
    {k}: {v}
spec:
  libvirtName: Full_Net
  title: A network with every field set
  description: Every property of the Network schema, so pruning of any shows.
  uuid: 81ff0d90-c91e-6742-64da-4a736edb9a8b
  nodeSelector:
    matchLabels: {{rack: a}}
    matchExpressions:
    - {{key: nic, operator: In, values: [x710, e810]}}
    - {{key: maintenance, operator: DoesNotExist}}
  nodeGroups:
  - name: dell
    nodeSelector: {{matchLabels: {{vendor: dell}}, matchExpressions: [{{key: gpu, operator: NotIn, values: [absent]}}]}}
    interfaces: [{{dev: ens1f0}}, {{dev: ens1f1}}]
    pf: ens1
    bridge: br-dell
  forward:
    mode: vepa
    dev: eth1
    managed: true
    driver: {{name: vfio, model: vfio-pci-igb}}
    interfaces: [{{dev: eth1}}, {{dev: eth2}}, {{dev: eth3}}]
    pf: eth0
    addresses:
    - {{domain: 0, bus: 3, slot: 0, function: 1}}
    nat:
      ipv6: true
      addresses: [{{start: 10.20.30.40, end: 10.20.30.44}}]
      ports: [{{start: 60000, end: 65432}}]
  bridge: {{name: virbr0, stp: true, delay: 2, macTableManager: libvirt, zone: myzone}}
  mac: 52:54:00:e6:a2:c9
  mtu: 9000
  domain: {{name: example.com, localOnly: true, register: false}}
  virtualport: {{type: 802.1Qbg, managerid: 11, typeid: 1193047, typeidversion: 2, instanceid: 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f, interfaceid: 19b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f, profileid: full-profile}}
  portgroups:
  - name: bob
    default: true
    virtualport: {{type: 802.1Qbg, managerid: 12, typeid: 2193047, typeidversion: 3, instanceid: 29b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f}}
    vlan: {{trunk: true, tags: [{{id: 666, nativeMode: tagged}}, {{id: 667}}]}}
    bandwidth: {{inbound: {{average: 1000, peak: 2000, burst: 1024, floor: 100}}, outbound: {{average: 500, peak: 600, burst: 512, floor: 50}}}}
    trustGuestRxFilters: false
  - name: alice
    virtualport: {{profileid: alice-profile, interfaceid: 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f}}
  vlan: {{trunk: true, tags: [{{id: 42, nativeMode: untagged}}, {{id: 43}}]}}
  bandwidth: {{inbound: {{average: 10000, peak: 15000, burst: 2048, floor: 1000}}, outbound: {{average: 20000, peak: 30000, burst: 4096, floor: 2000}}}}
  trustGuestRxFilters: true
  ipv6: true
  port: {{isolated: true}}
  dns:
    enable: true
    forwardPlainNames: false
    forwarders: [{{addr: 8.8.8.8, port: 5353}}, {{domain: example.com, addr: 192.168.1.1}}]
    hosts: [{{ip: 192.168.122.2, hostnames: [shared, names]}}]
    txts: [{{name: example, value: example value}}]
    srvs: [{{service: name, protocol: tcp, domain: test, target: ., port: 1024, priority: 10, weight: 10}}]
  ips:
  - address: 192.168.122.1
    netmask: 255.255.255.0
    localPtr: true
    tftpRoot: /var/lib/tftproot
    dhcp:
      ranges: [{{start: 192.168.122.2, end: 192.168.122.254, lease: {{expiry: 1, unit: hours}}}}]
      hosts: [{{mac: 00:16:3e:77:e2:ed, name: a.example.com, ip: 192.168.122.10, lease: {{expiry: 30, unit: minutes}}}}]
      bootp: {{file: pxeboot.img, server: 10.20.30.40}}
  - family: ipv6
    address: 2001:db8:ac10:fd01::1
    prefix: 64
    dhcp:
      hosts: [{{id: "0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63", ip: "2001:db8:ac10:fd01::1:20"}}]
  routes:
  - {{family: ipv6, address: "2001:db8:ac10:fc00::", prefix: 64, gateway: "2001:db8:ac10:fd01::1:24", metric: 5}}
  - {{address: 192.168.222.0, netmask: 255.255.255.0, gateway: 192.168.122.10}}
  dnsmasqOptions: ["foo=bar", "cname=*.cloudapps.example.com,master.example.com"]
  libvirtMetadata: <app1:foo xmlns:app1="http://foo.org/">fooish</app1:foo>
  maxConnectionsPerDevice: 32
"#,
        k = label.0,
        v = label.1
    );
    serde_yaml::from_str(&yaml).expect("the test network parses")
}

/// The paths of the schema's properties under `path` that no instance in `values` sets
/// (arrays: any element may set it). Maps (no `properties`) are leaves.
fn unset_properties(
    schema: &serde_json::Value,
    values: &[&serde_json::Value],
    path: &str,
) -> Vec<String> {
    let mut unset = Vec::new();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            let set: Vec<&serde_json::Value> = values
                .iter()
                .filter_map(|v| v.get(name))
                .filter(|v| !v.is_null())
                .collect();
            if set.is_empty() {
                unset.push(child);
            } else {
                unset.extend(unset_properties(property, &set, &child));
            }
        }
    } else if schema["type"] == "array" {
        let items: Vec<&serde_json::Value> = values
            .iter()
            .filter_map(|v| v.as_array())
            .flatten()
            .collect();
        unset.extend(unset_properties(
            &schema["items"],
            &items,
            &format!("{path}[]"),
        ));
    }
    unset
}

/// The round-trip tests below read back what [`full_network`] sets; a property it leaves out
/// would be pruned by the apiserver without any test noticing.
#[test]
fn full_network_sets_every_property_of_the_crd_schema() {
    let crd: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            switchyard_tests::cluster::repo_root().join("deploy/crds/networks.switchyard.dev.yaml"),
        )
        .expect("reading the Network CRD"),
    )
    .expect("the CRD is YAML");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(schema["properties"].is_object(), "no spec schema in {crd}");
    let net = full_network("full", ("k".into(), "v".into()));
    let spec = serde_json::to_value(&net.spec).unwrap();
    let unset = unset_properties(schema, &[&spec], "spec");
    assert!(
        unset.is_empty(),
        "full_network leaves these properties of the CRD unset:\n{}",
        unset.join("\n")
    );
}

#[tokio::test]
async fn network_applied_with_kubectl_reads_back_intact() {
    let env = TestEnv::new("network-roundtrip").await;
    let name = env.unique("full");
    let net = full_network(&name, env.test_label());
    let yaml = serde_yaml::to_string(&net).unwrap();
    let out = env.kubectl(&["apply", "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "kubectl apply: {}", stderr(&out));

    let api: Api<Network> = Api::all(env.client.clone());
    let live = api.get(&name).await.expect("the network reads back");
    // Pruning would silently drop any field the schema does not describe.
    assert_eq!(live.spec, net.spec);
    assert_eq!(live.spec.portgroups.len(), 2);
    assert_eq!(live.spec.forward.as_ref().unwrap().interfaces.len(), 3);
}

/// Import is lossless through the API server: every network of libvirt's corpus that imports
/// (the four parse-error inputs do not) is applied to the real apiserver, read back, and has
/// the same spec, so no field the import fills is pruned, defaulted or retyped by the schema.
#[tokio::test]
async fn every_corpus_import_reads_back_unchanged_from_the_apiserver() {
    let env = TestEnv::new("corpus-apiserver").await;
    let corpus = switchyard_tests::cluster::repo_root().join("../shared/corpus/libvirt");
    let api: Api<Network> = Api::all(env.client.clone());
    let mut applied = 0;
    for dir in [
        "networkxml2xmlin",
        "networkxml2xmlout",
        "networkxml2confdata",
        "networkxml2firewalldata",
        "networkxml2xmlupdateout",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(corpus.join(dir))
            .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "xml"))
            .collect();
        files.sort();
        for file in files {
            let label = format!("{dir}/{}", file.file_name().unwrap().to_string_lossy());
            let xml = std::fs::read_to_string(&file).unwrap();
            let mut net = match switchyard_libvirt::network_from_xml(&xml) {
                Ok(net) => net,
                Err(err) => {
                    // The corpus test pins exactly which inputs are refused, and why.
                    eprintln!("{label}: not imported: {err}");
                    continue;
                }
            };
            let name = env.unique(&format!("corpus{applied}"));
            net.metadata.name = Some(name.clone());
            net.metadata.labels = Some([env.test_label()].into_iter().collect());
            let live = api
                .patch(
                    &name,
                    &PatchParams::apply("corpus-test"),
                    &Patch::Apply(&net),
                )
                .await
                .unwrap_or_else(|e| panic!("{label}: the apiserver refused the import: {e}"));
            assert_eq!(live.spec, net.spec, "{label}: applied");
            let read_back = api.get(&name).await.expect("the network reads back");
            assert_eq!(read_back.spec, net.spec, "{label}: read back");
            applied += 1;
        }
    }
    // 43 + 43 round-trip inputs and outputs, 38 conf/firewall inputs, 19 update outputs.
    assert_eq!(applied, 143);
}

#[tokio::test]
async fn portgroup_added_by_server_side_apply_leaves_the_rest_untouched() {
    let env = TestEnv::new("portgroup-ssa").await;
    let name = env.unique("ssa");
    let net = full_network(&name, env.test_label());
    let yaml = serde_yaml::to_string(&net).unwrap();
    let out = env.kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            "-",
        ],
        Some(&yaml),
    );
    assert!(out.status.success(), "kubectl apply: {}", stderr(&out));

    // Another manager adds one portgroup, as virNetworkUpdate would, without restating the network.
    let api: Api<Network> = Api::all(env.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Network",
        "metadata": {"name": name},
        "spec": {"portgroups": [{"name": "carol", "vlan": {"tags": [{"id": 300}]}}]}
    });
    let live = api
        .patch(
            &name,
            &PatchParams::apply("portgroup-editor"),
            &Patch::Apply(&patch),
        )
        .await
        .expect("server-side apply of one portgroup");

    let names: Vec<&str> = live
        .spec
        .portgroups
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["bob", "alice", "carol"]);
    let mut without_carol = live.spec.clone();
    without_carol.portgroups.retain(|p| p.name != "carol");
    assert_eq!(
        without_carol, net.spec,
        "nothing but the new portgroup changed"
    );
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"gitops".to_string())
            && managers.contains(&"portgroup-editor".to_string())
    );

    // The editor changes its own portgroup; the others stay as they were.
    let patch = serde_json::json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Network",
        "metadata": {"name": name},
        "spec": {"portgroups": [{"name": "carol", "vlan": {"tags": [{"id": 301}]}}]}
    });
    let live = api
        .patch(
            &name,
            &PatchParams::apply("portgroup-editor"),
            &Patch::Apply(&patch),
        )
        .await
        .expect("server-side apply changing the portgroup");
    let carol = live
        .spec
        .portgroups
        .iter()
        .find(|p| p.name == "carol")
        .unwrap();
    assert_eq!(carol.vlan.as_ref().unwrap().tags[0].id, 301);
    assert_eq!(live.spec.portgroups.len(), 3);
}

#[tokio::test]
async fn invalid_forward_mode_is_refused_with_a_clear_message() {
    let env = TestEnv::new("invalid-mode").await;
    let name = env.unique("bad");
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Network\nmetadata: {{name: {name}}}\nspec:\n  forward: {{mode: tunnel, dev: eth0}}\n"
    );
    let out = env.kubectl(&["apply", "-f", "-"], Some(&yaml));
    assert!(!out.status.success(), "the apiserver accepted mode tunnel");
    let msg = stderr(&out);
    assert!(
        msg.contains("spec.forward.mode"),
        "message names the field: {msg}"
    );
    assert!(
        msg.contains("\"tunnel\""),
        "message names the bad value: {msg}"
    );
    assert!(
        msg.contains("\"passthrough\"") && msg.contains("\"vepa\""),
        "message lists the valid modes: {msg}"
    );
}

#[tokio::test]
async fn kubectl_explain_teaches_the_api() {
    let env = TestEnv::new("explain").await;
    // The apiserver publishes CRD schemas to OpenAPI asynchronously after establishment.
    let mut last = String::new();
    for _ in 0..50 {
        let out = env.kubectl(&["explain", "networks.spec.forward"], None);
        last = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        if out.status.success() && last.contains("interfaces") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(last.contains("libvirt's `<forward>`"), "{last}");
    assert!(last.contains("The pool of host network devices"), "{last}");
    assert!(
        last.contains("mode") && last.contains("-required-"),
        "{last}"
    );
    // Enumerated fields list their values in the text explain shows.
    let out = env.kubectl(&["explain", "networkports.status.actual.mode"], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    for value in ["`bridge`", "`vepa`", "`private`", "`passthrough`"] {
        assert!(
            text.contains(value),
            "explain of a port's mode lacks {value}: {text}"
        );
    }
}

#[tokio::test]
async fn ports_nodes_and_checks_are_accepted() {
    let env = TestEnv::new("other-kinds").await;
    let ns = env.namespace.clone();
    let port: NetworkPort = serde_yaml::from_str(&format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: NetworkPort\nmetadata: {{name: vm1-net0, namespace: {ns}}}\nspec:\n  network: direct\n  node: node-a\n  mac: 52:54:00:12:34:56\n  portgroup: bob\n  owner: {{kind: VirtualMachineInstance, name: vm1}}\n"
    ))
    .unwrap();
    let ports: Api<NetworkPort> = Api::namespaced(env.client.clone(), &ns);
    let created = ports
        .create(&Default::default(), &port)
        .await
        .expect("port accepted");
    assert_eq!(created.spec, port.spec);

    let bad_mac = env.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: NetworkPort\nmetadata: {{name: bad, namespace: {ns}}}\nspec: {{network: direct, node: node-a, mac: not-a-mac}}\n"
        )),
    );
    assert!(!bad_mac.status.success());
    assert!(
        stderr(&bad_mac).contains("spec.mac"),
        "{}",
        stderr(&bad_mac)
    );

    let check: MigrationCheck = serde_yaml::from_str(&format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: MigrationCheck\nmetadata: {{name: vm1, namespace: {ns}}}\nspec:\n  interfaces: [{{name: net0, network: direct, portgroup: bob}}]\n  nodes: [node-a, node-b]\n"
    ))
    .unwrap();
    let checks: Api<MigrationCheck> = Api::namespaced(env.client.clone(), &ns);
    let created = checks
        .create(&Default::default(), &check)
        .await
        .expect("check accepted");
    assert_eq!(created.spec, check.spec);

    let node_name = env.unique("node");
    let mut node = NetworkNode::new(&node_name, NetworkNodeSpec {});
    node.metadata.labels = Some([env.test_label()].into_iter().collect());
    let nodes: Api<NetworkNode> = Api::all(env.client.clone());
    nodes
        .create(&Default::default(), &node)
        .await
        .expect("network node accepted");
    let status = serde_json::json!({"status": {
        "networksReady": 1, "ports": 1,
        "networks": [{"name": "direct", "ready": true, "macvtapMode": "vepa", "capacity": 128, "used": 1, "free": 127,
            "devices": [{"name": "eth1", "present": true, "linkState": "up", "connections": 1}]}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Recovered", "message": "counts rebuilt"}]
    }});
    let live = nodes
        .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status subresource accepts the agent's report");
    let st = live.status.expect("status kept");
    assert_eq!(st.networks[0].devices[0].connections, 1);
    assert_eq!(st.networks[0].devices[0].link_state, LinkState::Up);
}
