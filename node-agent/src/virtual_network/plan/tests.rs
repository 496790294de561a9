use super::*;
use switchyard_crds::{Dhcp, DhcpRange, Dns, DnsHost, Forward, ForwardMode, IpConfig, Route};

fn layout() -> Layout {
    Layout {
        state_dir: "/state".into(),
        table: "switchyard_network".into(),
    }
}

fn network(name: &str, forward: Option<ForwardMode>, address: &str) -> Network {
    let mut network = Network::new(
        name,
        switchyard_crds::NetworkSpec {
            forward: forward.map(|mode| Forward {
                mode,
                ..Default::default()
            }),
            ips: vec![IpConfig {
                address: Some(address.into()),
                prefix: Some(24),
                dhcp: Some(Dhcp {
                    ranges: vec![DhcpRange {
                        start: "192.0.2.10".into(),
                        end: "192.0.2.20".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    network.metadata.uid = Some(format!("uid-of-{name}"));
    network
}

#[test]
fn the_mac_is_qemus_prefix_and_stable_per_uid() {
    let a = derived_mac("0b1e7c1c-3f6a-4c1e-9d1e-000000000001");
    assert_eq!(&a[..3], &MAC_PREFIX);
    assert_eq!(a, derived_mac("0b1e7c1c-3f6a-4c1e-9d1e-000000000001"));
    assert_ne!(a, derived_mac("0b1e7c1c-3f6a-4c1e-9d1e-000000000002"));
}

#[test]
fn a_given_mac_and_bridge_win_over_derived_ones() {
    let mut net = network("given", None, "192.0.2.1");
    net.spec.mac = Some("52:54:00:17:3F:37".into());
    net.spec.bridge = Some(Bridge {
        name: Some("virbr2".into()),
        stp: Some(false),
        delay: Some(3),
        ..Default::default()
    });
    let planned = plan(&net, &layout()).unwrap();
    assert_eq!(planned.mac, [0x52, 0x54, 0, 0x17, 0x3f, 0x37]);
    assert_eq!(planned.bridge, "virbr2");
    assert!(!planned.stp);
    assert_eq!(planned.forward_delay, 3);

    net.spec.mac = Some("52:54:00:17:3F".into());
    let error = plan(&net, &layout()).unwrap_err();
    assert!(error.to_string().contains("spec.mac"), "{error}");
}

#[test]
fn without_a_bridge_name_one_is_derived_and_stp_is_on() {
    let planned = plan(&network("plain", None, "192.0.2.1"), &layout()).unwrap();
    assert!(
        planned.bridge.starts_with(DERIVED_BRIDGE_PREFIX),
        "{}",
        planned.bridge
    );
    assert_eq!(planned.bridge.len(), 12);
    assert!(planned.stp);
    assert_eq!(planned.forward_delay, 0);
    let files = planned.dnsmasq.expect("DHCP runs dnsmasq");
    assert!(
        files
            .conf
            .contains(&format!("interface={}\n", planned.bridge))
    );
    assert!(
        files.conf.contains("pid-file=/state/plain.pid\n"),
        "{}",
        files.conf
    );
    assert!(
        files
            .conf
            .contains("dhcp-hostsfile=/state/plain.hostsfile\n")
    );
}

#[test]
fn isolated_networks_forward_nothing_and_open_ones_have_no_rules() {
    let isolated = plan(&network("iso", None, "192.0.2.1"), &layout()).unwrap();
    assert_eq!(isolated.forwarding, Forwarding::default());
    assert!(
        isolated
            .firewall
            .iter()
            .any(|c| c.to_string().contains("guest_output") && c.to_string().contains("reject"))
    );
    let nat = plan(
        &network("nat", Some(ForwardMode::Nat), "192.0.2.1"),
        &layout(),
    )
    .unwrap();
    assert!(nat.forwarding.ipv4 && !nat.forwarding.ipv6);
    assert!(
        nat.firewall
            .iter()
            .any(|c| c.to_string().contains("masquerade"))
    );
    let route = plan(
        &network("rt", Some(ForwardMode::Route), "192.0.2.1"),
        &layout(),
    )
    .unwrap();
    assert!(
        !route
            .firewall
            .iter()
            .any(|c| c.to_string().contains("masquerade"))
    );
    let open = plan(
        &network("op", Some(ForwardMode::Open), "192.0.2.1"),
        &layout(),
    )
    .unwrap();
    assert!(open.firewall.is_empty());
    assert!(open.forwarding.ipv4);
    let script = firewall_script("switchyard_network", &[&open]).unwrap();
    assert!(
        !script.contains("add chain"),
        "open alone sets up nothing: {script}"
    );
    assert!(script.contains("delete table ip switchyard_network"));
    let both = firewall_script("switchyard_network", &[&open, &isolated]).unwrap();
    assert!(both.contains(&format!(
        "insert rule ip switchyard_network guest_output iif \"{}\" counter reject",
        isolated.bridge
    )));
}

#[test]
fn routes_and_addresses_keep_their_prefixes() {
    let mut net = network("r", Some(ForwardMode::Route), "192.0.2.1");
    net.spec.routes = vec![Route {
        address: "198.51.100.0".into(),
        netmask: Some("255.255.255.0".into()),
        gateway: "192.0.2.254".into(),
        ..Default::default()
    }];
    let planned = plan(&net, &layout()).unwrap();
    assert_eq!(planned.addresses[0].prefix, 24);
    assert_eq!(planned.routes[0].destination.prefix, 24);
    assert_eq!(planned.routes[0].gateway.to_string(), "192.0.2.254");
}

#[test]
fn dnsmasq_is_reloaded_for_hosts_and_restarted_for_its_conf() {
    let mut net = network("d", None, "192.0.2.1");
    let before = plan(&net, &layout()).unwrap().dnsmasq.unwrap();
    assert_eq!(dnsmasq_change(None, &before), DnsmasqChange::Restart);
    assert_eq!(dnsmasq_change(Some(&before), &before), DnsmasqChange::None);
    net.spec.dns = Some(Dns {
        hosts: vec![DnsHost {
            ip: "192.0.2.5".into(),
            hostnames: vec!["printer".into()],
        }],
        ..Default::default()
    });
    let hosts = plan(&net, &layout()).unwrap().dnsmasq.unwrap();
    assert_eq!(dnsmasq_change(Some(&before), &hosts), DnsmasqChange::Reload);
    net.spec.ips[0].dhcp.as_mut().unwrap().ranges[0].end = "192.0.2.30".into();
    let conf = plan(&net, &layout()).unwrap().dnsmasq.unwrap();
    assert_eq!(dnsmasq_change(Some(&hosts), &conf), DnsmasqChange::Restart);
}

#[test]
fn a_line_break_in_a_dns_value_is_refused_naming_the_field() {
    let mut net = network("evil", None, "192.0.2.1");
    net.spec.dns = Some(Dns {
        hosts: vec![DnsHost {
            ip: "192.0.2.5".into(),
            hostnames: vec!["a\ndhcp-script=/bin/sh".into()],
        }],
        ..Default::default()
    });
    let error = plan(&net, &layout()).unwrap_err();
    assert!(error.to_string().contains("spec.dns.hosts[0]"), "{error}");
}

#[test]
fn lease_files_are_read_as_dnsmasq_writes_them() {
    let text = "1767225600 52:54:00:aa:bb:cc 192.0.2.11 guest1 01:52:54:00:aa:bb:cc\n\
                1767225601 52:54:00:aa:bb:cd 192.0.2.12 * *\n\
                duid 00:01:00:01:2c:aa\n\
                garbage\n";
    let leases = parse_leases(text);
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[0].hostname.as_deref(), Some("guest1"));
    assert_eq!(leases[0].ip, "192.0.2.11");
    assert_eq!(leases[1].hostname, None);
    assert_eq!(leases[1].client_id, None);
}

#[test]
fn aliases_mark_the_agents_bridges_only() {
    assert_eq!(network_of_alias(&bridge_alias("default")), Some("default"));
    assert_eq!(network_of_alias("switchyard-network:"), None);
    assert_eq!(network_of_alias("some-other-tool"), None);
}
