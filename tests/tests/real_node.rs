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
