//! Scale, counted rather than timed: on a private control plane (so that no other test's
//! requests are counted) with the controller and 5, then 20, simulated nodes, each with ports of
//! its own on one network that selects them all, 100 ports are created on one node and deleted
//! again. The other nodes' agents must make no API write and no reconcile for it (their own
//! metrics say), and the apiserver's write requests per port (its own metrics say) must not
//! grow with the number of nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream;
use kube::api::{DeleteParams, PostParams};
use switchyard_crds::PortPhase;
use switchyard_tests::cluster::{TestEnv, apply_crds};
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::controller::ControllerProcess;
use switchyard_tests::fixtures::{count_phase, create_network, mac, network_node, port, ports_api};
use switchyard_tests::metrics::{body, metric_sum};
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");
/// The ports created and deleted on the busy node in each round.
const PORTS: usize = 100;
/// Ports every node keeps throughout: a fan-out that woke other agents would reconcile them.
const RESIDENT: usize = 2;
/// Write requests the 20-node round may take beyond the 5-node one in all (not per port). The
/// busy agent's node reports and the controller's Network status coalesce bursts of changes,
/// so their counts move by a few writes from run to run (5 nodes 637, 20 nodes 642 in one run);
/// a write per other node for each port would add 1,500.
const WRITE_TOLERANCE: f64 = 25.0;
const POLL: Duration = Duration::from_millis(200);

fn agent() -> &'static Path {
    Path::new(AGENT)
}

/// What one agent has done so far: API writes and reconciles, from its `/metrics`.
fn agent_work(node: &SimulatedNode) -> (f64, f64) {
    let response = node.http_get("/metrics").unwrap_or_default();
    let metrics = body(&response);
    (
        metric_sum(metrics, "switchyard_agent_api_writes_total", &[]),
        metric_sum(metrics, "switchyard_agent_reconciles_total", &[]),
    )
}

/// The kinds of object whose writes are shown apart.
const RESOURCES: [&str; 5] = [
    "networkports",
    "networknodes",
    "networks",
    "nodes",
    "events",
];

