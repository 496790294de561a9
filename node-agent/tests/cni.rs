//! The real `switchyard-cni` binary, run as containerd 1.6 (libcni 1.1) runs a plugin, against
//! the real node agent, the local apiserver and pod network namespaces the test creates: what
//! ADD makes in the pod's namespace and in the API, and that DEL, CHECK, STATUS, GC and
//! VERSION behave as the spec says; then a SIGKILL of the agent during 200 ADDs and DELs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use switchyard_crds::{NetworkPort, PortPhase};
use switchyard_node_agent::cni::naming::derived_mac;
use switchyard_node_agent::cni::{ANNOTATION_CONTAINER_ID, LABEL_POD_UID};
use switchyard_tests::bins::workspace_binary;
use switchyard_tests::cluster::TestEnv;
use switchyard_tests::fixtures::{create_network, network_node, ports_api};
use switchyard_tests::netns::{LinkView, Sandbox};
use switchyard_tests::nodes::SimulatedNode;

const AGENT: &str = env!("CARGO_BIN_EXE_switchyard-node-agent");

/// A node with stand-in NICs, a macvtap network on them, and its agent serving CNI on a socket
/// in a directory of the test's own.
struct CniNode {
    node: SimulatedNode,
    network: String,
    socket: PathBuf,
    state_dir: PathBuf,
    _dir: tempfile::TempDir,
}

async fn cni_node(env: &TestEnv, label: &str, forward: &str) -> CniNode {
    let network = create_network(env, label, forward).await;
    cni_node_for(env, label, network).await
}

/// A node like [`cni_node`]'s serving the existing `network` (which selects every node of the
/// test).
async fn cni_node_for(env: &TestEnv, label: &str, network: String) -> CniNode {
    let mut node = SimulatedNode::new(env, label, &[]).await;
    node.sandbox.add_nics("eth", 2).expect("adding the NICs");
    node.sandbox.add_bridge("br0").expect("adding the bridge");
    let dir = tempfile::tempdir().expect("a directory for the socket and the records");
    let socket = dir.path().join("run/cni.sock");
    let state_dir = dir.path().join("run/cni");
    node.set_agent_env("SWITCHYARD_CNI_SOCKET", &socket.display().to_string());
    node.set_agent_env("SWITCHYARD_CNI_STATE_DIR", &state_dir.display().to_string());
    node.set_agent_env("SWITCHYARD_CNI_SWEEP_INTERVAL", "1");
    node.start_agent(Path::new(AGENT));
    // Pods need their namespace's default ServiceAccount (no controller-manager makes it).
    let mut account = ServiceAccount::default();
    account.metadata.name = Some("default".into());
    let _ = Api::<ServiceAccount>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &account)
        .await;
    CniNode {
        node,
        network,
        socket,
        state_dir,
        _dir: dir,
    }
}

/// A Pod object bound to `node` (no kubelet runs it); `vmi` makes it a VMI's launcher pod.
async fn create_pod(env: &TestEnv, name: &str, node: &str, vmi: Option<(&str, &str)>) -> Pod {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {"nodeName": node, "automountServiceAccountToken": false, "containers": [{"name": "compute", "image": "pause"}]},
    }))
    .unwrap();
    if let Some((vmi_name, vmi_uid)) = vmi {
        pod.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "name": vmi_name, "uid": vmi_uid, "controller": true,
            }))
            .unwrap(),
        ]);
    }
    Api::<Pod>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod")
}

/// What one plugin run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The error code of a failed run.
    fn code(&self) -> u64 {
        assert!(!self.success, "expected a failure: {self:?}");
        self.json()["code"].as_u64().expect("an error code")
    }
}

/// Runs the plugin binary as libcni does: the runtime's environment plus the CNI variables,
/// the configuration on stdin.
fn run_plugin(vars: &[(&str, String)], stdin: &str) -> Run {
    let mut child = Command::new(workspace_binary("switchyard-cni"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting switchyard-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One sandbox as containerd's CRI plugin drives it through go-cni/libcni: the ADD result is
/// cached and given back as `prevResult` on CHECK and DEL.
struct Sandbox1 {
    container_id: String,
    netns: PathBuf,
    ifname: String,
    pod_namespace: String,
    pod_name: String,
    pod_uid: String,
    conf: Value,
    cached: Option<Value>,
}

impl Sandbox1 {
    fn new(netns: PathBuf, pod: &Pod, ifname: &str, conf: Value) -> Self {
        Self {
            container_id: container_id(),
            netns,
            ifname: ifname.into(),
            pod_namespace: pod.namespace().unwrap(),
            pod_name: pod.name_any(),
            pod_uid: pod.uid().unwrap(),
            conf,
            cached: None,
        }
    }

    fn vars(&self, command: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.display().to_string()),
            ("CNI_IFNAME", self.ifname.clone()),
            (
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};\
                     K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    self.pod_namespace, self.pod_name, self.container_id, self.pod_uid
                ),
            ),
        ]
    }

    fn stdin(&self, with_prev: bool) -> String {
        let mut conf = self.conf.clone();
        if with_prev && let Some(prev) = &self.cached {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }

    fn add(&mut self) -> Run {
        let run = run_plugin(&self.vars("ADD"), &self.stdin(false));
        if run.success {
            self.cached = Some(run.json());
        }
        run
    }

    fn check(&self) -> Run {
        run_plugin(&self.vars("CHECK"), &self.stdin(true))
    }

    fn del(&mut self) -> Run {
        let run = run_plugin(&self.vars("DEL"), &self.stdin(true));
        if run.success {
            self.cached = None;
        }
        run
    }
}

