//! Migration check latency from the controller's cache: 1,000 simulated nodes × 100 networks.
//!
//! `cargo bench -p switchyard-placement --bench migration_check` prints p50 / p99 / max per
//! scenario. Not a test: it asserts nothing and is not part of the suite.
//!
//! The cluster is generated deterministically: networks of every realisation (shared macvtap,
//! passthrough, 802.1Qbh over private, host bridge), selectors from "every node" to "one rack
//! in ten", agents reporting each selected network with devices at varied load, a few nodes
//! not ready and a few networks not ready on some nodes.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use switchyard_crds::{
    Bridge, BridgeState, Forward, ForwardInterface, ForwardMode, InterfaceRequest, LinkState,
    MigrationCheckSpec, Network, NetworkPortSpec, NetworkSpec, NodeNetwork, NodeSelector,
    PoolDevice, PortGroup, VirtualPort, VirtualPortType,
};
use switchyard_placement::check::{Interface, check_migration, check_node, plan};
use switchyard_placement::index::{AgentReport, Index, NodeInfo};
use switchyard_placement::realisation::selects;

const NODES: usize = 1_000;
const NETWORKS: usize = 100;
const RACKS: usize = 10;
const DEVICES: usize = 4;

/// A small deterministic generator (xorshift), so every run measures the same cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn network_name(i: usize) -> String {
    format!("net-{i:03}")
}

fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

fn pool() -> Vec<ForwardInterface> {
    (0..DEVICES)
        .map(|d| ForwardInterface {
            dev: format!("ens{d}"),
        })
        .collect()
}

