//! What the agent reports about its node, against the real local apiserver and real network
//! namespaces: the Node's `switchyard.dev/<network>` extended resources follow the networks the
//! node serves and is ready for, and an unchanged report writes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams};
use switchyard_crds::RESOURCE_PREFIX;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::node_with_network;
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");

fn agent() -> &'static Path {
    Path::new(AGENT)
}

/// The Node's count of `resource` in capacity and in allocatable.
fn counts(node: &Node, resource: &str) -> (Option<String>, Option<String>) {
    let status = node.status.as_ref();
    let pick = |map: Option<&BTreeMap<String, Quantity>>| {
        map.and_then(|m| m.get(resource)).map(|q| q.0.clone())
    };
    (
        pick(status.and_then(|s| s.capacity.as_ref())),
        pick(status.and_then(|s| s.allocatable.as_ref())),
    )
}

/// The agent's count of writes to Nodes and NetworkNodes, from its metrics.
fn writes(node: &SimulatedNode) -> (u64, u64) {
    let metrics = node.http_get("/metrics").expect("the agent's metrics");
    let count = |kind: &str| {
        let prefix = format!("switchyard_agent_api_writes_total{{kind=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().expect("a counter"))
    };
    (count("Node"), count("NetworkNode"))
}

/// Polls the Node until `done` holds for it (30 s at most).
async fn wait_node<F>(env: &TestEnv, name: &str, what: &str, done: F) -> Node
where
    F: Fn(&Node) -> bool,
{
    let api = Api::<Node>::all(env.client.clone());
    let start = Instant::now();
    loop {
        let node = api.get(name).await.expect("the Node");
        if done(&node) {
            return node;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {:#?}",
            node.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn extended_resources_follow_the_networks_the_node_is_ready_for() {
    let env = TestEnv::new("report-resources").await;
    let (node, net) = node_with_network(
        &env,
        agent(),
        "res",
        ("eth", 2),
        (
            "vepa",
            "  forward: {mode: vepa, interfaces: [{dev: eth0}, {dev: eth1}]}\n  maxConnectionsPerDevice: 8\n",
        ),
    )
    .await;
    let resource = format!("{RESOURCE_PREFIX}{net}");
    let nodes = Api::<Node>::all(env.client.clone());

    let advertised = wait_node(&env, &node.name, "the network's resource", |n| {
        counts(n, &resource) == (Some("16".into()), Some("16".into()))
    })
    .await;

    // The agent reports every second (the harness's interval): several reports with nothing
    // changed must write neither the Node nor the NetworkNode.
    let before = writes(&node);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        writes(&node),
        before,
        "unchanged reports wrote to the apiserver"
    );
    assert_eq!(
        nodes
            .get(&node.name)
            .await
            .unwrap()
            .metadata
            .resource_version,
        advertised.metadata.resource_version
    );

    // A device going away lowers the count; every device gone makes the network not ready
    // here, and its resource is taken away.
    node.sandbox.ip(&["link", "del", "eth1"]).unwrap();
    wait_node(&env, &node.name, "the count of one device", |n| {
        counts(n, &resource) == (Some("8".into()), Some("8".into()))
    })
    .await;
    node.sandbox.ip(&["link", "del", "eth0"]).unwrap();
    wait_node(&env, &node.name, "the resource removed", |n| {
        counts(n, &resource) == (None, None)
    })
    .await;

    // Back when a device returns, and removed when the node stops serving the network.
    node.sandbox.add_nic("eth0").unwrap();
    wait_node(&env, &node.name, "the resource back", |n| {
        counts(n, &resource) == (Some("8".into()), Some("8".into()))
    })
    .await;
    Api::<switchyard_crds::Network>::all(env.client.clone())
        .delete(&net, &DeleteParams::default())
        .await
        .unwrap();
    wait_node(
        &env,
        &node.name,
        "the resource of the deleted network removed",
        |n| counts(n, &resource) == (None, None),
    )
    .await;
}
