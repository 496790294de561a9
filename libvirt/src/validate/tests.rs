use switchyard_crds::NetworkSpec;

use super::*;

fn spec(yaml: &str) -> NetworkSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("test spec does not parse: {e}\n{yaml}"))
}

fn problems(yaml: &str) -> Vec<FieldError> {
    validate_network(&spec(yaml)).err().unwrap_or_default()
}

/// Asserts that validation reports `field` with a message containing `needle`.
#[track_caller]
fn assert_problem(yaml: &str, field: &str, needle: &str) {
    let found = problems(yaml);
    assert!(
        found
            .iter()
            .any(|p| p.field == field && p.message.contains(needle)),
        "expected {field}: …{needle}…, got {found:#?}"
    );
}

#[track_caller]
fn assert_valid(yaml: &str) {
    assert_eq!(problems(yaml), Vec::new());
}

const VEPA: &str = "
forward:
  mode: vepa
  interfaces: [{dev: eth1}, {dev: eth2}]
";

#[test]
fn typical_networks_are_valid() {
    assert_valid(VEPA);
    assert_valid("forward: {mode: bridge}\nbridge: {name: br0}\nvlan: {tags: [{id: 10}]}");
    assert_valid("forward: {mode: passthrough, pf: ens1f0}\nvlan: {tags: [{id: 10}]}");
    assert_valid(
        "forward: {mode: nat, interfaces: [{dev: eth0}]}
ips: [{address: 192.168.122.1, netmask: 255.255.255.0, dhcp: {ranges: [{start: 192.168.122.2, end: 192.168.122.254}]}}]",
    );
}

#[test]
fn errors_name_the_field_and_the_element() {
    let found = problems("forward: {mode: vepa, dev: eth9, interfaces: [{dev: eth1}]}");
    assert_eq!(
        found,
        vec![FieldError {
            field: "spec.forward.interfaces[0].dev".into(),
            element: "/network/forward/interface[1]/@dev".into(),
            message: "forward dev 'eth9' must match the first pool interface, which is 'eth1'"
                .into(),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "spec.forward.interfaces[0].dev: forward dev 'eth9' must match the first pool interface, which is 'eth1'"
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let found = problems(
        "forward: {mode: vepa, interfaces: [{dev: eth1}, {dev: eth1}]}
mac: '52:54:00:00:00:01'
maxConnectionsPerDevice: 0",
    );
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.forward.interfaces[1].dev",
            "spec.mac",
            "spec.maxConnectionsPerDevice"
        ]
    );
}

#[test]
fn pool_rules() {
    assert_problem(
        "forward: {mode: passthrough, interfaces: [{dev: eth1}, {dev: eth2}, {dev: eth2}]}",
        "spec.forward.interfaces[2].dev",
        "can only be listed once",
    );
    let pci = "{domain: 0, bus: 3, slot: 0, function: 3}";
    assert_problem(
        &format!("forward: {{mode: hostdev, managed: true, addresses: [{pci}, {pci}]}}"),
        "spec.forward.addresses[1]",
        "PCI device 0000:03:00.3 can only be listed once",
    );
    assert_problem(
        &format!("forward: {{mode: passthrough, addresses: [{pci}]}}"),
        "spec.forward.addresses[0]",
        "only supported with forward mode hostdev",
    );
    assert_problem(
        "forward: {mode: hostdev, interfaces: [{dev: eth1}]}",
        "spec.forward.interfaces",
        "by PCI address",
    );
    assert_problem(
        "forward: {mode: vepa, pf: eth0, interfaces: [{dev: eth1}]}",
        "spec.forward",
        "mutually exclusive",
    );
    assert_problem(
        "forward: {mode: vepa, dev: eth0, pf: eth1}",
        "spec.forward.dev",
        "cannot be combined",
    );
    assert_problem(
        "forward: {mode: hostdev, addresses: [{domain: 0, bus: 3, slot: 32, function: 8}]}",
        "spec.forward.addresses[0].slot",
        "out of range 0-31",
    );
}

#[test]
fn which_modes_take_a_device() {
    assert_problem(
        "forward: {mode: open, dev: eth0}\nips: [{address: 10.0.0.1, prefix: 24}]",
        "spec.forward.dev",
        "open",
    );
    assert_problem(
        "forward: {mode: route, interfaces: [{dev: eth0}, {dev: eth1}]}\nips: [{address: 10.0.0.1, prefix: 24}]",
        "spec.forward.interfaces[1]",
        "only one forward interface",
    );
    assert_problem("forward: {mode: nat}", "spec.ips", "needs an IP address");
}

#[test]
fn bridge_settings_by_mode() {
    assert_problem(
        &format!("{VEPA}bridge: {{name: br0}}"),
        "spec.bridge.name",
        "not allowed in vepa mode",
    );
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0, stp: true}",
        "spec.bridge.stp",
        "only allowed in open",
    );
    assert_valid("forward: {mode: bridge}\nbridge: {name: br0, delay: 0}");
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0, delay: 2}",
        "spec.bridge.delay",
        "not in bridge",
    );
    assert_problem(
        "forward: {mode: bridge, interfaces: [{dev: eth0}]}\nbridge: {name: br0}",
        "spec.bridge.name",
        "but not both",
    );
    assert_problem(
        &format!("{VEPA}mtu: 9000"),
        "spec.mtu",
        "mtu is only allowed",
    );
    assert_valid("bridge: {name: virbr5, stp: false, delay: 2, zone: trusted}\nmtu: 9000");
}

