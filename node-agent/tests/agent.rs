//! The node agent as a process, against the real local apiserver and real network namespaces:
//! every mode makes the right link, exclusive pools are never over-allocated, a SIGKILL during
//! churn loses nothing, and links the agent does not own are never touched.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use switchyard_crds::*;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{
    OWNED_GROUP, count_phase, create_network, kernel_connections, list_ports, mac,
    node_with_network, phase, port, ports_api, wait_network_node, wait_ports,
};
use switchyard_tests::netns::LinkView;
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");
/// How often waits list the ports: the churn test must catch the agent mid-way.
const POLL: Duration = Duration::from_millis(100);

fn agent() -> &'static Path {
    Path::new(AGENT)
}

#[tokio::test]
async fn every_mode_makes_the_right_link() {
    let env = TestEnv::new("agent-modes").await;
    let mut node = SimulatedNode::new(&env, "modes", &[]).await;
    node.sandbox.add_nics("eth", 4).unwrap();
    node.sandbox.add_bridge("br0").unwrap();
    let modes = [
        ("vepa", "eth0"),
        ("private", "eth1"),
        ("bridge", "eth2"),
        ("passthrough", "eth3"),
    ];
    let mut networks = Vec::new();
    for (mode, dev) in modes {
        let name = create_network(
            &env,
            mode,
            &format!("  forward: {{mode: {mode}, interfaces: [{{dev: {dev}}}]}}\n"),
        )
        .await;
        networks.push((name, mode, dev));
    }
    let host_bridge = create_network(
        &env,
        "hostbr",
        "  forward: {mode: bridge}\n  bridge: {name: br0}\n",
    )
    .await;
    node.start_agent(agent());

    let api = ports_api(&env);
    for (i, (net, mode, _)) in networks.iter().enumerate() {
        api.create(
            &PostParams::default(),
            &port(&env.namespace, mode, net, &node.name, &mac(i)),
        )
        .await
        .unwrap();
    }
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "hostbr", &host_bridge, &node.name, &mac(9)),
    )
    .await
    .unwrap();
    let ports = wait_ports(&env, "5 ready ports", Duration::from_secs(30), POLL, |p| {
        count_phase(p, PortPhase::Ready) == 5
    })
    .await;

    for (i, (_, mode, dev)) in networks.iter().enumerate() {
        let port = ports.iter().find(|p| p.name_any() == *mode).unwrap();
        let actual = port.status.as_ref().unwrap().actual.clone().unwrap();
        assert_eq!(actual.kind, ActualType::Direct);
        assert_eq!(actual.device.as_deref(), Some(*dev));
        assert_eq!(actual.mode.map(|m| m.as_str()), Some(*mode));
        let link = node
            .sandbox
            .link(&actual.link_name)
            .unwrap()
            .expect("the macvtap exists in the kernel");
        assert_eq!(link.kind.as_deref(), Some("macvtap"));
        let kernel_mode = if *mode == "passthrough" {
            "passthru"
        } else {
            mode
        };
        assert_eq!(link.mode.as_deref(), Some(kernel_mode), "{mode}");
        assert_eq!(link.lower.as_deref(), Some(*dev));
        assert_eq!(link.mac.as_deref(), Some(mac(i).as_str()));
        assert_eq!(link.group, OWNED_GROUP);
        assert_eq!(link.alias.as_deref(), port.uid().as_deref());
        assert_eq!(Some(link.ifindex), actual.ifindex);
        // The device a VM would open: the kernel's own word for it, read in the port's
        // namespace (tap minors come from a kernel-wide pool, so only this can be right).
        let tap = actual.tap_device.expect("macvtaps record their tap device");
        let kernel_tap = node
            .sandbox
            .tap_dev(&link.name, link.ifindex)
            .expect("reading the macvtap's tap dev file in its namespace");
        assert_eq!(tap, kernel_tap, "{mode}: status.actual.tapDevice");
    }
    let bridged = ports.iter().find(|p| p.name_any() == "hostbr").unwrap();
    let actual = bridged.status.as_ref().unwrap().actual.clone().unwrap();
    assert_eq!(actual.kind, ActualType::Bridge);
    assert_eq!(actual.bridge.as_deref(), Some("br0"));
    let link = node
        .sandbox
        .link(&actual.link_name)
        .unwrap()
        .expect("the bridge port exists");
    assert_eq!(link.kind.as_deref(), Some("veth"));
    assert_eq!(link.master.as_deref(), Some("br0"));
    let peer = node
        .sandbox
        .link(actual.peer_link_name.as_deref().unwrap())
        .unwrap()
        .expect("the guest end exists");
    assert_eq!(peer.mac.as_deref(), Some(mac(9).as_str()));

    let report = wait_network_node(&env, &node.name, "5 ports reported", |s| s.ports == 5).await;
    assert_eq!(report.networks_ready, 5);
    let passthrough = report
        .networks
        .iter()
        .find(|n| n.name == networks[3].0)
        .unwrap();
    assert_eq!(passthrough.devices[0].connections, 1);
    assert!(passthrough.devices[0].exclusive);
    assert_eq!((passthrough.capacity, passthrough.free), (1, 0));

    // Deleting a port removes its link and lets the port go.
    api.delete("vepa", &DeleteParams::default()).await.unwrap();
    wait_ports(
        &env,
        "the deleted port gone",
        Duration::from_secs(30),
        POLL,
        |p| p.len() == 4,
    )
    .await;
    let vepa = ports.iter().find(|p| p.name_any() == "vepa").unwrap();
    let name = &vepa
        .status
        .as_ref()
        .unwrap()
        .actual
        .as_ref()
        .unwrap()
        .link_name;
    assert!(
        node.sandbox.link(name).unwrap().is_none(),
        "the vepa link is gone"
    );
    wait_network_node(&env, &node.name, "4 ports reported", |s| s.ports == 4).await;
}

