//! A port's bandwidth applied over rtnetlink, against the real kernel, in a network namespace
//! the test creates (run as root). The kernel's own dump, read with iproute2's `tc` as an
//! independent observer, must show libvirt's values; and it must be identical to the dump of a
//! twin link on which libvirt's exact `tc` command lines were run. Then the agent process, on
//! the real local apiserver, applies a port's merged bandwidth in the direction its link type
//! needs, re-plans it when the port or its portgroup change, and removes it; what the kernel
//! holds is read back over rtnetlink (`LinkManager::observe_tc`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use switchyard_crds::{Bandwidth, BandwidthLimit, Network, NetworkPort, PortActual, PortPhase};
use switchyard_node_agent::bandwidth::observed::{INGRESS_HANDLE, ROOT_PARENT};
use switchyard_node_agent::bandwidth::{
    CLASS_ID, HostView, LEAF_HANDLE, PortShaping, ROOT_HANDLE, plan_port,
};
use switchyard_node_agent::netlink::{LinkManager, MissingTcFeature, NetnsTarget};
use switchyard_node_agent::ownership::LinkGroups;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{create_network, mac, phase, port, ports_api, wait_ports};
use switchyard_tests::netns::Sandbox;
use switchyard_tests::nodes::SimulatedNode;

fn limit(average: u64, peak: Option<u64>, burst: Option<u64>) -> BandwidthLimit {
    BandwidthLimit {
        average: Some(average),
        peak,
        burst,
        floor: None,
    }
}

fn tc(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", sandbox.name(), "tc"])
        .args(args)
        .output()
        .expect("run tc in the sandbox")
}