#[test]
fn layer2_modes_have_no_host_address() {
    assert_problem(
        "forward: {mode: passthrough, pf: eth0}\nips: [{address: 192.168.122.1, netmask: 255.255.255.0}]",
        "spec.ips[0]",
        "<ip> is not supported with forward mode passthrough",
    );
    assert_problem(
        &format!("{VEPA}mac: '52:54:00:00:00:01'"),
        "spec.mac",
        "<mac> is not supported",
    );
    assert_problem(
        &format!("{VEPA}domain: {{name: example.com}}"),
        "spec.domain",
        "<domain>",
    );
    assert_problem(
        &format!("{VEPA}dns: {{hosts: [{{ip: 10.0.0.1, hostnames: [a]}}]}}"),
        "spec.dns",
        "<dns>",
    );
}

#[test]
fn bandwidth_rules() {
    assert_problem(
        &format!("{VEPA}bandwidth: {{inbound: {{average: 1000}}}}"),
        "spec.bandwidth",
        "network-wide bandwidth is not supported",
    );
    assert_problem(
        &format!("{VEPA}portgroups: [{{name: a, bandwidth: {{inbound: {{average: 10}}}}}}]"),
        "spec.portgroups[0].bandwidth",
        "not supported with forward mode vepa",
    );
    assert_valid(
        "forward: {mode: bridge}\nbridge: {name: br0}\nbandwidth: {inbound: {average: 1000, peak: 2000}}",
    );
    assert_problem(
        "bandwidth: {inbound: {average: 1000, floor: 10}}",
        "spec.bandwidth.inbound.floor",
        "only supported on a port's own bandwidth",
    );
    assert_problem(
        "bandwidth: {outbound: {peak: 10}}",
        "spec.bandwidth.outbound.average",
        "require an average",
    );
}

#[test]
fn vlan_rules() {
    assert_problem(
        &format!("{VEPA}vlan: {{tags: [{{id: 10}}]}}"),
        "spec.vlan",
        "forward mode vepa cannot apply vlan tags",
    );
    assert_problem(
        &format!("{VEPA}portgroups: [{{name: tagged, vlan: {{tags: [{{id: 10}}]}}}}]"),
        "spec.portgroups[0].vlan",
        "ports in portgroup 'tagged' would get vlan tags",
    );
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0}\nvlan: {trunk: false, tags: [{id: 1}, {id: 2}]}",
        "spec.vlan.trunk",
        "trunk: yes is required",
    );
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0}\nvlan: {tags: [{id: 5000}]}",
        "spec.vlan.tags[0].id",
        "too large",
    );
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0}\nvlan: {tags: [{id: 1, nativeMode: tagged}, {id: 2, nativeMode: untagged}]}",
        "spec.vlan.tags[1].nativeMode",
        "only one tag",
    );
    assert_problem(
        "forward: {mode: bridge}\nbridge: {name: br0}\nvlan: {}",
        "spec.vlan.tags",
        "at least one tag",
    );
}

#[test]
fn portgroup_rules() {
    assert_problem(
        &format!("{VEPA}portgroups: [{{name: a, default: true}}, {{name: b, default: true}}]"),
        "spec.portgroups[1].default",
        "'a' already is",
    );
    assert_problem(
        &format!("{VEPA}portgroups: [{{name: a}}, {{name: a}}]"),
        "spec.portgroups[1].name",
        "used twice",
    );
}

