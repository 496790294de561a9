//! How the agent retries a port whose reconcile keeps failing, against the real local
//! apiserver and a real network namespace: with backoff growing per port, not every 500 ms. And
//! a port it cannot even decode is marked so and skipped, while every other port is served.

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use switchyard_crds::{NetworkPort, PortPhase};
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{
    count_phase, mac, node_with_network, port, ports_api, wait_ports,
};
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");

fn agent() -> &'static Path {
    Path::new(AGENT)
}

/// The agent's count of failed reconciles, from its metrics.
fn failed_reconciles(node: &SimulatedNode) -> u64 {
    let metrics = node.http_get("/metrics").expect("the agent's metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchyard_agent_reconciles_total{result=\"error\"} "))
        .map_or(0, |n| n.trim().parse().expect("a counter"))
}

#[tokio::test]
async fn a_port_that_keeps_failing_is_retried_with_growing_backoff() {
    let env = TestEnv::new("reconcile-errors").await;
    // A host-bridge network whose "bridge" is a veth: the kernel refuses to attach ports to
    // it (EOPNOTSUPP), an error the agent has no special handling for, at every attempt.
    let (node, net) = node_with_network(
        &env,
        agent(),
        "err",
        ("eth", 1),
        (
            "notbr",
            "  forward: {mode: bridge}\n  bridge: {name: eth0}\n",
        ),
    )
    .await;
    ports_api(&env)
        .create(
            &PostParams::default(),
            &port(&env.namespace, "p", &net, &node.name, &mac(1)),
        )
        .await
        .unwrap();
    let mut waited = Duration::ZERO;
    while failed_reconciles(&node) == 0 {
        assert!(
            waited < Duration::from_secs(30),
            "the port never failed:\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let first = failed_reconciles(&node);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let retries = failed_reconciles(&node) - first;
    // A fixed 500 ms requeue retries about 24 times in 12 s; backoff doubling from 0.5 s
    // (±25 %) about 5 times. The bound sits well between the two.
    assert!(
        (1..=10).contains(&retries),
        "{retries} retries in 12 s:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn a_port_the_agent_cannot_decode_is_marked_and_the_others_are_served() {
    let env = TestEnv::new("undecodable").await;
    let (mut node, net) = node_with_network(
        &env,
        agent(),
        "undec",
        ("eth", 1),
        (
            "undec",
            "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n",
        ),
    )
    .await;
    let ports = ports_api(&env);
    ports
        .create(
            &PostParams::default(),
            &port(&env.namespace, "bad", &net, &node.name, &mac(0)),
        )
        .await
        .unwrap();
    let ready = wait_ports(
        &env,
        "the port ready",
        Duration::from_secs(30),
        Duration::from_millis(200),
        |p| count_phase(p, PortPhase::Ready) == 1,
    )
    .await;
    let bad_link = ready[0]
        .status
        .as_ref()
        .unwrap()
        .actual
        .as_ref()
        .unwrap()
        .link_name
        .clone();
    // An ifindex beyond u32: the schema (an integer, at least 0) lets it in, the agent's type
    // does not, as with a field a newer version writes. Written as raw JSON: decoding the
    // answer as a NetworkPort would fail too.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &ApiResource::erase::<NetworkPort>(&()),
    );
    let too_big = serde_json::json!({"status": {"actual": {"ifindex": 4_294_967_296_u64}}});
    raw.patch_status("bad", &PatchParams::default(), &Patch::Merge(&too_big))
        .await
        .unwrap();
    // An agent starting now (an upgrade's new pod) lists the port with the rest.
    node.kill_agent();
    for i in 1..=3 {
        ports
            .create(
                &PostParams::default(),
                &port(
                    &env.namespace,
                    &format!("good{i}"),
                    &net,
                    &node.name,
                    &mac(i),
                ),
            )
            .await
            .unwrap();
    }
    node.start_agent(agent());
    let bad_marked = |ports: &[serde_json::Value]| {
        ports.iter().any(|p| {
            p["metadata"]["name"] == "bad"
                && p["status"]["phase"] == "Failed"
                && p["status"]["conditions"][0]["reason"] == "Undecodable"
                && p["status"]["conditions"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("4294967296"))
        })
    };
    let mut waited = Duration::ZERO;
    loop {
        let listed = raw.list(&Default::default()).await.unwrap();
        let listed: Vec<serde_json::Value> = listed
            .items
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        let good_ready = listed
            .iter()
            .filter(|p| p["metadata"]["name"] != "bad" && p["status"]["phase"] == "Ready")
            .count();
        if good_ready == 3 && bad_marked(&listed) {
            break;
        }
        assert!(
            waited < Duration::from_secs(30),
            "{good_ready} of 3 ports ready, the bad one marked: {}; ports: {listed:#?}\n{}",
            bad_marked(&listed),
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    assert!(
        node.logs()
            .contains("skipping an object that cannot be decoded"),
        "{}",
        node.logs()
    );
    // Recovery took the port's link for no orphan.
    let links = node.sandbox.links().unwrap();
    assert!(
        links.iter().any(|l| l.name == bad_link),
        "{bad_link} is gone: {links:?}"
    );

    // Mended, the port is served again, and leaves like any other.
    let mend = serde_json::json!([{"op": "remove", "path": "/status/actual"}]);
    raw.patch_status(
        "bad",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(mend).unwrap()),
    )
    .await
    .unwrap();
    wait_ports(
        &env,
        "the mended port ready",
        Duration::from_secs(30),
        Duration::from_millis(200),
        |p| count_phase(p, PortPhase::Ready) == 4,
    )
    .await;
    for name in ["bad", "good1", "good2", "good3"] {
        ports.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_ports(
        &env,
        "every port gone",
        Duration::from_secs(30),
        Duration::from_millis(200),
        |p| p.is_empty(),
    )
    .await;
}