#[tokio::test]
async fn an_exclusive_pool_is_never_over_allocated() {
    let env = TestEnv::new("agent-passthrough").await;
    let (node, net) = node_with_network(
        &env,
        agent(),
        "pt",
        ("vf", 4),
        (
            "pt",
            "  forward: {mode: passthrough, interfaces: [{dev: vf0}, {dev: vf1}, {dev: vf2}, {dev: vf3}]}\n",
        ),
    )
    .await;

    let api = ports_api(&env);
    let creates = (0..20).map(|i| {
        let api = api.clone();
        let port = port(&env.namespace, &format!("vm{i}"), &net, &node.name, &mac(i));
        async move { api.create(&PostParams::default(), &port).await.unwrap() }
    });
    join_all(creates).await;
    let settled = |ports: &[NetworkPort]| {
        ports.len() == 20
            && count_phase(ports, PortPhase::Ready) == 4
            && count_phase(ports, PortPhase::Pending) == 16
    };
    let ports = wait_ports(
        &env,
        "4 ready and 16 pending",
        Duration::from_secs(60),
        POLL,
        settled,
    )
    .await;
    let expected =
        format!("network '{net}' requires exclusive access to interfaces, but none are available");
    for port in ports
        .iter()
        .filter(|p| phase(p) == Some(PortPhase::Pending))
    {
        let condition = &port.status.as_ref().unwrap().conditions[0];
        assert_eq!(condition.reason, "NoFreeDevice");
        assert_eq!(condition.message, expected);
    }
    let devices: BTreeSet<String> = ports
        .iter()
        .filter_map(|p| p.status.as_ref()?.actual.as_ref()?.device.clone())
        .collect();
    assert_eq!(
        devices.len(),
        4,
        "four ready ports on four distinct devices"
    );
    let macvtaps = node
        .sandbox
        .links()
        .unwrap()
        .into_iter()
        .filter(|l| l.kind.as_deref() == Some("macvtap"))
        .count();
    assert_eq!(macvtaps, 4);

    // Deleting one frees its device for a waiting request.
    let holder = ports
        .iter()
        .find(|p| phase(p) == Some(PortPhase::Ready))
        .unwrap()
        .name_any();
    api.delete(&holder, &DeleteParams::default()).await.unwrap();
    let ports = wait_ports(
        &env,
        "a waiting port takes the freed device",
        Duration::from_secs(30),
        POLL,
        |p| p.len() == 19 && count_phase(p, PortPhase::Ready) == 4,
    )
    .await;
    assert_eq!(count_phase(&ports, PortPhase::Pending), 15);
    let report = wait_network_node(&env, &node.name, "4 exclusive holders", |s| s.ports == 4).await;
    let entry = report.networks.iter().find(|n| n.name == net).unwrap();
    assert!(
        entry
            .devices
            .iter()
            .all(|d| d.connections == 1 && d.exclusive && d.holder.is_some())
    );
}

