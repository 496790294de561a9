//! Fault and load tests, bounded in time: the agent SIGKILLed at random points of heavy churn,
//! the apiserver stopped and restarted under the agent and the controller, and a thousand
//! requests racing for a four-device passthrough pool. After each, the kernel and the API must
//! agree exactly: every link in the node's namespace but its stand-in NICs (judged by the test,
//! not by the agent's own ownership marks) belongs to a live port and every live port has its link,
//! every surviving port is Ready, deleted ports are gone, and the node's reported connections
//! per device equal the kernel's macvtaps per lower device.
//!
//! The random choices come from a seeded generator; the seed is printed, and
//! `SWITCHYARD_FAULT_SEED=<seed>` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use switchyard_crds::*;
use switchyard_tests::cluster::{TestEnv, apply_crds, client_for};
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::controller::ControllerProcess;
use switchyard_tests::fixtures::{
    OWNED_GROUP, count_phase, kernel_connections, list_ports, mac, network_node, node_with_network,
    phase, port, ports_api, summary, wait_ports,
};
use switchyard_tests::netns::LinkView;
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");
/// The uplinks of the churn and restart tests' nodes.
const UPLINKS: StandIns = StandIns {
    prefix: "up",
    count: 4,
};
/// The four passthrough devices of the thousand-requests test's node.
const VFS: StandIns = StandIns {
    prefix: "vf",
    count: 4,
};

fn agent() -> &'static Path {
    Path::new(AGENT)
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness: SplitMix64, enough to pick kill points and shuffle operations
// reproducibly without a dependency.

struct Rng(u64);

impl Rng {
    /// The seed from `SWITCHYARD_FAULT_SEED` (decimal or 0x-hex), else from the clock; printed
    /// so a failing run can be replayed.
    fn from_env(test: &str) -> Self {
        let seed = match std::env::var("SWITCHYARD_FAULT_SEED") {
            Ok(text) => {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("SWITCHYARD_FAULT_SEED={text} is not a u64"))
            }
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
                .unwrap_or(1),
        };
        eprintln!("{test}: seed {seed} (replay with SWITCHYARD_FAULT_SEED={seed})");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant at these sizes).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Objects.

fn device(port: &NetworkPort) -> Option<&str> {
    port.status.as_ref()?.actual.as_ref()?.device.as_deref()
}

fn names(ports: &[NetworkPort]) -> BTreeSet<String> {
    ports.iter().map(|p| p.name_any()).collect()
}

/// Creates ports with at most `in_flight` requests at once.
async fn create_ports(api: &Api<NetworkPort>, ports: Vec<NetworkPort>, in_flight: usize) {
    stream::iter(ports)
        .for_each_concurrent(in_flight, |port| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &port)
                    .await
                    .unwrap_or_else(|e| panic!("creating port {}: {e}", port.name_any()));
            }
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// The kernel against the API.

/// The node's stand-in NICs: veth pairs `<prefix>N` / `<prefix>N-sw`, as `node_with_network`
/// made them.
#[derive(Debug, Clone, Copy)]
struct StandIns {
    prefix: &'static str,
    count: usize,
}

impl StandIns {
    fn names(&self) -> BTreeSet<String> {
        (0..self.count)
            .flat_map(|i| {
                [
                    format!("{}{i}", self.prefix),
                    format!("{}{i}-sw", self.prefix),
                ]
            })
            .collect()
    }
}

/// Every link in the node's namespace but loopback and the stand-in NICs, whatever its group
/// or name: the test's own judgement of what the agent left, not the agent's ownership test.
/// Each of them must be some live port's.
fn port_links(node: &SimulatedNode, nics: StandIns) -> Vec<LinkView> {
    let stand_ins = nics.names();
    node.sandbox
        .links()
        .expect("listing the sandbox's links")
        .into_iter()
        .filter(|l| l.name != "lo" && !stand_ins.contains(&l.name))
        .collect()
}