/// A fresh 64-hex-digit container ID, as containerd makes them.
fn container_id() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:016x}{:048x}",
        rand_u64(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn rand_u64() -> u64 {
    use std::sync::atomic::AtomicU64;
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

fn conf(node: &CniNode, version: &str, extra: Value) -> Value {
    let mut conf = json!({
        "cniVersion": version,
        "name": node.network,
        "type": "switchyard-cni",
        "socket": node.socket.display().to_string(),
        "agentWaitSeconds": 60,
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut conf, extra) {
        map.extend(more);
    }
    conf
}

async fn pod_ports(env: &TestEnv, pod_uid: &str) -> Vec<NetworkPort> {
    ports_api(env)
        .list(&ListParams::default().labels(&format!("{LABEL_POD_UID}={pod_uid}")))
        .await
        .unwrap()
        .items
}

fn link_json(netns: &Sandbox, name: &str) -> Option<Value> {
    let out = netns.ip(&["-d", "-j", "link", "show", name]).ok()?;
    serde_json::from_str::<Vec<Value>>(&out)
        .ok()?
        .into_iter()
        .next()
}

/// The tap device's `major:minor` as sysfs inside the namespace shows it (`ip netns exec`
/// mounts the namespace's own sysfs).
fn sysfs_tap(netns: &Sandbox, ifname: &str, ifindex: u64) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns.name(), "cat"])
        .arg(format!("/sys/class/net/{ifname}/macvtap/tap{ifindex}/dev"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `/dev/tap<ifindex>`'s `major:minor` on the host.
fn dev_tap(ifindex: u64) -> String {
    let rdev = std::fs::metadata(format!("/dev/tap{ifindex}"))
        .expect("/dev/tap<ifindex> exists")
        .rdev();
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("{major}:{minor}")
}

async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match done().await {
            Ok(()) => return,
            Err(why) if start.elapsed() > Duration::from_secs(45) => {
                panic!("timed out waiting for {what}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn plugin_calls_as_containerd_makes_them() {
    let env = TestEnv::new("cni-calls").await;
    let mut node = cni_node(
        &env,
        "cni",
        "  forward: {mode: bridge, interfaces: [{dev: eth0}, {dev: eth1}]}\n",
    )
    .await;
    let vmi_uid = "3b9e6a2c-5f1d-4d8e-9c7a-2e4f6a8b0c1d";
    let pod = create_pod(
        &env,
        "virt-launcher-vm1",
        &node.node.name,
        Some(("vm1", vmi_uid)),
    )
    .await;
    let pod_netns = Sandbox::new("pod").unwrap();

    // VERSION needs no agent and no configuration.
    let version = run_plugin(&[("CNI_COMMAND", "VERSION".into())], "");
    assert!(version.success, "{version:?}");
    assert_eq!(
        version.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );

    // ADD as containerd 1.6 runs it (spec 1.0.0, no MAC asked): the MAC is the VMI's derived one.
    let mut first = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net1",
        conf(&node, "1.0.0", json!({})),
    );
    let added = first.add();
    assert!(added.success, "{added:?}\n{}", node.node.logs());
    let mac = derived_mac(vmi_uid, "net1");
    assert_eq!(
        added.json(),
        json!({"cniVersion": "1.0.0", "interfaces": [
            {"name": "net1", "mac": mac, "sandbox": pod_netns.path().display().to_string()}
        ]}),
        "1.0.0 results carry no mtu"
    );
    let link = link_json(&pod_netns, "net1").expect("net1 exists in the pod's namespace");
    assert_eq!(link["address"], mac);
    assert_eq!(link["linkinfo"]["info_kind"], "macvtap");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(link["mtu"], 1500, "the lower device's MTU");
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    assert_eq!(
        pod_netns
            .ip(&["-6", "addr", "show", "dev", "net1"])
            .unwrap()
            .trim(),
        "",
        "no IPv6 address of its own: the link sends nothing before the guest"
    );
    let ifindex = link["ifindex"].as_u64().unwrap();
    let tap = sysfs_tap(&pod_netns, "net1", ifindex);
    assert_eq!(dev_tap(ifindex), tap, "/dev/tap{ifindex} is this macvtap's");
    assert!(
        node.node
            .sandbox
            .links()
            .unwrap()
            .iter()
            .all(|l: &LinkView| l.kind.as_deref() != Some("macvtap")),
        "nothing of the pod's link is in the node's namespace"
    );

    // The NetworkPort: owned by the Pod, spec.owner the VMI, status from the real link.
    let ports = pod_ports(&env, &first.pod_uid).await;
    assert_eq!(ports.len(), 1, "{ports:#?}");
    let port = &ports[0];
    let owner = &port.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Pod", first.pod_uid.as_str())
    );
    let spec_owner = port.spec.owner.as_ref().unwrap();
    assert_eq!(spec_owner.kind.as_deref(), Some("VirtualMachineInstance"));
    assert_eq!(spec_owner.uid.as_deref(), Some(vmi_uid));
    assert_eq!(port.spec.mac, mac);
    assert_eq!(port.spec.node, node.node.name);
    assert_eq!(
        port.annotations()[ANNOTATION_CONTAINER_ID],
        first.container_id
    );
    let port_name = port.name_any();
    wait_for("the port's Ready status", || {
        let api = ports_api(&env);
        let name = port_name.clone();
        let tap = tap.clone();
        async move {
            let port = api.get(&name).await.map_err(|e| e.to_string())?;
            let status = port.status.clone().unwrap_or_default();
            let actual = status.actual.clone().unwrap_or_default();
            if status.phase == Some(PortPhase::Ready)
                && actual.tap_device.as_deref() == Some(tap.as_str())
                && actual.link_name == "net1"
                && actual.ifindex == Some(ifindex as u32)
                && actual.device.as_deref() == Some("eth0")
            {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        }
    })
    .await;
    wait_for("the node's report to count the pod's port", || {
        let env = &env;
        let name = node.node.name.clone();
        async move {
            let ports = network_node(env, &name).await.ports;
            (ports == 1).then_some(()).ok_or(format!("{ports} ports"))
        }
    })
    .await;

    // CHECK with the cached result passes; with a prevResult giving another MAC it fails.
    let checked = first.check();
    assert!(checked.success, "{checked:?}");
    let mut lying = Sandbox1::new(pod_netns.path(), &pod, "net1", first.conf.clone());
    lying.container_id = first.container_id.clone();
    lying.cached = Some(json!({"cniVersion": "1.0.0", "interfaces": [
        {"name": "net1", "mac": "02:00:00:00:00:99", "sandbox": pod_netns.path().display().to_string()}
    ]}));
    assert_eq!(lying.check().code(), 102);
    // CHECK reports a link set down; it does not repair it.
    pod_netns.ip(&["link", "set", "net1", "down"]).unwrap();
    let down = first.check();
    assert_eq!(down.code(), 102);
    assert!(down.stdout.contains("is down"), "{down:?}");
    assert!(
        !link_json(&pod_netns, "net1").unwrap()["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP")
    );
    pod_netns.ip(&["link", "set", "net1", "up"]).unwrap();
    assert!(first.check().success);

    // A second interface: spec 1.1.0, an MTU, the MAC from runtimeConfig (Multus's `mac`).
    let mut second = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net2",
        conf(
            &node,
            "1.1.0",
            json!({"mtu": 1400, "runtimeConfig": {"mac": "02:42:00:00:00:07"}}),
        ),
    );
    second.container_id = first.container_id.clone();
    let added = second.add();
    assert!(added.success, "{added:?}");
    assert_eq!(
        added.json()["interfaces"][0],
        json!({"name": "net2", "mac": "02:42:00:00:00:07", "mtu": 1400,
               "sandbox": pod_netns.path().display().to_string()})
    );
    let link2 = link_json(&pod_netns, "net2").unwrap();
    assert_eq!(
        (link2["mtu"].as_u64(), link2["address"].as_str()),
        (Some(1400), Some("02:42:00:00:00:07"))
    );
    assert_eq!(pod_ports(&env, &first.pod_uid).await.len(), 2);

    // ADD onto an interface name the pod already has fails, and leaves nothing behind.
    pod_netns
        .ip(&[
            "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p",
        ])
        .unwrap();
    let mut taken = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "eth9",
        conf(&node, "1.0.0", json!({})),
    );
    let refused = taken.add();
    assert_eq!(refused.code(), 101, "{refused:?}");
    assert!(
        refused.json()["details"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{refused:?}"
    );
    assert_eq!(
        link_json(&pod_netns, "eth9").unwrap()["linkinfo"]["info_kind"],
        "veth"
    );
    assert_eq!(
        pod_ports(&env, &first.pod_uid).await.len(),
        2,
        "no port for the refused ADD"
    );
    // The runtime DELs after a failed ADD: that must not touch the veth either.
    assert!(taken.del().success);
    assert!(link_json(&pod_netns, "eth9").is_some());

    // An unknown network is a configuration error naming it.
    let mut unknown = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net3",
        json!({"cniVersion": "1.0.0", "name": "nope", "network": "no-such-network",
               "socket": node.socket.display().to_string()}),
    );
    let refused = unknown.add();
    assert_eq!(refused.code(), 7);
    assert!(refused.stdout.contains("no-such-network"), "{refused:?}");

    // The MAC the runtime asks for is checked by the agent with libvirt's MAC rules: a
    // multicast one in runtimeConfig is an invalid configuration, a malformed CNI_ARGS MAC an
    // invalid environment, each naming its field and why; neither leaves a port or a link.
    let bad_conf = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net4",
        conf(
            &node,
            "1.0.0",
            json!({"runtimeConfig": {"mac": "03:42:00:00:00:09"}}),
        ),
    );
    let refused = run_plugin(&bad_conf.vars("ADD"), &bad_conf.stdin(false));
    assert_eq!(refused.code(), 7, "{refused:?}");
    let details = refused.json()["details"].as_str().unwrap().to_string();
    assert!(
        details.starts_with("field 'runtimeConfig.mac': '03:42:00:00:00:09'")
            && details.contains("multicast"),
        "{refused:?}"
    );
    let mut vars = bad_conf.vars("ADD");
    vars.iter_mut()
        .find(|(k, _)| *k == "CNI_ARGS")
        .unwrap()
        .1
        .push_str(";MAC=02:42:00:00:00");
    let plain = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net4",
        conf(&node, "1.0.0", json!({})),
    );
    let refused = run_plugin(&vars, &plain.stdin(false));
    assert_eq!(refused.code(), 4, "{refused:?}");
    assert_eq!(
        refused.json()["details"],
        "CNI_ARGS MAC: '02:42:00:00:00' is not a MAC address (six hex bytes separated by ':')",
        "{refused:?}"
    );
    assert!(link_json(&pod_netns, "net4").is_none());
    assert_eq!(
        pod_ports(&env, &first.pod_uid).await.len(),
        2,
        "no port for a refused MAC"
    );
    // libvirt's spellings (one hex digit per byte) are accepted and given back as libvirt
    // spells them.
    let mut short = Sandbox1::new(
        pod_netns.path(),
        &pod,
        "net5",
        conf(
            &node,
            "1.0.0",
            json!({"runtimeConfig": {"mac": "2:42:0:0:0:A"}}),
        ),
    );
    short.container_id = first.container_id.clone();
    let added = short.add();
    assert!(added.success, "{added:?}");
    assert_eq!(added.json()["interfaces"][0]["mac"], "02:42:00:00:00:0a");
    assert_eq!(
        link_json(&pod_netns, "net5").unwrap()["address"],
        "02:42:00:00:00:0a"
    );
    assert!(short.check().success, "CHECK agrees with the canonical MAC");
    assert!(short.del().success);
    assert!(link_json(&pod_netns, "net5").is_none());

    // DEL, twice: both succeed with no output, the link and the port are gone.
    for attempt in 0..2 {
        let deleted = second.del();
        assert!(
            deleted.success && deleted.stdout.is_empty(),
            "DEL {attempt}: {deleted:?}"
        );
    }
    assert!(link_json(&pod_netns, "net2").is_none());
    assert_eq!(pod_ports(&env, &first.pod_uid).await.len(), 1);

    // DEL after the namespace is gone.
    drop(pod_netns);
    let deleted = first.del();
    assert!(deleted.success, "{deleted:?}");
    assert!(pod_ports(&env, &first.pod_uid).await.is_empty());
    assert!(first.del().success, "and once more");

    // GC: both keys, scoped to the configuration's name.
    let netns_a = Sandbox::new("pa").unwrap();
    let netns_b = Sandbox::new("pb").unwrap();
    let pod_b = create_pod(&env, "plain-pod", &node.node.name, None).await;
    let mut a = Sandbox1::new(
        netns_a.path(),
        &pod,
        "net1",
        conf(&node, "1.1.0", json!({})),
    );
    let mut b = Sandbox1::new(
        netns_b.path(),
        &pod_b,
        "net1",
        conf(&node, "1.1.0", json!({})),
    );
    assert!(a.add().success);
    let added_b = b.add();
    assert!(added_b.success, "{added_b:?}");
    assert_eq!(
        added_b.json()["interfaces"][0]["mac"],
        derived_mac(&b.pod_uid, "net1"),
        "a plain pod's MAC comes from its own UID"
    );
    let gc = |valid: Value, key: &str| {
        let mut conf = conf(&node, "1.1.0", json!({}));
        conf[key] = valid;
        run_plugin(&[("CNI_COMMAND", "GC".into())], &conf.to_string())
    };
    let other_name = {
        let mut conf = conf(&node, "1.1.0", json!({}));
        conf["name"] = json!("another-configuration");
        conf["network"] = json!(node.network);
        conf["cni.dev/valid-attachments"] = json!([]);
        run_plugin(&[("CNI_COMMAND", "GC".into())], &conf.to_string())
    };
    assert!(other_name.success, "{other_name:?}");
    assert!(
        link_json(&netns_a, "net1").is_some() && link_json(&netns_b, "net1").is_some(),
        "GC of another name touches nothing"
    );
    let gc_new = gc(
        json!([{"containerID": a.container_id, "ifname": "net1"}]),
        "cni.dev/valid-attachments",
    );
    assert!(gc_new.success, "{gc_new:?}");
    assert!(link_json(&netns_a, "net1").is_some(), "a is valid");
    assert!(link_json(&netns_b, "net1").is_none(), "b is not");
    assert!(pod_ports(&env, &b.pod_uid).await.is_empty());
    assert_eq!(pod_ports(&env, &a.pod_uid).await.len(), 1);
    let gc_old = gc(json!([]), "cni.dev/attachments");
    assert!(gc_old.success, "{gc_old:?}");
    assert!(link_json(&netns_a, "net1").is_none());
    assert!(pod_ports(&env, &a.pod_uid).await.is_empty());
    assert!(a.del().success && b.del().success, "DEL after GC");

    // STATUS: available while the agent serves, 50 once it is gone.
    let status_conf = conf(&node, "1.1.0", json!({})).to_string();
    let status = || run_plugin(&[("CNI_COMMAND", "STATUS".into())], &status_conf);
    let up = status();
    assert!(up.success && up.stdout.is_empty(), "{up:?}");
    node.node.kill_agent();
    assert_eq!(status().code(), 50);
    // DEL with the agent down still succeeds, and says why on stderr.
    let down = first.del();
    assert!(
        down.success && down.stderr.contains("could not be reached"),
        "{down:?}"
    );
    node.node.start_agent(Path::new(AGENT));
    assert!(status().success);
    assert_eq!(
        std::fs::read_dir(&node.state_dir).unwrap().count(),
        0,
        "no record is left"
    );
    node.node.stop_agent();
}

