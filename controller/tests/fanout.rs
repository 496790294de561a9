//! Work that must not fan out, counted from the components' own metrics on the real local
//! apiserver: ports on one node cost another node's agent nothing (the controller's Network
//! status writes do not wake agents), and a MigrationCheck is answered when it asks — not
//! again whenever the cluster moves — and deleted once its TTL after the answer is up.

mod common;

use std::time::Duration;

use common::{ControllerProcess, agent_reports, eventually, http_get, simulated_node};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchyard_crds::{ANNOTATION_RECHECK, MigrationCheck, Network, PortPhase};
use switchyard_tests::bins::workspace_binary;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{count_phase, create_network, mac, port, ports_api, wait_ports};
use switchyard_tests::metrics::{body, metric_sum};
use switchyard_tests::nodes::SimulatedNode;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// The agent's reconciles and API writes so far.
fn agent_work(node: &SimulatedNode) -> (f64, f64) {
    let response = node
        .http_get("/metrics")
        .expect("the agent's /metrics answers");
    let text = body(&response);
    (
        metric_sum(text, "switchyard_agent_reconciles_total", &[]),
        metric_sum(text, "switchyard_agent_api_writes_total", &[]),
    )
}

/// Waits until the agent's counts stop moving (its start-up and first reports are done).
async fn settled(node: &SimulatedNode) -> (f64, f64) {
    let mut last = agent_work(node);
    let mut stable = 0;
    for _ in 0..300 {
        tokio::time::sleep(POLL).await;
        let now = agent_work(node);
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        // Three report intervals (1 s in tests) without a reconcile or a write.
        if stable >= 15 {
            return last;
        }
    }
    panic!("the agent of {} never went quiet: {last:?}", node.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_on_one_node_cost_another_nodes_agent_no_reconcile_and_no_write() {
    const BUSY_PORTS: usize = 10;
    let env = TestEnv::new("fanout").await;
    let _controller = ControllerProcess::start(&env, false).await;
    let agent = workspace_binary("switchyard-node-agent");
    let network = create_network(
        &env,
        "fanout",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}, {dev: eth1}]}\n  maxConnectionsPerDevice: 50\n",
    )
    .await;
    let mut busy = SimulatedNode::new(&env, "busy", &[]).await;
    let mut quiet = SimulatedNode::new(&env, "quiet", &[]).await;
    for node in [&mut busy, &mut quiet] {
        node.sandbox.add_nics("eth", 2).expect("adding NICs");
        node.start_agent(&agent);
    }
    let api = ports_api(&env);
    // The quiet node has ports of the same network: before the fix, every status write of
    // the network re-reconciled them.
    for i in 0..2 {
        api.create(
            &PostParams::default(),
            &port(
                &env.namespace,
                &format!("q{i}"),
                &network,
                &quiet.name,
                &mac(i),
            ),
        )
        .await
        .expect("creating a port on the quiet node");
    }
    wait_ports(&env, "the quiet node's ports Ready", WAIT, POLL, |p| {
        count_phase(p, PortPhase::Ready) == 2
    })
    .await;
    let networks: Api<Network> = Api::all(env.client.clone());
    let used = |n: u64| {
        let networks = networks.clone();
        let network = network.clone();
        async move {
            let status = networks.get(&network).await.ok()?.status?;
            (status.nodes_ready == 2 && status.capacity_used == n).then_some(())
        }
    };
    eventually("the network's status counting 2 ports", WAIT, || used(2)).await;
    let before = settled(&quiet).await;
    let busy_before = agent_work(&busy);

    for i in 0..BUSY_PORTS {
        api.create(
            &PostParams::default(),
            &port(
                &env.namespace,
                &format!("b{i}"),
                &network,
                &busy.name,
                &mac(100 + i),
            ),
        )
        .await
        .expect("creating a port on the busy node");
    }
    wait_ports(&env, "every port Ready", WAIT, POLL, |p| {
        count_phase(p, PortPhase::Ready) == BUSY_PORTS + 2
    })
    .await;
    eventually("the network's status counting every port", WAIT, || {
        used((BUSY_PORTS + 2) as u64)
    })
    .await;
    for i in 0..BUSY_PORTS {
        api.delete(&format!("b{i}"), &DeleteParams::default())
            .await
            .expect("deleting a port");
    }
    wait_ports(&env, "the busy node's ports gone", WAIT, POLL, |p| {
        p.len() == 2
    })
    .await;
    eventually("the network's status back to 2 ports", WAIT, || used(2)).await;
    // Let a late trigger show: the agents report every second.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = agent_work(&quiet);
    let busy_after = agent_work(&busy);
    eprintln!(
        "busy agent: {} reconciles, {} writes for {BUSY_PORTS} ports; quiet agent: {} reconciles, {} writes",
        busy_after.0 - busy_before.0,
        busy_after.1 - busy_before.1,
        after.0 - before.0,
        after.1 - before.1,
    );
    assert!(
        busy_after.0 - busy_before.0 >= BUSY_PORTS as f64,
        "the busy agent's reconciles are counted: {busy_before:?} -> {busy_after:?}"
    );
    assert_eq!(
        after, before,
        "(reconciles, API writes) of the agent of the node the ports were not on"
    );
}

