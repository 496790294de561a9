//! End-to-end tests on a real node: kubelet v1.20 and containerd running pods from images
//! built from this repository's binaries, beside a private control plane with the scheduler,
//! the controller-manager, `Node,RBAC` authorization and `NodeRestriction`.

use std::time::{Duration, Instant};

use switchyard_tests::cluster::{TestEnv, repo_root};
use switchyard_tests::real_node::config::{PAUSE_IMAGE, POD_SUBNET};
use switchyard_tests::real_node::{RealCluster, RealNodeOptions};
use tokio::sync::Semaphore;

/// One real node at a time: each is a kubelet, containerd, apiserver, scheduler and
/// controller-manager (about 0.7 GB and a core while starting).
static NODES: Semaphore = Semaphore::const_new(1);

async fn start_cluster(
    options: RealNodeOptions,
) -> (RealCluster, tokio::sync::SemaphorePermit<'static>) {
    let permit = NODES
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let cluster = tokio::task::spawn_blocking(move || RealCluster::start(&options))
        .await
        .expect("the start-up thread")
        .unwrap_or_else(|e| panic!("starting the real node: {e}"));
    (cluster, permit)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until the namespace's `default` ServiceAccount has its token (pods are refused
/// before the controller-manager has made it).
async fn wait_default_service_account(env: &TestEnv, timeout: Duration) {
    let start = Instant::now();
    loop {
        let out = env.kubectl(
            &[
                "-n",
                &env.namespace,
                "get",
                "serviceaccount",
                "default",
                "-o",
                "jsonpath={.secrets[0].name}",
            ],
            None,
        );
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "the default ServiceAccount of {} got no token within {timeout:?}: {}",
            env.namespace,
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn jsonpath(env: &TestEnv, kind_name: &str, path: &str) -> String {
    let out = env.kubectl(
        &[
            "-n",
            &env.namespace,
            "get",
            kind_name,
            "-o",
            &format!("jsonpath={path}"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl get {kind_name}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_the_real_node_from_a_locally_built_image() {
    let (cluster, _permit) = start_cluster(RealNodeOptions::default()).await;
    let env = TestEnv::on(&cluster.control_plane.kubeconfig, "real-node-pod").await;
    wait_default_service_account(&env, Duration::from_secs(60)).await;

    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: sleeper, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: pause, image: {PAUSE_IMAGE}, imagePullPolicy: Never}}
",
        ns = env.namespace
    );
    let out = env.kubectl(&["apply", "-f", "-"], Some(&pod));
    assert!(out.status.success(), "creating the pod: {}", text(&out));
    let out = env.kubectl(
        &[
            "-n",
            &env.namespace,
            "wait",
            "--for=condition=Ready",
            "pod/sleeper",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "the pod did not become Ready: {}\n{}\n{}",
        text(&out),
        text(&env.kubectl(&["-n", &env.namespace, "describe", "pod", "sleeper"], None)),
        cluster.node.logs()
    );

    assert_eq!(
        jsonpath(&env, "pod/sleeper", "{.spec.nodeName}"),
        cluster.node.name()
    );
    let ip = jsonpath(&env, "pod/sleeper", "{.status.podIP}");
    assert!(
        ip.starts_with(POD_SUBNET.trim_end_matches("0/24")),
        "pod IP {ip:?} is not in the node's pod network {POD_SUBNET}"
    );
    // The container is containerd's, on the node; its veth is in the node's namespace only.
    let containers = cluster
        .node
        .ctr(&["containers", "ls", "-q"])
        .expect("listing the node's containers");
    let container_id = jsonpath(
        &env,
        "pod/sleeper",
        "{.status.containerStatuses[0].containerID}",
    );
    let container_id = container_id.trim_start_matches("containerd://");
    assert!(
        containers.lines().any(|c| c == container_id),
        "container {container_id} not among the node's: {containers}"
    );
    let links = cluster.node.sandbox.links().expect("the node's links");
    assert!(
        links.iter().any(|l| l.master.as_deref() == Some("cni0")),
        "no pod veth on the node's bridge: {links:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The chart on the real node.

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use switchyard_crds::{Network, NetworkNode, NetworkPort, PortPhase};
use switchyard_tests::cluster::TEST_LABEL;
use switchyard_tests::control_plane::cached_binary;
use switchyard_tests::fixtures::{
    LINK_PREFIX, OWNED_GROUP, count_phase, create_network, kernel_connections, mac, port,
    ports_api, wait_ports,
};
use switchyard_tests::real_node::{SWITCHYARD_IMAGE_REPOSITORY, SWITCHYARD_IMAGE_TAG};

/// The release name; objects are `sy-switchyard-…`.
const RELEASE: &str = "sy";
const AGENT_SA: &str = "sy-switchyard-agent";
const CONTROLLER_SA: &str = "sy-switchyard-controller";

fn helm(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let helm = cached_binary("helm");
    assert!(
        helm.is_file(),
        "helm not found at {}; run scripts/install-deps.sh",
        helm.display()
    );
    std::process::Command::new(helm)
        .args(args)
        .args(["--namespace", &env.namespace, "--kubeconfig"])
        .arg(&env.kubeconfig)
        .output()
        .expect("running helm")
}

/// Installs charts/switchyard with the locally built image and waits until its Deployment
/// and DaemonSet are available.
fn install_chart(env: &TestEnv, node: &RealCluster) {
    let chart = repo_root().join("charts/switchyard");
    let out = helm(
        env,
        &[
            "install",
            RELEASE,
            &chart.display().to_string(),
            "--set",
            &format!("image.repository={SWITCHYARD_IMAGE_REPOSITORY}"),
            "--set",
            &format!("image.tag={SWITCHYARD_IMAGE_TAG}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "logFormat=text",
            "--wait",
            "--timeout=180s",
        ],
    );
    assert!(
        out.status.success(),
        "helm install: {}\n{}\n{}",
        text(&out),
        text(&env.kubectl(&["-n", &env.namespace, "describe", "pods"], None)),
        node.node.logs()
    );
    // helm's --wait accepts a DaemonSet with maxUnavailable pods not Ready; wait for all.
    let instance = format!("app.kubernetes.io/instance={RELEASE}");
    let out = env.kubectl(
        &[
            "-n",
            &env.namespace,
            "wait",
            "--for=condition=Ready",
            "pods",
            "-l",
            &instance,
            "--timeout=120s",
        ],
        None,
    );
    if !out.status.success() {
        let logs = env.kubectl(
            &[
                "-n",
                &env.namespace,
                "logs",
                &format!("ds/{AGENT_SA}"),
                "--previous",
                "--tail=30",
            ],
            None,
        );
        panic!(
            "the release's pods did not become Ready: {}\n{}\n{}\n{}",
            text(&out),
            text(&env.kubectl(&["-n", &env.namespace, "describe", "pods"], None)),
            text(&logs),
            node.node.logs()
        );
    }
}

/// Labels the real node with the test's label, so the test's networks select it.
fn select_node(env: &TestEnv, node: &str) {
    let label = format!("{TEST_LABEL}={}", env.namespace);
    let out = env.kubectl(&["label", "node", node, &label, "--overwrite"], None);
    assert!(out.status.success(), "labelling the node: {}", text(&out));
}

fn can_i(env: &TestEnv, sa: &str, verb: &str, resource: &str) -> bool {
    let user = format!("--as=system:serviceaccount:{}:{sa}", env.namespace);
    let out = env.kubectl(
        &["auth", "can-i", verb, resource, &user, "--all-namespaces"],
        None,
    );
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// The links the agent owns in the node's namespace.
fn owned_links(cluster: &RealCluster) -> Vec<String> {
    cluster
        .node
        .sandbox
        .links()
        .expect("the node's links")
        .into_iter()
        .filter(|l| l.group == OWNED_GROUP || l.name.starts_with(LINK_PREFIX))
        .map(|l| l.name)
        .collect()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match done().await {
            Ok(()) => return,
            Err(state) => assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the node's agent reports `network` ready (the webhook refuses ports before).
async fn wait_network_served(env: &TestEnv, node: &str, network: &str) {
    wait_until(
        &format!("the agent on {node} to serve {network}"),
        Duration::from_secs(60),
        || async {
            let status = switchyard_tests::fixtures::network_node(env, node).await;
            match status.networks.iter().find(|n| n.name == network) {
                Some(n) if n.ready => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_on_the_real_node_with_its_own_permissions_and_uninstalls_cleanly() {
    let (cluster, _permit) = start_cluster(RealNodeOptions::default()).await;
    let env = TestEnv::on(&cluster.control_plane.kubeconfig, "real-node-chart").await;
    let node = cluster.node.name().to_string();
    select_node(&env, &node);
    install_chart(&env, &cluster);

    // Both pods run on the node under the chart's own service accounts, which are not
    // cluster admins.
    for (component, sa) in [("node-agent", AGENT_SA), ("controller", CONTROLLER_SA)] {
        let selector = format!("app.kubernetes.io/component={component}");
        let out = env.kubectl(
            &[
                "-n",
                &env.namespace,
                "get",
                "pods",
                "-l",
                &selector,
                "-o",
                "jsonpath={range .items[*]}{.spec.serviceAccountName} {.spec.nodeName} {.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{sa} {node} Running True"),
            "{component} pod: {}",
            text(&out)
        );
        assert!(
            !can_i(&env, sa, "*", "*"),
            "{sa} must not be a cluster admin"
        );
    }

    // A network and a port, both admitted by the controller pod's webhook (failurePolicy
    // Fail: the apiserver reached the pod through the node's egress).
    let net = create_network(
        &env,
        "chart",
        "  forward: {mode: bridge, interfaces: [{dev: eth1}]}\n",
    )
    .await;
    wait_network_served(&env, &node, &net).await;
    let ports = ports_api(&env);
    ports
        .create(
            &PostParams::default(),
            &port(&env.namespace, "vm-a", &net, &node, &mac(1)),
        )
        .await
        .expect("creating the port through the webhook");
    let ready = wait_ports(
        &env,
        "the port to become Ready through the agent pod",
        Duration::from_secs(60),
        Duration::from_millis(250),
        |ports| count_phase(ports, PortPhase::Ready) == 1,
    )
    .await;
    assert!(
        ready[0]
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == switchyard_crds::PORT_FINALIZER),
        "the agent put its finalizer on the Ready port"
    );
    let links = cluster.node.sandbox.links().expect("the node's links");
    assert_eq!(
        kernel_connections(&links).get("eth1"),
        Some(&1),
        "one macvtap on eth1 in the node's namespace: {links:?}"
    );

    ports
        .delete("vm-a", &DeleteParams::default())
        .await
        .expect("deleting the port");
    wait_until(
        "the port and its link to go",
        Duration::from_secs(60),
        || async {
            let left = ports
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let links = owned_links(&cluster);
            if left.items.is_empty() && links.is_empty() {
                Ok(())
            } else {
                Err(format!("{} ports, links {links:?}", left.items.len()))
            }
        },
    )
    .await;
    Api::<Network>::all(env.client.clone())
        .delete(&net, &DeleteParams::default())
        .await
        .expect("deleting the network");

    let out = helm(&env, &["uninstall", RELEASE, "--wait", "--timeout=120s"]);
    assert!(out.status.success(), "helm uninstall: {}", text(&out));
    wait_until(
        "the release's pods to go",
        Duration::from_secs(90),
        || async {
            let out = env.kubectl(&["-n", &env.namespace, "get", "pods", "-o", "name"], None);
            let pods = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && pods.is_empty() {
                Ok(())
            } else {
                Err(pods)
            }
        },
    )
    .await;
    let instance = format!("app.kubernetes.io/instance={RELEASE}");
    let out = env.kubectl(
        &[
            "get",
            "clusterroles,clusterrolebindings,validatingwebhookconfigurations,serviceaccounts,services,secrets,deployments,daemonsets",
            "-A",
            "-l",
            &instance,
            "-o",
            "name",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "objects of the release left after helm uninstall"
    );
    assert!(owned_links(&cluster).is_empty(), "switchyard links left");
    let with_finalizers = |finalizers: Option<&Vec<String>>| {
        finalizers.is_some_and(|f| f.iter().any(|f| f.starts_with("switchyard.dev/")))
    };
    let nodes = Api::<NetworkNode>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing NetworkNodes");
    assert!(
        !nodes
            .items
            .iter()
            .any(|n| with_finalizers(n.metadata.finalizers.as_ref())),
        "a NetworkNode kept a switchyard finalizer"
    );
    let all_ports = Api::<NetworkPort>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing ports");
    assert!(all_ports.items.is_empty(), "ports left after uninstall");
}

// ---------------------------------------------------------------------------------------
// The scheduler places pods by the node's `switchyard.dev/<network>` resource.

fn vm_pod(env: &TestEnv, name: &str, network: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: vm
    image: {PAUSE_IMAGE}
    imagePullPolicy: Never
    resources:
      limits: {{\"switchyard.dev/{network}\": 1}}
",
        ns = env.namespace
    )
}

/// `(nodeName, PodScheduled status, its reason and message, Ready status)` of a pod.
fn placement(env: &TestEnv, pod: &str) -> (String, String, String) {
    let node = jsonpath(env, &format!("pod/{pod}"), "{.spec.nodeName}");
    let scheduled = jsonpath(
        env,
        &format!("pod/{pod}"),
        "{.status.conditions[?(@.type==\"PodScheduled\")].status} {.status.conditions[?(@.type==\"PodScheduled\")].reason}: {.status.conditions[?(@.type==\"PodScheduled\")].message}",
    );
    let ready = jsonpath(
        env,
        &format!("pod/{pod}"),
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    );
    (node, scheduled, ready)
}

async fn wait_running_on(env: &TestEnv, pod: &str, node: &str) {
    wait_until(
        &format!("pod {pod} to run on {node}"),
        Duration::from_secs(90),
        || async {
            let (on, scheduled, ready) = placement(env, pod);
            if on == node && ready == "True" {
                Ok(())
            } else {
                Err(format!(
                    "node {on:?}, scheduled {scheduled:?}, ready {ready:?}"
                ))
            }
        },
    )
    .await;
}

async fn wait_unschedulable(env: &TestEnv, pod: &str, resource: &str) {
    wait_until(
        &format!("the scheduler to refuse pod {pod}"),
        Duration::from_secs(60),
        || async {
            let (on, scheduled, _) = placement(env, pod);
            if on.is_empty()
                && scheduled.starts_with("False Unschedulable")
                && scheduled.contains(&format!("Insufficient {resource}"))
            {
                Ok(())
            } else {
                Err(format!("node {on:?}, scheduled {scheduled:?}"))
            }
        },
    )
    .await;
}

fn node_capacity(env: &TestEnv, node: &str, resource: &str) -> String {
    jsonpath(
        env,
        &format!("node/{node}"),
        &format!("{{.status.allocatable.{}}}", resource.replace('.', "\\.")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_places_a_vm_pod_only_where_the_network_has_room() {
    let (cluster, _permit) = start_cluster(RealNodeOptions::default()).await;
    let env = TestEnv::on(&cluster.control_plane.kubeconfig, "real-node-sched").await;
    let node = cluster.node.name().to_string();
    select_node(&env, &node);
    install_chart(&env, &cluster);
    wait_default_service_account(&env, Duration::from_secs(60)).await;

    // Before the network exists no node offers it.
    let net = env.unique("sched");
    let resource = format!("switchyard.dev/{net}");
    let out = env.kubectl(&["apply", "-f", "-"], Some(&vm_pod(&env, "vm-1", &net)));
    assert!(out.status.success(), "{}", text(&out));
    wait_unschedulable(&env, "vm-1", &resource).await;

    // Passthrough: one exclusive port per device, eth1 alone, so a capacity of one.
    let created = create_network(
        &env,
        "sched",
        "  forward: {mode: passthrough, interfaces: [{dev: eth1}]}\n",
    )
    .await;
    assert_eq!(created, net);
    wait_running_on(&env, "vm-1", &node).await;
    assert_eq!(node_capacity(&env, &node, &resource), "1");

    // The one unit is taken: a second VM pod waits, with the scheduler's reason.
    let out = env.kubectl(&["apply", "-f", "-"], Some(&vm_pod(&env, "vm-2", &net)));
    assert!(out.status.success(), "{}", text(&out));
    wait_unschedulable(&env, "vm-2", &resource).await;
    let out = env.kubectl(
        &["-n", &env.namespace, "delete", "pod", "vm-1", "--wait=true"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_running_on(&env, "vm-2", &node).await;

    // The node stops serving the network (its label no longer selected): the agent withdraws
    // the resource, and a new VM pod cannot be placed.
    let out = env.kubectl(&["label", "node", &node, &format!("{TEST_LABEL}-")], None);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(
        "the node to withdraw the resource",
        Duration::from_secs(60),
        || async {
            let capacity = node_capacity(&env, &node, &resource);
            if capacity.is_empty() {
                Ok(())
            } else {
                Err(format!("allocatable {capacity:?}"))
            }
        },
    )
    .await;
    let out = env.kubectl(&["apply", "-f", "-"], Some(&vm_pod(&env, "vm-3", &net)));
    assert!(out.status.success(), "{}", text(&out));
    wait_unschedulable(&env, "vm-3", &resource).await;
}

// ---------------------------------------------------------------------------------------
// The agent pod is deleted while ports are Ready; its DaemonSet starts a new one.

fn agent_pod(env: &TestEnv) -> (String, String) {
    let out = env.kubectl(
        &[
            "-n",
            &env.namespace,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=node-agent",
            "-o",
            "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}deleting {end}{range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut fields = text.split_whitespace();
    (fields.next().unwrap_or_default().to_string(), text.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_agent_pod_comes_back_and_keeps_the_ports_exact() {
    const PORTS: usize = 6;
    let (cluster, _permit) = start_cluster(RealNodeOptions::default()).await;
    let env = TestEnv::on(&cluster.control_plane.kubeconfig, "real-node-restart").await;
    let node = cluster.node.name().to_string();
    select_node(&env, &node);
    install_chart(&env, &cluster);

    let net = create_network(
        &env,
        "restart",
        "  forward: {mode: bridge, interfaces: [{dev: eth1}]}\n",
    )
    .await;
    wait_network_served(&env, &node, &net).await;
    let ports = ports_api(&env);
    for i in 0..PORTS {
        ports
            .create(
                &PostParams::default(),
                &port(&env.namespace, &format!("vm-{i}"), &net, &node, &mac(i)),
            )
            .await
            .expect("creating a port");
    }
    wait_ports(
        &env,
        "every port Ready",
        Duration::from_secs(60),
        Duration::from_millis(250),
        |ports| count_phase(ports, PortPhase::Ready) == PORTS,
    )
    .await;
    let before = owned_links(&cluster);
    assert_eq!(before.len(), PORTS, "links before: {before:?}");

    let (old, state) = agent_pod(&env);
    assert!(!old.is_empty(), "no agent pod: {state}");
    let out = env.kubectl(
        &["-n", &env.namespace, "delete", "pod", &old, "--wait=true"],
        None,
    );
    assert!(
        out.status.success(),
        "deleting the agent pod: {}",
        text(&out)
    );
    wait_until(
        "a new agent pod to be Ready",
        Duration::from_secs(120),
        || async {
            let (name, state) = agent_pod(&env);
            if !name.is_empty() && name != old && state == format!("{name} True") {
                Ok(())
            } else {
                Err(state)
            }
        },
    )
    .await;

    // The new agent adopts what the old one made: the same ports Ready, the same links, no
    // more and no fewer, and its report counts them once.
    let after = wait_ports(
        &env,
        "every port still Ready",
        Duration::from_secs(60),
        Duration::from_millis(250),
        |ports| ports.len() == PORTS && count_phase(ports, PortPhase::Ready) == PORTS,
    )
    .await;
    assert_eq!(after.len(), PORTS);
    let mut links_after = owned_links(&cluster);
    let mut links_before = before.clone();
    links_after.sort();
    links_before.sort();
    assert_eq!(
        links_after, links_before,
        "the links changed across the restart"
    );
    let links = cluster.node.sandbox.links().expect("the node's links");
    assert_eq!(
        kernel_connections(&links).get("eth1"),
        Some(&(PORTS as u32))
    );
    wait_until(
        "the new agent's report",
        Duration::from_secs(30),
        || async {
            let status = switchyard_tests::fixtures::network_node(&env, &node).await;
            let used = status
                .networks
                .iter()
                .find(|n| n.name == net)
                .map(|n| n.used);
            if status.ports == PORTS as u32 && used == Some(PORTS as u64) {
                Ok(())
            } else {
                Err(format!("ports {}, used {used:?}", status.ports))
            }
        },
    )
    .await;

    // Everything still goes away through the new agent.
    ports
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deleting the ports");
    wait_until(
        "the ports and links to go",
        Duration::from_secs(60),
        || async {
            let left = ports
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let links = owned_links(&cluster);
            if left.items.is_empty() && links.is_empty() {
                Ok(())
            } else {
                Err(format!("{} ports, links {links:?}", left.items.len()))
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The locally built image and the Dockerfile agree on the file layout.

#[test]
fn the_local_image_has_the_dockerfile_layout() {
    use switchyard_tests::images::{
        dockerfile_layout, read_docker_archive, switchyard_image, write_docker_archive,
    };
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("reading the Dockerfile");
    let layout = dockerfile_layout(&dockerfile).unwrap_or_else(|e| panic!("Dockerfile: {e}"));

    let binary = switchyard_tests::bins::workspace_binary("switchyard-controller");
    let spec = switchyard_image("localhost/layout-test:1", binary.parent().unwrap())
        .expect("describing the image");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = dir.path().join("image.tar");
    write_docker_archive(&spec, &archive, &dir.path().join("work")).expect("writing the image");
    let image = read_docker_archive(&archive).expect("reading the image back");

    let mut binaries: Vec<&String> = image
        .layer_paths
        .iter()
        .filter(|p| p.starts_with("/usr/local/bin/"))
        .collect();
    binaries.sort();
    let mut expected: Vec<&String> = layout.binaries.iter().collect();
    expected.sort();
    assert_eq!(binaries, expected, "the binaries and where they are");
    assert_eq!(image.config["config"]["User"], layout.user.as_str());
    assert_eq!(
        image.config["config"]["Entrypoint"],
        serde_json::json!(layout.entrypoint)
    );
    // The binaries' loader is in the image, so they can start.
    let loader = image
        .layer_paths
        .iter()
        .find(|p| p.contains("ld-linux"))
        .cloned();
    assert!(
        loader.is_some(),
        "no dynamic loader in {:?}",
        image.layer_paths
    );
}