#[tokio::test]
async fn pod_ports_follow_the_allocation_and_merge_rules() {
    let env = TestEnv::new("cni-rules").await;
    let node = cni_node(
        &env,
        "cnir",
        "  forward: {mode: passthrough, interfaces: [{dev: eth0}]}\n  portgroups: [{name: tagged, vlan: {tags: [{id: 7}]}}]\n",
    )
    .await;
    let pod_a = create_pod(&env, "pod-a", &node.node.name, None).await;
    let pod_b = create_pod(&env, "pod-b", &node.node.name, None).await;
    let netns_a = Sandbox::new("ra").unwrap();
    let netns_b = Sandbox::new("rb").unwrap();
    let mut a = Sandbox1::new(
        netns_a.path(),
        &pod_a,
        "net1",
        conf(&node, "1.0.0", json!({})),
    );
    let mut b = Sandbox1::new(
        netns_b.path(),
        &pod_b,
        "net1",
        conf(&node, "1.0.0", json!({})),
    );
    let added = a.add();
    assert!(added.success, "{added:?}");
    let link = link_json(&netns_a, "net1").unwrap();
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "passthru");
    assert_eq!(
        link["address"],
        derived_mac(&a.pod_uid, "net1"),
        "passthrough gets the guest's MAC too"
    );
    assert!(a.check().success);

    // The one device is held exclusively: the second pod is refused with the allocator's words
    // (those a NetworkPort's condition would carry), and nothing is left of its attempt.
    let refused = b.add();
    assert_eq!(refused.code(), 100, "{refused:?}");
    let details = refused.json()["details"].as_str().unwrap().to_string();
    assert_eq!(
        details,
        format!(
            "[NoFreeDevice] network '{}' requires exclusive access to interfaces, but none are available",
            node.network
        )
    );
    assert!(pod_ports(&env, &b.pod_uid).await.is_empty());
    assert!(link_json(&netns_b, "net1").is_none());
    assert!(b.del().success);

    // A portgroup the network lacks is the merge's refusal.
    let mut c = Sandbox1::new(
        netns_b.path(),
        &pod_b,
        "net1",
        conf(&node, "1.0.0", json!({"portgroup": "nope"})),
    );
    let refused = c.add();
    assert_eq!(refused.code(), 100, "{refused:?}");
    assert!(refused.stdout.contains("nope"), "{refused:?}");
    assert!(pod_ports(&env, &b.pod_uid).await.is_empty());

    // Once the first pod lets go, the second may have the device; but a portgroup's vlan tags
    // refuse it, as they would a NetworkPort: a passthrough device takes tags as an SR-IOV
    // virtual function only, and the stand-in NIC is a veth. Nothing is left of the attempt.
    assert!(a.del().success);
    let mut d = Sandbox1::new(
        netns_b.path(),
        &pod_b,
        "net1",
        conf(&node, "1.0.0", json!({"portgroup": "tagged"})),
    );
    let refused = d.add();
    assert_eq!(refused.code(), 100, "{refused:?}");
    let details = refused.json()["details"].as_str().unwrap().to_string();
    assert!(
        details.starts_with("[VlanNeedsVirtualFunction] vlan 7:")
            && details.contains("'eth0' is not an SR-IOV virtual function"),
        "{details}"
    );
    assert!(pod_ports(&env, &d.pod_uid).await.is_empty());
    assert!(link_json(&netns_b, "net1").is_none());
    assert!(d.del().success);

    // Untagged, the second pod gets the device, and its port records no vlan.
    let mut e = Sandbox1::new(
        netns_b.path(),
        &pod_b,
        "net1",
        conf(&node, "1.0.0", json!({})),
    );
    let added = e.add();
    assert!(added.success, "{added:?}");
    let ports = pod_ports(&env, &e.pod_uid).await;
    assert_eq!(ports.len(), 1);
    let name = ports[0].name_any();
    wait_for("the port's status", || {
        let api = ports_api(&env);
        let name = name.clone();
        async move {
            let port = api.get(&name).await.map_err(|e| e.to_string())?;
            let status = port.status.unwrap_or_default();
            let actual = status.actual.unwrap_or_default();
            (status.phase == Some(PortPhase::Ready) && actual.vlan.is_none())
                .then_some(())
                .ok_or(format!("{actual:?}"))
        }
    })
    .await;
    assert!(e.del().success);
}

