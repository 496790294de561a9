//! The chart's RBAC, for real: the agent and the controller run authenticated as the chart's
//! ServiceAccounts (bearer tokens from the TokenRequest API), bound to the ClusterRoles of the
//! committed manifest (deploy/switchyard.yaml, which tests/tests/chart.rs keeps equal to the
//! rendered chart), and do their whole job: ports labelled, realised, Ready and deleted, the
//! node reported and labelled, the network's status written, a migration check answered and
//! the webhook serving. A permission the chart lacks fails a step here, and any `forbidden`
//! either process logs fails the test.
//!
//! The cluster-scoped RBAC objects have fixed names, so this test runs on a control plane of
//! its own.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ControllerProcess, WebhookRegistration, eventually};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::json;
use switchyard_controller::nad::nad_resource;
use switchyard_crds::{
    ConditionStatus, LABEL_NETWORK, LABEL_NODE, LABEL_POD_UID, MigrationCheck, NODE_LABEL_PREFIX,
    Network, NetworkNode, NetworkNodeSpec, NetworkPort, NetworkPortSpec, PortPhase,
    RESOURCE_PREFIX,
};
use switchyard_tests::bins::workspace_binary;
use switchyard_tests::cluster::{TestEnv, apply_crds, repo_root};
use switchyard_tests::control_plane::ControlPlane;
use switchyard_tests::fixtures::{count_phase, create_network, mac};
use switchyard_tests::nodes::SimulatedNode;

const WAIT: Duration = Duration::from_secs(60);

/// The kinds of deploy/switchyard.yaml that make up the components' identities and rights.
const RBAC_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The RBAC documents of the committed manifest, as one YAML stream.
fn chart_rbac() -> String {
    let path = repo_root().join("deploy/switchyard.yaml");
    let text = std::fs::read_to_string(&path).expect("reading deploy/switchyard.yaml");
    let mut kept = Vec::new();
    for document in text.split("\n---") {
        let value: serde_yaml::Value =
            serde_yaml::from_str(document).expect("deploy/switchyard.yaml is YAML");
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
        if kind.is_some_and(|kind| RBAC_KINDS.contains(&kind)) {
            kept.push(document.trim_start_matches('-').trim().to_string());
        }
    }
    kept.join("\n---\n")
}

/// A kubeconfig authenticating as ServiceAccount `namespace/name`, with a token from the
/// TokenRequest API.
async fn service_account_kubeconfig(
    plane: &ControlPlane,
    env: &TestEnv,
    namespace: &str,
    name: &str,
) -> PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for ServiceAccount {namespace}/{name}: {e}"))
        .status
        .expect("the TokenRequest's status")
        .token;
    plane
        .write_kubeconfig(&format!("{name}.kubeconfig"), &token)
        .expect("writing the ServiceAccount's kubeconfig")
}

/// `kubectl auth can-i` as whoever `kubeconfig` authenticates (`resource` may end in
/// `/<subresource>`): exactly `yes` or `no`.
fn can_i(kubeconfig: &Path, verb: &str, resource: &str) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, format!("--subresource={sub}")),
        None => (resource, "--subresource=".to_string()),
    };
    let out = switchyard_tests::cluster::kubectl_at(
        kubeconfig,
        &[
            "auth",
            "can-i",
            verb,
            resource,
            &subresource,
            "--all-namespaces",
        ],
        None,
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match answer.as_str() {
        "yes" if stderr.is_empty() => true,
        "no" if stderr.is_empty() || stderr.trim() == "no" => false,
        _ => panic!("kubectl auth can-i {verb} {resource}: {answer:?} / {stderr}"),
    }
}

/// Lines of a log in which the apiserver refused the process something.
fn refusals(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
        .collect()
}

