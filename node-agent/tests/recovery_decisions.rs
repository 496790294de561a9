//! Recovery's decisions at agent start-up, against the real local apiserver and network
//! namespaces: a port that lost a device conflict stays failed until its spec changes, even
//! when the first write of that decision fails, and a port status that disagrees with the
//! kernel is corrected.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use switchyard_crds::*;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{mac, node_with_network, port, ports_api, summary};

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");

fn agent() -> &'static Path {
    Path::new(AGENT)
}

/// Polls the port until `done` holds for it (30 s at most).
async fn wait_port<F>(api: &Api<NetworkPort>, name: &str, what: &str, done: F) -> NetworkPort
where
    F: Fn(&NetworkPort) -> bool,
{
    let start = Instant::now();
    loop {
        let port = api.get(name).await.expect("the port");
        if done(&port) {
            return port;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}:\n{}",
            summary(std::slice::from_ref(&port))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reason(port: &NetworkPort) -> Option<&str> {
    port.status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.reason.as_str())
}

fn phase(port: &NetworkPort) -> Option<PortPhase> {
    port.status.as_ref().and_then(|s| s.phase)
}

fn device(port: &NetworkPort) -> Option<&str> {
    port.status
        .as_ref()
        .and_then(|s| s.actual.as_ref())
        .and_then(|a| a.device.as_deref())
}

/// Server-side applies `status` to the port under `manager`.
async fn apply_status(
    api: &Api<NetworkPort>,
    name: &str,
    manager: &str,
    status: serde_json::Value,
) {
    let patch = serde_json::json!({
        "apiVersion": NetworkPort::api_version(&()),
        "kind": NetworkPort::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap_or_else(|e| panic!("applying the status of {name} as {manager}: {e}"));
}

#[tokio::test]
async fn a_lost_conflict_stands_until_the_spec_changes_and_wrong_statuses_are_corrected() {
    let env = TestEnv::new("recovery-decisions").await;
    let (mut node, net) = node_with_network(
        &env,
        agent(),
        "dec",
        ("vf", 1),
        (
            "pt",
            "  forward: {mode: passthrough, interfaces: [{dev: vf0}]}\n",
        ),
    )
    .await;
    let api = ports_api(&env);
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "holder", &net, &node.name, &mac(1)),
    )
    .await
    .unwrap();
    let holder = wait_port(&api, "holder", "the holder Ready", |p| {
        phase(p) == Some(PortPhase::Ready)
    })
    .await;
    assert_eq!(device(&holder), Some("vf0"));
    node.kill_agent();

    // While the agent is down, a younger port appears whose status claims the same exclusive
    // device, as a previous agent run might have left it; another field manager co-owns its
    // `actual.device`, so an apply that leaves `actual` out keeps that one field, which the
    // schema refuses without `type` and `linkName` (the write fails with 422). The holder's
    // status is changed to name a device its link is not on.
    tokio::time::sleep(Duration::from_secs(1)).await; // a creation timestamp one second younger
    api.create(
        &PostParams::default(),
        &port(&env.namespace, "loser", &net, &node.name, &mac(2)),
    )
    .await
    .unwrap();
    let agent_manager = agent_manager(&node.name);
    apply_status(
        &api,
        "loser",
        &agent_manager,
        serde_json::json!({
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Realised",
                            "message": "macvtap on vf0", "observedGeneration": 1}],
            "actual": {"type": "direct", "device": "vf0", "mode": "passthrough",
                       "linkName": "swy00000000000"},
        }),
    )
    .await;
    apply_status(
        &api,
        "loser",
        "intruder",
        serde_json::json!({"actual": {"device": "vf0"}}),
    )
    .await;
    apply_status(
        &api,
        "holder",
        "intruder",
        serde_json::json!({"actual": {"device": "vf9"}}),
    )
    .await;

    node.start_agent(agent());
    let loser = wait_port(&api, "loser", "the loser failed with DeviceConflict", |p| {
        phase(p) == Some(PortPhase::Failed) && reason(p) == Some("DeviceConflict")
    })
    .await;
    assert!(
        loser.status.as_ref().unwrap().actual.is_none(),
        "a failed port shows no actual: {:#?}",
        loser.status
    );
    wait_port(
        &api,
        "holder",
        "the holder's device corrected to the kernel's",
        |p| phase(p) == Some(PortPhase::Ready) && device(p) == Some("vf0"),
    )
    .await;

    // The decision stands through later reconciles (a label change wakes the port without
    // changing its spec) and never puts a second macvtap on the device.
    api.patch(
        "loser",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loser = api.get("loser").await.unwrap();
    assert_eq!(
        (phase(&loser), reason(&loser)),
        (Some(PortPhase::Failed), Some("DeviceConflict")),
        "{:#?}",
        loser.status
    );
    let macvtaps = node
        .sandbox
        .links()
        .unwrap()
        .into_iter()
        .filter(|l| l.kind.as_deref() == Some("macvtap"))
        .count();
    assert_eq!(macvtaps, 1, "one macvtap on the exclusive device");

    // A new spec is a new request: it waits for the device like any other.
    api.patch(
        "loser",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"mac": mac(3)}})),
    )
    .await
    .unwrap();
    let loser = wait_port(
        &api,
        "loser",
        "the changed loser waiting for a device",
        |p| {
            p.status.as_ref().and_then(|s| s.observed_generation) == p.meta().generation
                && reason(p) != Some("DeviceConflict")
        },
    )
    .await;
    assert_ne!(phase(&loser), Some(PortPhase::Ready), "{:#?}", loser.status);
    assert_eq!(loser.uid(), api.get("loser").await.unwrap().uid());
}
