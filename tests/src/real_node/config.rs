//! The real node's configuration files and commands, as plain functions of its layout.

use std::path::{Path, PathBuf};

/// The node's address on its stand-in NIC `eth0` (inside its own network namespace).
pub const NODE_IP: &str = "192.168.251.1";
/// The prefix length of [`NODE_IP`]'s subnet.
pub const NODE_PREFIX: u8 = 24;
/// The pod network on the node's CNI bridge.
pub const POD_SUBNET: &str = "10.244.0.0/24";
/// The `kubernetes` Service's cluster IP (first address of the apiserver's
/// `--service-cluster-ip-range`). The node holds it on its loopback and relays it to the
/// apiserver, so pods' in-cluster configuration works without kube-proxy.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The kubelet's API port, on [`NODE_IP`].
pub const KUBELET_PORT: u16 = 10250;
/// The pod sandbox image.
pub const PAUSE_IMAGE: &str = "localhost/switchyard/pause:v1.20.2";
/// containerd's CNI bin directory in the node: the chart's default `cni.binDir`, on the
/// node's private `/opt`, holding links to Debian's plugins (bridge, host-local) beside what
/// the chart installs.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// Where Debian's containernetworking-plugins are.
const DEBIAN_CNI_PLUGINS: &str = "/usr/lib/cni";

/// The host sysctls the kubelet would set for itself. It runs with `--protect-kernel-defaults`
/// so it only reads them, and the node's private mount namespace shows it these values.
pub const KUBELET_SYSCTLS: [(&str, &str); 3] = [
    ("vm/overcommit_memory", "1"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
];

/// Where one node keeps everything (all under `dir`, named after its id).
#[derive(Debug, Clone)]
pub struct NodeLayout {
    /// The node's id: its network namespace, its cgroup root and its directory's name.
    pub id: String,
    /// The Node's name.
    pub name: String,
    /// The directory holding every file of the node.
    pub dir: PathBuf,
}

impl NodeLayout {
    /// A path under the node's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    /// containerd's gRPC socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.path("containerd/containerd.sock")
    }
    /// The unix socket where the apiserver asks for connections into the node's network.
    pub fn egress_socket(&self) -> PathBuf {
        self.path("egress.sock")
    }
    /// The kubelet's cgroup root (in every hierarchy).
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.id)
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Where containerd puts pod network namespaces (`netns_mounts_under_state_dir`): the chart's
/// `cni.netnsDir` on a real node. [`node_script`] makes it a shared mount before containerd
/// starts, so the namespaces containerd mounts there later reach the agent's container (a
/// hostPath with HostToContainer propagation) as they do on a host whose `/run/netns` is
/// shared.
pub fn netns_dir(layout: &NodeLayout) -> PathBuf {
    layout.path("containerd/state/io.containerd.grpc.v1.cri/netns")
}

/// The node's CNI configuration directory (containerd's `conf_dir`). containerd runs the
/// first two configurations in it, in file name order, for `eth0` and `eth1` of every pod
/// (`max_conf_num = 2`): the node's pod network, and the one a test adds beside it.
pub fn cni_conf_dir(layout: &NodeLayout) -> PathBuf {
    layout.path("cni/net.d")
}

/// containerd's configuration: every path under the node's directory, the CRI plugin with
/// cgroupfs runc, its CNI configuration, and `restrict_oom_score_adj` (the test machines lack
/// CAP_SYS_RESOURCE, so runc cannot lower a sandbox's OOM score).
pub fn containerd_config(layout: &NodeLayout) -> String {
    let d = |rel: &str| p(&layout.path(rel));
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
    max_conf_num = 2
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = p(&layout.containerd_socket()),
        opt = d("containerd/opt"),
        runc = d("runc"),
        cni_conf = d("cni/net.d"),
    )
}

/// The pod network: a bridge with host-local addresses, no masquerading (no iptables at all).
pub fn cni_conflist(layout: &NodeLayout) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "switchyard-node",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": p(&layout.path("cni/ipam")),
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    })
    .to_string()
}