#[tokio::test]
async fn bridge_networks_give_the_pod_a_veth_end() {
    let env = TestEnv::new("cni-bridge").await;
    let mut node = cni_node(
        &env,
        "cnib",
        "  forward: {mode: bridge}\n  bridge: {name: br0}\n",
    )
    .await;
    let pod = create_pod(&env, "bridged", &node.node.name, None).await;
    let netns = Sandbox::new("pbr").unwrap();
    let mut sandbox = Sandbox1::new(netns.path(), &pod, "net1", conf(&node, "1.1.0", json!({})));
    let added = sandbox.add();
    assert!(added.success, "{added:?}");
    let result = added.json();
    let interfaces = result["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 2, "{result}");
    let host = interfaces[0]["name"].as_str().unwrap().to_string();
    assert!(
        interfaces[0].get("sandbox").is_none(),
        "the bridge end is on the host: {result}"
    );
    let mac = derived_mac(&sandbox.pod_uid, "net1");
    assert_eq!(
        interfaces[1],
        json!({"name": "net1", "mac": mac, "mtu": 1500, "sandbox": netns.path().display().to_string()})
    );
    let pod_end = link_json(&netns, "net1").unwrap();
    assert_eq!(pod_end["linkinfo"]["info_kind"], "veth");
    assert_eq!(pod_end["address"], mac);
    let bridge_end = node
        .node
        .sandbox
        .link(&host)
        .unwrap()
        .expect("the bridge end on the node");
    assert_eq!(bridge_end.master.as_deref(), Some("br0"));
    assert_eq!(
        bridge_end.mac.as_deref(),
        Some(format!("fe{}", &mac[2..]).as_str())
    );
    assert_eq!(
        bridge_end.group, 0,
        "not in the agent's group: node recovery must leave it be"
    );
    assert!(sandbox.check().success);
    let ports = pod_ports(&env, &sandbox.pod_uid).await;
    assert_eq!(ports.len(), 1);
    let name = ports[0].name_any();
    let wanted_host = host.clone();
    wait_for("the bridge port's status", || {
        let api = ports_api(&env);
        let name = name.clone();
        let host = wanted_host.clone();
        async move {
            let port = api.get(&name).await.map_err(|e| e.to_string())?;
            let actual = port.status.and_then(|s| s.actual).unwrap_or_default();
            (actual.bridge.as_deref() == Some("br0")
                && actual.link_name == host
                && actual.peer_link_name.as_deref() == Some("net1"))
            .then_some(())
            .ok_or(format!("{actual:?}"))
        }
    })
    .await;

    // A SIGKILL and a restart keep both ends and the port.
    node.node.kill_agent();
    node.node.start_agent(Path::new(AGENT));
    assert!(
        node.node.sandbox.link(&host).unwrap().is_some(),
        "{}",
        node.node.logs()
    );
    assert!(sandbox.check().success);
    assert_eq!(pod_ports(&env, &sandbox.pod_uid).await.len(), 1);
    wait_for("the node's report to count one port", || {
        let env = &env;
        let name = node.node.name.clone();
        async move {
            let ports = network_node(env, &name).await.ports;
            (ports == 1).then_some(()).ok_or(format!("{ports} ports"))
        }
    })
    .await;

    // DEL takes the pair away, both ends.
    assert!(sandbox.del().success);
    assert!(link_json(&netns, "net1").is_none());
    assert!(node.node.sandbox.link(&host).unwrap().is_none());
    assert!(pod_ports(&env, &sandbox.pod_uid).await.is_empty());
    node.node.stop_agent();
}

#[tokio::test]
async fn the_sweep_releases_what_no_runtime_will_delete() {
    let env = TestEnv::new("cni-sweep").await;
    let node = cni_node(
        &env,
        "cnis",
        "  forward: {mode: bridge, interfaces: [{dev: eth0}]}\n",
    )
    .await;
    let pods_api = Api::<Pod>::namespaced(env.client.clone(), &env.namespace);
    let mut attach = Vec::new();
    for name in ["deleted", "failed", "netns-gone", "port-deleted", "kept"] {
        let pod = create_pod(&env, name, &node.node.name, None).await;
        let netns = Sandbox::new("sw").unwrap();
        let mut sandbox =
            Sandbox1::new(netns.path(), &pod, "net1", conf(&node, "1.0.0", json!({})));
        assert!(sandbox.add().success, "{name}");
        attach.push((name, netns, sandbox));
    }
    // An orphan: a pod port of this node that no record knows.
    let mut orphan = switchyard_tests::fixtures::port(
        &env.namespace,
        "orphan",
        &node.network,
        &node.node.name,
        "02:00:00:00:00:01",
    );
    orphan
        .labels_mut()
        .insert(LABEL_POD_UID.into(), "no-such-pod".into());
    ports_api(&env)
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();

    // No DEL comes for any of these.
    pods_api
        .delete(
            "deleted",
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await
        .unwrap();
    pods_api
        .patch_status(
            "failed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    let (_, netns_gone, _) = attach.remove(2);
    drop(netns_gone);
    let port_deleted = &attach[2].2;
    let port = pod_ports(&env, &port_deleted.pod_uid).await.remove(0);
    ports_api(&env)
        .delete(&port.name_any(), &Default::default())
        .await
        .unwrap();

    let kept_uid = attach[3].2.pod_uid.clone();
    let attach = &attach;
    let state_dir = node.state_dir.clone();
    wait_for("the sweep", || {
        let env = &env;
        let kept_uid = kept_uid.clone();
        let state_dir = state_dir.clone();
        async move {
            let left: Vec<String> = pod_ports_all(env)
                .await
                .iter()
                .map(|p| p.labels()[LABEL_POD_UID].clone())
                .collect();
            if left != [kept_uid] {
                return Err(format!("ports of {left:?}"));
            }
            for (name, netns, _) in attach {
                let links: Vec<String> =
                    netns.links().unwrap().into_iter().map(|l| l.name).collect();
                let wanted: &[&str] = if *name == "kept" {
                    &["lo", "net1"]
                } else {
                    &["lo"]
                };
                if links != wanted {
                    return Err(format!("{name} holds {links:?}"));
                }
            }
            let records = std::fs::read_dir(&state_dir).unwrap().count();
            (records == 1)
                .then_some(())
                .ok_or(format!("{records} records"))
        }
    })
    .await;
    wait_for("the node's report to count one port", || {
        let env = &env;
        let name = node.node.name.clone();
        async move {
            let ports = network_node(env, &name).await.ports;
            (ports == 1).then_some(()).ok_or(format!("{ports} ports"))
        }
    })
    .await;
    assert!(attach[3].2.check().success);
}

/// What the churn workers tell the killer.
#[derive(Debug, Default)]
struct Stats {
    /// ADDs and DELs running now.
    in_flight: AtomicUsize,
    /// ADDs that failed (the agent died under them).
    failed_adds: AtomicUsize,
}

/// One worker's sandboxes: each is a namespace, a container ID and at most one attachment.
struct Slot {
    netns: Option<Sandbox>,
    sandbox: Option<Sandbox1>,
    attached: bool,
}

/// A sequence of sandbox life cycles as the runtime drives them: create the namespace, ADD; on
/// a failed ADD, DEL and remove the namespace; later DEL and remove the namespace.
/// Sandboxes whose ADD failed and whose namespace the runtime has not removed yet.
type Kept = Vec<(String, Sandbox)>;

fn churn(
    worker: usize,
    ops: usize,
    pods: Vec<Pod>,
    conf: Value,
    stats: &Stats,
) -> (Vec<Slot>, Kept) {
    let mut kept = Vec::new();
    let mut slots: Vec<Slot> = pods
        .iter()
        .map(|_| Slot {
            netns: None,
            sandbox: None,
            attached: false,
        })
        .collect();
    for _ in 0..ops {
        let i = (rand_u64() % slots.len() as u64) as usize;
        let slot = &mut slots[i];
        if !slot.attached {
            let netns = Sandbox::new(&format!("k{worker}")).unwrap();
            let mut sandbox = Sandbox1::new(netns.path(), &pods[i], "net1", conf.clone());
            stats.in_flight.fetch_add(1, Ordering::SeqCst);
            let added = sandbox.add().success;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            if added {
                slot.attached = true;
                slot.netns = Some(netns);
                slot.sandbox = Some(sandbox);
            } else {
                // containerd: a failed sandbox set-up is torn down: DEL, then the namespace,
                // which half the time outlives the agent's restart (kubelet retries later).
                stats.failed_adds.fetch_add(1, Ordering::SeqCst);
                assert!(sandbox.del().success, "DEL never fails");
                if rand_u64().is_multiple_of(2) {
                    kept.push((sandbox.container_id, netns));
                }
            }
        } else {
            let mut sandbox = slot.sandbox.take().unwrap();
            stats.in_flight.fetch_add(1, Ordering::SeqCst);
            let deleted = sandbox.del().success;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            assert!(deleted, "DEL never fails");
            slot.attached = false;
            slot.netns = None;
        }
    }
    (slots, kept)
}

#[tokio::test]
async fn sigkill_during_cni_churn_loses_and_leaks_nothing() {
    let env = TestEnv::new("cni-kill").await;
    let mut node = cni_node(
        &env,
        "cnik",
        "  forward: {mode: bridge, interfaces: [{dev: eth0}, {dev: eth1}]}\n",
    )
    .await;
    let workers = 4;
    let slots_per_worker = 4;
    let mut pods = Vec::new();
    for w in 0..workers {
        let mut mine = Vec::new();
        for s in 0..slots_per_worker {
            mine.push(create_pod(&env, &format!("pod-{w}-{s}"), &node.node.name, None).await);
        }
        pods.push(mine);
    }
    let conf = conf(&node, "1.0.0", json!({}));
    let stats = Arc::new(Stats::default());
    let handles: Vec<_> = pods
        .into_iter()
        .enumerate()
        .map(|(w, mine)| {
            let conf = conf.clone();
            let stats = stats.clone();
            std::thread::spawn(move || churn(w, 50, mine, conf, &stats))
        })
        .collect();
    let mut kills = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        // Aim at a call in flight, at a random point of it.
        std::thread::sleep(Duration::from_millis(200 + rand_u64() % 400));
        while stats.in_flight.load(Ordering::SeqCst) == 0
            && !handles.iter().all(|h| h.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rand_u64() % 70_000));
        node.node.kill_agent();
        kills += 1;
        std::thread::sleep(Duration::from_millis(rand_u64() % 300));
        node.node.start_agent(Path::new(AGENT));
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut kept: Kept = Vec::new();
    for handle in handles {
        let (mine, failed) = handle.join().expect("a churn worker");
        slots.extend(mine);
        kept.extend(failed);
    }
    assert!(kills >= 5, "only {kills} kills");
    if !node.node.agent_running() {
        node.node.start_agent(Path::new(AGENT));
    }

    // The runtime's view: which sandboxes hold an attachment.
    let expected: BTreeMap<String, &Slot> = slots
        .iter()
        .filter(|s| s.attached)
        .map(|s| (s.sandbox.as_ref().unwrap().container_id.clone(), s))
        .collect();
    // A failed sandbox's namespace that is still there holds nothing, or (the agent died
    // after the ADD was done but before it answered) an attachment the records call ready
    // and that has its port; either way nothing the agent does not account for.
    let ready_records = || -> BTreeSet<String> {
        std::fs::read_dir(&node.state_dir)
            .unwrap()
            .map(|e| {
                serde_json::from_slice::<Value>(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
            })
            .filter(|r| r["phase"] == "ready")
            .map(|r| r["containerId"].as_str().unwrap().to_string())
            .collect()
    };
    let mut answered_late = BTreeSet::new();
    for (container, netns) in &kept {
        let links: Vec<String> = netns.links().unwrap().into_iter().map(|l| l.name).collect();
        match links.as_slice() {
            [lo] if lo == "lo" => {}
            [lo, net1] if lo == "lo" && net1 == "net1" => {
                assert!(
                    ready_records().contains(container),
                    "a link without a ready record in {container}"
                );
                answered_late.insert(container.clone());
            }
            other => panic!("failed sandbox {container} holds {other:?}"),
        }
    }
    let node_name = node.node.name.clone();
    let converged = |wanted: BTreeSet<String>| {
        let env = &env;
        let node_name = node_name.clone();
        move || {
            let wanted = wanted.clone();
            let node_name = node_name.clone();
            async move {
                let ports = pod_ports_all(env).await;
                let held: BTreeSet<String> = ports
                    .iter()
                    .map(|p| p.annotations()[ANNOTATION_CONTAINER_ID].clone())
                    .collect();
                let counted = network_node(env, &node_name).await.ports as usize;
                if ports.len() == wanted.len() && held == wanted && counted == wanted.len() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} ports for {} attachments, the node counts {counted}; missing {:?}, extra {:?}",
                        ports.len(),
                        wanted.len(),
                        wanted.difference(&held).collect::<Vec<_>>(),
                        held.difference(&wanted).collect::<Vec<_>>()
                    ))
                }
            }
        }
    };
    let attached: BTreeSet<String> = expected.keys().cloned().collect();
    wait_for(
        "the ports to match the attachments",
        converged(attached.union(&answered_late).cloned().collect()),
    )
    .await;
    // Every live pod namespace holds exactly its one interface, with the port's MAC.
    for (container, slot) in &expected {
        let netns = slot.netns.as_ref().unwrap();
        let links: Vec<String> = netns.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(links, ["lo", "net1"], "sandbox {container}");
        let cached = slot.sandbox.as_ref().unwrap().cached.as_ref().unwrap();
        assert_eq!(
            link_json(netns, "net1").unwrap()["address"],
            cached["interfaces"][0]["mac"]
        );
        assert!(
            slot.sandbox.as_ref().unwrap().check().success,
            "CHECK {container}"
        );
    }
    // The runtime removes the failed sandboxes' namespaces: the sweep releases what they held.
    drop(kept);
    wait_for(
        "the sweep to release the failed sandboxes",
        converged(attached.clone()),
    )
    .await;
    assert_eq!(ready_records(), attached, "one record per attachment");
    let failed_adds = stats.failed_adds.load(Ordering::SeqCst);
    eprintln!(
        "{kills} kills, {failed_adds} ADDs cut off, {} answered too late; {} attachments left",
        answered_late.len(),
        expected.len()
    );

    // And all of it comes apart cleanly.
    for slot in slots {
        if let Some(mut sandbox) = slot.sandbox {
            assert!(sandbox.del().success);
        }
    }
    assert!(pod_ports_all(&env).await.is_empty());
    assert_eq!(std::fs::read_dir(&node.state_dir).unwrap().count(), 0);
    node.node.stop_agent();
}

