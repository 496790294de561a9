//! Why validation counts static DHCP hosts against dnsmasq's lease limit, shown with the real
//! dnsmasq and a real DHCP client (udhcpc) in two network namespaces this test creates and
//! removes (run as root): dnsmasq started on the generated files hands out at most
//! `dhcp-lease-max` leases, static ones included. A network validation refuses (two static
//! hosts, a one-address range) leaves the second host without a lease; the accepted one leases
//! both. Traffic stays on the veth pair between the two namespaces.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use switchyard_crds::Network;
use switchyard_libvirt::dnsmasq::{self, Paths};
use switchyard_libvirt::validate_network;
use switchyard_tests::netns::Sandbox;
use switchyard_tests::procs::spawn_tied;

/// The server's veth, named as the network's bridge so that `interface=` finds it.
const SERVER_LINK: &str = "dqsrv0";
const CLIENT_LINK: &str = "dqcli0";
const HOST_A: &str = "52:54:00:00:78:0a";
const HOST_B: &str = "52:54:00:00:78:0b";

fn network(range_end: &str) -> Network {
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: Network
metadata: {{name: leases}}
spec:
  bridge: {{name: {SERVER_LINK}}}
  ips:
  - address: 10.78.0.1
    prefix: 24
    dhcp:
      ranges: [{{start: 10.78.0.100, end: {range_end}}}]
      hosts:
      - {{mac: '{HOST_A}', ip: 10.78.0.10}}
      - {{mac: '{HOST_B}', ip: 10.78.0.11}}
"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

/// A directory of this test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("dnsmasq-leases-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// dnsmasq in the server namespace, killed when dropped (and with this process in any case).
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(server: &Sandbox, network: &Network, dir: &Path) -> Dnsmasq {
    let paths = Paths {
        state_dir: dir.display().to_string(),
        pid_file: None,
    };
    let files = dnsmasq::files(network, &paths).unwrap();
    let conf = dir.join("leases.conf");
    std::fs::write(&conf, &files.conf).unwrap();
    std::fs::write(paths.hostsfile("leases"), &files.hostsfile).unwrap();
    std::fs::write(paths.addn_hosts("leases"), &files.addn_hosts).unwrap();
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            server.name(),
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .arg(format!("--conf-file={}", conf.display()))
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .arg(format!("--log-facility={}", dir.join("log").display()))
        .args(["--log-dhcp", "--user=root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Dnsmasq(spawn_tied(command).expect("dnsmasq is installed (scripts/install-deps.sh)"))
}

/// Sets the client's MAC and asks for a lease; the address it got, if any. `timeout` ends a
/// client dnsmasq keeps refusing (udhcpc starts over after a NAK).
fn lease_for(client: &Sandbox, mac: &str) -> Option<String> {
    client.ip(&["link", "set", CLIENT_LINK, "down"]).unwrap();
    client
        .ip(&["link", "set", CLIENT_LINK, "address", mac])
        .unwrap();
    client.ip(&["link", "set", CLIENT_LINK, "up"]).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", client.name(), "timeout", "15"])
        .args([
            "udhcpc",
            "-i",
            CLIENT_LINK,
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
        ])
        .args(["-s", "/bin/true"])
        .output()
        .expect("udhcpc is installed (scripts/install-deps.sh)");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    log.lines()
        .find_map(|line| line.split("lease of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

fn namespaces() -> (Sandbox, Sandbox) {
    Sandbox::sweep_stale().expect("sweep stale sandboxes");
    let server = Sandbox::new("dqs").expect("a server namespace");
    let client = Sandbox::new("dqc").expect("a client namespace");
    server
        .ip(&[
            "link",
            "add",
            SERVER_LINK,
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_LINK,
        ])
        .unwrap();
    server
        .ip(&["link", "set", CLIENT_LINK, "netns", client.name()])
        .unwrap();
    server
        .ip(&["addr", "add", "10.78.0.1/24", "dev", SERVER_LINK])
        .unwrap();
    server.ip(&["link", "set", SERVER_LINK, "up"]).unwrap();
    (server, client)
}

#[test]
fn static_hosts_count_against_dnsmasqs_lease_limit() {
    let dir = TempDir::new();

    let refused = network("10.78.0.100");
    let problems = validate_network(&refused.spec).expect_err("2 hosts, 1 lease");
    assert!(
        problems[0]
            .message
            .contains("2 static DHCP hosts, but dnsmasq leases at most 1"),
        "{problems:?}"
    );
    {
        let (server, client) = namespaces();
        let _dnsmasq = start_dnsmasq(&server, &refused, dir.path());
        assert_eq!(lease_for(&client, HOST_A).as_deref(), Some("10.78.0.10"));
        assert_eq!(
            lease_for(&client, HOST_B),
            None,
            "the second host is refused"
        );
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            log.contains(&format!(
                "DHCPNAK({SERVER_LINK}) 10.78.0.11 {HOST_B} no leases left"
            )),
            "{log}"
        );
    }

    let accepted = network("10.78.0.101");
    validate_network(&accepted.spec).expect("2 hosts, 2 leases");
    let (server, client) = namespaces();
    let _ = std::fs::remove_file(dir.path().join("leases"));
    let _dnsmasq = start_dnsmasq(&server, &accepted, dir.path());
    assert_eq!(lease_for(&client, HOST_A).as_deref(), Some("10.78.0.10"));
    assert_eq!(lease_for(&client, HOST_B).as_deref(), Some("10.78.0.11"));
}
