//! Generated Multus NetworkAttachmentDefinitions, on the real apiserver with Multus' NAD CRD and
//! the real controller binary: a Network with two portgroups gets three NADs in each configured
//! namespace (config, resourceName annotation, owner); a portgroup removed takes its NADs with
//! it; the `AttachmentDefinitions` condition says how many, turns False when an apply fails
//! or the CRD is gone (and the controller neither exits nor spins), and True again once the
//! CRD is back; deleting the Network removes its NADs through the garbage collector — the
//! controller is stopped by then, so nothing else can.
//!
//! The shared test control plane runs no kube-controller-manager (no garbage collector), so
//! this test runs on a private one that does.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{ControllerProcess, eventually, http_get};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use switchyard_controller::nad::{managed_selector, nad_resource};
use switchyard_controller::reconcile::nads::CONDITION;
use switchyard_crds::{Condition, ConditionStatus, Network, NetworkStatus};
use switchyard_tests::cluster::{TestEnv, apply_crds};
use switchyard_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use switchyard_tests::fixtures::create_network;

const WAIT: Duration = Duration::from_secs(60);
const NAD_CRD: &str = "network-attachment-definitions.k8s.cni.cncf.io";

/// The controller's NADs of `network`, by `namespace/name`, with their parsed config.
async fn nads(env: &TestEnv, network: &str) -> BTreeMap<String, (DynamicObject, Value)> {
    let api: Api<DynamicObject> = Api::all_with(env.client.clone(), &nad_resource());
    let Ok(list) = api
        .list(&ListParams::default().labels(&managed_selector(network)))
        .await
    else {
        return BTreeMap::new();
    };
    list.items
        .into_iter()
        .map(|nad| {
            let config = nad.data["spec"]["config"]
                .as_str()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or(Value::Null);
            (
                format!("{}/{}", nad.namespace().unwrap_or_default(), nad.name_any()),
                (nad, config),
            )
        })
        .collect()
}

async fn condition(env: &TestEnv, network: &str) -> Option<Condition> {
    let networks: Api<Network> = Api::all(env.client.clone());
    networks
        .get(network)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.kind == CONDITION)
}

fn expected_names(namespaces: &[&str], network: &str, portgroups: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = namespaces
        .iter()
        .flat_map(|ns| {
            std::iter::once(format!("{ns}/{network}")).chain(
                portgroups
                    .iter()
                    .map(move |pg| format!("{ns}/{network}-{pg}")),
            )
        })
        .collect();
    names.sort();
    names
}