/// The kubelet's kubeconfig: the apiserver at the `kubernetes` Service address (relayed),
/// the node's own token.
pub fn kubelet_kubeconfig(ca_file: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://{KUBERNETES_SERVICE_IP}:443
    certificate-authority: {ca}
users:
- name: kubelet
  user:
    token: {token}
contexts:
- name: local
  context: {{cluster: local, user: kubelet}}
current-context: local
",
        ca = p(ca_file)
    )
}

/// The kubelet's command line.
pub fn kubelet_args(layout: &NodeLayout, kubeconfig: &Path) -> Vec<String> {
    let d = |rel: &str| p(&layout.path(rel));
    vec![
        format!("--kubeconfig={}", p(kubeconfig)),
        "--container-runtime=remote".into(),
        format!(
            "--container-runtime-endpoint=unix://{}",
            p(&layout.containerd_socket())
        ),
        "--runtime-request-timeout=2m".into(),
        "--cgroup-driver=cgroupfs".into(),
        format!("--cgroup-root={}", layout.cgroup_root()),
        "--fail-swap-on=false".into(),
        // /var/lib/kubelet is the node's private tmpfs: the device-plugin directory under it
        // is hard-coded whatever --root-dir says.
        "--root-dir=/var/lib/kubelet".into(),
        format!("--cert-dir={}", d("kubelet-pki")),
        format!("--volume-plugin-dir={}", d("volume-plugins")),
        format!("--hostname-override={}", layout.name),
        format!("--node-ip={NODE_IP}"),
        format!("--address={NODE_IP}"),
        format!("--port={KUBELET_PORT}"),
        "--read-only-port=0".into(),
        "--healthz-bind-address=127.0.0.1".into(),
        format!("--pod-infra-container-image={PAUSE_IMAGE}"),
        "--protect-kernel-defaults=true".into(),
        "--oom-score-adj=0".into(),
        "--node-status-update-frequency=4s".into(),
        // The images were imported, not pulled: never collect them, never evict for disk.
        "--image-gc-high-threshold=100".into(),
        "--image-gc-low-threshold=99".into(),
        "--eviction-hard=memory.available<50Mi,nodefs.available<1%,imagefs.available<1%".into(),
        "--v=2".into(),
    ]
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script run by `ip netns exec <id>`, inside the node's network namespace and the private
/// mount namespace that command gives it. It makes every host path containerd and the kubelet
/// hard-code private, joins the node's cgroup, starts containerd, imports `images`, then runs
/// the kubelet. Both die with the script (parent-death signal), and the script with the test.
pub fn node_script(layout: &NodeLayout, images: &[PathBuf], kubelet: &Path) -> String {
    let d = |rel: &str| quote(&p(&layout.path(rel)));
    let mut s = String::from("#!/bin/sh\nset -eu\n");
    // `ip netns exec` mounted a fresh /sys without the cgroup hierarchies: mount the host's
    // again (same type and options attach to the same hierarchies).
    s.push_str(
        "grep -E '^[^ ]+ /sys/fs/cgroup[^ ]* (tmpfs|cgroup|cgroup2) ' /proc/1/mounts |\n\
         while read -r src dst typ opts _; do mkdir -p \"$dst\"; mount -t \"$typ\" -o \"$opts\" \"$src\" \"$dst\"; done\n",
    );
    s.push_str(&format!(
        "echo $$ > {}\n",
        quote(&format!(
            "/sys/fs/cgroup/pids{}/node/cgroup.procs",
            layout.cgroup_root()
        ))
    ));
    // Shim sockets (/run/containerd), pod logs (/var/log/pods, /var/log/containers), the CNI
    // result cache (/var/lib/cni), the kubelet's device plugins (/var/lib/kubelet) and the
    // CNI plugins hostPath pods install (/opt/cni/bin).
    s.push_str("mount -t tmpfs -o mode=755 switchyard-node-run /run\n");
    // Shared, as a host's /run is: hostPath volumes under it (the chart's cni.netnsDir
    // default, /run/netns) may use HostToContainer propagation, which containerd allows only
    // from shared or slave mounts.
    s.push_str("mount --make-shared /run\n");
    s.push_str("mount -t tmpfs -o mode=755 switchyard-node-opt /opt\n");
    s.push_str(&format!(
        "mkdir -p {CNI_BIN_DIR}\nln -s {DEBIAN_CNI_PLUGINS}/* {CNI_BIN_DIR}/\n"
    ));
    s.push_str("mount -t tmpfs -o mode=755 switchyard-node-varlib /var/lib\n");
    s.push_str("mkdir -p /var/lib/kubelet /var/lib/cni\n");
    s.push_str(&format!("mount --bind {} /var/log\n", d("log")));
    for (key, _) in KUBELET_SYSCTLS {
        s.push_str(&format!(
            "mount --bind {} /proc/sys/{key}\n",
            d(&format!("sysctl/{}", key.replace('/', ".")))
        ));
    }
    let netns = quote(&p(&netns_dir(layout)));
    s.push_str(&format!(
        "mkdir -p {netns}\nmount --bind {netns} {netns}\nmount --make-shared {netns}\n"
    ));
    s.push_str(&format!("export TMPDIR={}\n", d("tmp")));
    s.push_str(&format!(
        "setpriv --pdeathsig KILL -- containerd --config {} >>{} 2>&1 &\n",
        d("containerd/config.toml"),
        d("containerd.log")
    ));
    let socket = quote(&p(&layout.containerd_socket()));
    s.push_str(&format!(
        "i=0; until ctr --address {socket} version >/dev/null 2>&1; do\n\
         \x20 i=$((i+1)); [ $i -lt 300 ] || {{ echo 'containerd did not start' >&2; exit 1; }}; sleep 0.1\n\
         done\n"
    ));
    for image in images {
        s.push_str(&format!(
            "ctr --address {socket} -n k8s.io images import {} >/dev/null\n",
            quote(&p(image))
        ));
    }
    s.push_str("echo images-imported\n");
    s.push_str(&format!(
        "setpriv --pdeathsig KILL -- {} {} >>{} 2>&1 &\n",
        quote(&p(kubelet)),
        kubelet_args(layout, &layout.path("kubelet.kubeconfig"))
            .iter()
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        d("kubelet.log")
    ));
    s.push_str("wait\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> NodeLayout {
        NodeLayout {
            id: "swyt-rn-1-0".into(),
            name: "realnode".into(),
            dir: PathBuf::from("/tmp/swyt-rn-1-0"),
        }
    }

    #[test]
    fn containerd_keeps_everything_under_the_node_directory_and_restricts_oom_scores() {
        let config = containerd_config(&layout());
        assert!(config.contains("restrict_oom_score_adj = true"));
        assert!(config.contains("SystemdCgroup = false"));
        // Every absolute path but the CNI plugins (on the node's private /opt) is the node's
        // own.
        for path in config
            .split('"')
            .filter(|s| s.starts_with('/'))
            .filter(|s| *s != CNI_BIN_DIR)
        {
            assert!(path.starts_with("/tmp/swyt-rn-1-0/"), "{path}");
        }
        assert!(config.contains(PAUSE_IMAGE));
    }

    #[test]
    fn kubelet_never_writes_host_sysctls_and_uses_its_own_cgroup_root() {
        let args = kubelet_args(&layout(), Path::new("/k"));
        assert!(args.contains(&"--protect-kernel-defaults=true".to_string()));
        assert!(args.contains(&"--cgroup-root=/swyt-rn-1-0".to_string()));
        assert!(args.contains(&format!("--node-ip={NODE_IP}")));
        assert!(args.contains(&"--hostname-override=realnode".to_string()));
    }

    #[test]
    fn node_script_covers_the_hard_coded_host_paths_before_starting_anything() {
        let script = node_script(&layout(), &[PathBuf::from("/i/pause.tar")], Path::new("/k"));
        let containerd = script.find("containerd --config").unwrap();
        for mount in [
            " /run\n",
            " /var/lib\n",
            " /var/log\n",
            " /opt\n",
            " /proc/sys/kernel/panic\n",
        ] {
            let at = script
                .find(mount)
                .unwrap_or_else(|| panic!("{mount:?} not mounted"));
            assert!(at < containerd, "{mount:?} mounted after containerd starts");
        }
        assert!(script.contains("'/sys/fs/cgroup/pids/swyt-rn-1-0/node/cgroup.procs'"));
        assert!(script.contains("images import '/i/pause.tar'"));
        assert!(script.find("images-imported").unwrap() < script.find("'/k'").unwrap());
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