async fn pod_ports_all(env: &TestEnv) -> Vec<NetworkPort> {
    ports_api(env)
        .list(&ListParams::default().labels(LABEL_POD_UID))
        .await
        .unwrap()
        .items
}

/// KubeVirt's VirtualMachineInstances (tests/assets holds a minimal CRD for them).
fn vmis(env: &TestEnv) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    );
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
}

/// Creates a VMI; returns its UID.
async fn create_vmi(env: &TestEnv, name: &str) -> String {
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {"domain": {"devices": {"interfaces": [{"name": "lan", "binding": {"name": "switchyard"}}]}}},
    }))
    .unwrap();
    vmis(env)
        .create(&PostParams::default(), &vmi)
        .await
        .expect("creating the VMI")
        .uid()
        .unwrap()
}

/// Writes the VMI's `status.migrationState` as virt-controller and virt-handler do: the fields
/// of `state`, every other field of a migration state cleared.
async fn set_migration_state(env: &TestEnv, vmi: &str, state: Value) {
    let mut full = json!({
        "migrationUid": null, "sourceNode": null, "sourcePod": null, "targetNode": null,
        "targetPod": null, "targetNodeAddress": null, "completed": null, "failed": null,
        "abortStatus": null, "startTimestamp": null, "endTimestamp": null,
    });
    if let (Value::Object(map), Value::Object(given)) = (&mut full, state) {
        map.extend(given);
    }
    vmis(env)
        .patch_status(
            vmi,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "migrationState": full}})),
        )
        .await
        .expect("writing the VMI's migration state");
}