/// libvirt's rule: a private-mode port with an 802.1Qbh profile holds its device alone, while
/// the same profile in bridge mode shares devices. The report once counted only passthrough as
/// exclusive, so a private 802.1Qbh pool of two claimed room for hundreds.
#[tokio::test]
async fn private_8021qbh_holds_a_device_per_port_and_bridge_mode_shares() {
    let env = TestEnv::new("agent-qbh").await;
    let mut node = SimulatedNode::new(&env, "qbh", &[]).await;
    node.sandbox.add_nics("fex", 4).unwrap();
    let private = create_network(
        &env,
        "qbh-private",
        "  forward: {mode: private, interfaces: [{dev: fex0}, {dev: fex1}]}\n  virtualport: {type: 802.1Qbh, profileid: fex-profile}\n",
    )
    .await;
    let bridged = create_network(
        &env,
        "qbh-bridge",
        "  forward: {mode: bridge, interfaces: [{dev: fex2}, {dev: fex3}]}\n  virtualport: {type: 802.1Qbh, profileid: fex-profile}\n",
    )
    .await;
    node.start_agent(agent());

    let report = wait_network_node(&env, &node.name, "both networks ready", |s| {
        s.networks_ready == 2
    })
    .await;
    let network = |report: &NetworkNodeStatus, name: &str| {
        report
            .networks
            .iter()
            .find(|n| n.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        network(&report, &private).capacity,
        2,
        "one port per device"
    );
    assert!(
        network(&report, &bridged).capacity > 2,
        "bridge mode shares its devices: {:?}",
        network(&report, &bridged)
    );

    let api = ports_api(&env);
    for i in 0..3 {
        for (net, prefix) in [(&private, "p"), (&bridged, "b")] {
            let request = port(
                &env.namespace,
                &format!("{prefix}{i}"),
                net,
                &node.name,
                &mac(if prefix == "p" { i } else { 10 + i }),
            );
            api.create(&PostParams::default(), &request).await.unwrap();
        }
    }
    let ports = wait_ports(
        &env,
        "2 private ports ready, 1 waiting; 3 bridge-mode ports ready",
        Duration::from_secs(60),
        POLL,
        |ports| {
            let ready = |prefix: &str| {
                ports
                    .iter()
                    .filter(|p| p.name_any().starts_with(prefix))
                    .filter(|p| phase(p) == Some(PortPhase::Ready))
                    .count()
            };
            ports.len() == 6
                && ready("p") == 2
                && ready("b") == 3
                && count_phase(ports, PortPhase::Pending) == 1
        },
    )
    .await;
    let waiting = ports
        .iter()
        .find(|p| phase(p) == Some(PortPhase::Pending))
        .unwrap();
    assert!(
        waiting.name_any().starts_with('p'),
        "the waiting port is private"
    );
    assert_eq!(
        waiting.status.as_ref().unwrap().conditions[0].reason,
        "NoFreeDevice"
    );
    let private_devices: BTreeSet<String> = ports
        .iter()
        .filter(|p| p.name_any().starts_with('p'))
        .filter_map(|p| p.status.as_ref()?.actual.as_ref()?.device.clone())
        .collect();
    assert_eq!(private_devices.len(), 2, "two private ports on two devices");

    let report = wait_network_node(&env, &node.name, "5 ports reported", |s| s.ports == 5).await;
    let private_state = network(&report, &private);
    assert_eq!((private_state.capacity, private_state.free), (2, 0));
    assert!(private_state.devices.iter().all(|d| d.exclusive));
    let bridged_state = network(&report, &bridged);
    assert!(bridged_state.devices.iter().all(|d| !d.exclusive));
    assert_eq!(bridged_state.used, 3);
}

/// Every link in the node's namespace but loopback and the named ones (its stand-in NICs,
/// links someone else made): judged by the test, not by the agent's ownership marks, so each
/// must be a live port's.
fn links_but(node: &SimulatedNode, others: &[&str]) -> Vec<LinkView> {
    node.sandbox
        .links()
        .unwrap()
        .into_iter()
        .filter(|l| l.name != "lo" && !others.contains(&l.name.as_str()))
        .collect()
}

/// The stand-in NICs `up0`..`up3` and their switch sides.
const UPLINKS: [&str; 8] = [
    "up0", "up0-sw", "up1", "up1-sw", "up2", "up2-sw", "up3", "up3-sw",
];

#[tokio::test]
async fn a_sigkill_during_churn_loses_nothing() {
    let env = TestEnv::new("agent-sigkill").await;
    let (mut node, net) = node_with_network(
        &env,
        agent(),
        "kill",
        ("up", 4),
        (
            "churn",
            "  forward: {mode: vepa, interfaces: [{dev: up0}, {dev: up1}, {dev: up2}, {dev: up3}]}\n  maxConnectionsPerDevice: 200\n",
        ),
    )
    .await;
    let api = ports_api(&env);

    // 200 creates; once some are realised, deletes of every third port; the agent dies while
    // both are still being worked on.
    let node_name = node.name.clone();
    let creates = (0..200).map(|i| {
        let api = api.clone();
        let port = port(&env.namespace, &format!("p{i}"), &net, &node_name, &mac(i));
        async move { api.create(&PostParams::default(), &port).await.unwrap() }
    });
    let creating = tokio::spawn(join_all(creates));
    wait_ports(
        &env,
        "the agent under way",
        Duration::from_secs(60),
        POLL,
        |p| count_phase(p, PortPhase::Ready) >= 40,
    )
    .await;
    let deletes = (0..200).step_by(3).map(|i| {
        let api = api.clone();
        async move {
            api.delete(&format!("p{i}"), &DeleteParams::default())
                .await
                .unwrap()
        }
    });
    let deleting = tokio::spawn(join_all(deletes));
    tokio::time::sleep(Duration::from_millis(30)).await;
    node.kill_agent();
    let at_kill = list_ports(&env).await;
    let unfinished = at_kill
        .iter()
        .filter(|p| phase(p) != Some(PortPhase::Ready) || p.metadata.deletion_timestamp.is_some())
        .count();
    eprintln!(
        "at the kill: {} ports, {} ready, {unfinished} unfinished",
        at_kill.len(),
        count_phase(&at_kill, PortPhase::Ready)
    );
    assert!(
        unfinished > 0,
        "the agent was killed with no work in progress; the test proves nothing"
    );
    creating.await.unwrap();
    deleting.await.unwrap();
    node.start_agent(agent());

    let deleted: BTreeSet<String> = (0..200).step_by(3).map(|i| format!("p{i}")).collect();
    let ports = wait_ports(
        &env,
        "every surviving port ready, every deleted one gone",
        Duration::from_secs(90),
        POLL,
        |p| p.len() == 200 - deleted.len() && count_phase(p, PortPhase::Ready) == p.len(),
    )
    .await;
    assert!(ports.iter().all(|p| !deleted.contains(&p.name_any())));

    // No orphan: every link but the NICs belongs to a live port, and every live port has its
    // link, in the agent's group.
    let live: BTreeSet<String> = ports.iter().filter_map(|p| p.uid()).collect();
    let links = links_but(&node, &UPLINKS);
    let aliases: BTreeSet<String> = links.iter().filter_map(|l| l.alias.clone()).collect();
    assert_eq!(links.len(), live.len(), "one link per live port: {links:?}");
    assert_eq!(aliases, live);
    assert!(links.iter().all(|l| l.group == OWNED_GROUP), "{links:?}");

    // Counts in status equal what the kernel shows.
    let kernel = kernel_connections(&links);
    let report = wait_network_node(&env, &node.name, "counts matching the kernel", |s| {
        s.networks.iter().find(|n| n.name == net).is_some_and(|n| {
            n.devices
                .iter()
                .all(|d| kernel.get(&d.name).copied().unwrap_or(0) == d.connections)
        })
    })
    .await;
    assert_eq!(report.ports as usize, live.len());
}

#[tokio::test]
async fn links_the_agent_does_not_own_are_never_deleted() {
    let env = TestEnv::new("agent-foreign").await;
    let mut node = SimulatedNode::new(&env, "foreign", &[]).await;
    node.sandbox.add_nics("eth", 1).unwrap();
    // Someone else's macvtap on the same uplink, even with a name that looks like ours.
    node.sandbox
        .ip(&[
            "link",
            "add",
            "link",
            "eth0",
            "name",
            "swyforeign01",
            "type",
            "macvtap",
            "mode",
            "vepa",
        ])
        .unwrap();
    node.sandbox
        .ip(&[
            "link", "add", "link", "eth0", "name", "theirs0", "type", "macvtap", "mode", "vepa",
        ])
        .unwrap();
    let net = create_network(
        &env,
        "shared",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n",
    )
    .await;
    node.start_agent(agent());
    let api = ports_api(&env);
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &port(&env.namespace, &format!("p{i}"), &net, &node.name, &mac(i)),
        )
        .await
        .unwrap();
    }
    wait_ports(&env, "5 ready ports", Duration::from_secs(30), POLL, |p| {
        count_phase(p, PortPhase::Ready) == 5
    })
    .await;
    for i in 0..5 {
        api.delete(&format!("p{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_ports(&env, "all ports gone", Duration::from_secs(30), POLL, |p| {
        p.is_empty()
    })
    .await;
    // A restart runs recovery, which removes orphans: still not these.
    node.kill_agent();
    node.start_agent(agent());
    let names: BTreeSet<String> = node
        .sandbox
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        names.contains("swyforeign01") && names.contains("theirs0"),
        "{names:?}"
    );
    let left = links_but(&node, &["eth0", "eth0-sw", "swyforeign01", "theirs0"]);
    assert!(left.is_empty(), "links left behind: {left:?}");
}