/// Everything in which the kernel and the (Ready) ports disagree: leaked links, lost ports,
/// links that do not match their port's `status.actual`.
fn kernel_mismatches(links: &[LinkView], ports: &[NetworkPort]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_uid: BTreeMap<String, &NetworkPort> =
        ports.iter().filter_map(|p| Some((p.uid()?, p))).collect();
    let mut links_by_uid: BTreeMap<&str, Vec<&LinkView>> = BTreeMap::new();
    for link in links {
        match link.alias.as_deref() {
            Some(alias) if by_uid.contains_key(alias) => {
                links_by_uid.entry(alias).or_default().push(link)
            }
            alias => problems.push(format!(
                "leaked link {} (group {:#x}, alias {alias:?}): no live port owns it",
                link.name, link.group
            )),
        }
    }
    for (uid, port) in &by_uid {
        let name = port.name_any();
        let found = links_by_uid.get(uid.as_str()).cloned().unwrap_or_default();
        let [link] = found.as_slice() else {
            problems.push(format!(
                "port {name} (uid {uid}) has {} owned links: {:?}",
                found.len(),
                found.iter().map(|l| &l.name).collect::<Vec<_>>()
            ));
            continue;
        };
        let Some(actual) = port.status.as_ref().and_then(|s| s.actual.as_ref()) else {
            problems.push(format!("port {name} has no status.actual"));
            continue;
        };
        if link.name != actual.link_name
            || Some(link.ifindex) != actual.ifindex
            || link.group != OWNED_GROUP
            || link.lower.as_deref() != actual.device.as_deref()
        {
            problems.push(format!(
                "port {name}: status says {} (ifindex {:?}) on {:?}, the kernel has {} (ifindex {}, group {:#x}) on {:?}",
                actual.link_name,
                actual.ifindex,
                actual.device,
                link.name,
                link.ifindex,
                link.group,
                link.lower
            ));
        }
    }
    problems
}