fn kubectl_ok(env: &TestEnv, args: &[&str]) {
    let out = env.kubectl(args, None);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_get_their_attachment_definitions() {
    let plane = ControlPlane::start_with_options(&ControlPlaneOptions {
        kube_controllers: true,
        ..Default::default()
    })
    .expect("starting a control plane with a garbage collector");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "nad").await;
    let second = format!("{}-vms", env.namespace);
    kubectl_ok(&env, &["create", "namespace", &second]);
    let namespaces = [env.namespace.as_str(), second.as_str()];
    let listed = namespaces.join(",");
    let flags = [("SWITCHYARD_NAD_NAMESPACES", listed.as_str())];
    let mut controller = ControllerProcess::start_with(&env.kubeconfig, false, &flags).await;

    let network = create_network(
        &env,
        "lan",
        "  bridge: {name: br0}\n  forward: {mode: bridge}\n  portgroups: [{name: web}, {name: db, default: true}]\n",
    )
    .await;
    let networks: Api<Network> = Api::all(env.client.clone());
    let uid = networks.get(&network).await.unwrap().uid().unwrap();

    // Three NADs in each namespace.
    let want = expected_names(&namespaces, &network, &["web", "db"]);
    let found = eventually("three NADs in each namespace", WAIT, || async {
        let found = nads(&env, &network).await;
        (found.keys().cloned().collect::<Vec<_>>() == want).then_some(found)
    })
    .await;
    for (key, (nad, config)) in &found {
        let name = nad.name_any();
        let portgroup = name.strip_prefix(&format!("{network}-"));
        let mut expected = json!({"cniVersion": "1.0.0", "name": name, "type": "switchyard-cni",
            "network": network, "capabilities": {"mac": true}});
        if let Some(portgroup) = portgroup {
            expected["portgroup"] = json!(portgroup);
        }
        assert_eq!(config, &expected, "{key}'s config");
        assert_eq!(
            nad.annotations().get("k8s.v1.cni.cncf.io/resourceName"),
            Some(&format!("switchyard.dev/{network}")),
            "{key}"
        );
        let owners = nad.owner_references();
        assert!(
            owners.len() == 1
                && owners[0].kind == "Network"
                && owners[0].name == network
                && owners[0].uid == uid,
            "{key} is owned by the Network: {owners:?}"
        );
    }
    let reported = eventually("the condition True with the count", WAIT, || async {
        condition(&env, &network)
            .await
            .filter(|c| c.status == ConditionStatus::True && c.message.starts_with("6 "))
    })
    .await;
    assert_eq!(reported.reason, "Applied", "{reported:?}");
    // The network reconciler's own conditions stand beside it: the two writers, whichever
    // comes first (under load the NAD reconciler often does), keep each other's conditions.
    let kinds = |status: Option<NetworkStatus>| -> Vec<String> {
        status
            .map(|s| s.conditions.into_iter().map(|c| c.kind).collect())
            .unwrap_or_default()
    };
    eventually(
        "Ready and Valid beside AttachmentDefinitions",
        WAIT,
        || async {
            let now = kinds(networks.get(&network).await.unwrap().status);
            ["Ready", "Valid", "AttachmentDefinitions"]
                .iter()
                .all(|kind| now.iter().any(|k| k == kind))
                .then_some(())
        },
    )
    .await;

    // A portgroup removed: its NADs go, the others stay.
    networks
        .patch(
            &network,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"portgroups": [{"name": "web"}]}})),
        )
        .await
        .expect("removing portgroup db");
    let want = expected_names(&namespaces, &network, &["web"]);
    eventually("the db NADs deleted", WAIT, || async {
        (nads(&env, &network)
            .await
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            == want)
            .then_some(())
    })
    .await;
    eventually("the condition counting 4", WAIT, || async {
        condition(&env, &network)
            .await
            .filter(|c| c.status == ConditionStatus::True && c.message.starts_with("4 "))
    })
    .await;

    // An apply that fails (a namespace that does not exist) turns the condition False.
    drop(controller);
    let missing = format!("{}-missing", env.namespace);
    let listed_missing = format!("{listed},{missing}");
    let flags_missing = [("SWITCHYARD_NAD_NAMESPACES", listed_missing.as_str())];
    controller = ControllerProcess::start_with(&env.kubeconfig, false, &flags_missing).await;
    let failed = eventually("the condition False on a failed apply", WAIT, || async {
        condition(&env, &network)
            .await
            .filter(|c| c.status == ConditionStatus::False)
    })
    .await;
    assert!(
        failed.reason == "ApplyFailed" && failed.message.contains(&missing),
        "{failed:?}"
    );

    // No NAD CRD: the condition says so; the controller keeps running and backs off.
    drop(controller);
    kubectl_ok(&env, &["delete", "crd", NAD_CRD, "--wait=true"]);
    controller = ControllerProcess::start_with(&env.kubeconfig, false, &flags).await;
    let missing_crd = eventually("the condition NotInstalled", WAIT, || async {
        condition(&env, &network)
            .await
            .filter(|c| c.reason == "NotInstalled")
    })
    .await;
    assert_eq!(
        missing_crd.status,
        ConditionStatus::False,
        "{missing_crd:?}"
    );
    let watched_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for probe in ["/healthz", "/readyz"] {
        let answer = http_get(controller.metrics, probe).map(|(code, _)| code);
        assert_eq!(answer, Some(200), "{probe} without the CRD");
    }
    let retries = controller
        .log()
        .lines()
        .filter(|l| l.contains("is not installed") && l.contains("retry_in"))
        .count();
    // The shared backoff, from 0.5 s doubling: a handful of attempts in these seconds, where
    // a hot loop would make thousands.
    assert!(
        (1..=6).contains(&retries),
        "{retries} attempts in {:?}:\n{}",
        watched_from.elapsed(),
        controller.log_tail()
    );
    apply_crds(&plane.kubeconfig).expect("installing the CRDs again");
    eventually("the NADs and condition back with the CRD", WAIT, || async {
        let back = nads(&env, &network).await.len() == want.len();
        let condition = condition(&env, &network).await?;
        (back && condition.status == ConditionStatus::True).then_some(())
    })
    .await;

    // The Network deleted with the controller stopped: only the garbage collector, following
    // the owner references, can delete its NADs.
    drop(controller);
    networks
        .delete(&network, &DeleteParams::default())
        .await
        .expect("deleting the network");
    // The collector finds CRD kinds by discovery, every 30 s: give it two rounds.
    let collected = Duration::from_secs(120);
    eventually(
        "the NADs garbage-collected with their Network",
        collected,
        || async { nads(&env, &network).await.is_empty().then_some(()) },
    )
    .await;
}

/// A MutatingWebhookConfiguration sending this test's pods (by its label) to the
/// controller's `/mutate-pods`, with the chart's path; deleted on drop.
struct PodWebhook<'a> {
    env: &'a TestEnv,
    name: String,
}