/// The agent's `/healthz`: its status line and body.
fn healthz(node: &SimulatedNode) -> (bool, String) {
    let response = node.http_get("/healthz").unwrap_or_default();
    (
        response.starts_with("HTTP/1.1 200"),
        switchyard_tests::metrics::body(&response).to_string(),
    )
}

#[tokio::test]
async fn a_wedged_deletion_batcher_fails_healthz_until_it_runs_again() {
    let env = TestEnv::new("agent-liveness").await;
    let mut node = SimulatedNode::new(&env, "live", &[]).await;
    node.sandbox.add_nics("eth", 1).unwrap();
    let net = create_network(
        &env,
        "live",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}]}\n",
    )
    .await;
    node.set_agent_env("SWITCHYARD_LIVENESS_TIMEOUT", "2");
    node.start_agent(agent());
    let api = ports_api(&env);
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "p", &net, &node.name, &mac(1)),
    )
    .await
    .unwrap();
    wait_ports(&env, "the port ready", Duration::from_secs(30), POLL, |p| {
        count_phase(p, PortPhase::Ready) == 1
    })
    .await;
    assert_eq!(healthz(&node), (true, "ok".to_string()));

    // The batcher's thread stopped as one stuck in a kernel call would be; the rest of the
    // process (the HTTP server, the reconcile loop) runs on.
    let pid = node.agent_pid().unwrap();
    let frozen = switchyard_tests::procs::freeze_thread(
        pid,
        switchyard_node_agent::agent::deleter::THREAD_NAME,
    )
    .expect("stopping the agent's link deletion thread");
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let started = Instant::now();
    let body = loop {
        let (healthy, body) = healthz(&node);
        if !healthy {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/healthz still says {body:?} with the deletion batcher stopped"
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(
        body.contains("deletion batcher") && !body.contains("reconcile loop"),
        "{body}"
    );
    // The wedge is real: the port's link cannot go, so neither can the port.
    assert_eq!(list_ports(&env).await.len(), 1);

    drop(frozen);
    wait_ports(&env, "the port gone", Duration::from_secs(30), POLL, |p| {
        p.is_empty()
    })
    .await;
    let started = Instant::now();
    while !healthz(&node).0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/healthz stayed unhealthy after the batcher ran again: {:?}",
            healthz(&node)
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn vlan_tags_a_device_cannot_take_fail_the_port_and_are_never_reported() {
    let env = TestEnv::new("agent-vlan").await;
    let mut node = SimulatedNode::new(&env, "vlan", &[]).await;
    node.sandbox.add_nics("eth", 1).unwrap();
    let net = create_network(
        &env,
        "vlan",
        "  forward: {mode: passthrough, interfaces: [{dev: eth0}]}\n  portgroups: [{name: tagged, vlan: {tags: [{id: 7}]}}]\n",
    )
    .await;
    node.start_agent(agent());
    let api = ports_api(&env);
    let mut tagged = port(&env.namespace, "tagged", &net, &node.name, &mac(1));
    tagged.spec.portgroup = Some("tagged".into());
    api.create(&PostParams::default(), &tagged).await.unwrap();
    // A veth is no SR-IOV virtual function: libvirt would fail the port at start.
    let ports = wait_ports(
        &env,
        "the tagged port failed",
        Duration::from_secs(30),
        POLL,
        |p| count_phase(p, PortPhase::Failed) == 1,
    )
    .await;
    let status = ports[0].status.as_ref().unwrap();
    let ready = &status.conditions[0];
    assert_eq!(ready.reason, "VlanNeedsVirtualFunction");
    assert!(
        ready.message.contains("vlan 7")
            && ready
                .message
                .contains("'eth0' is not an SR-IOV virtual function"),
        "{}",
        ready.message
    );
    assert!(status.actual.is_none(), "{:?}", status.actual);
    assert!(links_but(&node, &["eth0", "eth0-sw"]).is_empty());

    // The refusal held no device: an untagged port gets it, and reports no vlan.
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "plain", &net, &node.name, &mac(2)),
    )
    .await
    .unwrap();
    let ports = wait_ports(
        &env,
        "the plain port ready",
        Duration::from_secs(30),
        POLL,
        |p| count_phase(p, PortPhase::Ready) == 1,
    )
    .await;
    let plain = ports
        .iter()
        .find(|p| phase(p) == Some(PortPhase::Ready))
        .unwrap();
    let actual = plain.status.as_ref().unwrap().actual.as_ref().unwrap();
    assert_eq!(actual.device.as_deref(), Some("eth0"));
    assert_eq!(actual.vlan, None);
    for name in ["tagged", "plain"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_ports(
        &env,
        "both ports gone",
        Duration::from_secs(30),
        POLL,
        |p| p.is_empty(),
    )
    .await;
}