/// The apiserver's write requests so far (creates, updates, patches, deletes) by resource
/// (those of [`RESOURCES`], and `other`), leases left out: the controller's leader lease is
/// renewed by the clock, not by ports.
async fn apiserver_writes(env: &TestEnv) -> Vec<(&'static str, f64)> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a metrics request");
    let text = env
        .client
        .request_text(request)
        .await
        .expect("the apiserver's metrics");
    let writes = |labels: &[&str]| -> f64 {
        ["POST", "PUT", "PATCH", "DELETE", "APPLY"]
            .iter()
            .map(|verb| {
                let verb = format!("verb=\"{verb}\"");
                let mut wanted = vec![verb.as_str()];
                wanted.extend_from_slice(labels);
                metric_sum(&text, "apiserver_request_total", &wanted)
            })
            .sum()
    };
    let mut by_resource: Vec<(&'static str, f64)> = RESOURCES
        .iter()
        .map(|resource| (*resource, writes(&[&format!("resource=\"{resource}\"")])))
        .collect();
    let known: f64 = by_resource.iter().map(|(_, n)| n).sum();
    let other = writes(&[]) - writes(&["resource=\"leases\""]) - known;
    by_resource.push(("other", other));
    by_resource
}

fn total(writes: &[(&'static str, f64)]) -> f64 {
    writes.iter().map(|(_, n)| n).sum()
}

/// `after - before`, resource by resource.
fn difference(
    after: &[(&'static str, f64)],
    before: &[(&'static str, f64)],
) -> Vec<(&'static str, f64)> {
    after
        .iter()
        .zip(before)
        .map(|((resource, a), (_, b))| (*resource, a - b))
        .collect()
}

/// Waits until the apiserver's write count stands still over two polls a report interval
/// apart: every agent's and the controller's trailing writes are in.
async fn settle(env: &TestEnv) -> Vec<(&'static str, f64)> {
    let started = Instant::now();
    let mut last = apiserver_writes(env).await;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = apiserver_writes(env).await;
        if now == last {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the apiserver's writes never stood still ({last:?} then {now:?})"
        );
        last = now;
    }
}

/// Adds a node with one NIC, starts its agent, and gives it its resident ports.
async fn add_node(env: &TestEnv, net: &str, index: usize) -> SimulatedNode {
    let mut node = SimulatedNode::new(env, &format!("s{index}"), &[]).await;
    node.sandbox.add_nics("eth", 1).expect("the node's NIC");
    // Low resource use: 20 agents share the test's two cores.
    node.set_agent_env("SWITCHYARD_CONCURRENCY", "4");
    node.start_agent(agent());
    let api = ports_api(env);
    for r in 0..RESIDENT {
        let id = 10_000 + index * RESIDENT + r;
        api.create(
            &PostParams::default(),
            &port(&env.namespace, &format!("r{id}"), net, &node.name, &mac(id)),
        )
        .await
        .expect("creating a resident port");
    }
    node
}

/// Waits until the namespace holds `ready` ports, all Ready.
async fn wait_all_ready(env: &TestEnv, ready: usize) {
    let started = Instant::now();
    loop {
        let ports = switchyard_tests::fixtures::list_ports(env).await;
        if ports.len() == ready && count_phase(&ports, PortPhase::Ready) == ready {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {ready} ports ready:\n{}",
            count_phase(&ports, PortPhase::Ready),
            switchyard_tests::fixtures::summary(&ports)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Creates and deletes [`PORTS`] ports on `nodes[0]`; returns the apiserver's writes for it by
/// resource, and checks that no other agent did anything.
async fn round(env: &TestEnv, net: &str, nodes: &[SimulatedNode]) -> Vec<(&'static str, f64)> {
    let resident = nodes.len() * RESIDENT;
    wait_all_ready(env, resident).await;
    let busy = &nodes[0];
    let before = settle(env).await;
    let others_before: Vec<(f64, f64)> = nodes[1..].iter().map(agent_work).collect();

    let api = ports_api(env);
    let names: Vec<String> = (0..PORTS).map(|i| format!("b{i}")).collect();
    stream::iter(names.iter().enumerate())
        .for_each_concurrent(8, |(i, name)| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &port(&env.namespace, name, net, &busy.name, &mac(i)),
                )
                .await
                .expect("creating a port");
            }
        })
        .await;
    wait_all_ready(env, resident + PORTS).await;
    stream::iter(names.iter())
        .for_each_concurrent(8, |name| {
            let api = api.clone();
            async move {
                api.delete(name, &DeleteParams::default())
                    .await
                    .expect("deleting a port");
            }
        })
        .await;
    wait_all_ready(env, resident).await;
    let started = Instant::now();
    while network_node(env, &busy.name).await.ports as usize != RESIDENT {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the busy node never reported its ports gone"
        );
        tokio::time::sleep(POLL).await;
    }
    let after = settle(env).await;

    for (node, before) in nodes[1..].iter().zip(others_before) {
        let after = agent_work(node);
        assert_eq!(
            after,
            before,
            "{} (idle) made API writes or reconciles, (writes, reconciles) before and after; log:\n{}",
            node.name,
            node.logs()
        );
    }
    difference(&after, &before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_on_one_node_cost_the_others_nothing_and_writes_do_not_grow_with_nodes() {
    let started = Instant::now();
    let plane = ControlPlane::start().expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "scale").await;
    let net = create_network(
        &env,
        "scale",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n  maxConnectionsPerDevice: 200\n",
    )
    .await;
    let _controller = ControllerProcess::start(&plane.kubeconfig);
    let mut nodes = Vec::new();
    for index in 0..5 {
        nodes.push(add_node(&env, &net, index).await);
    }
    let five = round(&env, &net, &nodes).await;
    for index in 5..20 {
        nodes.push(add_node(&env, &net, index).await);
    }
    let twenty = round(&env, &net, &nodes).await;
    let per_port = |writes: &[(&'static str, f64)]| total(writes) / PORTS as f64;
    eprintln!(
        "apiserver writes per port (create and delete of {PORTS} ports on one node): \
         5 nodes {:.2}, 20 nodes {:.2}; by resource, 5 nodes {five:?}, 20 nodes {twenty:?}; \
         took {:.0}s",
        per_port(&five),
        per_port(&twenty),
        started.elapsed().as_secs_f64()
    );
    assert!(
        total(&twenty) <= total(&five) + WRITE_TOLERANCE,
        "writes grew with the nodes: {five:?} with 5 nodes, {twenty:?} with 20"
    );
}
