//! How the agent retries a port whose reconcile keeps failing, against the real local
//! apiserver and a real network namespace: with backoff growing per port, not every 500 ms.

use std::path::Path;
use std::time::Duration;

use kube::api::PostParams;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{mac, node_with_network, port, ports_api};
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