fn unlabelled_port(
    namespace: &str,
    name: &str,
    network: &str,
    node: &str,
    i: usize,
) -> NetworkPort {
    let mut port = NetworkPort::new(
        name,
        NetworkPortSpec {
            network: network.into(),
            node: node.into(),
            mac: mac(i),
            ..Default::default()
        },
    );
    port.metadata.namespace = Some(namespace.to_string());
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_controller_do_their_job_with_only_the_charts_permissions() {
    const PORTS: usize = 3;
    let plane = ControlPlane::start().expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "rbac").await;

    let rbac = chart_rbac();
    for kind in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        assert!(
            rbac.contains(&format!("kind: {kind}")),
            "deploy/switchyard.yaml has no {kind}"
        );
    }
    let out = env.kubectl(&["apply", "-f", "-"], Some(&rbac));
    assert!(
        out.status.success(),
        "installing the chart's RBAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent_kubeconfig =
        service_account_kubeconfig(&plane, &env, "switchyard-system", "switchyard-agent").await;
    let controller_kubeconfig =
        service_account_kubeconfig(&plane, &env, "switchyard-system", "switchyard-controller")
            .await;
    // The tokens name the ServiceAccounts, not an admin: the agent may not touch specs.
    assert!(can_i(
        &agent_kubeconfig,
        "patch",
        "networkports.switchyard.dev/status"
    ));
    // It reads pods for its CNI server, and changes none.
    assert!(can_i(&agent_kubeconfig, "get", "pods"));
    assert!(!can_i(&agent_kubeconfig, "delete", "pods"));
    assert!(!can_i(
        &agent_kubeconfig,
        "patch",
        "networks.switchyard.dev"
    ));
    assert!(can_i(
        &controller_kubeconfig,
        "patch",
        "networks.switchyard.dev/status"
    ));
    assert!(!can_i(
        &controller_kubeconfig,
        "create",
        "networkports.switchyard.dev"
    ));

    for verb in ["list", "create", "patch", "delete"] {
        assert!(
            can_i(
                &controller_kubeconfig,
                verb,
                "network-attachment-definitions.k8s.cni.cncf.io"
            ),
            "the controller may {verb} NetworkAttachmentDefinitions"
        );
    }

    // The controller generates NADs in the test's namespace, as the chart's nad.namespaces.
    let controller = ControllerProcess::start_with(
        &controller_kubeconfig,
        true,
        &[("SWITCHYARD_NAD_NAMESPACES", env.namespace.as_str())],
    )
    .await;
    let _webhook = WebhookRegistration::register(&env, &controller).await;
    let mut node = SimulatedNode::new(&env, "rbac", &[]).await;
    node.sandbox
        .add_nics("eth", 2)
        .expect("adding the node's NICs");
    let network = create_network(
        &env,
        "rbac",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}, {dev: eth1}]}\n  maxConnectionsPerDevice: 2\n",
    )
    .await;
    node.start_agent_as(
        &workspace_binary("switchyard-node-agent"),
        &agent_kubeconfig,
    );
    let (ns, node_name) = (env.namespace.clone(), node.name.clone());

    // The agent's NetworkNode report reaches the controller, which writes the network's status
    // and labels the node; the agent puts the network's extended resource on the Node.
    let networks: Api<Network> = Api::all(env.client.clone());
    eventually("the network served by the node", WAIT, || async {
        let status = networks.get(&network).await.ok()?.status?;
        (status.nodes_ready == 1 && status.capacity_total == 4).then_some(())
    })
    .await;
    // Its NetworkAttachmentDefinition applied and reported.
    let nads: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &nad_resource());
    eventually(
        "the network's NetworkAttachmentDefinition",
        WAIT,
        || async { nads.get(&network).await.ok() },
    )
    .await;
    eventually("the AttachmentDefinitions condition True", WAIT, || async {
        let status = networks.get(&network).await.ok()?.status?;
        status
            .conditions
            .iter()
            .any(|c| c.kind == "AttachmentDefinitions" && c.status == ConditionStatus::True)
            .then_some(())
    })
    .await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    eventually(
        "the controller's node label and the agent's extended resource",
        WAIT,
        || async {
            let live = nodes.get(&node_name).await.ok()?;
            let labelled = live
                .labels()
                .contains_key(&format!("{NODE_LABEL_PREFIX}{network}"));
            let resource = live
                .status?
                .capacity?
                .contains_key(&format!("{RESOURCE_PREFIX}{network}"));
            (labelled && resource).then_some(())
        },
    )
    .await;

    // Ports created without labels: the controller labels them, the agent realises them.
    let ports: Api<NetworkPort> = Api::namespaced(env.client.clone(), &ns);
    for i in 0..PORTS {
        let port = unlabelled_port(&ns, &format!("p{i}"), &network, &node_name, i);
        ports
            .create(&PostParams::default(), &port)
            .await
            .unwrap_or_else(|e| panic!("creating port p{i}: {e}"));
    }
    let ready = eventually("the ports labelled and Ready", WAIT, || async {
        let list = ports.list(&Default::default()).await.ok()?.items;
        let labelled = list.iter().all(|p| {
            p.labels().get(LABEL_NODE) == Some(&node_name)
                && p.labels().get(LABEL_NETWORK) == Some(&network)
        });
        (list.len() == PORTS && labelled && count_phase(&list, PortPhase::Ready) == PORTS)
            .then_some(list)
    })
    .await;
    for port in &ready {
        let actual = port.status.as_ref().unwrap().actual.as_ref().unwrap();
        let link = node
            .sandbox
            .link(&actual.link_name)
            .expect("listing the node's links")
            .unwrap_or_else(|| panic!("{}'s link {} exists", port.name_any(), actual.link_name));
        assert_eq!(link.alias, port.uid(), "{}", port.name_any());
    }

    // The webhook serves, and judges with what the controller may read.
    let out = env.kubectl(
        &["create", "-f", "-"],
        Some(
            &json!({
                "apiVersion": "switchyard.dev/v1alpha1",
                "kind": "NetworkPort",
                "metadata": {"name": "bad", "namespace": ns, "labels": {env.test_label().0: env.test_label().1}},
                "spec": {"network": network, "node": node_name, "mac": mac(99), "portgroup": "platinum"},
            })
            .to_string(),
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(
                "admission webhook \"networkports.validate.switchyard.dev\" denied the request"
            )
            && stderr.contains("[PortgroupNotFound]"),
        "a port naming a missing portgroup: {stderr}"
    );

    // A migration check is answered: one device connection left on the node, one asked for.
    let check: MigrationCheck = serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "MigrationCheck",
        "metadata": {"name": "vm1", "namespace": ns},
        "spec": {"interfaces": [{"name": "net0", "network": network}], "nodes": [node_name]},
    }))
    .unwrap();
    let checks: Api<MigrationCheck> = Api::namespaced(env.client.clone(), &ns);
    checks
        .create(&PostParams::default(), &check)
        .await
        .expect("creating the check");
    let status = eventually("the check's answer", WAIT, || async {
        checks
            .get("vm1")
            .await
            .ok()?
            .status
            .filter(|s| s.nodes.len() == 1)
    })
    .await;
    assert_eq!(status.eligible_nodes, [node_name], "{status:#?}");

    // Deleted ports go: the agent removes their links, then its finalizer.
    for port in &ready {
        ports
            .delete(&port.name_any(), &DeleteParams::default())
            .await
            .expect("deleting a port");
    }
    eventually("the ports gone", WAIT, || async {
        ports
            .list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    for port in &ready {
        let name = &port
            .status
            .as_ref()
            .unwrap()
            .actual
            .as_ref()
            .unwrap()
            .link_name;
        assert!(
            node.sandbox.link(name).expect("listing links").is_none(),
            "{name} is gone"
        );
    }
    eventually("the network's status back to no ports", WAIT, || async {
        let status = networks.get(&network).await.ok()?.status?;
        (status.capacity_used == 0 && status.capacity_free == 4).then_some(())
    })
    .await;

    let agent_log = node.logs();
    let controller_log = controller.log();
    let refused: Vec<String> = refusals(&agent_log)
        .into_iter()
        .map(|l| format!("agent: {l}"))
        .chain(
            refusals(&controller_log)
                .into_iter()
                .map(|l| format!("controller: {l}")),
        )
        .collect();
    assert!(
        refused.is_empty(),
        "the apiserver refused the chart's ServiceAccounts:\n{}",
        refused.join("\n")
    );
}

/// The agents' ServiceAccount, as the chart names it (and tells the controller).
const AGENT_ACCOUNT: (&str, &str) = ("switchyard-system", "switchyard-agent");

/// A Pod of the agents' ServiceAccount on `node`, as the DaemonSet would make it. No kubelet
/// runs it: it stays Pending, which is all a token bound to it needs.
async fn agent_pod(env: &TestEnv, node: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("agent-{node}"), "namespace": AGENT_ACCOUNT.0},
        "spec": {
            "serviceAccountName": AGENT_ACCOUNT.1,
            "automountServiceAccountToken": false,
            "nodeName": node,
            "containers": [{"name": "agent", "image": "switchyard:never-pulled"}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), AGENT_ACCOUNT.0)
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating the agent's pod")
}