/// The controller's migration-check reconciles so far.
fn check_reconciles(controller: &ControllerProcess) -> f64 {
    let (_, text) = http_get(controller.metrics, "/metrics").expect("the controller's /metrics");
    metric_sum(
        &text,
        "switchyard_reconciles_total",
        &["controller=\"migrationcheck\""],
    )
}

fn served(network: &str, free: u64) -> serde_json::Value {
    json!([{
        "name": network, "ready": true, "macvtapMode": "vepa",
        "devices": [{"name": "eth0", "present": true, "linkState": "up", "connections": 4 - free, "exclusive": false}],
        "capacity": 4, "used": 4 - free, "free": free,
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_check_is_answered_when_it_asks_and_deleted_after_its_ttl() {
    let env = TestEnv::new("check-once").await;
    let controller = ControllerProcess::start(&env, false).await;
    let ns = env.namespace.clone();
    let network = create_network(
        &env,
        "check-once",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n  maxConnectionsPerDevice: 4\n",
    )
    .await;
    let node = env.unique("node");
    simulated_node(&env, &node, &[]).await;
    agent_reports(&env, &node, served(&network, 0)).await;

    let check: MigrationCheck = serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "MigrationCheck",
        "metadata": {"name": "vm1", "namespace": ns},
        "spec": {"interfaces": [{"name": "net0", "network": network}], "nodes": [node]},
    }))
    .unwrap();
    let checks: Api<MigrationCheck> = Api::namespaced(env.client.clone(), &ns);
    checks
        .create(&PostParams::default(), &check)
        .await
        .expect("creating the check");
    let answered = eventually("the check's answer", WAIT, || async {
        let live = checks.get("vm1").await.ok()?;
        live.status.as_ref().filter(|s| s.nodes.len() == 1)?;
        Some(live)
    })
    .await;
    let status = answered.status.clone().unwrap();
    assert!(status.eligible_nodes.is_empty(), "{status:#?}");
    assert!(status.answered_at.is_some(), "{status:#?}");
    let reconciles = check_reconciles(&controller);

    // The cluster moves: the node frees a connection, then another. The network's status
    // follows; the check's answer stays what it was when asked.
    let networks: Api<Network> = Api::all(env.client.clone());
    for free in [1, 2] {
        agent_reports(&env, &node, served(&network, free)).await;
        eventually("the network's status to follow", WAIT, || async {
            let status = networks.get(&network).await.ok()?.status?;
            (status.capacity_free == free).then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = checks.get("vm1").await.expect("the check");
    assert_eq!(
        live.resource_version(),
        answered.resource_version(),
        "the check was written again: {:#?}",
        live.status
    );
    assert_eq!(
        check_reconciles(&controller),
        reconciles,
        "migration-check reconciles while nobody asked"
    );

    // Asked again: a new answer, and the request is taken away.
    checks
        .patch(
            "vm1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {ANNOTATION_RECHECK: "now"}}})),
        )
        .await
        .expect("annotating the check");
    let rechecked = eventually("the new answer", WAIT, || async {
        let live = checks.get("vm1").await.ok()?;
        let status = live.status.as_ref()?;
        (status.eligible_nodes == [node.clone()]
            && !live.annotations().contains_key(ANNOTATION_RECHECK))
        .then_some(live)
    })
    .await;
    assert_ne!(
        rechecked.status.as_ref().unwrap().answered_at,
        status.answered_at,
        "answeredAt moves with the answer"
    );

    // A controller whose TTL is shorter than the answer's age deletes the check at start-up
    // without answering it again.
    drop(controller);
    let short =
        ControllerProcess::start_with(&env.kubeconfig, false, &[("SWITCHYARD_CHECK_TTL", "2")])
            .await;
    eventually("the expired check deleted", WAIT, || async {
        checks.get_opt("vm1").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        short.log().contains("migration check expired; deleted"),
        "{}",
        short.log_tail()
    );
}
