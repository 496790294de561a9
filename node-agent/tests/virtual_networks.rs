//! libvirt's own virtual networks (isolated, nat, route, open) realised by the agent process on
//! a node namespace, against the real local apiserver, the real dnsmasq and nftables: guests
//! in namespaces of their own get a lease (busybox udhcpc), resolve a DNS host entry, and reach
//! (or do not reach) a listener in an "uplink" namespace as the mode says; then the agent is
//! SIGKILLed and restarted, and everything is still there exactly once.
//!
//! Addresses are 10.91.0.0/16, inside namespaces this test creates; no packet leaves them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::PostParams;
use nix::sched::{CloneFlags, setns};
use switchyard_crds::*;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{
    count_phase, mac, network_node, port, ports_api, wait_network_node, wait_ports,
};
use switchyard_tests::netns::Sandbox;
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");
const TABLE: &str = "switchyard_network";
const LISTEN_PORT: u16 = 8080;
/// The node's address on the uplink, and the uplink's.
const NODE_UPLINK: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 1);
const UPLINK: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 2);

/// One network of the test: mode, subnet octet, bridge.
#[derive(Debug, Clone, Copy)]
struct Mode {
    label: &'static str,
    forward: Option<&'static str>,
    octet: u8,
    bridge: &'static str,
}

const MODES: [Mode; 4] = [
    Mode {
        label: "iso",
        forward: None,
        octet: 1,
        bridge: "vn-iso",
    },
    Mode {
        label: "nat",
        forward: Some("nat"),
        octet: 2,
        bridge: "vn-nat",
    },
    Mode {
        label: "route",
        forward: Some("route"),
        octet: 3,
        bridge: "vn-route",
    },
    Mode {
        label: "open",
        forward: Some("open"),
        octet: 4,
        bridge: "vn-open",
    },
];

impl Mode {
    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 91, self.octet, 1)
    }

    fn printer(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 91, self.octet, 50)
    }

    fn spec(&self) -> String {
        let forward = match self.forward {
            Some("nat") => "  forward: {mode: nat, dev: up0}\n".to_string(),
            Some(mode) => format!("  forward: {{mode: {mode}}}\n"),
            None => String::new(),
        };
        format!(
            "{forward}  bridge: {{name: {bridge}}}\n  dns:\n    hosts: [{{ip: \"{printer}\", hostnames: [printer]}}]\n  ips:\n  - address: \"{gw}\"\n    prefix: 24\n    dhcp:\n      ranges: [{{start: \"10.91.{o}.10\", end: \"10.91.{o}.20\"}}]\n",
            bridge = self.bridge,
            printer = self.printer(),
            gw = self.gateway(),
            o = self.octet,
        )
    }
}

/// Runs `work` on a thread inside the namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: PathBuf, work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("the namespace file");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
        work()
    })
    .join()
    .expect("the namespace thread")
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// A guest: a namespace holding the guest end of a port, configured by udhcpc.
#[derive(Debug)]
struct Guest {
    sandbox: Sandbox,
    address: Ipv4Addr,
}

/// Leases an address with udhcpc in `sandbox` on `interface`; its script (the test's own, so
/// that nothing is written outside the namespace) sets the address and the default route.
fn lease(sandbox: &Sandbox, interface: &str, script_dir: &Path) -> Ipv4Addr {
    let script = script_dir.join("udhcpc.script");
    let out = script_dir.join(format!("{}.lease", sandbox.name()));
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nip addr add \"$ip/$mask\" dev \"$interface\"\nif [ -n \"$router\" ]; then ip route replace default via \"${router%% *}\" dev \"$interface\"; fi\necho \"$ip\" > \"$LEASE_OUT\"\n",
    )
    .unwrap();
    run(Command::new("chmod").args(["0755", &script.display().to_string()]));
    run(Command::new("ip")
        .args(["netns", "exec", sandbox.name(), "udhcpc", "-i", interface])
        .args(["-f", "-q", "-n", "-t", "10", "-T", "1", "-s"])
        .arg(&script)
        .env("LEASE_OUT", &out));
    std::fs::read_to_string(&out)
        .expect("udhcpc's script ran")
        .trim()
        .parse()
        .expect("an IPv4 lease")
}

