//! What the corpus does not cover: switchyard's differences from libvirt, the addn-hosts file,
//! paths, and the refusals. Byte-identity with libvirt is tests/dnsmasq_conformance.rs.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_crds::{Network, NetworkSpec};

use super::subnets::{ptr_domain, range_size};
use super::*;

fn network(name: &str, yaml: &str) -> Network {
    let spec: NetworkSpec =
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("test spec: {e}\n{yaml}"));
    Network {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

const NAT: &str = "
forward: {mode: nat}
bridge: {name: virbr7}
ips:
- address: 10.7.0.1
  prefix: 24
  dhcp:
    ranges: [{start: 10.7.0.10, end: 10.7.0.19}]
    hosts: [{mac: '52:54:00:00:00:01', name: vm1, ip: 10.7.0.5}]
";

fn conf_of(yaml: &str, paths: &Paths) -> Result<String, DnsmasqError> {
    conf(&network("net", yaml), paths)
}

#[test]
fn paths_come_from_the_state_dir_and_pid_file() {
    let paths = Paths {
        state_dir: "/run/switchyard/dnsmasq".into(),
        pid_file: Some("/run/switchyard/dnsmasq/net.pid".into()),
    };
    let text = conf_of(NAT, &paths).unwrap();
    assert!(text.contains("\npid-file=/run/switchyard/dnsmasq/net.pid\nexcept-interface=lo\n"));
    assert!(text.contains("\ndhcp-hostsfile=/run/switchyard/dnsmasq/net.hostsfile\n"));
    assert!(text.contains("\naddn-hosts=/run/switchyard/dnsmasq/net.addnhosts\n"));
    assert!(text.contains("\ndhcp-lease-max=10\n"));
    assert!(
        !conf_of(NAT, &Paths::libvirt_test())
            .unwrap()
            .contains("pid-file")
    );
    assert_eq!(
        paths.conf_file("a\"b"),
        "/run/switchyard/dnsmasq/a\"b.conf",
        "libvirt does not escape the conf file's name"
    );
    assert_eq!(
        paths.hostsfile("a<b>&'\u{1}\u{1f}"),
        "/run/switchyard/dnsmasq/a&lt;b&gt;&amp;&apos;\u{1f}.hostsfile"
    );
}

#[test]
fn forwarder_ports_use_dnsmasq_syntax() {
    let yaml = format!(
        "{NAT}dns:\n  forwarders: [{{addr: 192.0.2.53, port: 5353}}, {{domain: corp, addr: '2001:db8::35', port: 53}}]\n"
    );
    let text = conf_of(&yaml, &Paths::libvirt_test()).unwrap();
    assert!(
        text.contains(
            "strict-order\nserver=192.0.2.53#5353\nserver=/corp/2001:db8::35#53\nno-resolv\n"
        ),
        "{text}"
    );
}

#[test]
fn addn_hosts_groups_names_by_address() {
    let net = network(
        "net",
        "dns:\n  hosts:\n  - {ip: 10.0.0.5, hostnames: [a, b]}\n  - {ip: '2001:DB8::1', hostnames: [c]}\n  - {ip: 10.0.0.5, hostnames: [d]}\n",
    );
    assert_eq!(
        addn_hosts(&net.spec).unwrap(),
        "10.0.0.5\ta\tb\td\t\n2001:db8::1\tc\t\n"
    );
    assert_eq!(addn_hosts(&network("net", "{}").spec).unwrap(), "");
}

#[test]
fn every_written_value_is_refused_with_a_line_break() {
    let cases = [
        (
            "dns: {txts: [{name: t, value: \"a\\ndhcp-script=/x\"}]}",
            "spec.dns.txts[0].value",
        ),
        (
            "dns: {txts: [{name: \"t\\r\", value: v}]}",
            "spec.dns.txts[0].name",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, target: \"h\\nx\"}]}",
            "spec.dns.srvs[0].target",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, domain: \"d\\nx\"}]}",
            "spec.dns.srvs[0].domain",
        ),
        (
            "dns: {forwarders: [{domain: \"d\\nx\"}]}",
            "spec.dns.forwarders[0].domain",
        ),
        ("domain: {name: \"d\\nx\"}", "spec.domain.name"),
        ("dnsmasqOptions: [\"a\\nb\"]", "spec.dnsmasqOptions[0]"),
        (
            "ips: [{address: 10.7.1.1, prefix: 24, tftpRoot: \"/t\\nx\"}]",
            "spec.ips[1].tftpRoot",
        ),
        ("libvirtName: \"a\\nb\"", "spec.libvirtName"),
    ];
    for (extra, field) in cases {
        // An extra address goes second in NAT's list, after the one with DHCP.
        let yaml = match extra.strip_prefix("ips: [") {
            Some(ip) => format!("{NAT}- {}\n", ip.trim_end_matches(']')),
            None => format!("{NAT}{extra}\n"),
        };
        let err = conf_of(&yaml, &Paths::libvirt_test()).expect_err(field);
        assert_eq!(err.field, field, "{yaml}");
        assert!(err.message.contains("line break"), "{err}");
    }
    let bootp = NAT.replace("    hosts:", "    bootp: {file: \"f\\nx\"}\n    hosts:");
    let err = conf_of(&bootp, &Paths::libvirt_test()).unwrap_err();
    assert_eq!(err.field, "spec.ips[0].dhcp.bootp.file");
    let hosts = network(
        "net",
        "ips: [{address: 10.0.0.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: \"a\\nb\", ip: 10.0.0.2}]}}]",
    );
    let err = hostsfile(&hosts.spec).unwrap_err();
    assert_eq!(err.field, "spec.ips[0].dhcp.hosts[0].name");
    let dns_host = network(
        "net",
        "dns: {hosts: [{ip: 10.0.0.2, hostnames: [\"a\\nb\"]}]}",
    );
    let err = addn_hosts(&dns_host.spec).unwrap_err();
    assert_eq!(err.field, "spec.dns.hosts[0].hostnames[0]");
    let paths = Paths {
        state_dir: "/x\ny".into(),
        pid_file: None,
    };
    assert!(conf_of(NAT, &paths).is_err());
}

#[test]
fn refusals_name_the_field() {
    let err = conf_of("forward: {mode: vepa, dev: eth0}", &Paths::libvirt_test()).unwrap_err();
    assert_eq!(err.field, "spec.forward.mode");
    let err = conf_of("forward: {mode: nat}", &Paths::libvirt_test()).unwrap_err();
    assert_eq!(err.field, "spec.bridge.name");
    let wide = NAT
        .replace("10.7.0.1\n  prefix: 24", "10.7.0.1\n  prefix: 8")
        .replace("end: 10.7.0.19", "end: 10.8.0.19");
    let err = conf_of(&wide, &Paths::libvirt_test()).unwrap_err();
    assert_eq!(err.field, "spec.ips[0].dhcp.ranges[0]");
    assert!(err.message.contains("too large"), "{err}");
    let ptr = NAT.replace("prefix: 24", "prefix: 20\n  localPtr: true");
    let err = conf_of(&ptr, &Paths::libvirt_test()).unwrap_err();
    assert_eq!(err.field, "spec.ips[0].localPtr");
}

#[test]
fn range_sizes_as_libvirt_counts_them() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let net = ip("10.0.0.1");
    assert_eq!(
        range_size(ip("10.0.0.2"), ip("10.0.0.254"), net, 24),
        Ok(253)
    );
    assert_eq!(
        range_size(ip("10.0.0.1"), ip("10.1.0.0"), net, 8),
        Ok(65536)
    );
    assert!(range_size(ip("10.0.0.1"), ip("10.1.0.1"), net, 8).is_err());
    assert!(range_size(ip("10.0.0.0"), ip("10.0.0.9"), net, 24).is_err());
    assert!(range_size(ip("10.0.0.2"), ip("10.0.0.255"), net, 24).is_err());
    assert!(range_size(ip("10.0.0.9"), ip("10.0.0.2"), net, 24).is_err());
    assert!(range_size(ip("10.0.1.2"), ip("10.0.1.9"), net, 24).is_err());
    let net6 = ip("2001:db8::1");
    assert_eq!(
        range_size(ip("2001:db8::10"), ip("2001:db8::ff"), net6, 64),
        Ok(240)
    );
    assert!(range_size(ip("2001:db8::10"), ip("2001:db8::1:0"), net6, 64).is_err());
}