/// Whether `name` in the namespace is up; `None` when there is no such link.
fn link_up(netns: &Sandbox, name: &str) -> Option<bool> {
    let link = link_json(netns, name)?;
    Some(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"))
}

/// The pod's one port, once the agent has written it Ready.
async fn ready_port(env: &TestEnv, pod_uid: &str) -> NetworkPort {
    let start = Instant::now();
    loop {
        let ports = pod_ports(env, pod_uid).await;
        if let [port] = ports.as_slice()
            && port.status.as_ref().and_then(|s| s.phase) == Some(PortPhase::Ready)
        {
            return port.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "timed out waiting for the pod's port to be Ready: {ports:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn migrated_away(port: &NetworkPort) -> Option<String> {
    port.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.kind == "MigratedAway")
        .map(|c| c.message.clone())
}

fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
}

#[tokio::test]
async fn live_migration_downs_the_source_once_completed_and_an_abort_keeps_it() {
    let env = TestEnv::new("cni-migration").await;
    let network = create_network(
        &env,
        "mig",
        "  forward: {mode: bridge, interfaces: [{dev: eth0}, {dev: eth1}]}\n",
    )
    .await;
    let a = cni_node_for(&env, "a", network.clone()).await;
    let b = cni_node_for(&env, "b", network).await;

    // vm1 runs on a; the migration's target pod on b gets its own ADD while the source runs.
    let vm1 = create_vmi(&env, "vm1").await;
    let source_pod = create_pod(
        &env,
        "virt-launcher-vm1-aaaaa",
        &a.node.name,
        Some(("vm1", &vm1)),
    )
    .await;
    let target_pod = create_pod(
        &env,
        "virt-launcher-vm1-bbbbb",
        &b.node.name,
        Some(("vm1", &vm1)),
    )
    .await;
    let source_netns = Sandbox::new("psrc").unwrap();
    let target_netns = Sandbox::new("ptgt").unwrap();
    let mut source = Sandbox1::new(
        source_netns.path(),
        &source_pod,
        "net1",
        conf(&a, "1.0.0", json!({})),
    );
    let mut target = Sandbox1::new(
        target_netns.path(),
        &target_pod,
        "net1",
        conf(&b, "1.0.0", json!({})),
    );
    let added = source.add();
    assert!(added.success, "{added:?}\n{}", a.node.logs());
    let added = target.add();
    assert!(added.success, "{added:?}\n{}", b.node.logs());

    // The same MAC on both sides, from the VMI's UID: the guest keeps its address.
    let mac = derived_mac(&vm1, "net1");
    let source_link = link_json(&source_netns, "net1").expect("the source link");
    let target_link = link_json(&target_netns, "net1").expect("the target link");
    assert_eq!(source_link["address"], mac);
    assert_eq!(target_link["address"], mac);
    assert_ne!(source_pod.uid(), target_pod.uid());
    let source_port = ready_port(&env, &source.pod_uid).await;
    let target_port = ready_port(&env, &target.pod_uid).await;
    assert_eq!(
        (source_port.spec.mac.as_str(), target_port.spec.mac.as_str()),
        (mac.as_str(), mac.as_str())
    );
    assert_eq!(link_up(&source_netns, "net1"), Some(true));
    assert_eq!(link_up(&target_netns, "net1"), Some(true));

    // Under way: nothing changes.
    let started = now_rfc3339();
    let under_way = json!({
        "migrationUid": "mig-1", "sourceNode": a.node.name, "sourcePod": source.pod_name,
        "targetNode": b.node.name, "targetPod": target.pod_name, "targetNodeAddress": "10.0.0.2",
        "startTimestamp": started,
    });
    set_migration_state(&env, "vm1", under_way.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        link_up(&source_netns, "net1"),
        Some(true),
        "{}",
        a.node.logs()
    );

    // Completed: the source link goes down at once, the target's stays up.
    let mut completed = under_way.clone();
    completed["completed"] = json!(true);
    completed["endTimestamp"] = json!(now_rfc3339());
    set_migration_state(&env, "vm1", completed).await;
    wait_for("the source link to go down", || {
        let up = link_up(&source_netns, "net1");
        async move {
            match up {
                Some(false) => Ok(()),
                other => Err(format!("source link up: {other:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        link_up(&target_netns, "net1"),
        Some(true),
        "{}",
        b.node.logs()
    );
    let port_name = source_port.name_any();
    wait_for("the source port to say it migrated away", || {
        let api = ports_api(&env);
        let name = port_name.clone();
        async move {
            let port = api.get(&name).await.map_err(|e| e.to_string())?;
            match migrated_away(&port) {
                Some(message) if message.contains("(migration mig-1)") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let target_port = ports_api(&env).get(&target_port.name_any()).await.unwrap();
    assert_eq!(migrated_away(&target_port), None);

    // Back to a: a new target pod there, ADDed while the VMI still shows the completed a → b.
    // Its new link stays up through another write of that old state.
    let back_pod = create_pod(
        &env,
        "virt-launcher-vm1-ccccc",
        &a.node.name,
        Some(("vm1", &vm1)),
    )
    .await;
    let back_netns = Sandbox::new("pback").unwrap();
    let mut back = Sandbox1::new(
        back_netns.path(),
        &back_pod,
        "net1",
        conf(&a, "1.0.0", json!({})),
    );
    let added = back.add();
    assert!(added.success, "{added:?}\n{}", a.node.logs());
    assert_eq!(link_json(&back_netns, "net1").unwrap()["address"], mac);
    ready_port(&env, &back.pod_uid).await;
    vmis(&env)
        .patch_status(
            "vm1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "nodeName": b.node.name}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        link_up(&back_netns, "net1"),
        Some(true),
        "{}",
        a.node.logs()
    );
    set_migration_state(
        &env,
        "vm1",
        json!({
            "migrationUid": "mig-2", "sourceNode": b.node.name, "sourcePod": target.pod_name,
            "targetNode": a.node.name, "targetPod": back.pod_name, "completed": true,
            "startTimestamp": now_rfc3339(), "endTimestamp": now_rfc3339(),
        }),
    )
    .await;
    wait_for("b's link to go down after the migration back", || {
        let up = link_up(&target_netns, "net1");
        async move {
            match up {
                Some(false) => Ok(()),
                other => Err(format!("b's link up: {other:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        link_up(&back_netns, "net1"),
        Some(true),
        "{}",
        a.node.logs()
    );

    // vm2: a → b aborted. The target's attachment on b is released, the source on a stays up.
    let vm2 = create_vmi(&env, "vm2").await;
    let source2_pod = create_pod(
        &env,
        "virt-launcher-vm2-aaaaa",
        &a.node.name,
        Some(("vm2", &vm2)),
    )
    .await;
    let target2_pod = create_pod(
        &env,
        "virt-launcher-vm2-bbbbb",
        &b.node.name,
        Some(("vm2", &vm2)),
    )
    .await;
    let source2_netns = Sandbox::new("psrc2").unwrap();
    let target2_netns = Sandbox::new("ptgt2").unwrap();
    let mut source2 = Sandbox1::new(
        source2_netns.path(),
        &source2_pod,
        "net1",
        conf(&a, "1.1.0", json!({})),
    );
    let mut target2 = Sandbox1::new(
        target2_netns.path(),
        &target2_pod,
        "net1",
        conf(&b, "1.1.0", json!({})),
    );
    assert!(source2.add().success, "{}", a.node.logs());
    assert!(target2.add().success, "{}", b.node.logs());
    let mac2 = derived_mac(&vm2, "net1");
    assert_eq!(link_json(&source2_netns, "net1").unwrap()["address"], mac2);
    assert_eq!(link_json(&target2_netns, "net1").unwrap()["address"], mac2);
    ready_port(&env, &source2.pod_uid).await;
    ready_port(&env, &target2.pod_uid).await;
    set_migration_state(
        &env,
        "vm2",
        json!({
            "migrationUid": "mig-3", "sourceNode": a.node.name, "sourcePod": source2.pod_name,
            "targetNode": b.node.name, "targetPod": target2.pod_name, "completed": true,
            "failed": true, "abortStatus": "Succeeded",
            "startTimestamp": now_rfc3339(), "endTimestamp": now_rfc3339(),
        }),
    )
    .await;
    wait_for("the aborted target's link and port to go", || {
        let link = link_json(&target2_netns, "net1");
        let env = &env;
        let uid = target2.pod_uid.clone();
        async move {
            let ports = pod_ports(env, &uid).await;
            if link.is_none() && ports.is_empty() {
                Ok(())
            } else {
                Err(format!("link {link:?}, ports {ports:?}"))
            }
        }
    })
    .await;
    assert_eq!(
        link_up(&source2_netns, "net1"),
        Some(true),
        "{}",
        a.node.logs()
    );
    let source2_port = ready_port(&env, &source2.pod_uid).await;
    assert_eq!(migrated_away(&source2_port), None);
    // The runtime's DEL of the released target still succeeds, as does the others'.
    for sandbox in [
        &mut target2,
        &mut source2,
        &mut back,
        &mut target,
        &mut source,
    ] {
        let del = sandbox.del();
        assert!(del.success, "{del:?}");
    }
}
