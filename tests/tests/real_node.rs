//! End-to-end tests on a real node: kubelet v1.20 and containerd running pods from images
//! built from this repository's binaries, beside a private control plane with the scheduler,
//! the controller-manager, `Node,RBAC` authorization and `NodeRestriction`.

use std::time::{Duration, Instant};

use switchyard_tests::cluster::{TestEnv, repo_root};
use switchyard_tests::real_node::config::{CNI_BIN_DIR, PAUSE_IMAGE, POD_SUBNET};
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

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use switchyard_crds::{NODE_LABEL_PREFIX, NetworkNode, NetworkPort, PortPhase, RESOURCE_PREFIX};
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
    install_chart_with(env, node, &[]);
}

/// [`install_chart`] with more `--set` values.
fn install_chart_with(env: &TestEnv, node: &RealCluster, values: &[String]) {
    let chart = repo_root().join("charts/switchyard");
    let mut args: Vec<String> = vec![
        "install".into(),
        RELEASE.into(),
        chart.display().to_string(),
        "--set".into(),
        format!("image.repository={SWITCHYARD_IMAGE_REPOSITORY}"),
        "--set".into(),
        format!("image.tag={SWITCHYARD_IMAGE_TAG}"),
        "--set".into(),
        "image.pullPolicy=Never".into(),
        "--set".into(),
        "logFormat=text".into(),
        "--wait".into(),
        "--timeout=180s".into(),
    ];
    for value in values {
        args.extend(["--set".to_string(), value.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(env, &args);
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

/// Runs the `switchyard-cni` the chart installed as a runtime runs a plugin (`CNI_COMMAND`,
/// the configuration on stdin), inside the node's mount namespace.
fn run_shim(cluster: &RealCluster, command: &str, config: &str) -> std::process::Output {
    let mut shim = cluster
        .node
        .command(&format!("{CNI_BIN_DIR}/switchyard-cni"))
        .expect("the node is running");
    shim.env("CNI_COMMAND", command);
    // VERSION reads no configuration: a refused write is no failure.
    switchyard_tests::bins::output_with_stdin(shim, config.as_bytes().to_vec()).0
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
    let host_shim = std::path::Path::new(CNI_BIN_DIR).join("switchyard-cni");
    let host_had_shim = host_shim.exists();
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

    // The agent pod's init container installed the CNI shim where the node's containerd looks
    // for plugins (the chart's default cni.binDir), on the node's own /opt: not the host's.
    // It runs, and the agent answers it on the chart's socket.
    let version = run_shim(&cluster, "VERSION", "");
    assert!(
        version.status.success()
            && String::from_utf8_lossy(&version.stdout).contains("\"supportedVersions\""),
        "VERSION of the installed shim: {}",
        text(&version)
    );
    let status_conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": net, "type": "switchyard-cni",
    });
    let status = run_shim(&cluster, "STATUS", &status_conf.to_string());
    assert!(
        status.status.success(),
        "STATUS through the agent's socket: {}",
        text(&status)
    );
    assert_eq!(
        host_shim.exists(),
        host_had_shim,
        "the host's own {CNI_BIN_DIR} changed"
    );

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

    // A port whose VM still runs when the release goes, and the network with it: the node
    // carries the network's extended resource, the controller's label, its NetworkNode and
    // the port's finalizer, all of which the uninstall must remove.
    ports
        .create(
            &PostParams::default(),
            &port(&env.namespace, "vm-b", &net, &node, &mac(2)),
        )
        .await
        .expect("creating a second port");
    wait_ports(
        &env,
        "the second port to become Ready",
        Duration::from_secs(60),
        Duration::from_millis(250),
        |ports| count_phase(ports, PortPhase::Ready) == 1,
    )
    .await;
    let vm_b_links = owned_links(&cluster);
    assert_eq!(vm_b_links.len(), 1, "vm-b's link: {vm_b_links:?}");
    wait_until(
        "the node's switchyard label and extended resource",
        Duration::from_secs(60),
        || async {
            let marks = switchyard_marks(&env, &node).await;
            if marks.len() == 3 {
                Ok(())
            } else {
                Err(format!("{marks:?}"))
            }
        },
    )
    .await;

    let out = helm(&env, &["uninstall", RELEASE, "--wait", "--timeout=180s"]);
    assert!(
        out.status.success(),
        "helm uninstall: {}\n{}\n{}",
        text(&out),
        text(&env.kubectl(
            &[
                "-n",
                &env.namespace,
                "logs",
                "-l",
                "app.kubernetes.io/component=cleanup"
            ],
            None
        )),
        cluster.node.logs()
    );
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
    // Also the cleanup hook's Job, ServiceAccount and RBAC.
    let instance = format!("app.kubernetes.io/instance={RELEASE}");
    let out = env.kubectl(
        &[
            "get",
            "clusterroles,clusterrolebindings,roles,rolebindings,validatingwebhookconfigurations,serviceaccounts,services,secrets,deployments,daemonsets,jobs",
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
    let network_nodes = Api::<NetworkNode>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing NetworkNodes");
    assert!(
        network_nodes.items.is_empty(),
        "NetworkNodes left after uninstall: {:?}",
        network_nodes
            .items
            .iter()
            .map(|n| n.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let marks = switchyard_marks(&env, &node).await;
    assert!(
        marks.is_empty(),
        "the node kept switchyard's labels or extended resources: {marks:?}"
    );
    let all_ports = Api::<NetworkPort>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing ports");
    let held: Vec<_> = all_ports
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f.starts_with("switchyard.dev/"))
        })
        .map(|p| p.metadata.name.clone())
        .collect();
    assert!(
        held.is_empty(),
        "ports kept a switchyard finalizer: {held:?}"
    );
    // The user's port stays, and with no agent left it is deleted at once instead of hanging
    // (and its namespace with it). Its VM's link stays on the node, the only one left: a later
    // install's agent adopts it, or removes it once its port is gone.
    ports
        .delete("vm-b", &DeleteParams::default())
        .await
        .expect("deleting the port after uninstall");
    wait_until(
        "the port to go with no agent",
        Duration::from_secs(30),
        || async {
            let left = ports
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if left.items.is_empty() {
                Ok(())
            } else {
                Err(format!("{} ports", left.items.len()))
            }
        },
    )
    .await;
    assert_eq!(
        owned_links(&cluster),
        vm_b_links,
        "only the kept port's link is left"
    );
}

/// The node's `net.switchyard.dev/*` labels and nonzero `switchyard.dev/*` capacity and
/// allocatable entries, as `label:`, `capacity:` and `allocatable:` followed by the name. A
/// zero counts as gone: once a device plugin stops, the kubelet itself shows its resource at 0
/// until its grace period (5 minutes) is over, then drops it.
async fn switchyard_marks(env: &TestEnv, node: &str) -> Vec<String> {
    let node = Api::<Node>::all(env.client.clone())
        .get(node)
        .await
        .expect("reading the node");
    let mut marks: Vec<String> = node
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(NODE_LABEL_PREFIX))
        .map(|(key, _)| format!("label:{key}"))
        .collect();
    let status = node.status.unwrap_or_default();
    for (what, resources) in [
        ("capacity", status.capacity),
        ("allocatable", status.allocatable),
    ] {
        marks.extend(
            resources
                .into_iter()
                .flatten()
                .filter(|(name, count)| name.starts_with(RESOURCE_PREFIX) && count.0 != "0")
                .map(|(name, _)| format!("{what}:{name}")),
        );
    }
    marks
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
    // The agent's own Node capacity patch (the device plugin's resources are the kubelet's;
    // see the tap device test below).
    install_chart_with(&env, &cluster, &["agent.devicePlugin.enabled=false".into()]);
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
// A VM pod on the real node: its macvtap through kubelet → containerd → switchyard-cni, its
// /dev/tapN from the agent's device plugin.

use switchyard_tests::tap_probe::{TAP_PROBE_IMAGE, TapReport, tap_probe_image};

/// The kubelet's device manager checkpoint: the devices each plugin registered and which pod
/// got which.
const KUBELET_CHECKPOINT: &str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";

fn probe_pod(env: &TestEnv, name: &str, resource: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: vm
    image: {TAP_PROBE_IMAGE}
    imagePullPolicy: Never
    resources:
      limits: {{\"{resource}\": 1}}
",
        ns = env.namespace
    )
}

/// The probe's report, from the pod's log.
async fn probe_report(env: &TestEnv, pod: &str) -> TapReport {
    let mut report = None;
    wait_until(
        &format!("the probe's report in {pod}'s log"),
        Duration::from_secs(30),
        || {
            let out = env.kubectl(&["-n", &env.namespace, "logs", pod], None);
            let parsed = serde_json::from_slice::<TapReport>(&out.stdout);
            let result = match parsed {
                Ok(parsed) => {
                    report = Some(parsed);
                    Ok(())
                }
                Err(why) => Err(format!("{why}: {}", text(&out))),
            };
            async move { result }
        },
    )
    .await;
    report.expect("waited for")
}

/// Waits until the VM pod runs on the node; on timeout shows why (its events, the agent's CNI
/// lines, containerd's lines about the sandbox).
async fn wait_vm_running(env: &TestEnv, cluster: &RealCluster, pod: &str) {
    let start = Instant::now();
    loop {
        let (on, _, ready) = placement(env, pod);
        if on == cluster.node.name() && ready == "True" {
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let describe = env.kubectl(&["-n", &env.namespace, "describe", "pod", pod], None);
            let agent = env.kubectl(
                &["-n", &env.namespace, "logs", &format!("ds/{AGENT_SA}")],
                None,
            );
            let agent: Vec<String> = text(&agent)
                .lines()
                .filter(|l| l.contains("CNI") || l.contains("device"))
                .map(String::from)
                .collect();
            let containerd = std::fs::read_to_string(cluster.node.dir().join("containerd.log"))
                .unwrap_or_default();
            let containerd: Vec<&str> = containerd
                .lines()
                .filter(|l| l.contains("level=error") || l.contains("switchyard-cni"))
                .collect();
            panic!(
                "pod {pod} did not run on {}:\n{}\nagent:\n{}\ncontainerd:\n{}",
                cluster.node.name(),
                text(&describe),
                agent.join("\n"),
                containerd[containerd.len().saturating_sub(20)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pod's NetworkPort once Ready, with the ifindex and tap device the ADD gave it.
async fn pod_port(env: &TestEnv, pod: &str) -> NetworkPort {
    let ports = wait_ports(
        env,
        &format!("{pod}'s port to be Ready"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        |ports| {
            ports.iter().any(|p| {
                p.spec.owner.as_ref().is_some_and(|o| o.name == pod)
                    && p.status
                        .as_ref()
                        .and_then(|s| s.actual.as_ref())
                        .is_some_and(|a| a.tap_device.is_some())
            })
        },
    )
    .await;
    ports
        .into_iter()
        .find(|p| p.spec.owner.as_ref().is_some_and(|o| o.name == pod))
        .expect("waited for")
}

/// What the container saw matches the pod's port: one tap device, `/dev/tap<ifindex>` of the
/// port's link `eth1`, opened read-write, with the port's MAC and the major:minor the pod
/// namespace's sysfs gives (the agent's `tapDevice` too).
fn assert_probe_matches(report: &TapReport, port: &NetworkPort) -> u32 {
    let actual = port
        .status
        .as_ref()
        .and_then(|s| s.actual.clone())
        .expect("a Ready port has its actual state");
    let ifindex = actual.ifindex.expect("the port's ifindex");
    assert_eq!(report.taps.len(), 1, "{report:?}");
    let tap = &report.taps[0];
    assert_eq!(tap.path, format!("/dev/tap{ifindex}"), "{report:?}");
    assert_eq!(tap.open, "ok", "{report:?}");
    assert_eq!(tap.link.as_deref(), Some("eth1"), "{report:?}");
    assert_eq!(
        tap.mac.as_deref(),
        Some(port.spec.mac.as_str()),
        "{report:?}"
    );
    assert!(tap.device.is_some(), "{report:?}");
    assert_eq!(tap.device, tap.sysfs_device, "{report:?}");
    assert_eq!(tap.device, actual.tap_device, "{report:?} vs {actual:?}");
    ifindex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_pod_gets_its_macvtap_from_switchyard_cni_and_its_tap_device_from_the_device_plugin() {
    let (cluster, _permit) = start_cluster(RealNodeOptions::default()).await;
    let env = TestEnv::on(&cluster.control_plane.kubeconfig, "real-node-tap").await;
    let node = cluster.node.name().to_string();
    select_node(&env, &node);
    // containerd keeps pod namespaces under its state directory on this node.
    let netns_dir = cluster.node.netns_dir();
    install_chart_with(
        &env,
        &cluster,
        // With the chart's webhook: it must admit the agent's own pod-interface ports.
        &[format!("cni.netnsDir={}", netns_dir.display())],
    );
    wait_default_service_account(&env, Duration::from_secs(60)).await;
    let probe = tap_probe_image(&switchyard_tests::bins::workspace_binary("tap-probe"))
        .expect("describing the probe image");
    cluster
        .node
        .import_image(&probe)
        .expect("importing the probe image");

    // A direct network with one slot on the node: one macvtap on eth1.
    let net = create_network(
        &env,
        "tap",
        "  forward: {mode: bridge, interfaces: [{dev: eth1}]}\n  maxConnectionsPerDevice: 1\n",
    )
    .await;
    let resource = format!("switchyard.dev/{net}");
    wait_network_served(&env, &node, &net).await;
    // The kubelet advertises it from the device plugin's ListAndWatch (the agent patches no
    // capacity while it serves a device plugin): one registered device.
    let start = Instant::now();
    while node_capacity(&env, &node, &resource) != "1" {
        if start.elapsed() > Duration::from_secs(60) {
            let out = env.kubectl(
                &["-n", &env.namespace, "logs", &format!("ds/{AGENT_SA}")],
                None,
            );
            let agent: Vec<String> = text(&out)
                .lines()
                .filter(|l| l.contains("device") || l.contains("kubelet"))
                .map(String::from)
                .collect();
            let kubelet =
                std::fs::read_to_string(cluster.node.dir().join("kubelet.log")).unwrap_or_default();
            let kubelet: Vec<&str> = kubelet
                .lines()
                .filter(|l| l.contains("evice") || l.contains("switchyard.dev"))
                .collect();
            panic!(
                "the kubelet did not advertise the device plugin's slot: capacity {:?}, \
                 allocatable {:?}\nagent: {}\nkubelet: {}",
                jsonpath(
                    &env,
                    &format!("node/{node}"),
                    &format!("{{.status.capacity.{}}}", resource.replace('.', "\\."))
                ),
                node_capacity(&env, &node, &resource),
                agent.join("\n"),
                kubelet.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let checkpoint = cluster
        .node
        .node_file(KUBELET_CHECKPOINT)
        .expect("the kubelet's checkpoint");
    assert!(
        checkpoint.contains(&format!("\"{resource}\"")),
        "the kubelet registered no {resource}: {checkpoint}"
    );

    // Every pod's eth1 now comes from switchyard-cni, beside eth0 from the node's bridge
    // (containerd needs an address on eth0, which an L2-only plugin does not give). The
    // chart's own pods are hostNetwork: no CNI call reaches them.
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "switchyard-vm",
        "plugins": [{"type": "switchyard-cni", "network": net}],
    });
    // The chart installs switchyard-cni from its image into the CNI bin directory; an image
    // without it gets this build's.
    cluster
        .node
        .ensure_cni_plugin(
            "switchyard-cni",
            &switchyard_tests::bins::workspace_binary("switchyard-cni"),
        )
        .expect("installing switchyard-cni on the node");
    cluster
        .node
        .add_cni_config("20-switchyard-vm.conflist", &conflist.to_string())
        .expect("writing the node's CNI configuration");

    // The VM pod: Allocate gave it the slot, the ADD created eth1 with the slot's ifindex,
    // and its container sees /dev/tapN.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&probe_pod(&env, "vm-1", &resource)),
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_vm_running(&env, &cluster, "vm-1").await;
    let port = pod_port(&env, "vm-1").await;
    let report = probe_report(&env, "vm-1").await;
    let slot = assert_probe_matches(&report, &port);
    let checkpoint = cluster
        .node
        .node_file(KUBELET_CHECKPOINT)
        .expect("the kubelet's checkpoint");
    assert!(
        checkpoint.contains(&format!("\"{slot}\"")),
        "the kubelet did not allocate device {slot} (the pod's ifindex): {checkpoint}"
    );

    // The one slot is taken: a second VM pod waits.
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&probe_pod(&env, "vm-2", &resource)),
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_unschedulable(&env, "vm-2", &resource).await;

    // Deleting the pod removes its link and port and frees the slot: the second pod runs on
    // it, with the same /dev/tapN now naming its own link.
    let out = env.kubectl(
        &["-n", &env.namespace, "delete", "pod", "vm-1", "--wait=true"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_vm_running(&env, &cluster, "vm-2").await;
    let second = pod_port(&env, "vm-2").await;
    let report = probe_report(&env, "vm-2").await;
    assert_eq!(assert_probe_matches(&report, &second), slot);
    assert_ne!(second.spec.mac, port.spec.mac, "a port of its own");
    let ports = ports_api(&env);
    let left = ports
        .list(&ListParams::default())
        .await
        .expect("listing ports");
    assert_eq!(left.items.len(), 1, "vm-1's port is gone: {:?}", left.items);

    let out = env.kubectl(
        &["-n", &env.namespace, "delete", "pod", "vm-2", "--wait=true"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the pods' ports to go", Duration::from_secs(60), || async {
        let left = ports
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if left.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} ports", left.items.len()))
        }
    })
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

    let spec = switchyard_image(
        "localhost/layout-test:1",
        &switchyard_tests::bins::image_binary_dir(),
    )
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