#[test]
fn virtualport_rules() {
    assert_problem(
        &format!("{VEPA}virtualport: {{managerid: 1}}"),
        "spec.virtualport.type",
        "needs a type",
    );
    assert_problem(
        &format!("{VEPA}virtualport: {{type: 802.1Qbg, profileid: x}}"),
        "spec.virtualport.profileid",
        "not a parameter of <virtualport type='802.1Qbg'>",
    );
    assert_problem(
        &format!(
            "{VEPA}virtualport: {{type: 802.1Qbh, profileid: {}}}",
            "p".repeat(40)
        ),
        "spec.virtualport.profileid",
        "too long",
    );
    assert_problem(
        &format!(
            "{VEPA}virtualport: {{type: 802.1Qbg, managerid: 1, typeid: 16777216, typeidversion: 1, instanceid: nope}}"
        ),
        "spec.virtualport.instanceid",
        "not a UUID",
    );
    let found = problems(&format!(
        "{VEPA}virtualport: {{type: 802.1Qbg, typeid: 16777216}}"
    ));
    assert!(
        found.iter().any(|p| p.field == "spec.virtualport.typeid"
            && p.element == "/network/virtualport/parameters/@typeid"),
        "{found:#?}"
    );
}

#[test]
fn ip_rules() {
    assert_problem(
        "ips: [{address: '2001:db8::1', prefix: 64}]",
        "spec.ips[0].address",
        "does not match family ipv4",
    );
    assert_problem(
        "ips: [{family: ipv6, address: '2001:db8::1', netmask: 255.255.255.0}]",
        "spec.ips[0].netmask",
        "not allowed for IPv6",
    );
    assert_problem(
        "ips: [{address: 10.0.0.1, netmask: 255.0.0.0, prefix: 8}]",
        "spec.ips[0].prefix",
        "both a prefix and a netmask",
    );
    assert_problem(
        "ips: [{address: 10.0.0.1, prefix: 33}]",
        "spec.ips[0].prefix",
        "out of range 0-32",
    );
    assert_problem(
        "ips: [{address: 10.0.0.1, netmask: 255.0.255.0}]",
        "spec.ips[0].netmask",
        "contiguous",
    );
    assert_problem("ips: [{}]", "spec.ips[0].address", "required");
    assert_problem(
        "ips: [{address: 192.168.1.1, prefix: 24, dhcp: {ranges: [{start: 192.168.2.2, end: 192.168.2.9}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "not entirely within network 192.168.1.0/24",
    );
    assert_problem(
        "ips: [{address: 192.168.1.1, prefix: 24, dhcp: {ranges: [{start: 192.168.1.9, end: 192.168.1.2}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "after its end",
    );
    assert_problem(
        "ips:
- {address: 192.168.1.1, prefix: 24, dhcp: {ranges: [{start: 192.168.1.2, end: 192.168.1.9}]}}
- {address: 192.168.2.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', ip: 192.168.2.5}]}}",
        "spec.ips[1].dhcp",
        "one IPv4 address per network",
    );
    assert_problem(
        "ips: [{family: ipv6, address: 'fd00::1', prefix: 64, dhcp: {hosts: [{mac: '52:54:00:00:00:01', ip: 'fd00::5'}]}}]",
        "spec.ips[0].dhcp.hosts[0].mac",
        "not allowed in an IPv6 DHCP host",
    );
    assert_problem(
        "ips: [{address: 10.0.0.1, prefix: 8, dhcp: {hosts: [{ip: 10.0.0.5}]}}]",
        "spec.ips[0].dhcp.hosts[0]",
        "needs a mac or a name",
    );
    assert_problem(
        "ips: [{address: 10.0.0.1, prefix: 8, dhcp: {ranges: [{start: 10.0.0.2, end: 10.0.0.9, lease: {expiry: 60, unit: seconds}}]}}]",
        "spec.ips[0].dhcp.ranges[0].lease.expiry",
        "minimum lease time",
    );
    assert_problem(
        "ips: [{family: ipv6, address: 'fd00::1', tftpRoot: /srv}]",
        "spec.ips[0].tftpRoot",
        "only supported on IPv4",
    );
}

#[test]
fn route_rules() {
    let base = "ips: [{address: 192.168.122.1, netmask: 255.255.255.0}]\n";
    assert_valid(&format!(
        "{base}routes: [{{address: 192.168.222.0, netmask: 255.255.255.0, gateway: 192.168.122.10}}]"
    ));
    assert_problem(
        &format!("{base}routes: [{{address: 192.168.222.0, prefix: 24, gateway: 10.9.9.9}}]"),
        "spec.routes[0].gateway",
        "unreachable",
    );
    assert_problem(
        &format!("{base}routes: [{{address: 192.168.222.5, prefix: 24, gateway: 192.168.122.10}}]"),
        "spec.routes[0].address",
        "did you mean 192.168.222.0?",
    );
    assert_problem(
        &format!(
            "{base}routes: [{{address: 192.168.222.0, prefix: 24, gateway: 192.168.122.10, metric: 0}}]"
        ),
        "spec.routes[0].metric",
        "greater than 0",
    );
}

#[test]
fn dns_rules() {
    assert_problem(
        "dns: {enable: false, txts: [{name: example, value: v}]}",
        "spec.dns",
        "DNS is disabled",
    );
    assert_problem(
        "dns: {srvs: [{service: name, protocol: tcp, port: 10}]}",
        "spec.dns.srvs[0].port",
        "without a target",
    );
    assert_problem(
        "dns: {srvs: [{service: 'a.b', protocol: tcp}]}",
        "spec.dns.srvs[0].service",
        "invalid character",
    );
    assert_problem(
        "dns: {txts: [{name: 'a b', value: v}]}",
        "spec.dns.txts[0].name",
        "spaces or commas",
    );
    assert_problem(
        "dns: {forwarders: [{}]}",
        "spec.dns.forwarders[0]",
        "addr, a domain, or both",
    );
    assert_problem(
        "dns: {hosts: [{ip: 10.0.0.1}]}",
        "spec.dns.hosts[0].hostnames",
        "at least one hostname",
    );
    assert_problem(
        "domain: {name: example.com, register: true}",
        "spec.domain.register",
        "requires localOnly",
    );
}

#[test]
fn identity_rules() {
    assert_problem("mac: '01:00:5e:00:00:01'", "spec.mac", "multicast");
    assert_problem("mac: nope", "spec.mac", "not a MAC address");
    assert_problem("uuid: nope", "spec.uuid", "not a UUID");
    assert_problem("libvirtName: a/b", "spec.libvirtName", "contains '/'");
    assert_problem("title: \"two\\nlines\"", "spec.title", "one line");
}

#[test]
fn switchyard_rules() {
    assert_problem(
        &format!(
            "{VEPA}nodeGroups: [{{name: a, nodeSelector: {{}}}}, {{name: a, nodeSelector: {{}}}}]"
        ),
        "spec.nodeGroups[1].name",
        "defined twice",
    );
    assert_problem(
        "forward: {mode: nat}\nips: [{address: 10.0.0.1, prefix: 8}]\nnodeGroups: [{name: a, nodeSelector: {}, interfaces: [{dev: eth1}]}]",
        "spec.nodeGroups[0]",
        "uses no device pool",
    );
    assert_problem(
        &format!("{VEPA}nodeGroups: [{{name: a, nodeSelector: {{}}, bridge: br0}}]"),
        "spec.nodeGroups[0].bridge",
        "only forward mode bridge",
    );
    assert_problem(
        "forward: {mode: bridge, interfaces: [{dev: eth1}]}\nnodeGroups: [{name: a, nodeSelector: {}, bridge: br0}]",
        "spec.forward",
        "either a host bridge",
    );
    assert_problem(
        &format!("{VEPA}maxConnectionsPerDevice: 5000"),
        "spec.maxConnectionsPerDevice",
        "out of range 1-4096",
    );
    assert_problem(
        "forward: {mode: vepa, interfaces: [{dev: a-very-long-device-name}]}",
        "spec.forward.interfaces[0].dev",
        "longer than the kernel's 15 characters",
    );
    assert_problem(
        "dnsmasqOptions: [\"a\\nb\"]",
        "spec.dnsmasqOptions[0]",
        "line break",
    );
    assert_problem(
        "libvirtMetadata: '<unclosed'",
        "spec.libvirtMetadata",
        "must be XML elements",
    );
    let found = problems(&format!(
        "{VEPA}nodeGroups: [{{name: '', nodeSelector: {{}}}}]"
    ));
    assert_eq!(
        found[0].element,
        "/network (switchyard only: spec.nodeGroups[0].name)"
    );
}

#[test]
fn definition_checks_are_the_parser_subset() {
    // A layer-2 <ip> is a define-time problem, not a parse-time one.
    let layer2 =
        spec("forward: {mode: passthrough, pf: eth0}\nips: [{address: 10.0.0.1, prefix: 8}]");
    assert!(check_definition(&layer2).is_empty());
    assert!(validate_network(&layer2).is_err());
    let duplicate = spec("forward: {mode: vepa, interfaces: [{dev: eth1}, {dev: eth1}]}");
    assert_eq!(check_definition(&duplicate).len(), 1);
}

const DHCP_NET: &str = "
forward: {mode: nat}
bridge: {name: virbr9}
ips:
- address: 10.9.0.1
  prefix: 24
  dhcp:
    ranges: [{start: 10.9.0.10, end: 10.9.0.19}]
";

/// Every kind of value written into a dnsmasq file, with a line break (CVE-2026-61477): each
/// refused at its own field, at parse time (the XML import refuses it too).
#[test]
fn line_breaks_in_dnsmasq_values_are_refused() {
    let cases: &[(&str, &str)] = &[
        (
            "dns: {txts: [{name: t, value: \"v\\ndhcp-script=/tmp/x\"}]}",
            "spec.dns.txts[0].value",
        ),
        (
            "dns: {txts: [{name: \"t\\r\", value: v}]}",
            "spec.dns.txts[0].name",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, domain: \"d\\nx\"}]}",
            "spec.dns.srvs[0].domain",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, target: \"t\\nx\", port: 1}]}",
            "spec.dns.srvs[0].target",
        ),
        (
            "dns: {forwarders: [{domain: \"d\\nserver=1.2.3.4\"}]}",
            "spec.dns.forwarders[0].domain",
        ),
        (
            "dns: {hosts: [{ip: 10.9.0.5, hostnames: [ok, \"a\\nb\"]}]}",
            "spec.dns.hosts[0].hostnames[1]",
        ),
        ("domain: {name: \"example\\ncom\"}", "spec.domain.name"),
        ("libvirtName: \"a\\rb\"", "spec.libvirtName"),
        ("libvirtName: \"a\\nb\"", "spec.libvirtName"),
        (
            "dnsmasqOptions: [ok, \"a\\u0000b\"]",
            "spec.dnsmasqOptions[1]",
        ),
        ("bridge: {name: \"br\\r\"}", "spec.bridge.name"),
    ];
    for (extra, field) in cases {
        let yaml = format!("{DHCP_NET}{extra}\n");
        // Later keys replace DHCP_NET's (bridge): serde_yaml keeps the last.
        let yaml = yaml.replacen(
            "bridge: {name: virbr9}\n",
            "",
            usize::from(extra.starts_with("bridge")),
        );
        let found = check_definition(&spec(&yaml));
        let hits: Vec<_> = found.iter().filter(|p| p.field == *field).collect();
        assert_eq!(
            hits.len(),
            1,
            "{field}: expected one problem, got {found:#?}"
        );
        assert!(
            hits[0].message.contains("line break") || hits[0].message.contains("NUL"),
            "{hits:?}"
        );
    }
    let host_fields = [
        ("tftpRoot: \"/srv\\nx\"", "spec.ips[0].tftpRoot"),
        (
            "dhcp: {bootp: {file: \"pxe\\n\"}, ranges: [{start: 10.9.0.10, end: 10.9.0.19}]}",
            "spec.ips[0].dhcp.bootp.file",
        ),
        (
            "dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: \"vm\\nx\", ip: 10.9.0.5}]}",
            "spec.ips[0].dhcp.hosts[0].name",
        ),
    ];
    for (extra, field) in host_fields {
        let yaml =
            format!("forward: {{mode: nat}}\nips: [{{address: 10.9.0.1, prefix: 24, {extra}}}]\n");
        assert_problem(&yaml, field, "line break");
    }
}

#[test]
fn dnsmasq_field_separators_and_bad_host_names_are_refused() {
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: 'vm,ignore', ip: 10.9.0.5}]}}]",
        "spec.ips[0].dhcp.hosts[0].name",
        "must not contain ','",
    );
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: 'a*b', ip: 10.9.0.5}]}}]",
        "spec.ips[0].dhcp.hosts[0].name",
        "dnsmasq takes only letters, digits",
    );
    assert_valid(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', name: a_b.example-1, ip: 10.9.0.5}]}}]",
    );
    let cases = [
        (
            "dns: {hosts: [{ip: 10.9.0.5, hostnames: ['a b']}]}",
            "spec.dns.hosts[0].hostnames[0]",
            "' '",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, target: 'h,x', port: 1}]}",
            "spec.dns.srvs[0].target",
            "','",
        ),
        (
            "dns: {srvs: [{service: s, protocol: tcp, domain: 'd,x'}]}",
            "spec.dns.srvs[0].domain",
            "','",
        ),
        (
            "dns: {forwarders: [{domain: 'a/b'}]}",
            "spec.dns.forwarders[0].domain",
            "'/'",
        ),
        ("domain: {name: 'a,b'}", "spec.domain.name", "','"),
        (
            "ips: [{address: 10.9.0.1, prefix: 24, tftpRoot: '/srv,eth0'}]",
            "spec.ips[0].tftpRoot",
            "','",
        ),
        (
            "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {bootp: {file: 'a,b'}}}]",
            "spec.ips[0].dhcp.bootp.file",
            "','",
        ),
    ];
    for (yaml, field, needle) in cases {
        assert_problem(
            yaml,
            field,
            &format!("must not contain {needle}: it separates"),
        );
    }
}