#[test]
fn reverse_zones() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        ptr_domain(ip("192.168.122.1"), 24).unwrap(),
        "122.168.192.in-addr.arpa"
    );
    assert_eq!(ptr_domain(ip("10.1.2.3"), 8).unwrap(), "10.in-addr.arpa");
    assert_eq!(
        ptr_domain(ip("2001:db8::1"), 32).unwrap(),
        "8.b.d.0.1.0.0.2.ip6.arpa"
    );
    assert_eq!(ptr_domain(ip("10.1.2.3"), 20), None);
    assert_eq!(ptr_domain(ip("10.1.2.3"), 32), None);
}

#[test]
fn which_networks_run_dnsmasq() {
    assert!(runs_dnsmasq(&network("n", NAT).spec));
    assert!(!runs_dnsmasq(&network("n", "forward: {mode: nat}").spec));
    assert!(runs_dnsmasq(
        &network("n", "ips: [{address: 10.0.0.1, prefix: 24}]").spec
    ));
    assert!(!runs_dnsmasq(
        &network(
            "n",
            "dns: {enable: false}\nips: [{address: 10.0.0.1, prefix: 24}]"
        )
        .spec
    ));
    assert!(runs_dnsmasq(
        &network(
            "n",
            "dns: {enable: false}\nips: [{address: 10.0.0.1, prefix: 24, tftpRoot: /srv}]"
        )
        .spec
    ));
    assert!(!runs_dnsmasq(
        &network("n", "forward: {mode: bridge}\nbridge: {name: br0}").spec
    ));
}

#[test]
fn ten_thousand_hosts_are_generated() {
    let hosts: String = (0..10_000u32)
        .map(|i| {
            format!(
                "    - {{mac: '52:54:00:00:{:02x}:{:02x}', name: vm{i}, ip: 10.8.{}.{}}}\n",
                i / 256,
                i % 256,
                i / 250,
                i % 250 + 2
            )
        })
        .collect();
    let yaml = format!(
        "forward: {{mode: nat}}\nbridge: {{name: virbr8}}\nips:\n- address: 10.8.255.1\n  prefix: 16\n  dhcp:\n    ranges: [{{start: 10.8.100.1, end: 10.8.199.254}}]\n    hosts:\n{hosts}"
    );
    let net = network("big", &yaml);
    let files = files(&net, &Paths::libvirt_test()).unwrap();
    assert_eq!(files.hostsfile.lines().count(), 10_000);
    assert!(
        files
            .hostsfile
            .starts_with("52:54:00:00:00:00,10.8.0.2,vm0\n")
    );
    assert!(
        files.conf.contains("\ndhcp-lease-max=25598\n"),
        "{}",
        files.conf
    );
}