fn network(i: usize) -> Network {
    let mut spec = NetworkSpec::default();
    match i % 4 {
        0 => {
            spec.forward = Some(Forward {
                mode: ForwardMode::Vepa,
                interfaces: pool(),
                ..Default::default()
            });
            spec.max_connections_per_device = Some(8);
        }
        1 => {
            spec.forward = Some(Forward {
                mode: ForwardMode::Passthrough,
                interfaces: pool(),
                ..Default::default()
            });
        }
        2 => {
            spec.forward = Some(Forward {
                mode: ForwardMode::Private,
                interfaces: pool(),
                ..Default::default()
            });
            spec.portgroups = vec![PortGroup {
                name: "fex".into(),
                virtualport: Some(VirtualPort {
                    kind: Some(VirtualPortType::Qbh),
                    profileid: Some("fex-profile".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }];
        }
        _ => {
            spec.forward = Some(Forward {
                mode: ForwardMode::Bridge,
                ..Default::default()
            });
            spec.bridge = Some(Bridge {
                name: Some("br0".into()),
                ..Default::default()
            });
        }
    }
    // Every third network lives on one rack only; the others on every node.
    if i.is_multiple_of(3) {
        spec.node_selector = Some(NodeSelector {
            match_labels: [("rack".to_string(), format!("r{}", i % RACKS))].into(),
            ..Default::default()
        });
    }
    Network::new(&network_name(i), spec)
}

fn node_labels(n: usize) -> BTreeMap<String, String> {
    [
        ("rack".to_string(), format!("r{}", n % RACKS)),
        ("zone".to_string(), format!("z{}", n % 3)),
        ("kubernetes.io/hostname".to_string(), node_name(n)),
    ]
    .into()
}

fn report(network: &Network, i: usize, rng: &mut Rng) -> NodeNetwork {
    let name = network_name(i);
    if rng.below(100) < 2 {
        return NodeNetwork {
            name,
            ready: false,
            reason: Some("LinkDown".into()),
            message: Some("ens0 has no carrier".into()),
            ..Default::default()
        };
    }
    if network.spec.bridge.is_some() {
        let total = rng.below(1024) as u32;
        return NodeNetwork {
            name,
            ready: true,
            bridge: Some(BridgeState {
                name: "br0".into(),
                present: true,
                ports: total,
                total_ports: total,
                max_ports: 1023,
            }),
            capacity: 1023,
            used: u64::from(total),
            free: u64::from(1023u32.saturating_sub(total)),
            ..Default::default()
        };
    }
    let exclusive = i % 4 == 1;
    let devices: Vec<PoolDevice> = (0..DEVICES)
        .map(|d| {
            let connections = if exclusive {
                rng.below(2) as u32
            } else {
                rng.below(9) as u32
            };
            PoolDevice {
                name: format!("ens{d}"),
                present: rng.below(100) != 0,
                link_state: LinkState::Up,
                connections,
                exclusive: exclusive && connections == 1,
                holder: (exclusive && connections == 1).then(|| format!("vms/vm{d}-net0")),
            }
        })
        .collect();
    let used: u64 = devices.iter().map(|d| u64::from(d.connections)).sum();
    NodeNetwork {
        name,
        ready: true,
        devices,
        capacity: 32,
        used,
        free: 32u64.saturating_sub(used),
        ..Default::default()
    }
}

fn cluster() -> Index {
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    let mut index = Index::new();
    let networks: Vec<Network> = (0..NETWORKS).map(network).collect();
    for network in &networks {
        index.upsert_network(Arc::new(network.clone()));
    }
    for n in 0..NODES {
        let labels = node_labels(n);
        let served = networks
            .iter()
            .enumerate()
            .filter(|(_, network)| selects(&network.spec, &labels))
            .map(|(i, network)| {
                let report = report(network, i, &mut rng);
                (report.name.clone(), report)
            })
            .collect();
        index.upsert_node(
            &node_name(n),
            NodeInfo {
                labels,
                ready: rng.below(100) != 0,
                not_ready_reason: "Ready is Unknown (NodeStatusUnknown)".into(),
                unschedulable: false,
            },
        );
        index.upsert_agent(
            &node_name(n),
            AgentReport {
                ready: true,
                not_ready_reason: String::new(),
                networks: served,
            },
        );
    }
    index
}

/// A guest with `count` interfaces on random networks (some with the 802.1Qbh portgroup).
fn guest(rng: &mut Rng, count: usize) -> Vec<InterfaceRequest> {
    (0..count)
        .map(|k| {
            let i = rng.below(NETWORKS);
            InterfaceRequest {
                name: Some(format!("net{k}")),
                network: network_name(i),
                portgroup: (i % 4 == 2 && rng.below(2) == 0).then(|| "fex".to_string()),
                ..Default::default()
            }
        })
        .collect()
}

struct Stats {
    scenario: &'static str,
    runs: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    eligible_share: f64,
}

fn stats(
    scenario: &'static str,
    mut samples: Vec<Duration>,
    eligible: usize,
    verdicts: usize,
) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Stats {
        scenario,
        runs: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().expect("samples"),
        eligible_share: eligible as f64 / verdicts.max(1) as f64,
    }
}

fn main() {
    let built = Instant::now();
    let shared = RwLock::new(cluster());
    let build_time = built.elapsed();
    let mut rng = Rng(42);
    let mut results = Vec::new();

    // A VM with two interfaces and three candidate nodes: the question before a migration.
    let specs: Vec<MigrationCheckSpec> = (0..1_000)
        .map(|_| MigrationCheckSpec {
            interfaces: guest(&mut rng, 2),
            nodes: (0..3).map(|_| node_name(rng.below(NODES))).collect(),
        })
        .collect();
    results.push(measure(
        "2 interfaces x 3 candidate nodes (MigrationCheck)",
        &shared,
        &specs,
    ));

    // A VM with four interfaces on every node: where could it go at all?
    let specs: Vec<MigrationCheckSpec> = (0..1_000)
        .map(|_| MigrationCheckSpec {
            interfaces: guest(&mut rng, 4),
            nodes: Vec::new(),
        })
        .collect();
    results.push(measure("4 interfaces x all 1,000 nodes", &shared, &specs));

    // One NetworkPort's admission: its node only.
    let ports: Vec<NetworkPortSpec> = (0..10_000)
        .map(|_| {
            let interface = guest(&mut rng, 1).remove(0);
            NetworkPortSpec {
                network: interface.network,
                portgroup: interface.portgroup,
                node: node_name(rng.below(NODES)),
                mac: "52:54:00:00:00:01".into(),
                ..Default::default()
            }
        })
        .collect();
    let mut samples = Vec::with_capacity(ports.len());
    let mut eligible = 0;
    for spec in &ports {
        let started = Instant::now();
        let index = shared.read().expect("index lock");
        let interfaces = [Interface::from_port("net0".into(), spec)];
        let verdict = check_node(&index, &plan(&index, &interfaces), &spec.node);
        drop(index);
        samples.push(started.elapsed());
        eligible += usize::from(verdict.eligible);
        black_box(verdict);
    }
    results.push(stats(
        "1 port x its node (webhook admission)",
        samples,
        eligible,
        ports.len(),
    ));

    println!("migration check from the controller's cache: {NODES} nodes x {NETWORKS} networks");
    println!(
        "(index built in {build_time:.2?}; each sample includes taking the index's read lock)\n"
    );
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "scenario", "runs", "p50", "p99", "max", "eligible"
    );
    for r in results {
        println!(
            "{:<52} {:>6} {:>10.1?} {:>10.1?} {:>10.1?} {:>8.0}%",
            r.scenario,
            r.runs,
            r.p50,
            r.p99,
            r.max,
            r.eligible_share * 100.0
        );
    }
}

fn measure(scenario: &'static str, shared: &RwLock<Index>, specs: &[MigrationCheckSpec]) -> Stats {
    let mut samples = Vec::with_capacity(specs.len());
    let (mut eligible, mut verdicts) = (0, 0);
    for spec in specs {
        let started = Instant::now();
        let index = shared.read().expect("index lock");
        let answer = check_migration(&index, spec);
        drop(index);
        samples.push(started.elapsed());
        eligible += answer.iter().filter(|v| v.eligible).count();
        verdicts += answer.len();
        black_box(answer);
    }
    stats(scenario, samples, eligible, verdicts)
}