#[test]
fn dhcp_ranges_and_reverse_zones_libvirt_cannot_use_are_refused() {
    assert_problem(
        "ips: [{address: 10.0.0.1, prefix: 8, dhcp: {ranges: [{start: 10.0.0.2, end: 10.2.0.0}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "too large",
    );
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {ranges: [{start: 10.9.0.2, end: 10.9.0.255}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "broadcast address",
    );
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {ranges: [{start: 10.9.0.0, end: 10.9.0.9}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "network address",
    );
    assert_problem(
        "ips: [{family: ipv6, address: '2001:db8::1', prefix: 64, dhcp: {ranges: [{start: '2001:db8::2', end: '2001:db8::1:0'}]}}]",
        "spec.ips[0].dhcp.ranges[0]",
        "last 16 bits",
    );
    // A reversed range is reported once, by the address rules.
    let reversed = problems(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {ranges: [{start: 10.9.0.9, end: 10.9.0.2}]}}]",
    );
    assert_eq!(reversed.len(), 1, "{reversed:#?}");
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 20, localPtr: true}]",
        "spec.ips[0].localPtr",
        "multiple of 8",
    );
    assert_valid("ips: [{address: 10.9.0.1, prefix: 24, localPtr: true}]");
}

fn hosts_yaml(count: u32, ranges: &str) -> String {
    let hosts: String = (0..count)
        .map(|i| {
            format!(
                "      - {{mac: '52:54:00:00:{:02x}:{:02x}', ip: 10.8.{}.{}}}\n",
                i / 256,
                i % 256,
                i / 250,
                i % 250 + 2
            )
        })
        .collect();
    format!(
        "forward: {{mode: nat}}\nbridge: {{name: virbr8}}\nips:\n  - address: 10.8.255.1\n    prefix: 16\n    dhcp:\n      ranges: [{ranges}]\n      hosts:\n{hosts}"
    )
}

