//! What the agent reports about its node, against the real local apiserver and real network
//! namespaces: the Node's `switchyard.dev/<network>` extended resources follow the networks the
//! node serves and is ready for, an unchanged report writes nothing, and a link dump the
//! kernel keeps interrupting (links changing under it) is never reported as devices gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};
use switchyard_crds::{NetworkNode, NetworkNodeStatus, RESOURCE_PREFIX};
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

    // The agent counts a write once the apiserver has answered it, which can be after the
    // Node shows the resource here: wait for the advertising writes to be counted first.
    let start = Instant::now();
    let before = loop {
        let counted = writes(&node);
        if counted.0 >= 1 && counted.1 >= 1 {
            break counted;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the writes that advertised the resource were never counted: {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The agent reports every second (the harness's interval): several reports with nothing
    // changed must write neither the Node nor the NetworkNode.
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

/// Adds and removes dummy links in the namespace without pause until `stop` is set: every
/// change during a multi-part link dump makes the kernel flag the dump as interrupted.
fn churn_links(namespace: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            let script: String = (0..50)
                .map(|i| {
                    format!("link add churn{i} type veth peer name churn{i}p\nlink del churn{i}\n")
                })
                .collect();
            let mut child = Command::new("ip")
                .args(["-n", &namespace, "-batch", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ip -batch");
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(script.as_bytes())
                .expect("writing ip's script");
            child.wait().expect("ip -batch");
            rounds += 1;
        }
        rounds
    })
}

#[tokio::test]
async fn an_interrupted_link_dump_is_never_reported_as_missing_devices() {
    let env = TestEnv::new("report-dump-intr").await;
    // More devices than the agent looks up one by one, so every report reads a full dump; a
    // few hundred other links (veth pairs: this kernel may have no dummy links) make that dump span many datagrams.
    let (node, net) = node_with_network(
        &env,
        agent(),
        "intr",
        ("eth", 10),
        (
            "vepa",
            &format!(
                "  forward: {{mode: vepa, interfaces: [{}]}}\n  maxConnectionsPerDevice: 4\n",
                (0..10)
                    .map(|i| format!("{{dev: eth{i}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    )
    .await;
    node.sandbox
        .ip_batch(
            &(0..150)
                .map(|i| format!("link add filler{i} type veth peer name filler{i}p"))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let resource = format!("{RESOURCE_PREFIX}{net}");
    wait_node(&env, &node.name, "the network's resource", |n| {
        counts(n, &resource) == (Some("40".into()), Some("40".into()))
    })
    .await;

    // Every NetworkNode and Node the apiserver shows while links churn, as watch events.
    let seen_reports = Arc::new(Mutex::new(Vec::<NetworkNodeStatus>::new()));
    let seen_counts = Arc::new(Mutex::new(Vec::new()));
    let reports = {
        let seen = seen_reports.clone();
        let api = Api::<NetworkNode>::all(env.client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", node.name));
        tokio::spawn(async move {
            watcher(api, config)
                .applied_objects()
                .for_each(|object| {
                    if let Ok(object) = object {
                        seen.lock().unwrap().push(object.status.unwrap_or_default());
                    }
                    futures::future::ready(())
                })
                .await;
        })
    };
    let resources = {
        let seen = seen_counts.clone();
        let resource = resource.clone();
        let api = Api::<Node>::all(env.client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", node.name));
        tokio::spawn(async move {
            watcher(api, config)
                .applied_objects()
                .for_each(|object| {
                    if let Ok(object) = object {
                        seen.lock().unwrap().push(counts(&object, &resource));
                    }
                    futures::future::ready(())
                })
                .await;
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn_links(node.sandbox.name().to_string(), stop.clone());
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = tokio::task::spawn_blocking(move || churn.join().unwrap())
        .await
        .unwrap();
    // The reports keep coming after the churn: the agent is alive and reporting.
    let after = wait_node(&env, &node.name, "the resource after the churn", |n| {
        counts(n, &resource) == (Some("40".into()), Some("40".into()))
    })
    .await;
    reports.abort();
    resources.abort();
    let stale_reports = node.logs().matches("marked stale").count();
    eprintln!("{rounds} rounds of 100 link changes; {stale_reports} reports kept as stale");

    for status in seen_reports.lock().unwrap().iter() {
        let network = status.networks.iter().find(|n| n.name == net);
        let wrong = network
            .is_none_or(|n| !n.ready || n.capacity != 40 || n.devices.iter().any(|d| !d.present));
        assert!(
            !wrong,
            "a report said devices present all along were not: {status:#?}"
        );
    }
    for seen in seen_counts.lock().unwrap().iter() {
        assert_eq!(
            seen,
            &(Some("40".to_string()), Some("40".to_string())),
            "the Node's resource changed while every device was present: {:#?}",
            after.status
        );
    }
}
