//! The migration check on the real local apiserver with three simulated nodes — one lacking
//! the network, one full, one fine — through the `MigrationCheck` resource and through
//! `kubectl switchyard check-migration`; plus the network status, node labels and events the
//! controller derives from the same state.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchyard_crds::{ANNOTATION_RECHECK, MigrationCheck, NODE_LABEL_PREFIX, Network, ReasonCode};
use switchyard_tests::cluster::TestEnv;

use common::{ControllerProcess, agent_reports, cli, eventually, http_get, simulated_node};

const WAIT: Duration = Duration::from_secs(30);

fn device(name: &str, connections: u32, holder: Option<&str>) -> serde_json::Value {
    json!({
        "name": name, "present": true, "linkState": "up", "connections": connections,
        "exclusive": holder.is_some(), "holder": holder,
    })
}

fn served(network: &str, devices: Vec<serde_json::Value>, used: u64) -> serde_json::Value {
    json!([{
        "name": network, "ready": true, "macvtapMode": "passthrough",
        "devices": devices, "capacity": 2, "used": used, "free": 2 - used,
    }])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_over_three_nodes_gives_each_its_verdict_via_the_resource_and_the_cli() {
    let env = TestEnv::new("migration-check").await;
    let controller = ControllerProcess::start(&env, false).await;
    let ns = env.namespace.clone();
    let (test_key, test_value) = env.test_label();
    let selector = "sriov.example.com/nic";

    let network = env.unique("sriov");
    let net: Network = serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Network",
        "metadata": {"name": network, "labels": {test_key.clone(): test_value.clone()}},
        "spec": {
            "forward": {"mode": "passthrough", "interfaces": [{"dev": "eth1"}, {"dev": "eth2"}]},
            "nodeSelector": {"matchLabels": {selector: ns}},
        },
    }))
    .unwrap();
    Api::<Network>::all(env.client.clone())
        .create(&PostParams::default(), &net)
        .await
        .expect("creating the network");

    let lacking = env.unique("lacking");
    let full = env.unique("full");
    let fine = env.unique("fine");
    simulated_node(&env, &lacking, &[]).await;
    simulated_node(&env, &full, &[(selector, &ns)]).await;
    simulated_node(&env, &fine, &[(selector, &ns)]).await;
    agent_reports(&env, &lacking, json!([])).await;
    agent_reports(
        &env,
        &full,
        served(
            &network,
            vec![
                device("eth1", 1, Some("vms/a-net0")),
                device("eth2", 1, Some("vms/b-net0")),
            ],
            2,
        ),
    )
    .await;
    agent_reports(
        &env,
        &fine,
        served(
            &network,
            vec![
                device("eth1", 1, Some("vms/c-net0")),
                device("eth2", 0, None),
            ],
            1,
        ),
    )
    .await;

    // Through the custom resource.
    let check: MigrationCheck = serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "MigrationCheck",
        "metadata": {"name": "vm1", "namespace": ns},
        "spec": {"interfaces": [{"name": "net0", "network": network}], "nodes": [lacking, full, fine]},
    }))
    .unwrap();
    let checks: Api<MigrationCheck> = Api::namespaced(env.client.clone(), &ns);
    checks
        .create(&PostParams::default(), &check)
        .await
        .expect("creating the check");
    let status = eventually("the check's answer", WAIT, || async {
        let live = checks.get("vm1").await.ok()?;
        live.status
            .filter(|s| s.nodes.len() == 3 && s.eligible_nodes == [fine.clone()])
    })
    .await;
    assert_eq!(status.summary.as_deref(), Some("1/3"));
    assert_eq!(status.observed_generation, Some(1));
    let verdict = |node: &str| {
        status
            .nodes
            .iter()
            .find(|v| v.node == node)
            .expect("a verdict per node")
    };
    let (l, f, ok) = (verdict(&lacking), verdict(&full), verdict(&fine));
    assert!(!l.eligible && !f.eligible && ok.eligible, "{status:#?}");
    assert_eq!(l.reasons.len(), 1, "{l:#?}");
    assert_eq!(l.reasons[0].code, ReasonCode::NetworkNotOnNode);
    assert_eq!(l.reasons[0].interface.as_deref(), Some("net0"));
    assert!(
        l.reasons[0].message.contains("nodeSelector does not match"),
        "{}",
        l.reasons[0].message
    );
    assert_eq!(f.reasons.len(), 1, "{f:#?}");
    assert_eq!(f.reasons[0].code, ReasonCode::NoFreeDevice);
    assert!(
        f.reasons[0]
            .message
            .contains("eth1: held by vms/a-net0; eth2: held by vms/b-net0"),
        "{}",
        f.reasons[0].message
    );
    assert!(ok.reasons.is_empty());
    let checked = &status.conditions[0];
    assert_eq!(
        (checked.kind.as_str(), checked.reason.as_str()),
        ("Checked", "EligibleNodesFound")
    );

    // Through the CLI: the same verdicts, a table a person reads, exit 0 (someone is eligible).
    let out = cli(
        &env,
        &[
            "check-migration",
            "--network",
            &network,
            "--node",
            &lacking,
            "--node",
            &full,
            "--node",
            &fine,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |node: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(node))
            .unwrap_or_else(|| panic!("no row for {node}:\n{stdout}"))
            .to_string()
    };
    assert!(
        row(&lacking).contains("no") && row(&lacking).contains("net0: NetworkNotOnNode"),
        "{stdout}"
    );
    assert!(
        row(&full).contains("net0: NoFreeDevice") && row(&full).contains("0 free"),
        "{stdout}"
    );
    assert!(
        row(&fine).split_whitespace().nth(1) == Some("yes"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("1/3 nodes eligible: {fine}")),
        "{stdout}"
    );

    // The same question from a file, on the two nodes that cannot take it: exit 1.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_yaml::to_string(&check).unwrap()).unwrap();
    let out = cli(
        &env,
        &[
            "check-migration",
            "-f",
            file.path().to_str().unwrap(),
            "--node",
            &lacking,
            "--node",
            &full,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no candidate node can take every interface")
    );

    // A device frees up on the full node; the check answers again when asked.
    agent_reports(
        &env,
        &full,
        served(
            &network,
            vec![
                device("eth1", 1, Some("vms/a-net0")),
                device("eth2", 0, None),
            ],
            1,
        ),
    )
    .await;
    checks
        .patch(
            "vm1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {ANNOTATION_RECHECK: "1"}}})),
        )
        .await
        .expect("asking the check again");
    let status = eventually("the check to see the freed device", WAIT, || async {
        let live = checks.get("vm1").await.ok()?;
        live.status.filter(|s| s.eligible_nodes.len() == 2)
    })
    .await;
    assert_eq!(status.summary.as_deref(), Some("2/3"));

    // The network's status, node labels and events come from the same state.
    let networks: Api<Network> = Api::all(env.client.clone());
    let net_status = eventually("the network's status", WAIT, || async {
        let live = networks.get(&network).await.ok()?;
        live.status
            .filter(|s| s.nodes_ready == 2 && s.capacity_free == 2)
    })
    .await;
    assert_eq!(net_status.nodes_selected, 2);
    assert_eq!(net_status.nodes_ready_summary.as_deref(), Some("2/2"));
    assert_eq!(
        (net_status.capacity_total, net_status.capacity_used),
        (4, 2)
    );
    assert_eq!(net_status.pool_size, 2);
    let ready = net_status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "Serving");

    let label = format!("{NODE_LABEL_PREFIX}{network}");
    let nodes: Api<Node> = Api::all(env.client.clone());
    for node in [&full, &fine] {
        eventually(&format!("{node} labelled"), WAIT, || async {
            let live = nodes.get(node).await.ok()?;
            (live.metadata.labels?.get(&label).map(String::as_str) == Some("true")).then_some(())
        })
        .await;
    }
    let lacking_labels = nodes
        .get(&lacking)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert!(!lacking_labels.contains_key(&label));

    // A node of the network loses its devices: status, label and a Warning event say so.
    agent_reports(
        &env,
        &fine,
        json!([{"name": network, "ready": false, "reason": "DeviceMissing", "message": "eth1, eth2 are absent",
                "devices": [], "capacity": 0, "used": 0, "free": 0}]),
    )
    .await;
    let net_status = eventually("the network to notice", WAIT, || async {
        let live = networks.get(&network).await.ok()?;
        live.status.filter(|s| s.nodes_ready == 1)
    })
    .await;
    assert_eq!(net_status.unready_nodes.len(), 1);
    assert_eq!(net_status.unready_nodes[0].node, fine);
    assert_eq!(net_status.unready_nodes[0].reason, "DeviceMissing");
    eventually(&format!("{fine} unlabelled"), WAIT, || async {
        let live = nodes.get(&fine).await.ok()?;
        (!live.metadata.labels?.contains_key(&label)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let event = eventually("a DeviceMissing event", WAIT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(network.as_str())
                    && e.reason.as_deref() == Some("DeviceMissing")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .unwrap_or_default()
            .contains(&format!("is not ready on node \"{fine}\": DeviceMissing"))
    );

    // The check's latency is measured.
    let (code, metrics) = http_get(controller.metrics, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "switchyard_migration_check_duration_seconds_count{source=\"migrationcheck\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_reconciles_total{controller=\"network\"}"),
        "{metrics}"
    );
}
