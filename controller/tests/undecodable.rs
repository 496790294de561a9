//! An object the controller cannot decode (version skew during an upgrade: a newer agent's
//! report) is skipped with a warning, on the real local
//! apiserver: the controller starts, and keeps reconciling every other object, while it exists.

mod common;

use std::time::Duration;

use common::{ControllerProcess, agent_reports, eventually, simulated_node};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use switchyard_crds::{Network, NetworkNode};
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::create_network;

const WAIT: Duration = Duration::from_secs(60);

/// The report of a node serving `network` with 4 connections, `free` of them free.
fn served(network: &str, free: u64) -> serde_json::Value {
    json!([{
        "name": network, "ready": true, "macvtapMode": "vepa",
        "devices": [{"name": "eth0", "present": true, "linkState": "up", "connections": 4 - free, "exclusive": false}],
        "capacity": 4, "used": 4 - free, "free": free,
    }])
}

/// The network's status once `done` holds for it.
async fn network_status_where(
    env: &TestEnv,
    network: &str,
    what: &str,
    done: impl Fn(u32, u64) -> bool,
) {
    let networks: Api<Network> = Api::all(env.client.clone());
    eventually(what, WAIT, || async {
        let status = networks.get(network).await.ok()?.status?;
        done(status.nodes_ready, status.capacity_free).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_controller_cannot_decode_are_skipped_and_the_rest_reconciled() {
    let env = TestEnv::new("undecodable").await;
    let network = create_network(
        &env,
        "skew",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n  maxConnectionsPerDevice: 4\n",
    )
    .await;
    let good = env.unique("good");
    let skewed = env.unique("skewed");
    for node in [&good, &skewed] {
        simulated_node(&env, node, &[]).await;
        agent_reports(&env, node, served(&network, 4)).await;
    }
    // Counts beyond u32: the schema (an integer, at least 0) lets them in, the controller's
    // types do not, as with a field a newer version writes. Written as raw JSON: decoding the
    // answer as the typed object would fail too.
    let too_big = 4_294_967_296_u64;
    let raw_nodes: Api<DynamicObject> =
        Api::all_with(env.client.clone(), &ApiResource::erase::<NetworkNode>(&()));
    raw_nodes
        .patch_status(
            &skewed,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ports": too_big}})),
        )
        .await
        .expect("writing the skewed report");
    // A controller starting now (an upgrade's new pod) lists them with the rest: it gets ready
    // (every watch listed) and counts the good node's report.
    let controller = ControllerProcess::start(&env, false).await;
    network_status_where(&env, &network, "the good node counted", |ready, free| {
        ready == 1 && free == 4
    })
    .await;

    // A watch event with an undecodable object (the report written again) is skipped too, and
    // the good node's next report still reaches the network's status.
    raw_nodes
        .patch_status(
            &skewed,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ports": too_big + 1}})),
        )
        .await
        .expect("writing the skewed report again");
    agent_reports(&env, &good, served(&network, 2)).await;
    network_status_where(
        &env,
        &network,
        "the good node's new report",
        |ready, free| ready == 1 && free == 2,
    )
    .await;

    let log = controller.log();
    assert!(
        log.lines().any(
            |line| line.contains("skipping an object that cannot be decoded")
                && line.contains("NetworkNode")
                && line.contains(skewed.as_str())
        ),
        "no warning about NetworkNode {skewed}:\n{}",
        controller.log_tail()
    );
}
