use switchyard_crds::{Forward, ForwardInterface, ForwardMode, Network, NetworkSpec};

use super::*;

fn import(xml: &str) -> Network {
    network_from_xml(xml).unwrap_or_else(|e| panic!("import failed: {e}\n{xml}"))
}

fn import_error(xml: &str) -> String {
    match network_from_xml(xml) {
        Ok(net) => panic!("imported, expected an error: {net:?}"),
        Err(err) => err.to_string(),
    }
}

fn named(name: &str, spec: NetworkSpec) -> Network {
    Network {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

#[test]
fn object_name_is_derived_and_the_libvirt_name_kept() {
    let net = import("<network><name>8021Qbh_net</name></network>");
    assert_eq!(net.metadata.name.as_deref(), Some("8021qbh-net"));
    assert_eq!(net.spec.libvirt_name.as_deref(), Some("8021Qbh_net"));
    assert!(network_to_xml(&net).contains("<name>8021Qbh_net</name>"));

    let plain = import("<network><name>default</name></network>");
    assert_eq!(plain.metadata.name.as_deref(), Some("default"));
    assert_eq!(plain.spec.libvirt_name, None);
}

#[test]
fn special_characters_survive_a_round_trip() {
    let xml = "<network><name>a\"b'c&amp;&lt;d&gt;</name><dns><txt name='t' value='x &apos;y&apos; &quot;z&quot; &#9;'/></dns></network>";
    let net = import(xml);
    assert_eq!(net.spec.libvirt_name.as_deref(), Some("a\"b'c&<d>"));
    let again = import(&network_to_xml(&net));
    assert_eq!(again.spec.libvirt_name, net.spec.libvirt_name);
    assert_eq!(again.spec.dns, net.spec.dns);
    assert_eq!(again.spec.dns.unwrap().txts[0].value, "x 'y' \"z\" \t");
}

#[test]
fn export_of_a_hand_written_spec_follows_libvirt() {
    let net = named(
        "uplink",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Passthrough,
                dev: Some("ens1f0".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert_eq!(
        network_to_xml(&net),
        "<network>\n  <name>uplink</name>\n  <forward dev='ens1f0' mode='passthrough'>\n    <interface dev='ens1f0'/>\n  </forward>\n</network>\n"
    );

    let isolated = named("iso", NetworkSpec::default());
    assert_eq!(
        network_to_xml(&isolated),
        "<network>\n  <name>iso</name>\n  <bridge stp='on' delay='0'/>\n</network>\n"
    );
}

#[test]
fn pool_devices_become_forward_dev_only_without_a_pf() {
    let net = named(
        "vfs",
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Vepa,
                interfaces: vec![
                    ForwardInterface { dev: "eth1".into() },
                    ForwardInterface { dev: "eth2".into() },
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert!(network_to_xml(&net).contains("<forward dev='eth1' mode='vepa'>"));
}

#[test]
fn unknown_content_is_refused_not_dropped() {
    assert_eq!(
        import_error("<network><name>n</name><frobnicate/></network>"),
        "/network: unknown element <frobnicate> in <network> (expected <name>, <uuid>, <title>, <description>, <metadata>, <forward>, <bridge>, <mtu>, <mac>, <domain>, <dns>, <vlan>, <bandwidth>, <port>, <ip>, <route>, <virtualport>, <portgroup>)"
    );
    assert_eq!(
        import_error("<network><name>n</name><bridge name='br0' colour='red'/></network>"),
        "/network/bridge/@colour: unknown attribute 'colour' on <bridge> (expected name, stp, delay, macTableManager, zone)"
    );
    assert!(
        import_error("<domain><name>n</name></domain>")
            .contains("the root element must be <network>")
    );
}

#[test]
fn live_status_attributes_are_accepted_and_dropped() {
    let net = import(
        "<network connections='2'><name>n</name><forward mode='vepa'><interface dev='eth1' connections='2'/></forward></network>",
    );
    assert!(!network_to_xml(&net).contains("connections"));
}

#[test]
fn wrong_types_and_unknown_modes_are_named() {
    let cases = [
        (
            "<network><name>n</name><forward mode='tunnel'/></network>",
            "/network/forward/@mode: 'tunnel' is not a valid mode; expected 'nat' or 'route' or 'open' or 'bridge' or 'private' or 'vepa' or 'passthrough' or 'hostdev'",
        ),
        (
            "<network><name>n</name><mtu size='big'/></network>",
            "/network/mtu/@size: 'big' is not a whole number from 0 to 4294967295",
        ),
        (
            "<network><name>n</name><mtu size='-1'/></network>",
            "/network/mtu/@size: '-1' is not a whole number",
        ),
        (
            "<network><name>n</name><bridge stp='maybe'/></network>",
            "/network/bridge/@stp: 'maybe' is not a valid stp; expected 'on' or 'off'",
        ),
        (
            "<network><name>n</name><vlan><tag id='4096'/></vlan></network>",
            "/network/vlan/tag[1]/@id: '4096' is not a whole number from 0 to 4095",
        ),
        (
            "<network><name>n</name><vlan/></network>",
            "/network/vlan: each <vlan> needs at least one <tag id='n'/>",
        ),
        (
            "<network><name>n</name><virtualport type='vxlan'/></network>",
            "/network/virtualport/@type: 'vxlan' is not a valid type",
        ),
        (
            "<network><name>n</name><forward mode='hostdev'><address type='usb'/></forward></network>",
            "/network/forward/address[1]/@type: address type 'usb' is not supported",
        ),
        (
            "<network><name>n</name><forward mode='hostdev'><address type='pci' slot='0x20'/></forward></network>",
            "/network/forward/address[1]/@slot: '0x20' is not a whole number from 0 to 31",
        ),
        (
            "<network><name>n</name><bridge/><bridge/></network>",
            "/network: <bridge> may appear only once in <network>",
        ),
        (
            "<network><name>n</name><ip/></network>",
            "/network/ip[1]/@address: <ip> needs the attribute 'address'",
        ),
        ("<network></network>", "/network: <network> needs a <name>"),
        (
            "<network><name>n</name><bandwidth classID='1'/></network>",
            "/network/bandwidth/@classID",
        ),
    ];
    for (xml, expected) in cases {
        let err = import_error(xml);
        assert!(
            err.starts_with(expected),
            "{xml}\n got: {err}\nwant: {expected}"
        );
    }
}

#[test]
fn libvirt_rules_are_applied_on_import() {
    let err = import_error(
        "<network><name>n</name><forward mode='vepa' dev='eth9'><interface dev='eth1'/></forward></network>",
    );
    assert_eq!(
        err,
        "/network/forward/interface[1]/@dev: forward dev 'eth9' must match the first pool interface, which is 'eth1'"
    );
    // A define-time rule is not a parse-time one: this imports, and validation refuses it.
    import(
        "<network><name>n</name><forward mode='passthrough'><pf dev='eth0'/></forward><ip address='10.0.0.1' prefix='8'/></network>",
    );
}

#[test]
fn malformed_documents_get_positions() {
    let err = import_error("<network>\n  <name>n</name>\n  <forward mode='nat'\n</network>");
    assert!(
        err.starts_with("line 3, column 3: in the attributes of <forward>"),
        "{err}"
    );
    assert!(import_error("<network><name>n</name>").contains("ends inside <network>"));
    assert!(import_error("").contains("no root element"));
}

#[test]
fn dnsmasq_options_follow_the_namespace_not_the_prefix() {
    let net = import(
        "<network xmlns:d='http://libvirt.org/schemas/network/dnsmasq/1.0'><name>n</name><d:options><d:option value='foo=bar'/></d:options></network>",
    );
    assert_eq!(net.spec.dnsmasq_options, ["foo=bar"]);
    assert!(network_to_xml(&net).contains("<dnsmasq:option value='foo=bar'/>"));
    let err = import_error("<network xmlns:d='urn:other'><name>n</name><d:options/></network>");
    assert!(err.contains("unknown element <d:options>"), "{err}");
}

#[test]
fn metadata_must_carry_its_own_namespaces() {
    let net = import(
        "<network><name>n</name><metadata>\n  <a:x xmlns:a='urn:a'>\n    <a:y>1</a:y>\n  </a:x>\n</metadata></network>",
    );
    assert_eq!(
        net.spec.libvirt_metadata.as_deref(),
        Some("<a:x xmlns:a='urn:a'>\n  <a:y>1</a:y>\n</a:x>")
    );
    let err = import_error(
        "<network xmlns:a='urn:a'><name>n</name><metadata><a:x/></metadata></network>",
    );
    assert!(
        err.contains("namespace prefix 'a' of <a:x> is not declared inside <metadata>"),
        "{err}"
    );
    let mixed = import_error(
        "<network><name>n</name><metadata><a:x xmlns:a='urn:a'/>stray text</metadata></network>",
    );
    assert_eq!(mixed, "/network/metadata: text outside the elements");
    let empty = import("<network><name>n</name><metadata>  </metadata></network>");
    assert_eq!(empty.spec.libvirt_metadata, None);
}

#[test]
fn canonical_spellings_are_stored() {
    let net = import(
        "<network><name>n</name><uuid>81FF0D90C91E674264DA4A736EDB9A8C</uuid><mac address='52:54:00:E6:A2:C9'/><ip address='192.168.1.1' prefix='24'><dhcp><host mac='00:16:3E:77:E2:ED' ip='192.168.1.5'/></dhcp></ip><ip family='ipv6' address='2001:DB8:0::1' prefix='64'/></network>",
    );
    assert_eq!(
        net.spec.uuid.as_deref(),
        Some("81ff0d90-c91e-6742-64da-4a736edb9a8c")
    );
    assert_eq!(net.spec.mac.as_deref(), Some("52:54:00:e6:a2:c9"));
    assert_eq!(net.spec.ips[1].address.as_deref(), Some("2001:db8::1"));
    // libvirt keeps a DHCP host's MAC as written.
    assert_eq!(
        net.spec.ips[0].dhcp.as_ref().unwrap().hosts[0]
            .mac
            .as_deref(),
        Some("00:16:3E:77:E2:ED")
    );
}

#[test]
fn hostile_inputs_get_errors_not_panics() {
    let deep = format!(
        "<network><name>n</name><metadata>{}</metadata></network>",
        "<a:x xmlns:a='u'>".repeat(80)
    );
    assert!(import_error(&deep).contains("nested deeper"));
    let huge = format!(
        "<network><name>n</name><bridge name='{}'/></network>",
        "b".repeat(MAX_VALUE_BYTES + 1)
    );
    assert!(import_error(&huge).contains("over the limit"));
    let big = format!(
        "<network><name>n</name>{}</network>",
        "<!-- padding -->".repeat(MAX_DOCUMENT_BYTES / 16 + 1)
    );
    assert!(import_error(&big).starts_with("the document is"));
    let bomb = "<!DOCTYPE network [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]><network><name>&b;</name></network>";
    assert!(import_error(bomb).contains("DOCTYPE"));
    let numbers = "<network><name>n</name><bandwidth><inbound average='99999999999999999999999'/></bandwidth></network>";
    assert!(import_error(numbers).contains("not a whole number"));
}