/// Waits until exactly `expected` ports exist, all Ready, then checks that the kernel agrees
/// link for link and that the node's report counts what the kernel holds. Returns the ports and
/// the number of owned links.
async fn assert_converged(
    env: &TestEnv,
    node: &SimulatedNode,
    nics: StandIns,
    network: &str,
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> (Vec<NetworkPort>, usize) {
    let ports = wait_ports(
        env,
        &format!(
            "exactly {} ports, all Ready (deleted ones gone)",
            expected.len()
        ),
        timeout,
        Duration::from_millis(250),
        |ports| names(ports) == *expected && count_phase(ports, PortPhase::Ready) == ports.len(),
    )
    .await;
    // Every deletion finished (its finalizer is gone only after its link is), so the kernel
    // must agree now; a moment's grace for the last status writes racing the listing.
    let start = Instant::now();
    let links = loop {
        let links = port_links(node, nics);
        let problems = kernel_mismatches(&links, &ports);
        if problems.is_empty() {
            break links;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the kernel and the ports disagree ({} problems):\n{}",
            problems.len(),
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kernel = kernel_connections(&links);
    let start = Instant::now();
    loop {
        let status = network_node(env, &node.name).await;
        let reported: Option<BTreeMap<String, u32>> =
            status.networks.iter().find(|n| n.name == network).map(|n| {
                n.devices
                    .iter()
                    .filter(|d| d.connections > 0)
                    .map(|d| (d.name.clone(), d.connections))
                    .collect()
            });
        if status.ports as usize == expected.len() && reported.as_ref() == Some(&kernel) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the node reports {} ports and connections {reported:?}; the kernel has {} links and {kernel:?}",
            status.ports,
            links.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (ports, links.len())
}

// ---------------------------------------------------------------------------------------------
// Cleanup.

/// Lets go of the test's ports still holding the agent's finalizer once the agent is gone,
/// so the namespace can be deleted (also when the test fails). Declare it before the node so
/// it runs after the node's agent is killed.
struct PortSweep {
    kubeconfig: PathBuf,
    namespace: String,
}

impl PortSweep {
    fn new(env: &TestEnv) -> Self {
        Self {
            kubeconfig: env.kubeconfig.clone(),
            namespace: env.namespace.clone(),
        }
    }
}

impl Drop for PortSweep {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let namespace = self.namespace.clone();
        // The test's runtime may be the current-thread kind and is blocked in this drop: use a
        // runtime and a client of our own on another thread.
        let sweep = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the sweep");
            runtime.block_on(async {
                let work = async {
                    let api: Api<NetworkPort> =
                        Api::namespaced(client_for(&kubeconfig).await, &namespace);
                    let Ok(list) = api.list(&ListParams::default()).await else {
                        return;
                    };
                    let patch = serde_json::json!({"metadata": {"finalizers": null}});
                    stream::iter(list.items)
                        .for_each_concurrent(32, |port| {
                            let api = api.clone();
                            let patch = patch.clone();
                            async move {
                                let _ = api
                                    .patch(
                                        &port.name_any(),
                                        &PatchParams::default(),
                                        &Patch::Merge(&patch),
                                    )
                                    .await;
                            }
                        })
                        .await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(90), work).await;
            });
        });
        let _ = sweep.join();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL at random points of churn.

/// One API operation of a churn round.
#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Delete(String),
}

fn port_name(id: usize) -> String {
    format!("c{id}")
}

async fn run_op(api: Api<NetworkPort>, op: Op, namespace: String, net: String, node: String) {
    match op {
        Op::Create(id) => {
            api.create(
                &PostParams::default(),
                &port(&namespace, &port_name(id), &net, &node, &mac(id)),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", port_name(id)));
        }
        Op::Delete(name) => {
            // The port may have been created this round by a request still in flight.
            let start = Instant::now();
            loop {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(status))
                        if status.code == 404 && start.elapsed() < Duration::from_secs(30) =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("deleting {name}: {e}"),
                }
            }
        }
    }
}

/// 250 ready ports, then ten rounds of 250 creates and 250 deletes (of older ports and of
/// ports created in the same round) issued 48 at a time; each round the agent is SIGKILLed
/// after a random number of the round's operations, plus a random delay, and started again once
/// the round's requests are all in. At least seven of the ten kills must find work in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_during_churn_lose_nothing_and_leak_nothing() {
    const BASE: usize = 250;
    const ROUNDS: usize = 10;
    const CREATES: usize = 250;
    const DELETES: usize = 250;
    const IN_FLIGHT: usize = 48;
    let started = Instant::now();
    let mut rng = Rng::from_env("random_sigkills_during_churn");
    let env = TestEnv::new("faults-sigkill").await;
    let _sweep = PortSweep::new(&env);
    let (mut node, net) = node_with_network(
        &env,
        agent(),
        "fkill",
        (UPLINKS.prefix, UPLINKS.count),
        (
            "churn",
            "  forward: {mode: vepa, interfaces: [{dev: up0}, {dev: up1}, {dev: up2}, {dev: up3}]}\n  maxConnectionsPerDevice: 200\n",
        ),
    )
    .await;
    let api = ports_api(&env);

    let base: Vec<NetworkPort> = (0..BASE)
        .map(|id| port(&env.namespace, &port_name(id), &net, &node.name, &mac(id)))
        .collect();
    create_ports(&api, base, IN_FLIGHT).await;
    let mut live: BTreeSet<String> = (0..BASE).map(port_name).collect();
    assert_converged(&env, &node, UPLINKS, &net, &live, Duration::from_secs(120)).await;
    eprintln!(
        "sigkill churn: {BASE} base ports ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut next_id = BASE;
    let mut rounds_with_work = 0;
    for round in 1..=ROUNDS {
        let round_start = Instant::now();
        let created: Vec<usize> = (next_id..next_id + CREATES).collect();
        next_id += CREATES;
        // The deleted: a random 250 of the older ports and this round's new ones.
        let mut candidates: Vec<String> = live
            .iter()
            .cloned()
            .chain(created.iter().map(|&id| port_name(id)))
            .collect();
        rng.shuffle(&mut candidates);
        let deleted: BTreeSet<String> = candidates.into_iter().take(DELETES).collect();
        // Creates and deletes of older ports in random order; each delete of a new port at a
        // random place after its create.
        let mut ops: Vec<Op> = created
            .iter()
            .map(|&id| Op::Create(id))
            .chain(
                deleted
                    .iter()
                    .filter(|name| live.contains(*name))
                    .map(|name| Op::Delete(name.clone())),
            )
            .collect();
        rng.shuffle(&mut ops);
        for name in deleted.iter().filter(|name| !live.contains(*name)) {
            let id: usize = name[1..].parse().unwrap();
            let after = ops
                .iter()
                .position(|op| matches!(op, Op::Create(c) if *c == id))
                .unwrap();
            let at = after + 1 + rng.below(ops.len() - after);
            ops.insert(at, Op::Delete(name.clone()));
        }
        assert_eq!(ops.len(), CREATES + DELETES);
        // At least one operation acknowledged before the kill, so it can find work to do.
        let kill_after = 1 + rng.below(ops.len());
        let kill_delay = Duration::from_millis(rng.below(250) as u64);

        let done = Arc::new(AtomicUsize::new(0));
        // The ports whose create or delete the apiserver acknowledged before the kill.
        let before_kill: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let kill_tx = std::sync::Mutex::new(Some(kill_tx));
        let (ns, net_name, node_name) = (env.namespace.clone(), net.clone(), node.name.clone());
        let api_ops = api.clone();
        let counter = done.clone();
        let (acknowledged, churn_killed) = (before_kill.clone(), killed.clone());
        let churn = tokio::spawn(async move {
            stream::iter(ops)
                .for_each_concurrent(IN_FLIGHT, |op| {
                    let name = match &op {
                        Op::Create(id) => port_name(*id),
                        Op::Delete(name) => name.clone(),
                    };
                    let fut = run_op(
                        api_ops.clone(),
                        op,
                        ns.clone(),
                        net_name.clone(),
                        node_name.clone(),
                    );
                    let counter = counter.clone();
                    let kill_tx = &kill_tx;
                    let (acknowledged, killed) = (acknowledged.clone(), churn_killed.clone());
                    async move {
                        fut.await;
                        if !killed.load(Ordering::SeqCst) {
                            acknowledged.lock().unwrap().insert(name);
                        }
                        if counter.fetch_add(1, Ordering::SeqCst) + 1 == kill_after
                            && let Some(tx) = kill_tx.lock().unwrap().take()
                        {
                            let _ = tx.send(());
                        }
                    }
                })
                .await;
        });
        kill_rx.await.expect("the churn reaches the kill point");
        tokio::time::sleep(kill_delay).await;
        killed.store(true, Ordering::SeqCst);
        node.kill_agent();
        let issued = done.load(Ordering::SeqCst);
        // Work in progress at the kill: ports whose create the apiserver had acknowledged but
        // that were not Ready yet, and ports whose delete it had acknowledged that were still
        // there. Nothing changes those once the agent is dead, so a list now shows them as
        // they were; ports of requests acknowledged after the kill are left out.
        let acknowledged = before_kill.lock().unwrap().clone();
        let at_kill = list_ports(&env).await;
        let unfinished = at_kill
            .iter()
            .filter(|p| acknowledged.contains(&p.name_any()))
            .filter(|p| {
                phase(p) != Some(PortPhase::Ready) || p.metadata.deletion_timestamp.is_some()
            })
            .count();
        if unfinished > 0 {
            rounds_with_work += 1;
        }
        churn.await.expect("the churn's requests all succeed");
        let restart = Instant::now();
        node.start_agent(agent());
        let recovered_in = restart.elapsed();

        live = live
            .union(&created.iter().map(|&id| port_name(id)).collect())
            .cloned()
            .collect();
        live = live.difference(&deleted).cloned().collect();
        let (ports, links) =
            assert_converged(&env, &node, UPLINKS, &net, &live, Duration::from_secs(120)).await;
        eprintln!(
            "sigkill churn round {round}/{ROUNDS}: killed after {issued}/{} ops (+{}ms), {unfinished} unfinished at the kill; ready again in {:.1}s; {} ports, {} links, counts exact; round took {:.1}s",
            CREATES + DELETES,
            kill_delay.as_millis(),
            recovered_in.as_secs_f64(),
            ports.len(),
            links,
            round_start.elapsed().as_secs_f64()
        );
    }
    // A kill that finds the agent idle proves nothing about recovery: most must not.
    assert!(
        rounds_with_work >= ROUNDS * 7 / 10,
        "only {rounds_with_work} of {ROUNDS} kills found work in progress"
    );
    eprintln!(
        "sigkill churn: {ROUNDS} rounds of {} operations in {:.1}s",
        CREATES + DELETES,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The apiserver stopped and restarted under the agent and the controller.

/// Retries an API call until it succeeds or `accept` says its error means it is done (a
/// create whose first attempt got through before the apiserver died, a delete of a port
/// already gone). Counts the failed attempts.
async fn until_done<T, Fut>(
    what: &str,
    failures: &AtomicUsize,
    accept: impl Fn(&kube::Error) -> bool,
    call: impl Fn() -> Fut,
) where
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    loop {
        match call().await {
            Ok(_) => return,
            Err(e) if accept(&e) => return,
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "{what} still failing after 120s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A 404 that names the object: it is gone. A restarted apiserver also answers 404 — without
/// naming anything — for a custom resource whose CRD it has not loaded again yet, and treating
/// that as "already deleted" would leave the port behind.
fn object_not_found(error: &kube::Error, name: &str) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 404
            && status.details.as_ref().is_some_and(|details| details.name == name))
}

/// A private control plane whose apiserver is killed for five seconds while ports are being
/// created and deleted, then started again on the same port and etcd: the agent and the
/// controller (same processes throughout) reconnect, every request goes through on retry, and
/// ports, kernel, node report and the controller's Network status converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_controller_converge_after_an_apiserver_restart() {
    const FIRST: usize = 60;
    const MORE: usize = 60;
    const DELETED: usize = 30;
    let started = Instant::now();
    let mut plane = ControlPlane::start().expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "faults-apiserver").await;
    let _sweep = PortSweep::new(&env);
    let (node, net) = node_with_network(
        &env,
        agent(),
        "fapi",
        (UPLINKS.prefix, UPLINKS.count),
        (
            "restart",
            "  forward: {mode: bridge, interfaces: [{dev: up0}, {dev: up1}, {dev: up2}, {dev: up3}]}\n  maxConnectionsPerDevice: 100\n",
        ),
    )
    .await;
    let mut controller = ControllerProcess::start(&plane.kubeconfig);
    let api = ports_api(&env);
    create_ports(
        &api,
        (0..FIRST)
            .map(|id| port(&env.namespace, &port_name(id), &net, &node.name, &mac(id)))
            .collect(),
        16,
    )
    .await;
    let first: BTreeSet<String> = (0..FIRST).map(port_name).collect();
    assert_converged(&env, &node, UPLINKS, &net, &first, Duration::from_secs(60)).await;
    let before_outage = started.elapsed();

    // Churn paced over several seconds so that the outage falls in its middle. The client is
    // a fresh one: the test's own must not learn anything from the churn's failures.
    let failures = Arc::new(AtomicUsize::new(0));
    let churn = {
        let client: Client = client_for(&plane.kubeconfig).await;
        let api: Api<NetworkPort> = Api::namespaced(client, &env.namespace);
        let (ns, net, node_name) = (env.namespace.clone(), net.clone(), node.name.clone());
        let failures = failures.clone();
        tokio::spawn(async move {
            // A create of a new port, then a delete of an old one, alternately.
            let mut ops = Vec::new();
            for i in 0..MORE {
                ops.push(Op::Create(FIRST + i));
                if i < DELETED {
                    ops.push(Op::Delete(port_name(i)));
                }
            }
            let mut tasks = Vec::new();
            for op in ops {
                let api = api.clone();
                let (ns, net, node_name, failures) =
                    (ns.clone(), net.clone(), node_name.clone(), failures.clone());
                tasks.push(tokio::spawn(async move {
                    let (post, delete) = (PostParams::default(), DeleteParams::default());
                    match op {
                        Op::Create(id) => {
                            let port = port(&ns, &port_name(id), &net, &node_name, &mac(id));
                            until_done(
                                &format!("creating {}", port_name(id)),
                                &failures,
                                |e| api_code(e) == Some(409),
                                || api.create(&post, &port),
                            )
                            .await
                        }
                        Op::Delete(name) => {
                            until_done(
                                &format!("deleting {name}"),
                                &failures,
                                |e| object_not_found(e, &name),
                                || api.delete(&name, &delete),
                            )
                            .await
                        }
                    }
                }));
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
            for task in tasks {
                task.await.expect("a churn request");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outage = Instant::now();
    plane.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| plane.restart_apiserver()).expect("restarting the apiserver");
    let down_for = outage.elapsed();
    churn.await.expect("every churn request goes through");
    let churn_done = started.elapsed();
    let failed = failures.load(Ordering::Relaxed);
    assert!(
        failed > 0,
        "no request failed: the outage did not fall in the churn"
    );

    let expected: BTreeSet<String> = (DELETED..FIRST + MORE).map(port_name).collect();
    let (ports, _) = assert_converged(
        &env,
        &node,
        UPLINKS,
        &net,
        &expected,
        Duration::from_secs(120),
    )
    .await;
    let converged = started.elapsed();

    // The controller's view: the Network's status counts the node and its ports.
    let networks = Api::<Network>::all(env.client.clone());
    let start = Instant::now();
    loop {
        let status = networks
            .get(&net)
            .await
            .expect("the network")
            .status
            .unwrap_or_default();
        if status.nodes_selected == 1
            && status.nodes_ready == 1
            && status.capacity_total == 400
            && status.capacity_used == expected.len() as u64
            && status.capacity_free == 400 - expected.len() as u64
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Network's status did not converge: {status:#?}\ncontroller log:\n{}",
            controller.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(controller.ready(), "the controller's /readyz is not 200");
    assert!(
        node.http_get("/readyz")
            .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        "the agent's /readyz is not 200:\n{}",
        node.logs()
    );
    eprintln!(
        "apiserver restart: set up and {FIRST} ports ready at {:.1}s; down {:.1}s; churn done at {:.1}s ({failed} failed requests retried); {} ports Ready, counts exact at {:.1}s; Network status {}/{} used; took {:.1}s",
        before_outage.as_secs_f64(),
        down_for.as_secs_f64(),
        churn_done.as_secs_f64(),
        ports.len(),
        converged.as_secs_f64(),
        expected.len(),
        400,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A thousand requests for four passthrough devices.

/// The test's ports as a watch delivers them: every state the apiserver stored, in order, each
/// checked for two Ready ports on one device as it arrives.
#[derive(Debug, Default)]
struct PortHistory {
    ports: BTreeMap<String, NetworkPort>,
    /// UIDs of ports whose removal the watch reported: their links were gone before it (the
    /// agent's finalizer goes only after the link).
    removed: BTreeSet<String>,
    /// How many times the watch (re)listed; a relist may skip states, so more than one fails.
    lists: usize,
    listed: bool,
    events: usize,
    violations: Vec<String>,
}

impl PortHistory {
    fn apply(&mut self, event: watcher::Event<NetworkPort>) {
        match event {
            watcher::Event::Init => {
                self.lists += 1;
                self.listed = false;
                self.ports.clear();
                return;
            }
            watcher::Event::InitApply(port) => {
                self.ports.insert(port.name_any(), port);
                return;
            }
            watcher::Event::InitDone => self.listed = true,
            watcher::Event::Apply(port) => {
                self.ports.insert(port.name_any(), port);
            }
            watcher::Event::Delete(port) => {
                self.ports.remove(&port.name_any());
                self.removed.extend(port.uid());
            }
        }
        self.events += 1;
        let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for port in self
            .ports
            .values()
            .filter(|p| phase(p) == Some(PortPhase::Ready))
        {
            holders
                .entry(device(port).unwrap_or("?"))
                .or_default()
                .push(port.metadata.name.as_deref().unwrap_or("?"));
        }
        for (device, ports) in holders.iter().filter(|(_, ports)| ports.len() > 1) {
            self.violations.push(format!(
                "event {}: {ports:?} all Ready on {device}",
                self.events
            ));
        }
    }
}

/// Watches the namespace's ports into a [`PortHistory`] until dropped; returns once the watch
/// has listed them.
struct PortWatch {
    history: Arc<std::sync::Mutex<PortHistory>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PortWatch {
    async fn start(api: Api<NetworkPort>) -> Self {
        let history: Arc<std::sync::Mutex<PortHistory>> = Arc::default();
        let writer = history.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => writer.lock().unwrap().apply(event),
                    // The watcher resumes from the last version it saw (or lists again, which
                    // `lists` records); a brief pause keeps a dead apiserver from spinning us.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let watch = Self { history, task };
        let start = Instant::now();
        while !watch.history.lock().unwrap().listed {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the port watch did not list within 30s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        watch
    }

    /// The ports now, and the UIDs whose removal has been seen.
    fn snapshot(&self) -> (Vec<NetworkPort>, BTreeSet<String>) {
        let history = self.history.lock().unwrap();
        (
            history.ports.values().cloned().collect(),
            history.removed.clone(),
        )
    }

    /// Panics with every state in which two Ready ports shared a device, or if the watch had
    /// to list again (it may have skipped states). Returns how many events were checked.
    fn assert_never_shared(&self) -> usize {
        let history = self.history.lock().unwrap();
        assert!(
            history.violations.is_empty(),
            "two Ready ports on one device ({} states):\n{}",
            history.violations.len(),
            history.violations.join("\n")
        );
        assert_eq!(
            history.lists, 1,
            "the port watch listed again: states may have been skipped"
        );
        history.events
    }
}

/// What the kernel must agree with at any instant, judged without the agent's ownership test
/// and beyond what the kernel enforces itself (one passthrough macvtap per device):
/// - every link but the stand-in NICs carries the UID of a port the test created (`created`)
///   whose removal was not seen before the kernel was read (`removed`): nothing leaked (a link
///   without a UID yet is judged by its age, in `sample_kernel_until`);
/// - no UID is on two links: no port holds two devices;
/// - every port Ready in `ports` (a snapshot taken before the kernel read) and not being
///   deleted has exactly its link: the name, ifindex and device its status names, passthrough.
///   `leaving` names ports whose delete may race the read.
fn kernel_agrees(
    links: &[LinkView],
    ports: &[NetworkPort],
    removed: &BTreeSet<String>,
    created: &BTreeSet<String>,
    leaving: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_uid: BTreeMap<&str, Vec<&LinkView>> = BTreeMap::new();
    for link in links {
        match link.alias.as_deref() {
            // Just made: the alias comes in a second request (see `sample_kernel_until`).
            None => {}
            Some(uid) if created.contains(uid) && !removed.contains(uid) => {
                by_uid.entry(uid).or_default().push(link)
            }
            alias => problems.push(format!(
                "link {} ({:?}, alias {alias:?}) belongs to no live port",
                link.name, link.kind
            )),
        }
    }
    for (uid, links) in by_uid.iter().filter(|(_, links)| links.len() > 1) {
        problems.push(format!(
            "port {uid} holds {} links: {:?}",
            links.len(),
            links.iter().map(|l| &l.name).collect::<Vec<_>>()
        ));
    }
    for port in ports.iter().filter(|p| {
        phase(p) == Some(PortPhase::Ready)
            && p.metadata.deletion_timestamp.is_none()
            && !leaving.contains(&p.name_any())
    }) {
        let name = port.name_any();
        let actual = port.status.as_ref().and_then(|s| s.actual.as_ref());
        let found = port
            .uid()
            .and_then(|uid| by_uid.get(uid.as_str()).cloned())
            .unwrap_or_default();
        match (actual, found.as_slice()) {
            (Some(actual), [link])
                if link.name == actual.link_name
                    && Some(link.ifindex) == actual.ifindex
                    && link.lower.as_deref() == actual.device.as_deref()
                    && link.kind.as_deref() == Some("macvtap")
                    && link.mode.as_deref() == Some("passthru") => {}
            (actual, found) => problems.push(format!(
                "Ready port {name}: status {actual:?}, the kernel has {found:?}"
            )),
        }
    }
    problems
}

/// Creates all `ports` at once. A request the apiserver refused with 429 (too many requests)
/// or could not take (a thousand connections at once can overflow its accept queue) is sent
/// again; one whose first attempt got through answers 409, and the port is read back. Returns
/// the UIDs and the number of retries.
async fn create_all_at_once(
    api: &Api<NetworkPort>,
    ports: Vec<NetworkPort>,
) -> (BTreeSet<String>, usize) {
    let retries = AtomicUsize::new(0);
    let uids = futures::future::join_all(ports.into_iter().map(|port| {
        let retries = &retries;
        async move {
            let name = port.name_any();
            let start = Instant::now();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let retry = match api.create(&PostParams::default(), &port).await {
                    Ok(created) => return created.uid().expect("a created port has a UID"),
                    Err(kube::Error::Api(status)) if status.code == 409 && attempts > 1 => {
                        let existing = api.get(&name).await.expect("reading back a port");
                        return existing.uid().expect("a stored port has a UID");
                    }
                    Err(kube::Error::Api(status)) if status.code == 429 => true,
                    Err(kube::Error::Api(status)) => panic!("creating port {name}: {status:?}"),
                    // Not an answer from the apiserver: the connection failed.
                    Err(_) => true,
                };
                assert!(
                    retry && start.elapsed() < Duration::from_secs(120),
                    "creating port {name}: still failing after 120s"
                );
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }))
    .await;
    (uids.into_iter().collect(), retries.into_inner())
}

/// The ports a link may belong to.
#[derive(Clone, Copy)]
enum Known<'a> {
    /// Those a consistent list, made after the kernel was read, shows: while ports are being
    /// created (a link's port was stored before the link was made) and none deleted.
    ListedAfter(&'a Api<NetworkPort>),
    /// These UIDs: every port the test created, once all creates returned.
    Created(&'a BTreeSet<String>),
}

/// Samples the kernel against the watched ports until `done` resolves; panics on the first
/// disagreement. Returns the result of `done` and the number of samples.
async fn sample_kernel_until<T>(
    node: &SimulatedNode,
    watch: &PortWatch,
    known: Known<'_>,
    leaving: &BTreeSet<String>,
    done: impl std::future::Future<Output = T>,
) -> (T, usize) {
    // The kernel ignores an alias given at creation, so a link spends a moment without its
    // port's UID; one that stays without it belongs to nobody.
    const UNALIASED_GRACE: Duration = Duration::from_secs(5);
    let mut unaliased: BTreeMap<(String, u32), Instant> = BTreeMap::new();
    let mut done = std::pin::pin!(done);
    let mut samples = 0;
    loop {
        let (ports, removed) = watch.snapshot();
        let links = tokio::task::block_in_place(|| port_links(node, VFS));
        let now = Instant::now();
        unaliased.retain(|(name, ifindex), _| {
            links
                .iter()
                .any(|l| l.alias.is_none() && &l.name == name && l.ifindex == *ifindex)
        });
        for link in links.iter().filter(|l| l.alias.is_none()) {
            let since = *unaliased
                .entry((link.name.clone(), link.ifindex))
                .or_insert(now);
            assert!(
                now - since < UNALIASED_GRACE,
                "link {} ({:?}) has carried no port's UID for {UNALIASED_GRACE:?}",
                link.name,
                link.kind
            );
        }
        let known = match known {
            Known::ListedAfter(api) => api
                .list(&ListParams::default())
                .await
                .expect("listing the ports")
                .items
                .iter()
                .filter_map(|p| p.uid())
                .collect(),
            Known::Created(uids) => uids.clone(),
        };
        let problems = kernel_agrees(&links, &ports, &removed, &known, leaving);
        assert!(
            problems.is_empty(),
            "the kernel and the ports disagree:\n{}",
            problems.join("\n")
        );
        samples += 1;
        tokio::select! {
            result = &mut done => return (result, samples),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Waits until `total` ports exist, four Ready and the rest Pending for want of a device,
/// sampling the kernel all along. Returns the ports.
async fn wait_settled(
    node: &SimulatedNode,
    watch: &PortWatch,
    created: &BTreeSet<String>,
    leaving: &BTreeSet<String>,
    total: usize,
) -> Vec<NetworkPort> {
    let settled = async {
        let start = Instant::now();
        loop {
            let (ports, _) = watch.snapshot();
            let pending = ports
                .iter()
                .filter(|p| {
                    phase(p) == Some(PortPhase::Pending)
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.first())
                            .is_some_and(|c| c.reason == "NoFreeDevice")
                })
                .count();
            if ports.len() == total
                && count_phase(&ports, PortPhase::Ready) == 4
                && pending == total - 4
            {
                return ports;
            }
            // A thousand status writes; on a loaded two-core machine they take minutes.
            assert!(
                start.elapsed() < Duration::from_secs(360),
                "not settled after 360s: {} ports, {} Ready, {pending} Pending(NoFreeDevice):\n{}",
                ports.len(),
                count_phase(&ports, PortPhase::Ready),
                summary(
                    &ports
                        .iter()
                        .filter(|p| phase(p) != Some(PortPhase::Pending))
                        .cloned()
                        .collect::<Vec<_>>()
                )
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    sample_kernel_until(node, watch, Known::Created(created), leaving, settled)
        .await
        .0
}

/// The settled state seen from the kernel and the node's report: exactly four passthrough
/// macvtaps, one per device, each carrying a Ready port's UID, and nothing else.
async fn assert_four_holders(
    env: &TestEnv,
    node: &SimulatedNode,
    net: &str,
    ports: &[NetworkPort],
) {
    let ready: Vec<NetworkPort> = ports
        .iter()
        .filter(|p| phase(p) == Some(PortPhase::Ready))
        .cloned()
        .collect();
    let links = port_links(node, VFS);
    assert_eq!(links.len(), 4, "four links in the kernel: {links:?}");
    let lowers: BTreeSet<_> = links.iter().filter_map(|l| l.lower.clone()).collect();
    assert_eq!(lowers.len(), 4, "on four distinct lower devices");
    let problems = kernel_mismatches(&links, &ready);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let expected_holders: BTreeMap<String, String> = ready
        .iter()
        .map(|p| {
            (
                device(p).unwrap().to_string(),
                format!("{}/{}", env.namespace, p.name_any()),
            )
        })
        .collect();
    let start = Instant::now();
    loop {
        let status = network_node(env, &node.name).await;
        let reported: BTreeMap<String, String> = status
            .networks
            .iter()
            .filter(|n| n.name == net)
            .flat_map(|n| &n.devices)
            .filter(|d| d.connections == 1 && d.exclusive)
            .filter_map(|d| Some((d.name.clone(), d.holder.clone()?)))
            .collect();
        if status.ports == 4 && reported == expected_holders {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the node reports {} ports, holders {reported:?}; expected {expected_holders:?}",
            status.ports
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 1,000 ports created at once (every request issued together, on an apiserver of its own
/// that admits that many mutations in flight) for a passthrough pool of four: exactly four
/// Ready on four devices, 996 Pending with `NoFreeDevice`, never two Ready on one device in any
/// state the watch delivers, and the kernel agreeing with the ports at every sample. Then the
/// four holders go and four waiting ports take the devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_for_four_passthrough_devices_never_share_one() {
    const PORTS: usize = 1000;
    let started = Instant::now();
    let plane = ControlPlane::start_with(&["--max-mutating-requests-inflight=1200"])
        .expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "faults-thousand").await;
    let _sweep = PortSweep::new(&env);
    let (node, net) = node_with_network(
        &env,
        agent(),
        "fpt",
        (VFS.prefix, VFS.count),
        (
            "pt",
            "  forward: {mode: passthrough, interfaces: [{dev: vf0}, {dev: vf1}, {dev: vf2}, {dev: vf3}]}\n",
        ),
    )
    .await;
    let api = ports_api(&env);
    let watch = PortWatch::start(api.clone()).await;
    let requests: Vec<NetworkPort> = (0..PORTS)
        .map(|i| port(&env.namespace, &format!("vm{i}"), &net, &node.name, &mac(i)))
        .collect();
    let none_leaving = BTreeSet::new();
    let ((created, throttled), samples_while_creating) = sample_kernel_until(
        &node,
        &watch,
        Known::ListedAfter(&api),
        &none_leaving,
        create_all_at_once(&api, requests),
    )
    .await;
    assert_eq!(created.len(), PORTS);
    let created_in = started.elapsed();
    let ports = wait_settled(&node, &watch, &created, &none_leaving, PORTS).await;
    assert_four_holders(&env, &node, &net, &ports).await;
    let settled_in = started.elapsed();

    let first: BTreeSet<String> = ports
        .iter()
        .filter(|p| phase(p) == Some(PortPhase::Ready))
        .map(|p| p.name_any())
        .collect();
    for name in &first {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let ports = wait_settled(&node, &watch, &created, &first, PORTS - 4).await;
    let second: BTreeSet<String> = ports
        .iter()
        .filter(|p| phase(p) == Some(PortPhase::Ready))
        .map(|p| p.name_any())
        .collect();
    assert!(
        first.is_disjoint(&second),
        "{first:?} were deleted, yet Ready: {second:?}"
    );
    assert_four_holders(&env, &node, &net, &ports).await;
    let events = watch.assert_never_shared();
    eprintln!(
        "thousand for four: {PORTS} created at once in {:.1}s ({throttled} requests retried after a 429 or a failed connection, {samples_while_creating} kernel samples meanwhile), settled 4 Ready / {} Pending at {:.1}s; 4 holders deleted, 4 others took the devices; {events} watch events checked; took {:.1}s",
        created_in.as_secs_f64(),
        PORTS - 4,
        settled_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