/// 10,000 static hosts: fine with ranges dnsmasq can lease that many from, refused with the
/// numbers when it cannot (no ranges: dnsmasq's default of 1,000 leases).
#[test]
fn static_hosts_need_enough_leases() {
    assert_valid(&hosts_yaml(
        10_000,
        "{start: 10.8.100.1, end: 10.8.199.254}",
    ));
    let no_ranges = hosts_yaml(10_000, "");
    assert_problem(
        &no_ranges,
        "spec.ips[0].dhcp.hosts",
        "10000 static DHCP hosts, but dnsmasq leases at most 1000 addresses",
    );
    assert_valid(&hosts_yaml(1_000, ""));
    assert_problem(
        &hosts_yaml(300, "{start: 10.8.200.1, end: 10.8.200.254}"),
        "spec.ips[0].dhcp.hosts",
        "at most 254 addresses on this network (the number of addresses in the DHCP ranges)",
    );
}

#[test]
fn two_static_hosts_with_one_address_are_refused() {
    assert_problem(
        "ips: [{address: 10.9.0.1, prefix: 24, dhcp: {hosts: [{mac: '52:54:00:00:00:01', ip: 10.9.0.5}, {mac: '52:54:00:00:00:02', ip: 10.9.0.5}]}}]",
        "spec.ips[0].dhcp.hosts[1].ip",
        "already given to spec.ips[0].dhcp.hosts[0]",
    );
}
