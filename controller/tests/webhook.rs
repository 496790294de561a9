//! The validating webhook, served by the controller over TLS and registered by URL on the real
//! local apiserver: what kubectl shows when it refuses a Network or a NetworkPort. Also the
//! controller's probes and its graceful stop on SIGTERM.

mod common;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use switchyard_crds::{LABEL_NETWORK, LABEL_NODE, NetworkPort};
use switchyard_tests::cluster::TestEnv;

use common::{
    ControllerProcess, WebhookRegistration, agent_reports, eventually, http_get, simulated_node,
};

const WAIT: Duration = Duration::from_secs(30);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_why_the_webhook_refuses_networks_and_ports() {
    let env = TestEnv::new("webhook").await;
    let controller = ControllerProcess::start(&env, true).await;
    let _webhook = WebhookRegistration::register(&env, &controller).await;
    let ns = env.namespace.clone();
    let (key, value) = env.test_label();

    // A forward dev that is not the pool's first device.
    let bad = env.unique("bad-dev");
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(
            &json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
                "metadata": {"name": bad, "labels": {key.clone(): value.clone()}},
                "spec": {"forward": {"mode": "vepa", "dev": "eth9", "interfaces": [{"dev": "eth1"}, {"dev": "eth2"}]}},
            })
            .to_string(),
        ),
    );
    assert!(
        !out.status.success(),
        "a network whose forward dev is not in its pool was accepted"
    );
    let message = stderr(&out);
    assert!(
        message
            .contains("admission webhook \"networks.validate.switchyard.dev\" denied the request"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Network \"{bad}\" is invalid")),
        "{message}"
    );
    assert!(
        message.contains("forward dev 'eth9' must match the first pool interface, which is 'eth1'"),
        "{message}"
    );

    // A valid network with a network-level 802.1Qbg profile, and two nodes: one with room.
    let network = env.unique("vepa");
    let network_yaml = |portgroups: serde_json::Value, pool: serde_json::Value| {
        json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
            "metadata": {"name": network, "labels": {key.clone(): value.clone()}},
            "spec": {
                "forward": {"mode": "vepa", "interfaces": pool},
                "virtualport": {"type": "802.1Qbg", "managerid": 11, "typeid": 100, "typeidversion": 1},
                "portgroups": portgroups,
                "maxConnectionsPerDevice": 2,
            },
        })
        .to_string()
    };
    let pool = json!([{"dev": "eth1"}, {"dev": "eth2"}]);
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&network_yaml(
            json!([{"name": "gold"}, {"name": "silver"}]),
            pool.clone(),
        )),
    );
    assert!(
        out.status.success(),
        "the valid network was refused: {}",
        stderr(&out)
    );
    let roomy = env.unique("roomy");
    let crowded = env.unique("crowded");
    simulated_node(&env, &roomy, &[]).await;
    simulated_node(&env, &crowded, &[]).await;
    let report = |connections: u32| {
        json!([{"name": network, "ready": true, "macvtapMode": "vepa", "capacity": 4, "used": connections * 2, "free": 4 - connections * 2,
        "devices": [
            {"name": "eth1", "present": true, "linkState": "up", "connections": connections},
            {"name": "eth2", "present": true, "linkState": "up", "connections": connections},
        ]}])
    };
    agent_reports(&env, &roomy, report(0)).await;
    agent_reports(&env, &crowded, report(2)).await;

    let port_yaml = |name: &str, node: &str, extra: serde_json::Value| {
        let mut spec = json!({"network": network, "node": node, "mac": "52:54:00:12:34:56"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "NetworkPort",
            "metadata": {"name": name, "namespace": ns, "labels": {key.clone(): value.clone()}},
            "spec": spec,
        })
        .to_string()
    };

    // The node's agent report must be in the controller's cache before ports are judged on it.
    let networks: Api<switchyard_crds::Network> = Api::all(env.client.clone());
    eventually("the network served by both nodes", WAIT, || async {
        let live = networks.get(&network).await.ok()?;
        live.status.filter(|s| s.nodes_ready == 2).map(|_| ())
    })
    .await;

    // A port whose own virtualport conflicts with the network's.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&port_yaml(
            "conflict",
            &roomy,
            json!({"virtualport": {"typeid": 200}}),
        )),
    );
    assert!(
        !out.status.success(),
        "a port with a virtualport conflict was accepted"
    );
    let message = stderr(&out);
    assert!(
        message.contains(
            "admission webhook \"networkports.validate.switchyard.dev\" denied the request"
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "NetworkPort \"{ns}/conflict\" cannot attach to network \"{network}\": [MergeConflict] virtualport typeid conflicts: 200 from the port but 100 from the network; set it in one place only, or to the same value"
        )),
        "{message}"
    );

    // A port for a node without room fails at once, with the migration check's reasons.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&port_yaml("no-room", &crowded, json!({}))),
    );
    assert!(!out.status.success(), "a port for a full node was accepted");
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "NetworkPort \"{ns}/no-room\" cannot be placed on node \"{crowded}\": [CapacityExhausted] network \"{network}\" on node \"{crowded}\": 1 interface(s) need a shared device, 0 connection(s) left at 2 per device"
        )),
        "{message}"
    );

    // A port naming a portgroup the network lacks.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&port_yaml(
            "no-pg",
            &roomy,
            json!({"portgroup": "platinum"}),
        )),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[PortgroupNotFound] portgroup 'platinum' does not exist in the network (it has: gold, silver)"), "{}", stderr(&out));

    // A good port is admitted, and the controller gives it the labels agents select by.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&port_yaml("good", &roomy, json!({"portgroup": "gold"}))),
    );
    assert!(
        out.status.success(),
        "the good port was refused: {}",
        stderr(&out)
    );
    let ports: Api<NetworkPort> = Api::namespaced(env.client.clone(), &ns);
    eventually("the port's labels", WAIT, || async {
        let labels = ports.get("good").await.ok()?.metadata.labels?;
        (labels.get(LABEL_NODE) == Some(&roomy) && labels.get(LABEL_NETWORK) == Some(&network))
            .then_some(())
    })
    .await;

    // Its spec is fixed now: moving it to another node or network is refused, naming the
    // field (its agent would leave the link behind); its owner may change.
    for (field, patch) in [
        ("spec.node", json!({"spec": {"node": crowded}})),
        ("spec.network", json!({"spec": {"network": "elsewhere"}})),
    ] {
        let out = env.kubectl(
            &[
                "patch",
                "networkport",
                "good",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                &patch.to_string(),
            ],
            None,
        );
        assert!(
            !out.status.success(),
            "changing the port's {field} was accepted"
        );
        assert!(
            stderr(&out).contains(&format!(
                "NetworkPort \"{ns}/good\" is invalid: {field} cannot change once the port exists, as its node's agent realised the port from its spec; delete the port and create it again with the new value"
            )),
            "{}",
            stderr(&out)
        );
    }
    let owner = json!({"spec": {"owner": {"kind": "VirtualMachineInstance", "name": "vm1"}}});
    ports
        .patch("good", &PatchParams::default(), &Patch::Merge(&owner))
        .await
        .expect("changing the port's owner");

    // The agent realises it on eth2 with portgroup gold. Removing either is refused, naming it.
    let actual = json!({"status": {"phase": "Ready", "actual": {
        "type": "direct", "device": "eth2", "mode": "vepa", "linkName": "swytest0", "portgroup": "gold",
    }}});
    ports
        .patch_status("good", &PatchParams::default(), &Patch::Merge(&actual))
        .await
        .expect("writing the port's status as the agent would");
    let shrunk = network_yaml(json!([{"name": "silver"}]), json!([{"dev": "eth1"}]));
    let message = eventually(
        "the webhook to refuse pulling the port's portgroup and device",
        WAIT,
        || async {
            let out = env.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&shrunk));
            let message = stderr(&out);
            (!out.status.success() && message.contains("used by live port")).then_some(message)
        },
    )
    .await;
    assert!(
        message.contains(&format!(
            "portgroup \"gold\" is used by live port(s) {ns}/good"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "pool device \"eth2\" on node \"{roomy}\" is used by live port(s) {ns}/good"
        )),
        "{message}"
    );
    assert!(
        message.contains("delete or move those ports first"),
        "{message}"
    );
    // Adding a portgroup is fine.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&network_yaml(
            json!([{"name": "gold"}, {"name": "silver"}, {"name": "bronze"}]),
            pool,
        )),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let (code, metrics) = http_get(controller.metrics, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "switchyard_admission_reviews_total{resource=\"networks\",allowed=\"false\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "switchyard_admission_reviews_total{resource=\"networkports\",allowed=\"false\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_migration_check_duration_seconds_count{source=\"webhook\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "switchyard_network_ports{{network=\"{network}\"}} 1"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_report_sync_and_sigterm_stops_the_controller_cleanly() {
    let env = TestEnv::new("controller-probes").await;
    let mut controller = ControllerProcess::start(&env, false).await;
    // start() returned, so /readyz already said the caches are synced.
    assert_eq!(
        http_get(controller.metrics, "/readyz").map(|(c, _)| c),
        Some(200)
    );
    assert_eq!(
        http_get(controller.metrics, "/healthz"),
        Some((200, "ok\n".to_string()))
    );
    let (code, metrics) = http_get(controller.metrics, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE switchyard_migration_check_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        controller
            .log()
            .contains("the admission webhook is disabled"),
        "{}",
        controller.log_tail()
    );

    let status = controller.terminate(Duration::from_secs(20));
    let log = controller.log();
    let status = status.unwrap_or_else(|| panic!("still running 20s after SIGTERM:\n{log}"));
    assert!(status.success(), "exited with {status}:\n{log}");
    assert!(
        log.contains("SIGTERM received") && log.contains("stopped"),
        "{log}"
    );
}

/// Hostile networks, refused by the webhook with the field and the reason: one that clashes
/// with an existing network on a node both select (overlapping subnet, the same bridge; also
/// by an update), a DNS TXT value with a line break (it would inject dnsmasq directives). One
/// with 10,000 static DHCP hosts is admitted, within the webhook's timeout.
#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_refuses_hostile_networks() {
    let env = TestEnv::new("webhook-hostile").await;
    let controller = ControllerProcess::start(&env, true).await;
    let _webhook = WebhookRegistration::register(&env, &controller).await;
    let (key, value) = env.test_label();
    let node = env.unique("hostile");
    simulated_node(&env, &node, &[]).await;
    // Every network of the test selects only the test's nodes.
    let network = |name: &str, spec: serde_json::Value| {
        let mut spec = spec;
        spec["nodeSelector"]["matchLabels"][&key] = json!(value);
        json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "Network",
            "metadata": {"name": name, "labels": {key.clone(): value.clone()}},
            "spec": spec,
        })
        .to_string()
    };
    let nat = |bridge: &str, address: &str, prefix: u8| {
        json!({
            "forward": {"mode": "nat"},
            "bridge": {"name": bridge},
            "ips": [{"address": address, "prefix": prefix}],
        })
    };

    let older = env.unique("older");
    let out = env.kubectl(
        &["create", "-f", "-"],
        Some(&network(&older, nat("hb-old", "10.214.1.1", 24))),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Refused once the controller's caches hold the older network and the node.
    let refused = |name: String, spec: serde_json::Value| {
        let document = network(&name, spec);
        let env = &env;
        async move {
            eventually("the webhook refusing the clash", WAIT, || async {
                let out = env.kubectl(&["create", "-f", "-"], Some(&document));
                let message = stderr(&out);
                (!out.status.success() && message.contains("cannot share a node"))
                    .then_some(message)
            })
            .await
        }
    };
    let overlapping = env.unique("overlap");
    let message = refused(overlapping.clone(), nat("hb-new", "10.214.1.129", 25)).await;
    for part in [
        "denied the request",
        &format!("Network \"{overlapping}\""),
        "spec.ips[0]",
        "10.214.1.128/25",
        "10.214.1.0/24",
        &format!("'{older}'"),
        &format!("'{node}'"),
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    let same_bridge = env.unique("bridge");
    let message = refused(same_bridge.clone(), nat("hb-old", "10.214.2.1", 24)).await;
    for part in ["spec.bridge.name", "'hb-old'", &format!("'{older}'")] {
        assert!(message.contains(part), "{part}: {message}");
    }

    // Disjoint, and then changed to overlap: the update is refused.
    let disjoint = env.unique("disjoint");
    let out = env.kubectl(
        &["create", "-f", "-"],
        Some(&network(&disjoint, nat("hb-dis", "10.214.3.1", 24))),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.kubectl(
        &[
            "patch",
            "network",
            &disjoint,
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/ips/0/address", "value": "10.214.1.77"}]"#,
        ],
        None,
    );
    let message = stderr(&out);
    assert!(!out.status.success(), "the clashing update was admitted");
    assert!(
        message.contains("spec.ips[0]") && message.contains(&format!("'{older}'")),
        "{message}"
    );

    // On a node the older network does not select, the same subnet is fine.
    let elsewhere = env.unique("elsewhere");
    let mut spec = nat("hb-else", "10.214.1.1", 24);
    spec["nodeSelector"]["matchLabels"]["rack"] = json!("nowhere");
    let out = env.kubectl(&["create", "-f", "-"], Some(&network(&elsewhere, spec)));
    assert!(out.status.success(), "{}", stderr(&out));

    // A DNS TXT value with a line break would write a directive of its own into dnsmasq's
    // configuration: refused, naming the field.
    let txt = env.unique("txt");
    let mut spec = nat("hb-txt", "10.214.4.1", 24);
    spec["dns"] = json!({"txts": [{"name": "info", "value": "ok\ndhcp-script=/tmp/x"}]});
    let out = env.kubectl(&["create", "-f", "-"], Some(&network(&txt, spec)));
    let message = stderr(&out);
    assert!(
        !out.status.success(),
        "a TXT value with a line break was admitted"
    );
    assert!(
        message.contains("denied the request")
            && message.contains("spec.dns.txts[0].value")
            && message.contains("line break"),
        "{message}"
    );

    // 10,000 static hosts (a /18 holds them, and its range): admitted. `kubectl create`, not `apply`, which
    // would copy the whole object into an annotation, past the apiserver's 256 KiB limit.
    let many = env.unique("many-hosts");
    let hosts: Vec<serde_json::Value> = (0..10_000u32)
        .map(|i| {
            let ip = 0x0ad6_4000 + 10 + i; // 10.214.64.0/18, after the gateway
            json!({
                "mac": format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 0xff, i & 0xff),
                "ip": std::net::Ipv4Addr::from(ip).to_string(),
            })
        })
        .collect();
    let mut spec = nat("hb-many", "10.214.64.1", 18);
    // libvirt sets dnsmasq's lease limit from the ranges: they must hold the hosts.
    spec["ips"][0]["dhcp"] = json!({
        "ranges": [{"start": "10.214.64.2", "end": "10.214.127.254"}],
        "hosts": hosts,
    });
    let started = std::time::Instant::now();
    let out = env.kubectl(&["create", "-f", "-"], Some(&network(&many, spec)));
    assert!(
        out.status.success(),
        "10,000 DHCP hosts were refused after {:?}: {}",
        started.elapsed(),
        stderr(&out)
    );
    let networks: Api<switchyard_crds::Network> = Api::all(env.client.clone());
    let stored = networks.get(&many).await.unwrap();
    assert_eq!(
        stored.spec.ips[0].dhcp.as_ref().unwrap().hosts.len(),
        10_000
    );
}
