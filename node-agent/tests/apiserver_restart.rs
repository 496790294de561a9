//! The agent after an apiserver restart, against a private real control plane and a real
//! network namespace: its watches relist as soon as the apiserver answers again, so a port
//! created right after the restart is realised within seconds, not after a long backoff.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::PostParams;
use switchyard_crds::PortPhase;
use switchyard_tests::cluster::{TestEnv, apply_crds};
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::fixtures::{list_ports, mac, node_with_network, phase, port, ports_api};

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");

fn agent() -> &'static Path {
    Path::new(AGENT)
}

/// Waits until the port is Ready; how long that took (`limit` at most).
async fn ready_within(env: &TestEnv, name: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let ports = list_ports(env).await;
        if ports
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name) && phase(p) == Some(PortPhase::Ready))
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_created_after_an_apiserver_restart_are_realised_within_seconds() {
    let mut plane = ControlPlane::start().expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "apiserver-restart").await;
    let (node, net) = node_with_network(
        &env,
        agent(),
        "rst",
        ("eth", 1),
        (
            "vepa",
            "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n  maxConnectionsPerDevice: 10\n",
        ),
    )
    .await;
    let api = ports_api(&env);
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "before", &net, &node.name, &mac(1)),
    )
    .await
    .unwrap();
    assert!(
        ready_within(&env, "before", Duration::from_secs(30))
            .await
            .is_some()
    );

    // Down long enough for a watch backoff to grow, then back on the same etcd: the agent's
    // watches resume from resource versions the new apiserver may have forgotten (410).
    plane.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| plane.restart_apiserver()).expect("restarting the apiserver");

    api.create(
        &PostParams::default(),
        &port(&env.namespace, "after", &net, &node.name, &mac(2)),
    )
    .await
    .unwrap();
    // A generous bound: it is not a timing test, only not the 30-100 s of a grown backoff.
    let took = ready_within(&env, "after", Duration::from_secs(15)).await;
    assert!(
        took.is_some(),
        "the port created after the restart was not Ready within 15 s:\n{}",
        node.logs()
    );
    eprintln!(
        "Ready {:.1} s after its creation",
        took.unwrap().as_secs_f64()
    );
}