impl<'a> PodWebhook<'a> {
    fn register(env: &'a TestEnv, controller: &ControllerProcess) -> Self {
        use base64::Engine;
        let name = format!("switchyard-test-pods-{}", env.namespace);
        let ca = std::fs::read(&controller.ca_file).expect("reading the webhook CA");
        let (key, value) = env.test_label();
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "pods.mutate.switchyard.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                // Fail here, unlike the chart: a webhook that errs must fail the test, not
                // let the pod through unchanged.
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "objectSelector": {"matchLabels": {key: value}},
                "clientConfig": {
                    "url": format!("https://{}/mutate-pods", controller.webhook),
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
                },
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                           "resources": ["pods"], "scope": "Namespaced"}],
            }],
        });
        let out = env.kubectl(&["create", "-f", "-"], Some(&config.to_string()));
        assert!(
            out.status.success(),
            "registering the pod webhook: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { env, name }
    }
}

impl Drop for PodWebhook<'_> {
    fn drop(&mut self) {
        let _ = self.env.kubectl(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.name,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Creates a pod of the test (labelled for the webhook) with `networks` as its
/// `k8s.v1.cni.cncf.io/networks`, and returns its containers' resources as stored.
async fn pod_resources(env: &TestEnv, name: &str, networks: Option<&str>) -> Vec<Value> {
    let (key, value) = env.test_label();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": env.namespace, "labels": {key: value}},
        "spec": {"automountServiceAccountToken": false, "containers": [
            {"name": "compute", "image": "pause", "resources": {"requests": {"cpu": "10m"}}},
            {"name": "sidecar", "image": "pause"},
        ]},
    });
    if let Some(networks) = networks {
        pod["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/networks": networks});
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    let created = pods
        .create(&Default::default(), &serde_json::from_value(pod).unwrap())
        .await
        .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
    let spec = serde_json::to_value(created.spec.unwrap()).unwrap();
    spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.get("resources").cloned().unwrap_or(json!({})))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_naming_switchyard_nads_get_the_resource() {
    let env = TestEnv::new("nad-pods").await;
    let flags = [("SWITCHYARD_NAD_NAMESPACES", env.namespace.as_str())];
    let controller = ControllerProcess::start_with(&env.kubeconfig, true, &flags).await;
    let network = create_network(
        &env,
        "podnet",
        "  bridge: {name: br0}\n  forward: {mode: bridge}\n  portgroups: [{name: web}]\n",
    )
    .await;
    eventually("the network's two NADs", WAIT, || async {
        (nads(&env, &network).await.len() == 2).then_some(())
    })
    .await;
    // A NAD of someone else's plugin, and a look-alike not made by the controller.
    for (name, labels) in [
        ("macvlan", json!({})),
        ("fake", json!({"switchyard.dev/network": network})),
    ] {
        let nad = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": env.namespace, "labels": labels},
            "spec": {"config": "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"type\":\"macvlan\"}"}});
        let out = env.kubectl(&["create", "-f", "-"], Some(&nad.to_string()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No controller-manager makes the namespace's ServiceAccount; pods need one.
    kubectl_ok(
        &env,
        &["create", "serviceaccount", "default", "-n", &env.namespace],
    );
    let _webhook = PodWebhook::register(&env, &controller);
    let resource = format!("switchyard.dev/{network}");

    // The comma form, one interface twice, with the namespace and an interface name.
    let ns = &env.namespace;
    let annotation = format!("{network}, {ns}/{network}-web@net2, macvlan, fake");
    let resources = eventually("the webhook serving pods", WAIT, || {
        let annotation = annotation.clone();
        let env = &env;
        async move {
            let name = format!("comma-{}", switchyard_tests::control_plane::unique_suffix());
            let resources = pod_resources(env, &name, Some(&annotation)).await;
            resources[0].get("limits").is_some().then_some(resources)
        }
    })
    .await;
    assert_eq!(
        resources[0],
        json!({"requests": {"cpu": "10m", resource.clone(): "2"}, "limits": {resource.clone(): "2"}}),
        "the first container asks for both interfaces, nothing for the others' NADs"
    );
    assert_eq!(resources[1], json!({}), "other containers are left alone");

    // The JSON form.
    let json_form = json!([{"name": format!("{network}-web"), "interface": "pod1"}]).to_string();
    let resources = pod_resources(&env, "json", Some(&json_form)).await;
    assert_eq!(resources[0]["limits"], json!({resource.clone(): "1"}));

    // Pods naming no switchyard NAD, or no network at all, are unchanged.
    for (name, networks) in [("other", Some("macvlan")), ("plain", None)] {
        let resources = pod_resources(&env, name, networks).await;
        assert_eq!(resources[0], json!({"requests": {"cpu": "10m"}}), "{name}");
    }
}
