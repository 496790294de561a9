//! The Helm chart: lint, render, rendered manifests current, install, least-privilege RBAC.

use std::path::PathBuf;
use std::process::{Command, Output};

use switchyard_tests::cluster::{TestEnv, repo_root};

fn helm_binary() -> PathBuf {
    let bin = switchyard_tests::control_plane::kube_apiserver_binary().with_file_name("helm");
    assert!(
        bin.is_file(),
        "helm not found at {}; run scripts/install-deps.sh",
        bin.display()
    );
    bin
}

fn helm(args: &[&str]) -> Output {
    Command::new(helm_binary())
        .args(args)
        .output()
        .expect("running helm")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn chart() -> String {
    repo_root().join("charts/switchyard").display().to_string()
}

#[test]
fn chart_lints_in_both_certificate_modes() {
    let chart = chart();
    for extra in [&[][..], &["--set", "webhook.certManager.enabled=true"][..]] {
        let mut args = vec!["lint", "--strict", &chart];
        args.extend_from_slice(extra);
        let out = helm(&args);
        assert!(out.status.success(), "helm lint {extra:?}: {}", text(&out));
    }
}

#[test]
fn chart_renders_every_component() {
    let out = helm(&[
        "template",
        "sy",
        &chart(),
        "--namespace",
        "switchyard-system",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "kind: Deployment",
        "kind: DaemonSet",
        "kind: ServiceAccount",
        "kind: ClusterRole",
        "kind: ClusterRoleBinding",
        "kind: ValidatingWebhookConfiguration",
        "kind: Secret",
        "kind: Service",
    ] {
        assert!(rendered.contains(kind), "rendered chart lacks {kind}");
    }
    assert!(rendered.contains("hostNetwork: true"));
    // SYS_ADMIN: the CNI server enters pod network namespaces and mounts their sysfs.
    assert!(rendered.contains("add: [NET_ADMIN, SYS_ADMIN]"));
    // The CNI shim's installer and the uninstall cleanup, on by default.
    assert!(rendered.contains("- name: install-cni"));
    assert!(rendered.contains("hostPath: {path: \"/opt/cni/bin\", type: DirectoryOrCreate}"));
    assert!(rendered.contains("helm.sh/hook: post-delete"));
    assert!(rendered.contains("kind: Job"));

    let out = helm(&[
        "template",
        "sy",
        &chart(),
        "--set",
        "cni.install=false",
        "--set",
        "cleanup.enabled=false",
        "--set",
        "cni.socket=/run/elsewhere/cni.sock",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(!rendered.contains("install-cni") && !rendered.contains("/opt/cni/bin"));
    assert!(!rendered.contains("helm.sh/hook"));
    assert!(rendered.contains("{name: SWITCHYARD_CNI_SOCKET, value: \"/run/elsewhere/cni.sock\"}"));
    assert!(rendered.contains("hostPath: {path: \"/run/elsewhere\", type: DirectoryOrCreate}"));
}

#[test]
fn rendered_manifests_in_deploy_are_current() {
    let out = Command::new(repo_root().join("scripts/render-manifests.sh"))
        .env("HELM", helm_binary())
        .output()
        .expect("running scripts/render-manifests.sh");
    assert!(out.status.success(), "{}", text(&out));
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/switchyard.yaml")).unwrap_or_default();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "deploy/switchyard.yaml is stale: run scripts/render-manifests.sh > deploy/switchyard.yaml"
    );
}

/// Uninstalls the release even when the test fails (its ClusterRoles outlive the namespace).
/// Without its post-delete hook: no kubelet runs the cleanup Job on this control plane
/// (tests/tests/real_node.rs runs it on a real node).
struct Release<'a> {
    env: &'a TestEnv,
    name: String,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let kubeconfig = self.env.kubeconfig.display().to_string();
        let _ = helm(&[
            "uninstall",
            "--no-hooks",
            &self.name,
            "-n",
            &self.env.namespace,
            "--kubeconfig",
            &kubeconfig,
        ]);
    }
}

/// Whether service account `sa` of the test's namespace may `verb` `resource`, as
/// `kubectl auth can-i` answers. Only a plain `yes` or `no` with an empty stderr is an answer:
/// an error or an unknown resource's warning fails the test, so a misspelt row cannot pass as
/// "no".
fn can_i(env: &TestEnv, sa: &str, verb: &str, resource: &str) -> bool {
    let user = format!("--as=system:serviceaccount:{}:{sa}", env.namespace);
    // `kubectl auth can-i VERB res/x` would ask about the object named x.
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let sub = format!("--subresource={subresource}");
    let mut args = vec!["auth", "can-i", verb, resource, &user, "--all-namespaces"];
    if !subresource.is_empty() {
        args.push(&sub);
    }
    let out = env.kubectl(&args, None);
    let question = format!("can {sa} {verb} {resource} {subresource}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "{question}: kubectl said on stderr: {stderr}"
    );
    match (
        String::from_utf8_lossy(&out.stdout).as_ref(),
        out.status.code(),
    ) {
        ("yes\n", Some(0)) => true,
        ("no\n", Some(1)) => false,
        (stdout, code) => panic!("{question}: not a yes or no answer: {stdout:?} (exit {code:?})"),
    }
}

#[tokio::test]
async fn chart_installs_and_grants_least_privilege() {
    let env = TestEnv::new("helm-install").await;
    let release = Release {
        name: env.unique("sy"),
        env: &env,
    };
    let kubeconfig = env.kubeconfig.display().to_string();
    // The webhook is registered but matches nothing here: no controller pod runs on the local
    // control plane, and other tests share it.
    let out = helm(&[
        "install",
        &release.name,
        &chart(),
        "--namespace",
        &env.namespace,
        "--kubeconfig",
        &kubeconfig,
        "--set-json",
        r#"webhook.objectSelector={"matchLabels":{"switchyard.dev/helm-test":"never"}}"#,
    ]);
    assert!(out.status.success(), "helm install: {}", text(&out));

    // Every object of the release was accepted and exists.
    let manifest = helm(&[
        "get",
        "manifest",
        &release.name,
        "-n",
        &env.namespace,
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(manifest.status.success(), "{}", text(&manifest));
    let objects: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_slice(&manifest.stdout)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("helm's manifest is YAML"))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect();
    assert!(
        objects.len() >= 13,
        "only {} objects installed",
        objects.len()
    );
    for obj in &objects {
        let kind = obj["kind"].as_str().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get", kind, name];
        if obj["metadata"]["namespace"].as_str().is_some() {
            args.extend(["-n", &env.namespace]);
        }
        let out = env.kubectl(&args, None);
        assert!(
            out.status.success(),
            "{kind}/{name} missing after install: {}",
            text(&out)
        );
    }

    let fullname = format!("{}-switchyard", release.name);
    let agent = format!("{fullname}-agent");
    let controller = format!("{fullname}-controller");
    for (verb, resource) in [
        ("list", "networks.switchyard.dev"),
        ("watch", "networkports.switchyard.dev"),
        ("patch", "networkports.switchyard.dev/status"),
        ("patch", "networkports.switchyard.dev"),
        ("create", "networknodes.switchyard.dev"),
        ("patch", "networknodes.switchyard.dev/status"),
        ("patch", "nodes/status"),
    ] {
        assert!(
            can_i(&env, &agent, verb, resource),
            "the agent must be able to {verb} {resource}"
        );
    }
    for (verb, resource) in [
        // Creating and deleting networkports is the CNI server's (pod interfaces' ports).
        ("update", "networks.switchyard.dev"),
        ("patch", "networks.switchyard.dev/status"),
        ("patch", "migrationchecks.switchyard.dev/status"),
        ("delete", "networknodes.switchyard.dev"),
        ("delete", "nodes"),
        ("patch", "nodes"),
        ("create", "events"),
        ("get", "secrets"),
        ("create", "pods"),
    ] {
        assert!(
            !can_i(&env, &agent, verb, resource),
            "the agent must not be able to {verb} {resource}"
        );
    }
    for (verb, resource) in [
        ("watch", "networks.switchyard.dev"),
        ("patch", "networks.switchyard.dev/status"),
        ("patch", "migrationchecks.switchyard.dev/status"),
        ("list", "networknodes.switchyard.dev"),
        ("patch", "networkports.switchyard.dev"),
        ("patch", "nodes"),
        ("create", "events"),
    ] {
        assert!(
            can_i(&env, &controller, verb, resource),
            "the controller must be able to {verb} {resource}"
        );
    }
    for (verb, resource) in [
        ("patch", "networkports.switchyard.dev/status"),
        ("patch", "networknodes.switchyard.dev/status"),
        ("delete", "networks.switchyard.dev"),
        ("update", "networks.switchyard.dev"),
        ("create", "networkports.switchyard.dev"),
        ("patch", "nodes/status"),
        ("get", "secrets"),
        ("create", "pods"),
    ] {
        assert!(
            !can_i(&env, &controller, verb, resource),
            "the controller must not be able to {verb} {resource}"
        );
    }
}
