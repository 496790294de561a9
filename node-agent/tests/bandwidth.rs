//! A port's bandwidth applied over rtnetlink, against the real kernel, in a network namespace
//! the test creates (run as root). The kernel's own dump, read with iproute2's `tc` as an
//! independent observer, must show libvirt's values; and it must be identical to the dump of a
//! twin link on which libvirt's exact `tc` command lines were run.

use std::process::Command;

use switchyard_crds::{Bandwidth, BandwidthLimit};
use switchyard_node_agent::bandwidth::{PortShaping, plan_port};
use switchyard_node_agent::netlink::{LinkManager, MissingTcFeature, NetnsTarget};
use switchyard_node_agent::ownership::LinkGroups;
use switchyard_tests::netns::Sandbox;

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
    let shaping = plan_port(Some(&bandwidth)).unwrap().unwrap();
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
        let shaping = plan_port(Some(bandwidth)).unwrap().unwrap();
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