/// A kubeconfig for the agents' ServiceAccount with a token bound to `pod`, as the kubelet
/// mounts it into the DaemonSet's pod.
async fn bound_agent_kubeconfig(plane: &ControlPlane, env: &TestEnv, pod: &Pod) -> PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), AGENT_ACCOUNT.0);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(AGENT_ACCOUNT.1, &PostParams::default(), &request)
        .await
        .expect("a token bound to the agent's pod")
        .status
        .expect("the TokenRequest's status")
        .token;
    plane
        .write_kubeconfig(&format!("{}.kubeconfig", pod.name_any()), &token)
        .expect("writing the agent's kubeconfig")
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("reading a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("a client configuration");
    kube::Client::try_from(config).expect("a client")
}

/// The message of the webhook's refusal of `result`, which must be one.
fn refusal<T: std::fmt::Debug>(what: &str, result: kube::Result<T>) -> String {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            assert!(
                status.message.contains("denied the request"),
                "{what}: refused, but not by the webhook: {}",
                status.message
            );
            status.message
        }
        other => panic!("{what}: expected the webhook's refusal, got {other:?}"),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

/// Two agents on two nodes, each with a token bound to its own pod, as the chart runs them:
/// each does its whole job on its node, and the webhook refuses it every other node's
/// objects (NetworkNode, Node status, port status), any port's spec and any change to its own
/// Node beyond its extended resources, naming the node and the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_writes_only_its_own_nodes_objects() {
    let plane = ControlPlane::start().expect("starting a private control plane");
    apply_crds(&plane.kubeconfig).expect("installing the CRDs");
    let env = TestEnv::on(&plane.kubeconfig, "nodes").await;
    let out = env.kubectl(&["apply", "-f", "-"], Some(&chart_rbac()));
    assert!(
        out.status.success(),
        "installing the chart's RBAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let controller_kubeconfig =
        service_account_kubeconfig(&plane, &env, "switchyard-system", "switchyard-controller")
            .await;
    let account = format!("{}/{}", AGENT_ACCOUNT.0, AGENT_ACCOUNT.1);
    let controller = ControllerProcess::start_with(
        &controller_kubeconfig,
        true,
        &[("SWITCHYARD_AGENT_SERVICE_ACCOUNT", &account)],
    )
    .await;
    let _webhook = WebhookRegistration::from_chart(&env, &controller).await;

    let network = create_network(
        &env,
        "own",
        "  forward: {mode: vepa, interfaces: [{dev: eth0}, {dev: eth1}]}\n  maxConnectionsPerDevice: 2\n",
    )
    .await;
    let mut nodes = Vec::new();
    for label in ["a", "b"] {
        let mut node = SimulatedNode::new(&env, label, &[]).await;
        node.sandbox.add_nics("eth", 2).expect("adding NICs");
        let pod = agent_pod(&env, &node.name).await;
        let kubeconfig = bound_agent_kubeconfig(&plane, &env, &pod).await;
        node.start_agent_as(&workspace_binary("switchyard-node-agent"), &kubeconfig);
        nodes.push((node, client_of(&kubeconfig).await));
    }

    // Each agent does its whole job: its NetworkNode and Node reported, its port Ready.
    let networks: Api<Network> = Api::all(env.client.clone());
    eventually("the network served by both nodes", WAIT, || async {
        let status = networks.get(&network).await.ok()?.status?;
        (status.nodes_ready == 2).then_some(())
    })
    .await;
    let node_api: Api<Node> = Api::all(env.client.clone());
    let ports: Api<NetworkPort> = Api::namespaced(env.client.clone(), &env.namespace);
    for (i, (node, _)) in nodes.iter().enumerate() {
        eventually(
            "the agent's extended resource on its Node",
            WAIT,
            || async {
                let capacity = node_api.get(&node.name).await.ok()?.status?.capacity?;
                capacity
                    .contains_key(&format!("{RESOURCE_PREFIX}{network}"))
                    .then_some(())
            },
        )
        .await;
        let port = unlabelled_port(&env.namespace, &format!("p-{i}"), &network, &node.name, i);
        ports
            .create(&PostParams::default(), &port)
            .await
            .expect("creating a port");
    }
    eventually("both ports Ready", WAIT, || async {
        let list = ports.list(&Default::default()).await.ok()?.items;
        (count_phase(&list, PortPhase::Ready) == 2).then_some(())
    })
    .await;

    for (me, other) in [(0, 1), (1, 0)] {
        let (mine, client) = (&nodes[me].0.name, &nodes[me].1);
        let theirs = &nodes[other].0.name;
        let agent =
            format!("the node agent of node \"{mine}\" (pod switchyard-system/agent-{mine})");
        let status = PatchParams::default();

        let network_nodes: Api<NetworkNode> = Api::all(client.clone());
        let patch = json!({"status": {"networksReady": 0}});
        let message = refusal(
            "another node's NetworkNode status",
            network_nodes
                .patch_status(theirs, &status, &Patch::Merge(&patch))
                .await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!("not NetworkNode \"{theirs}\" (metadata.name must be \"{mine}\")"),
            ],
        );
        let created = NetworkNode::new(&format!("{mine}-x"), NetworkNodeSpec {});
        let message = refusal(
            "creating another NetworkNode",
            network_nodes.create(&PostParams::default(), &created).await,
        );
        assert_names(&message, &[&agent, &format!("NetworkNode \"{mine}-x\"")]);

        let port_api: Api<NetworkPort> = Api::namespaced(client.clone(), &env.namespace);
        let (my_port, their_port) = (format!("p-{me}"), format!("p-{other}"));
        let failed = json!({"status": {"phase": "Failed"}});
        let message = refusal(
            "another node's port status",
            port_api
                .patch_status(&their_port, &status, &Patch::Merge(&failed))
                .await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!(
                    "NetworkPort \"{}/{their_port}\" has spec.node \"{theirs}\"",
                    env.namespace
                ),
            ],
        );
        for (port, node) in [(&my_port, mine), (&their_port, theirs)] {
            let mac = json!({"spec": {"mac": mac(50)}});
            let message = refusal(
                "a port's spec",
                port_api
                    .patch(port, &PatchParams::default(), &Patch::Merge(&mac))
                    .await,
            );
            let expected = if node == mine {
                format!(
                    "spec.mac of NetworkPort \"{}/{port}\" changed",
                    env.namespace
                )
            } else {
                format!("has spec.node \"{theirs}\"")
            };
            assert_names(&message, &[&agent, &expected]);
        }
        // Its CNI server's pod ports: created and deleted for its own node only.
        let pod_port = |name: &str, node: &str| {
            let mut port = unlabelled_port(&env.namespace, name, &network, node, 60 + me);
            port.metadata.labels =
                Some([(LABEL_POD_UID.to_string(), format!("uid-{name}"))].into());
            port.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: format!("launcher-{name}"),
                uid: format!("uid-{name}"),
                ..Default::default()
            }]);
            port
        };
        let own_pod_port = format!("pod-{mine}");
        port_api
            .create(&PostParams::default(), &pod_port(&own_pod_port, mine))
            .await
            .expect("an agent creates a pod's port for its own node");
        port_api
            .delete(&own_pod_port, &DeleteParams::default())
            .await
            .expect("an agent deletes its own node's pod port");
        let message = refusal(
            "a pod's port for another node",
            port_api
                .create(&PostParams::default(), &pod_port("pod-x", theirs))
                .await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!(
                    "may create only its own node's ports: NetworkPort \"{}/pod-x\" has spec.node \"{theirs}\"",
                    env.namespace
                ),
            ],
        );
        let message = refusal(
            "a user's port on its own node",
            port_api
                .create(
                    &PostParams::default(),
                    &unlabelled_port(&env.namespace, "user-x", &network, mine, 70),
                )
                .await,
        );
        assert_names(
            &message,
            &[&agent, "may create only a pod's port for its CNI server"],
        );
        let message = refusal(
            "deleting a user's port",
            port_api.delete(&my_port, &DeleteParams::default()).await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!(
                    "NetworkPort \"{}/{my_port}\" is a user's port",
                    env.namespace
                ),
            ],
        );

        let node_status: Api<Node> = Api::all(client.clone());
        let resource =
            json!({"status": {"capacity": {format!("{RESOURCE_PREFIX}{network}"): "0"}}});
        let message = refusal(
            "another Node's status",
            node_status
                .patch_status(theirs, &status, &Patch::Merge(&resource))
                .await,
        );
        assert_names(&message, &[&agent, &format!("not Node \"{theirs}\"'s")]);
        let cpu = json!({"status": {"capacity": {"cpu": "64"}}});
        let message = refusal(
            "its own Node's cpu",
            node_status
                .patch_status(mine, &status, &Patch::Merge(&cpu))
                .await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!("status.capacity.cpu of Node \"{mine}\" changed"),
            ],
        );
        // A scheduling label of a network the node does not serve.
        let label =
            json!({"metadata": {"labels": {format!("{NODE_LABEL_PREFIX}not-{network}"): "true"}}});
        let message = refusal(
            "a label through its own Node's status",
            node_status
                .patch_status(mine, &status, &Patch::Merge(&label))
                .await,
        );
        assert_names(
            &message,
            &[
                &agent,
                &format!("metadata.labels of Node \"{mine}\" changed"),
            ],
        );
    }

    // The agents' own writes all went through: each deletes its port, finalizer and all.
    for (i, _) in nodes.iter().enumerate() {
        ports
            .delete(&format!("p-{i}"), &DeleteParams::default())
            .await
            .expect("deleting a port");
    }
    eventually("the ports gone", WAIT, || async {
        let list = ports.list(&Default::default()).await.ok()?.items;
        list.is_empty().then_some(())
    })
    .await;
    for (node, _) in &nodes {
        let log = node.logs();
        let refused = refusals(&log);
        assert!(
            refused.is_empty(),
            "the webhook refused agent {} its own writes:\n{}",
            node.name,
            refused.join("\n")
        );
    }
}