/// Asks `server` (inside `netns`) for the A record of `name`; the first address answered.
fn resolve(netns: PathBuf, server: Ipv4Addr, name: &'static str) -> Option<Ipv4Addr> {
    in_netns(netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        socket.send_to(&query, (server, 53)).ok()?;
        let mut answer = [0u8; 512];
        let len = socket.recv(&mut answer).ok()?;
        let answers = u16::from_be_bytes([answer[6], answer[7]]);
        (answer[3] & 0x0f == 0 && answers > 0 && len >= query.len() + 16).then(|| {
            Ipv4Addr::new(
                answer[len - 4],
                answer[len - 3],
                answer[len - 2],
                answer[len - 1],
            )
        })
    })
}

/// Connects from `netns` to the uplink's listener; the source address the listener saw, or
/// `None` when the connection failed.
fn reach_uplink(netns: PathBuf, listener: &TcpListener) -> Option<Ipv4Addr> {
    let connected = in_netns(netns, || {
        TcpStream::connect_timeout(
            &SocketAddr::from((UPLINK, LISTEN_PORT)),
            Duration::from_secs(2),
        )
        .ok()
    })?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((_stream, peer)) = listener.accept() {
            drop(connected);
            return match peer.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The agent's table as nft lists it, rules only, counters and handles left out.
fn table_rules(node: &SimulatedNode) -> Vec<String> {
    let mut rules = Vec::new();
    for family in ["ip", "ip6"] {
        let listing = run(Command::new("ip").args([
            "netns",
            "exec",
            node.sandbox.name(),
            "nft",
            "list",
            "table",
            family,
            TABLE,
        ]));
        for line in listing.lines() {
            let line = line.trim();
            if line.contains("counter") || line.contains("type ") {
                let words: Vec<&str> = line.split_whitespace().collect();
                let mut kept = Vec::new();
                let mut skip = 0;
                for word in words {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    if word == "packets" || word == "bytes" {
                        skip = 1;
                        continue;
                    }
                    kept.push(word);
                }
                rules.push(format!("{family}: {}", kept.join(" ")));
            }
        }
    }
    rules
}

/// The dnsmasq processes running `conf`.
fn dnsmasq_running(conf: &Path) -> Vec<u32> {
    let wanted = format!("--conf-file={}", conf.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline.split(|b| *b == 0).any(|a| a == wanted.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

fn lease_of<'a>(status: &'a NetworkNodeStatus, network: &str) -> Vec<&'a DhcpLeaseStatus> {
    status
        .networks
        .iter()
        .find(|n| n.name == network)
        .and_then(|n| n.virtual_network.as_ref())
        .map(|v| v.leases.iter().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn isolated_nat_route_and_open_networks_serve_guests_and_survive_a_sigkill() {
    let env = TestEnv::new("vnet").await;
    let mut node = SimulatedNode::new(&env, "vnet", &[]).await;
    let uplink = Sandbox::new("vnet-up").unwrap();
    ip(&[
        "-n",
        node.sandbox.name(),
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "netns",
        uplink.name(),
    ]);
    ip(&[
        "-n",
        node.sandbox.name(),
        "addr",
        "add",
        "10.91.0.1/24",
        "dev",
        "up0",
    ]);
    ip(&["-n", node.sandbox.name(), "link", "set", "up0", "up"]);
    ip(&[
        "-n",
        uplink.name(),
        "addr",
        "add",
        "10.91.0.2/24",
        "dev",
        "up1",
    ]);
    ip(&["-n", uplink.name(), "link", "set", "up1", "up"]);
    // Routed and open networks are reached through the node, untranslated.
    for octet in [3, 4] {
        ip(&[
            "-n",
            uplink.name(),
            "route",
            "add",
            &format!("10.91.{octet}.0/24"),
            "via",
            "10.91.0.1",
        ]);
    }
    let listener = in_netns(uplink.path(), || {
        TcpListener::bind((UPLINK, LISTEN_PORT)).expect("the uplink's listener")
    });
    listener.set_nonblocking(true).unwrap();

    let networks_api = kube::Api::<Network>::all(env.client.clone());
    let mut names = Vec::new();
    for mode in MODES {
        let name = env.unique(mode.label);
        networks_api
            .create(
                &PostParams::default(),
                &switchyard_tests::fixtures::network(&env, &name, &mode.spec()),
            )
            .await
            .unwrap();
        names.push(name);
    }
    node.start_agent(Path::new(AGENT));

    let ports = ports_api(&env);
    for (i, name) in names.iter().enumerate() {
        ports
            .create(
                &PostParams::default(),
                &port(&env.namespace, MODES[i].label, name, &node.name, &mac(i)),
            )
            .await
            .unwrap();
    }
    let ready = wait_ports(
        &env,
        "4 ready ports",
        Duration::from_secs(45),
        Duration::from_millis(200),
        |p| count_phase(p, PortPhase::Ready) == 4,
    )
    .await;

    let scripts = tempfile::tempdir().unwrap();
    let mut guests = Vec::new();
    for mode in MODES {
        let port = ready.iter().find(|p| p.name_any() == mode.label).unwrap();
        let actual = port.status.as_ref().unwrap().actual.clone().unwrap();
        assert_eq!(actual.bridge.as_deref(), Some(mode.bridge));
        let peer = actual
            .peer_link_name
            .expect("a bridge port has a guest end");
        let sandbox = Sandbox::new(&format!("g-{}", mode.label)).unwrap();
        ip(&[
            "-n",
            node.sandbox.name(),
            "link",
            "set",
            &peer,
            "netns",
            sandbox.name(),
        ]);
        sandbox.ip(&["link", "set", &peer, "up"]).unwrap();
        let address = lease(&sandbox, &peer, scripts.path());
        assert_eq!(
            address.octets()[..3],
            [10, 91, mode.octet],
            "{}: leased {address}",
            mode.label
        );
        assert_eq!(
            resolve(sandbox.path(), mode.gateway(), "printer"),
            Some(mode.printer()),
            "{}: the DNS host entry",
            mode.label
        );
        if mode.forward.is_none() {
            // An isolated network's DHCP names no router; a guest routing through the bridge
            // anyway must meet the firewall, not a missing route.
            sandbox
                .ip(&[
                    "route",
                    "replace",
                    "default",
                    "via",
                    &mode.gateway().to_string(),
                ])
                .unwrap();
        }
        guests.push(Guest { sandbox, address });
    }

    // What each mode forwards.
    let seen: Vec<Option<Ipv4Addr>> = guests
        .iter()
        .map(|g| reach_uplink(g.sandbox.path(), &listener))
        .collect();
    assert_eq!(seen[0], None, "isolated forwards nothing");
    assert_eq!(seen[1], Some(NODE_UPLINK), "nat: from the node's address");
    assert_eq!(seen[2], Some(guests[2].address), "route: untranslated");
    assert_eq!(seen[3], Some(guests[3].address), "open: untranslated");

    // The rules: one set for iso, nat and route, none for open.
    let rules = table_rules(&node);
    assert!(
        rules
            .iter()
            .any(|r| r.contains("\"vn-iso\"") && r.contains("reject")),
        "{rules:#?}"
    );
    assert!(rules.iter().any(|r| r.contains("masquerade")), "{rules:#?}");
    assert!(
        rules.iter().any(|r| r.contains("\"vn-route\"")),
        "{rules:#?}"
    );
    assert!(
        !rules.iter().any(|r| r.contains("vn-open")),
        "open installs no rules: {rules:#?}"
    );

    // The leases in the node's report.
    let status = wait_network_node(&env, &node.name, "every lease reported", |s| {
        names.iter().zip(&guests).all(|(n, g)| {
            lease_of(s, n)
                .iter()
                .any(|l| l.ip_address == g.address.to_string())
        })
    })
    .await;
    for (i, name) in names.iter().enumerate() {
        let entry = status.networks.iter().find(|n| &n.name == name).unwrap();
        assert!(entry.ready, "{entry:#?}");
        let vnet = entry.virtual_network.as_ref().unwrap();
        assert!(vnet.realised, "{vnet:#?}");
        assert!(
            vnet.dnsmasq.as_ref().is_some_and(|d| d.running),
            "{vnet:#?}"
        );
        assert_eq!(lease_of(&status, name)[0].mac_address, mac(i));
    }

    // SIGKILL and a new agent: one dnsmasq per network, the same ones; the same rules once;
    // the same bridge; the leases kept; the guests still reach out.
    let state_dir = node.state_dir.path().to_path_buf();
    let conf = |name: &str| state_dir.join(format!("{name}.conf"));
    let before: Vec<Vec<u32>> = names.iter().map(|n| dnsmasq_running(&conf(n))).collect();
    for (name, pids) in names.iter().zip(&before) {
        assert_eq!(pids.len(), 1, "{name}: one dnsmasq");
    }
    let bridge_index = |node: &SimulatedNode| {
        node.sandbox
            .link("vn-nat")
            .unwrap()
            .expect("the nat bridge")
            .ifindex
    };
    let index_before = bridge_index(&node);
    node.kill_agent();
    node.start_agent(Path::new(AGENT));
    wait_network_node(&env, &node.name, "the new agent's report", |s| {
        s.networks.iter().filter(|n| n.ready).count() == 4
            && s.networks.iter().all(|n| {
                n.virtual_network
                    .as_ref()
                    .and_then(|v| v.dnsmasq.as_ref())
                    .is_some_and(|d| d.running)
            })
    })
    .await;
    let after: Vec<Vec<u32>> = names.iter().map(|n| dnsmasq_running(&conf(n))).collect();
    assert_eq!(after, before, "the running dnsmasq processes were adopted");
    assert_eq!(table_rules(&node), rules, "rules exactly once");
    assert_eq!(
        bridge_index(&node),
        index_before,
        "the bridge was not re-created"
    );
    let status = network_node(&env, &node.name).await;
    for (name, guest) in names.iter().zip(&guests) {
        assert!(
            lease_of(&status, name)
                .iter()
                .any(|l| l.ip_address == guest.address.to_string()),
            "{name}: lease kept: {status:#?}"
        );
    }
    assert_eq!(
        reach_uplink(guests[1].sandbox.path(), &listener),
        Some(NODE_UPLINK),
        "nat still works"
    );
    assert_eq!(reach_uplink(guests[0].sandbox.path(), &listener), None);
    assert_eq!(
        resolve(guests[2].sandbox.path(), MODES[2].gateway(), "printer"),
        Some(MODES[2].printer())
    );
    drop(guests);
    drop(node);
    drop(uplink);
}

/// The node's report entry for `network`.
fn entry<'a>(status: &'a NetworkNodeStatus, network: &str) -> Option<&'a NodeNetwork> {
    status.networks.iter().find(|n| n.name == network)
}

/// Hostile networks: a newer network whose subnet overlaps a running one, and a newer network
/// naming the running one's bridge, are refused on the node (`NetworkConflict`, naming both)
/// and get no bridge; the running network keeps its bridge and its dnsmasq, never flapped.
/// Once it is deleted, the refused networks run.
#[tokio::test]
async fn a_newer_network_that_clashes_is_refused_and_the_older_keeps_running() {
    let env = TestEnv::new("vnet-clash").await;
    let mut node = SimulatedNode::new(&env, "clash", &[]).await;
    let networks_api = kube::Api::<Network>::all(env.client.clone());
    let spec = |bridge: &str, gateway: &str, prefix: u8, start: &str, end: &str| {
        format!(
            "  bridge: {{name: {bridge}}}\n  ips:\n  - address: \"{gateway}\"\n    prefix: {prefix}\n    dhcp:\n      ranges: [{{start: \"{start}\", end: \"{end}\"}}]\n"
        )
    };
    // The older network is named last in order, so that only its age lets it win.
    let older = env.unique("z-older");
    networks_api
        .create(
            &PostParams::default(),
            &switchyard_tests::fixtures::network(
                &env,
                &older,
                &spec("vc-old", "10.92.1.1", 24, "10.92.1.10", "10.92.1.20"),
            ),
        )
        .await
        .unwrap();
    node.start_agent(Path::new(AGENT));
    let running = |s: &NetworkNodeStatus| {
        entry(s, &older).is_some_and(|n| {
            n.ready
                && n.virtual_network
                    .as_ref()
                    .and_then(|v| v.dnsmasq.as_ref())
                    .is_some_and(|d| d.running)
        })
    };
    wait_network_node(&env, &node.name, "the older network running", running).await;
    let conf = node.state_dir.path().join(format!("{older}.conf"));
    let dnsmasq_before = dnsmasq_running(&conf);
    assert_eq!(dnsmasq_before.len(), 1, "one dnsmasq for the older network");
    let bridge_before = node.sandbox.link("vc-old").unwrap().expect("its bridge");

    // creationTimestamp has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let overlapping = env.unique("a-overlap");
    let same_bridge = env.unique("a-bridge");
    for (name, spec) in [
        (
            &overlapping,
            spec("vc-new", "10.92.1.129", 25, "10.92.1.140", "10.92.1.150"),
        ),
        (
            &same_bridge,
            spec("vc-old", "10.92.2.1", 24, "10.92.2.10", "10.92.2.20"),
        ),
    ] {
        networks_api
            .create(
                &PostParams::default(),
                &switchyard_tests::fixtures::network(&env, name, &spec),
            )
            .await
            .unwrap();
    }
    let conflict = |s: &NetworkNodeStatus, name: &str| {
        entry(s, name).is_some_and(|n| !n.ready && n.reason.as_deref() == Some("NetworkConflict"))
    };
    let status = wait_network_node(&env, &node.name, "both newer networks refused", |s| {
        conflict(s, &overlapping) && conflict(s, &same_bridge)
    })
    .await;
    let message = |name: &str| entry(&status, name).unwrap().message.clone().unwrap();
    let overlap_message = message(&overlapping);
    for part in [
        overlapping.as_str(),
        older.as_str(),
        node.name.as_str(),
        "spec.ips[0]",
        "10.92.1.128/25",
        "10.92.1.0/24",
    ] {
        assert!(overlap_message.contains(part), "{part}: {overlap_message}");
    }
    let bridge_message = message(&same_bridge);
    for part in [
        same_bridge.as_str(),
        older.as_str(),
        node.name.as_str(),
        "spec.bridge.name",
        "'vc-old'",
    ] {
        assert!(bridge_message.contains(part), "{part}: {bridge_message}");
    }
    // A few more reports: the refused networks stay refused and make nothing; the older one is
    // untouched (same bridge, same dnsmasq).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = network_node(&env, &node.name).await;
    assert!(running(&status), "{status:#?}");
    assert!(conflict(&status, &overlapping) && conflict(&status, &same_bridge));
    assert!(
        node.sandbox.link("vc-new").unwrap().is_none(),
        "the refused network's bridge was made"
    );
    let state_dir = node.state_dir.path().to_path_buf();
    for name in [&overlapping, &same_bridge] {
        assert!(
            dnsmasq_running(&state_dir.join(format!("{name}.conf"))).is_empty(),
            "{name}: a refused network got a dnsmasq"
        );
    }
    assert_eq!(dnsmasq_running(&conf), dnsmasq_before, "the older dnsmasq");
    assert_eq!(
        node.sandbox.link("vc-old").unwrap().map(|l| l.ifindex),
        Some(bridge_before.ifindex),
        "the older network's bridge was not re-created"
    );

    // The older network gone, the two refused ones coexist (disjoint subnets, two bridges).
    networks_api
        .delete(&older, &Default::default())
        .await
        .unwrap();
    let realised = |s: &NetworkNodeStatus, name: &str| {
        entry(s, name).is_some_and(|n| {
            n.ready
                && n.virtual_network
                    .as_ref()
                    .and_then(|v| v.dnsmasq.as_ref())
                    .is_some_and(|d| d.running)
        })
    };
    wait_network_node(&env, &node.name, "the refused networks realised", |s| {
        realised(s, &overlapping) && realised(s, &same_bridge)
    })
    .await;
    assert!(node.sandbox.link("vc-new").unwrap().is_some());
    assert!(
        dnsmasq_running(&conf).is_empty(),
        "the deleted network's dnsmasq"
    );
    drop(node);
}
