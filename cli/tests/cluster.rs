//! The commands that read a Network from the cluster (`export NAME`, `explain-port --network
//! NAME`), run as the built `kubectl-switchyard` against the real local apiserver.

mod common;

use std::path::Path;

use common::{Output, corpus, run_with_kubeconfig};

use switchyard_tests::cluster::TestEnv;

/// Runs the plugin with the test cluster's kubeconfig.
fn run(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> Output {
    run_with_kubeconfig(env.kubeconfig.as_os_str(), args, stdin)
}

/// Applies a Network given as YAML, labelled so that it is removed with the test.
fn apply_network(env: &TestEnv, yaml: &str) {
    let mut object: serde_yaml::Value = serde_yaml::from_str(yaml).expect("a Network as YAML");
    let (key, value) = env.test_label();
    object["metadata"]["labels"] = serde_yaml::to_value(
        [(key, value)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let out = env.kubectl(
        &["apply", "-f", "-"],
        Some(&serde_yaml::to_string(&object).unwrap()),
    );
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `import FILE | kubectl apply`, then `export NAME`, gives libvirt's own output byte for byte
/// for every corpus network libvirt's parser accepts.
#[tokio::test]
async fn export_of_a_network_in_the_cluster_gives_libvirt_output() {
    let env = TestEnv::new("cli-export").await;
    let mut inputs: Vec<_> = std::fs::read_dir(corpus("networkxml2xmlin"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            Path::new(&corpus("networkxml2xmlout"))
                .join(p.file_name().unwrap())
                .exists()
        })
        .collect();
    inputs.sort();
    let mut exported = 0;
    for (i, input) in inputs.iter().enumerate() {
        let file = input.file_name().unwrap().to_string_lossy().into_owned();
        let name = env.unique(&format!("export{i}"));
        // Three of them `virsh net-define` refuses (the corpus test lists which); the cluster
        // stores them all, as no webhook runs here.
        let imported = run(
            &env,
            &[
                "import",
                "--skip-validation",
                "--name",
                &name,
                input.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(imported.code, 0, "{file}: {}", imported.stderr);
        apply_network(&env, &imported.stdout);

        let out = run(&env, &["export", &name], None);
        assert_eq!(out.code, 0, "{file}: export {name}: {}", out.stderr);
        let want =
            std::fs::read_to_string(Path::new(&corpus("networkxml2xmlout")).join(&file)).unwrap();
        assert!(
            out.stdout == want,
            "{file}: export {name} differs from libvirt's output\n--- got\n{}--- want\n{want}",
            out.stdout
        );
        exported += 1;
    }
    assert_eq!(exported, 43);

    let missing = env.unique("no-such-network");
    let out = run(&env, &["export", &missing], None);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "network {missing} not found in the cluster at https://127.0.0.1:"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

/// `explain-port --network NAME` merges the settings of the Network stored in the cluster.
#[tokio::test]
async fn explain_port_reads_the_network_from_the_cluster() {
    let env = TestEnv::new("cli-explain").await;
    let name = env.unique("sriov");
    apply_network(
        &env,
        &format!(
            "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {{name: {name}}}
spec:
  forward: {{mode: passthrough, interfaces: [{{dev: ens1f0}}, {{dev: ens1f1}}]}}
  vlan: {{tags: [{{id: 10}}]}}
  trustGuestRxFilters: true
  portgroups:
  - {{name: tenant, vlan: {{tags: [{{id: 20}}]}}, trustGuestRxFilters: false}}
"
        ),
    );
    let out = run(
        &env,
        &["explain-port", "--network", &name, "--portgroup", "tenant"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        format!("network              network/{name} (forward mode passthrough)"),
        "connection           macvtap, mode passthrough, over ens1f0, ens1f1 (exclusive: a pool device no other port uses)".to_string(),
        "portgroup            tenant (named by the port)".to_string(),
        "vlan                 tag 20 (from portgroup 'tenant')".to_string(),
        "trustGuestRxFilters  no (from portgroup 'tenant')".to_string(),
    ] {
        assert!(
            out.stdout.lines().any(|line| line == expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }

    let plain = run(&env, &["explain-port", "--network", &name], None);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(
        plain
            .stdout
            .lines()
            .any(|line| line == "vlan                 tag 10 (from the network)"),
        "{}",
        plain.stdout
    );

    let missing = env.unique("no-such-network");
    let out = run(&env, &["explain-port", "--network", &missing], None);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("network {missing} not found in the cluster")),
        "{}",
        out.stderr
    );
}