/// `tc -s -d qdisc/class/filter show` for one link, the link's name replaced by `DEV` and the
/// police action's index (numbered per namespace) dropped.
fn dump(sandbox: &Sandbox, dev: &str) -> String {
    let mut all = String::new();
    for args in [
        vec!["-s", "-d", "qdisc", "show", "dev", dev],
        vec!["-s", "-d", "class", "show", "dev", dev],
        vec!["-s", "-d", "filter", "show", "dev", dev],
        vec!["-s", "-d", "filter", "show", "dev", dev, "ingress"],
    ] {
        let output = tc(sandbox, &args);
        assert!(output.status.success(), "tc {args:?}: {output:?}");
        all.push_str(&String::from_utf8(output.stdout).unwrap());
        all.push_str("--\n");
    }
    let all = all.replace(dev, "DEV");
    all.split_whitespace()
        .scan(false, |after_police, word| {
            let keep = !(*after_police && word.starts_with("0x"));
            *after_police = word == "police";
            Some(keep.then_some(word))
        })
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs libvirt's command lines with the real `tc` (its two deletions may find nothing) and
/// returns the features whose lines this kernel refused as unknown ("kind is unknown",
/// "classifier not found", "Failed to load TC action module"); any other failure fails.
fn run_libvirt_commands(
    sandbox: &Sandbox,
    shaping: &PortShaping,
    dev: &str,
) -> Vec<MissingTcFeature> {
    let mut refused = Vec::new();
    for line in shaping.libvirt_tc_commands(dev) {
        let args: Vec<&str> = line.split(' ').collect();
        let output = tc(sandbox, &args);
        if output.status.success() || line.contains(" del ") {
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let unknown = stderr.contains("kind is unknown")
            || stderr.contains("classifier not found")
            || stderr.contains("Failed to load TC action module");
        assert!(unknown, "tc {line}: {output:?}");
        refused.push(if line.contains(" sfq ") {
            MissingTcFeature::Sfq
        } else if line.contains(" fw ") {
            MissingTcFeature::Fw
        } else {
            assert!(line.contains(" police "), "{line}");
            MissingTcFeature::Police
        });
    }
    refused
}

/// Two veth pairs, left down so no traffic moves the counters: ours, and libvirt's twin.
fn sandbox_with_links() -> (Sandbox, u32) {
    let sandbox = Sandbox::new("bw").unwrap();
    for (name, peer) in [("port", "port-g"), ("twin", "twin-g")] {
        sandbox
            .ip(&["link", "add", name, "type", "veth", "peer", "name", peer])
            .unwrap();
    }
    let ifindex = sandbox.link("port").unwrap().expect("port link").ifindex;
    (sandbox, ifindex)
}

async fn manager(sandbox: &Sandbox) -> LinkManager {
    LinkManager::open(&NetnsTarget::Path(sandbox.path()), LinkGroups::DEFAULT)
        .await
        .expect("open the sandbox's links")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabit_port_shows_libvirts_class_and_police_filter_and_removal_leaves_none() {
    let (sandbox, ifindex) = sandbox_with_links();
    let links = manager(&sandbox).await;
    let before = dump(&sandbox, "port");
    // 1250 kB/s = 10 Mbit/s each way.
    let bandwidth = Bandwidth {
        inbound: Some(limit(1250, None, None)),
        outbound: Some(limit(1250, None, None)),
    };
    let shaping = plan_port(Some(&bandwidth), HostView::Swapped)
        .unwrap()
        .unwrap();
    let missing = links
        .set_port_bandwidth(ifindex, Some(&shaping))
        .await
        .unwrap();

    let shown = dump(&sandbox, "port");
    let mut expected = vec![
        "qdisc htb 1: root",
        "default 0x1",
        "class htb 1:1 root",
        "quantum 106",
        "rate 10Mbit ceil 10Mbit",
        "qdisc ingress ffff: parent ffff:fff1",
    ];
    if !missing.contains(&MissingTcFeature::Sfq) {
        expected.extend(["qdisc sfq 2: parent 1:1", "perturb 10sec", "leaf 2:"]);
    }
    if !missing.contains(&MissingTcFeature::Fw) {
        expected.extend([
            "filter parent 1: protocol all pref 1 fw",
            "handle 0x1 classid :1",
        ]);
    }
    if !missing.contains(&MissingTcFeature::Police) {
        expected.extend([
            "filter parent ffff: protocol all",
            "match 00000000/00000000 at 0",
            "police rate 10Mbit burst 1250Kb mtu 64Kb action drop",
        ]);
    }
    for expected in expected {
        assert!(shown.contains(expected), "no '{expected}' in:\n{shown}");
    }

    let refused = run_libvirt_commands(&sandbox, &shaping, "twin");
    assert_eq!(
        missing, refused,
        "what this kernel lacks, by our request and by tc's"
    );
    assert_eq!(shown, dump(&sandbox, "twin"), "ours vs libvirt's tc lines");

    links.set_port_bandwidth(ifindex, None).await.unwrap();
    let cleared = dump(&sandbox, "port");
    assert_eq!(cleared, before, "removal leaves the link as it was");
    assert!(
        !cleared.contains("htb") && !cleared.contains("police"),
        "{cleared}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirts_test_vectors_give_the_kernel_what_libvirts_tc_lines_give_it() {
    let (sandbox, ifindex) = sandbox_with_links();
    let links = manager(&sandbox).await;
    let vectors = [
        Bandwidth {
            inbound: Some(limit(1024, None, None)),
            outbound: None,
        },
        Bandwidth {
            inbound: None,
            outbound: Some(limit(1024, None, None)),
        },
        Bandwidth {
            inbound: Some(BandwidthLimit {
                floor: Some(3),
                ..limit(1, Some(2), Some(4))
            }),
            outbound: Some(limit(5, Some(6), Some(7))),
        },
        Bandwidth {
            inbound: Some(limit(4294967295, None, None)),
            outbound: Some(limit(4294967295, None, None)),
        },
    ];
    for bandwidth in &vectors {
        let shaping = plan_port(Some(bandwidth), HostView::Swapped)
            .unwrap()
            .unwrap();
        // Applied over the previous vector's objects: set replaces them, as libvirt's does.
        let missing = links
            .set_port_bandwidth(ifindex, Some(&shaping))
            .await
            .unwrap();
        let refused = run_libvirt_commands(&sandbox, &shaping, "twin");
        assert_eq!(missing, refused, "for {bandwidth:?}");
        assert_eq!(
            dump(&sandbox, "port"),
            dump(&sandbox, "twin"),
            "for {bandwidth:?}"
        );
    }
}

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

fn average(kib_per_second: u64) -> Option<BandwidthLimit> {
    Some(limit(kib_per_second, None, None))
}

fn actual_of(port: &NetworkPort) -> Option<PortActual> {
    port.status.as_ref().and_then(|s| s.actual.clone())
}

/// The port `name` once `done` holds for it.
async fn wait_port<F>(env: &TestEnv, name: &str, what: &str, done: F) -> NetworkPort
where
    F: Fn(&NetworkPort) -> bool,
{
    let ports = wait_ports(env, what, WAIT, POLL, |ports| {
        ports.iter().any(|p| p.name_any() == name && done(p))
    })
    .await;
    ports.into_iter().find(|p| p.name_any() == name).unwrap()
}

/// The class 1:1 of the link the port's status names, as the kernel dumps it.
async fn htb_rate(links: &LinkManager, port: &NetworkPort) -> Option<u64> {
    let actual = actual_of(port).expect("a realised port");
    let observed = links.observe_tc(actual.ifindex.unwrap()).await.unwrap();
    let root = observed.qdisc(ROOT_HANDLE)?;
    assert_eq!((root.kind.as_str(), root.parent), ("htb", ROOT_PARENT));
    let class = observed
        .class(CLASS_ID)
        .expect("class 1:1 under the root htb");
    Some(class.htb.expect("HTB parameters").rate)
}

/// The agent applies each port's merged bandwidth in its link's direction: a bridge port's veth
/// shapes traffic into the guest, a macvtap traffic out of it (it shares the guest's view, as
/// libvirt's `direct`). A portgroup change and a port's own change re-plan the link, a removed
/// limit leaves no qdisc, and a limit the kernel cannot police fails the port without a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_replans_and_removes_a_ports_bandwidth() {
    let env = TestEnv::new("agent-bw").await;
    let mut node = SimulatedNode::new(&env, "bw", &[]).await;
    node.sandbox.add_nics("eth", 1).unwrap();
    node.sandbox.add_bridge("br0").unwrap();
    let bridged = create_network(
        &env,
        "hostbr",
        "  forward: {mode: bridge}\n  bridge: {name: br0}\n  portgroups:\n  - {name: slow, default: true, bandwidth: {inbound: {average: 1250, peak: 2500}}}\n",
    )
    .await;
    let direct = create_network(
        &env,
        "vepa",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n",
    )
    .await;
    node.start_agent(Path::new(AGENT));
    let api = ports_api(&env);
    let inbound = port(&env.namespace, "inbound", &bridged, &node.name, &mac(1));
    let mut outbound = port(&env.namespace, "outbound", &direct, &node.name, &mac(2));
    outbound.spec.bandwidth = Some(Bandwidth {
        inbound: None,
        outbound: average(625),
    });
    let mut policed = port(&env.namespace, "policed", &bridged, &node.name, &mac(3));
    policed.spec.bandwidth = Some(Bandwidth {
        inbound: None,
        outbound: average(625),
    });
    for port in [&inbound, &outbound, &policed] {
        api.create(&PostParams::default(), port).await.unwrap();
    }
    let links = manager(&node.sandbox).await;

    // Into the guest on the bridge port: the portgroup's limit on the veth's root.
    let realised = wait_port(&env, "inbound", "the bridge port", |p| {
        phase(p) == Some(PortPhase::Ready)
    })
    .await;
    assert_eq!(htb_rate(&links, &realised).await, Some(1_250_000));
    let actual = actual_of(&realised).unwrap();
    assert_eq!(
        actual.bandwidth,
        Some(Bandwidth {
            inbound: Some(limit(1250, Some(2500), None)),
            outbound: None,
        })
    );
    let observed = links.observe_tc(actual.ifindex.unwrap()).await.unwrap();
    assert!(
        observed.qdisc(INGRESS_HANDLE).is_none(),
        "no outbound limit, no ingress qdisc: {observed:?}"
    );
    let conditions = &realised.status.as_ref().unwrap().conditions;
    let sfq = observed.qdisc(LEAF_HANDLE).is_some_and(|q| q.kind == "sfq");
    assert_eq!(
        conditions.iter().any(|c| c.kind == "BandwidthDegraded"
            && c.message.contains("sfq unavailable")
            && c.message.contains("CONFIG_NET_SCH_SFQ")),
        !sfq,
        "a missing sfq is a condition, a present one is not: {conditions:?}"
    );

    // Out of the guest on the macvtap: the port's own limit on the macvtap's root.
    let realised = wait_port(&env, "outbound", "the macvtap", |p| {
        phase(p) == Some(PortPhase::Ready)
    })
    .await;
    assert_eq!(htb_rate(&links, &realised).await, Some(625_000));
    assert_eq!(
        actual_of(&realised).unwrap().bandwidth,
        Some(Bandwidth {
            inbound: None,
            outbound: average(625),
        })
    );

    // Out of the guest on a bridge port is policed on the veth's ingress; a kernel without
    // act_police cannot, and the port fails as libvirt's interface would, leaving no link.
    let settled = wait_port(&env, "policed", "the policed port", |p| {
        matches!(phase(p), Some(PortPhase::Ready | PortPhase::Failed))
    })
    .await;
    let status = settled.status.as_ref().unwrap();
    if phase(&settled) == Some(PortPhase::Failed) {
        let condition = &status.conditions[0];
        assert_eq!(condition.reason, "BandwidthUnenforceable", "{condition:?}");
        assert!(
            condition
                .message
                .starts_with("bandwidth.outbound: the kernel lacks CONFIG_NET_ACT_POLICE"),
            "{}",
            condition.message
        );
        assert!(status.actual.is_none());
        let uid = settled.uid().unwrap();
        assert!(
            node.sandbox
                .links()
                .unwrap()
                .iter()
                .all(|l| l.alias.as_deref() != Some(uid.as_str())),
            "the unenforceable port's link was removed"
        );
    } else {
        let actual = actual_of(&settled).unwrap();
        let observed = links.observe_tc(actual.ifindex.unwrap()).await.unwrap();
        let police: Vec<_> = observed.filters_of(INGRESS_HANDLE).collect();
        assert_eq!(police.len(), 1, "{observed:?}");
        assert_eq!(police[0].police.map(|(rate, _)| rate), Some(625_000));
        assert!(observed.qdisc(ROOT_HANDLE).is_none());
    }

    // A SIGKILLed agent's successor reads the links back and keeps what they carry.
    node.kill_agent();
    node.start_agent(Path::new(AGENT));
    for (name, rate) in [("inbound", 1_250_000), ("outbound", 625_000)] {
        let port = api.get(name).await.unwrap();
        assert_eq!(
            phase(&port),
            Some(PortPhase::Ready),
            "{name} after a restart"
        );
        assert_eq!(
            htb_rate(&links, &port).await,
            Some(rate),
            "{name} after a restart"
        );
    }

    // A portgroup change re-plans the port without a change of its own.
    let networks = Api::<Network>::all(env.client.clone());
    networks
        .patch(
            &bridged,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"portgroups": [
                {"name": "slow", "default": true, "bandwidth": {"inbound": {"average": 2500}}}
            ]}})),
        )
        .await
        .unwrap();
    let replanned = wait_port(&env, "inbound", "the portgroup's new limit", |p| {
        actual_of(p).and_then(|a| a.bandwidth)
            == Some(Bandwidth {
                inbound: average(2500),
                outbound: None,
            })
    })
    .await;
    assert_eq!(htb_rate(&links, &replanned).await, Some(2_500_000));

    // The port's own limit removed: nothing is left on the macvtap.
    api.patch(
        "outbound",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"bandwidth": null}})),
    )
    .await
    .unwrap();
    let unlimited = wait_port(&env, "outbound", "the macvtap without limit", |p| {
        p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
            && actual_of(p).is_some_and(|a| a.bandwidth.is_none())
    })
    .await;
    assert_eq!(htb_rate(&links, &unlimited).await, None);
    let observed = links
        .observe_tc(actual_of(&unlimited).unwrap().ifindex.unwrap())
        .await
        .unwrap();
    assert!(
        observed.classes.is_empty() && observed.filters.is_empty(),
        "{observed:?}"
    );

    // Deleting the port deletes its link, and its qdiscs with it.
    let link_name = actual_of(&replanned).unwrap().link_name;
    api.delete("inbound", &DeleteParams::default())
        .await
        .unwrap();
    wait_ports(&env, "the bridge port gone", WAIT, POLL, |ports| {
        ports.iter().all(|p| p.name_any() != "inbound")
    })
    .await;
    assert!(
        node.sandbox.link(&link_name).unwrap().is_none(),
        "the deleted port's link (and every qdisc on it) is gone"
    );
}
