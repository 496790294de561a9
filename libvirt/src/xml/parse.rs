//! libvirt network XML → `NetworkSpec`. Values libvirt keeps in binary form (MAC, UUID, IP
//! addresses, virtualport ids) are stored in libvirt's canonical spelling when they parse;
//! ones that do not are kept as written for the definition checks to report with their field.

use switchyard_crds::{
    AddressRange, Bandwidth, BandwidthLimit, Bootp, Bridge, Dhcp, DhcpHost, DhcpRange, Dns,
    DnsForwarder, DnsHost, DnsSrv, DnsTxt, Domain, Forward, ForwardDriver, ForwardInterface,
    ForwardMode, IpConfig, IpFamily, Lease, LeaseUnit, MacTableManager, Nat, NetworkSpec,
    PciAddress, PortDefaults, PortGroup, PortRange, Route, VirtualPort, VirtualPortType, Vlan,
    VlanNativeMode, VlanTag,
};

use super::dom::Element;
use super::node::{Node, shorten};
use super::{DNSMASQ_NAMESPACE, XmlError};
use crate::values;

/// The libvirt name and the spec of a `<network>` element.
pub(super) fn network(root: &Element, source: &str) -> Result<(String, NetworkSpec), XmlError> {
    let node = Node::root(root, "/network");
    if root.name != "network" {
        return Err(XmlError::Invalid {
            element: format!("/{}", root.name),
            message: format!("the root element must be <network>, not <{}>", root.name),
        });
    }
    node.only_attributes(&["ipv6", "trustGuestRxFilters"], &["connections"])?;
    let dnsmasq_prefix = dnsmasq_prefix(root);
    let dnsmasq_options_name = dnsmasq_prefix.as_ref().map(|p| format!("{p}:options"));
    let mut known = vec![
        "name",
        "uuid",
        "title",
        "description",
        "metadata",
        "forward",
        "bridge",
        "mtu",
        "mac",
        "domain",
        "dns",
        "vlan",
        "bandwidth",
        "port",
        "ip",
        "route",
        "virtualport",
        "portgroup",
    ];
    if let Some(name) = &dnsmasq_options_name {
        known.push(name);
    }
    node.only_children(&known)?;

    let name_child = node
        .child("name")?
        .ok_or_else(|| node.error("<network> needs a <name>"))?;
    let name = text_only(name_child.node())?;
    if name.is_empty() {
        return Err(name_child
            .node()
            .error("the network name must not be empty"));
    }

    let mut spec = NetworkSpec {
        ipv6: node.yes_no("ipv6")?,
        trust_guest_rx_filters: node.yes_no("trustGuestRxFilters")?,
        ..Default::default()
    };
    if let Some(uuid) = node.child("uuid")? {
        let text = text_only(uuid.node())?;
        spec.uuid = Some(values::parse_uuid(&text).map_or(text, values::format_uuid));
    }
    if let Some(title) = node.child("title")? {
        spec.title = Some(text_only(title.node())?);
    }
    if let Some(description) = node.child("description")? {
        spec.description = Some(text_only(description.node())?);
    }
    if let Some(metadata) = node.child("metadata")? {
        spec.libvirt_metadata = super::metadata::capture(metadata.node(), source)?;
    }
    if let Some(forward) = node.child("forward")? {
        spec.forward = Some(self::forward(forward.node())?);
    }
    if let Some(bridge) = node.child("bridge")? {
        spec.bridge = Some(self::bridge(bridge.node())?);
    }
    if let Some(mtu) = node.child("mtu")? {
        let mtu = mtu.node();
        mtu.only_attributes(&["size"], &[])?;
        mtu.only_children(&[])?;
        // libvirt treats size 0 (or none) as "not set".
        spec.mtu = mtu
            .decimal("size", u64::from(u32::MAX))?
            .map(|n| n as u32)
            .filter(|n| *n > 0);
    }
    if let Some(mac) = node.child("mac")? {
        let mac = mac.node();
        mac.only_attributes(&["address"], &[])?;
        mac.only_children(&[])?;
        let address = mac.required("address")?;
        spec.mac = Some(
            values::parse_mac(address)
                .map_or_else(|| address.to_string(), |b| values::format_mac(&b)),
        );
    }
    if let Some(domain) = node.child("domain")? {
        spec.domain = self::domain(domain.node())?;
    }
    if let Some(dns) = node.child("dns")? {
        spec.dns = Some(self::dns(dns.node())?);
    }
    if let Some(vlan) = node.child("vlan")? {
        spec.vlan = Some(self::vlan(vlan.node())?);
    }
    if let Some(bandwidth) = node.child("bandwidth")? {
        spec.bandwidth = self::bandwidth(bandwidth.node())?;
    }
    if let Some(port) = node.child("port")? {
        let port = port.node();
        port.only_attributes(&["isolated"], &[])?;
        port.only_children(&[])?;
        spec.port = Some(PortDefaults {
            isolated: port.yes_no("isolated")?,
        });
    }
    for ip in node.children("ip") {
        spec.ips.push(self::ip(ip.node())?);
    }
    for route in node.children("route") {
        spec.routes.push(self::route(route.node())?);
    }
    if let Some(vport) = node.child("virtualport")? {
        spec.virtualport = Some(virtualport(vport.node())?);
    }
    for portgroup in node.children("portgroup") {
        spec.portgroups.push(self::portgroup(portgroup.node())?);
    }
    if let Some(options_name) = &dnsmasq_options_name
        && let Some(options) = node.child(options_name)?
    {
        let option_name = format!("{}:option", dnsmasq_prefix.as_deref().unwrap_or_default());
        let options = options.node();
        options.only_attributes(&[], &[])?;
        options.only_children(&[&option_name])?;
        for option in options.children(&option_name) {
            let option = option.node();
            option.only_attributes(&["value"], &[])?;
            option.only_children(&[])?;
            spec.dnsmasq_options
                .push(option.required("value")?.to_string());
        }
    }
    Ok((name, spec))
}

/// The prefix bound to libvirt's dnsmasq namespace on `<network>`, if any.
fn dnsmasq_prefix(root: &Element) -> Option<String> {
    root.attributes
        .iter()
        .find(|(k, v)| k.starts_with("xmlns:") && v == DNSMASQ_NAMESPACE)
        .map(|(k, _)| k["xmlns:".len()..].to_string())
}

/// The text of an element that must have no attributes or children.
fn text_only(node: Node) -> Result<String, XmlError> {
    node.only_attributes(&[], &[])?;
    node.only_children(&[])?;
    Ok(node.element.text.clone())
}

fn forward(node: Node) -> Result<Forward, XmlError> {
    node.only_attributes(&["mode", "dev", "managed"], &[])?;
    node.only_children(&["driver", "nat", "interface", "address", "pf"])?;
    let mode = node
        .choice(
            "mode",
            &[
                ("nat", ForwardMode::Nat),
                ("route", ForwardMode::Route),
                ("open", ForwardMode::Open),
                ("bridge", ForwardMode::Bridge),
                ("private", ForwardMode::Private),
                ("vepa", ForwardMode::Vepa),
                ("passthrough", ForwardMode::Passthrough),
                ("hostdev", ForwardMode::Hostdev),
            ],
        )?
        .unwrap_or(ForwardMode::Nat);
    let mut forward = Forward {
        mode,
        dev: node.string("dev"),
        managed: node.yes_no("managed")?,
        ..Default::default()
    };
    if let Some(driver) = node.child("driver")? {
        let driver = driver.node();
        driver.only_attributes(&["name", "model"], &[])?;
        driver.only_children(&[])?;
        forward.driver = Some(ForwardDriver {
            name: driver.string("name"),
            model: driver.string("model"),
        });
    }
    if let Some(nat) = node.child("nat")? {
        forward.nat = Some(self::nat(nat.node())?);
    }
    for interface in node.children("interface") {
        let interface = interface.node();
        interface.only_attributes(&["dev"], &["connections"])?;
        interface.only_children(&[])?;
        forward.interfaces.push(ForwardInterface {
            dev: interface.required("dev")?.to_string(),
        });
    }
    for address in node.children("address") {
        forward.addresses.push(pci_address(address.node())?);
    }
    if let Some(pf) = node.child("pf")? {
        let pf = pf.node();
        pf.only_attributes(&["dev"], &[])?;
        pf.only_children(&[])?;
        forward.pf = Some(pf.required("dev")?.to_string());
    }
    Ok(forward)
}

fn pci_address(node: Node) -> Result<PciAddress, XmlError> {
    node.only_attributes(&["type", "domain", "bus", "slot", "function"], &[])?;
    node.only_children(&[])?;
    let kind = node
        .attr("type")
        .ok_or_else(|| node.attribute_error("type", "a pool address needs type='pci'"))?;
    if kind != "pci" {
        return Err(node.attribute_error(
            "type",
            format!(
                "address type '{}' is not supported in a device pool; only 'pci' is",
                shorten(kind)
            ),
        ));
    }
    Ok(PciAddress {
        domain: node.c_number("domain", 0xffff)?.unwrap_or(0) as u16,
        bus: node.c_number("bus", 0xff)?.unwrap_or(0) as u8,
        slot: node.c_number("slot", 0x1f)?.unwrap_or(0) as u8,
        function: node.c_number("function", 7)?.unwrap_or(0) as u8,
    })
}

fn nat(node: Node) -> Result<Nat, XmlError> {
    node.only_attributes(&["ipv6"], &[])?;
    node.only_children(&["address", "port"])?;
    let mut nat = Nat {
        ipv6: node.yes_no("ipv6")?,
        ..Default::default()
    };
    for address in node.children("address") {
        let address = address.node();
        address.only_attributes(&["start", "end"], &[])?;
        address.only_children(&[])?;
        nat.addresses.push(AddressRange {
            start: ip_text(address.required("start")?),
            end: ip_text(address.required("end")?),
        });
    }
    for port in node.children("port") {
        let port = port.node();
        port.only_attributes(&["start", "end"], &[])?;
        port.only_children(&[])?;
        let start = port.decimal("start", 65535)?;
        let end = port.decimal("end", 65535)?;
        let (Some(start), Some(end)) = (start, end) else {
            return Err(port.error("a nat port range needs both start and end"));
        };
        nat.ports.push(PortRange {
            start: start as u16,
            end: end as u16,
        });
    }
    Ok(nat)
}

/// An IP address in canonical spelling, or as written when it does not parse.
fn ip_text(value: &str) -> String {
    values::canonical_ip(value).unwrap_or_else(|| value.to_string())
}

fn bridge(node: Node) -> Result<Bridge, XmlError> {
    node.only_attributes(&["name", "stp", "delay", "macTableManager", "zone"], &[])?;
    node.only_children(&[])?;
    Ok(Bridge {
        name: node.string("name"),
        stp: node.on_off("stp")?,
        delay: node
            .decimal("delay", u64::from(u32::MAX))?
            .map(|d| d as u32),
        mac_table_manager: node.choice(
            "macTableManager",
            &[
                ("kernel", MacTableManager::Kernel),
                ("libvirt", MacTableManager::Libvirt),
            ],
        )?,
        zone: node.string("zone"),
    })
}

/// libvirt ignores a `<domain>` without a name (and its other attributes with it).
fn domain(node: Node) -> Result<Option<Domain>, XmlError> {
    node.only_attributes(&["name", "localOnly", "register"], &[])?;
    node.only_children(&[])?;
    let local_only = node.yes_no("localOnly")?;
    let register = node.yes_no("register")?;
    Ok(node.string("name").map(|name| Domain {
        name,
        local_only,
        register,
    }))
}

fn dns(node: Node) -> Result<Dns, XmlError> {
    node.only_attributes(&["enable", "forwardPlainNames"], &[])?;
    node.only_children(&["forwarder", "host", "srv", "txt"])?;
    let mut dns = Dns {
        enable: node.yes_no("enable")?,
        forward_plain_names: node.yes_no("forwardPlainNames")?,
        ..Default::default()
    };
    for forwarder in node.children("forwarder") {
        let forwarder = forwarder.node();
        forwarder.only_attributes(&["addr", "domain", "port"], &[])?;
        forwarder.only_children(&[])?;
        dns.forwarders.push(DnsForwarder {
            addr: forwarder.attr("addr").map(ip_text),
            domain: forwarder.string("domain"),
            port: forwarder.decimal("port", 65535)?.map(|p| p as u16),
        });
    }
    for host in node.children("host") {
        let host = host.node();
        host.only_attributes(&["ip"], &[])?;
        host.only_children(&["hostname"])?;
        let mut hostnames = Vec::new();
        for hostname in host.children("hostname") {
            hostnames.push(text_only(hostname.node())?);
        }
        dns.hosts.push(DnsHost {
            ip: ip_text(host.required("ip")?),
            hostnames,
        });
    }
    for srv in node.children("srv") {
        let srv = srv.node();
        srv.only_attributes(
            &[
                "service", "protocol", "domain", "target", "port", "priority", "weight",
            ],
            &[],
        )?;
        srv.only_children(&[])?;
        dns.srvs.push(DnsSrv {
            service: srv.required("service")?.to_string(),
            protocol: srv.required("protocol")?.to_string(),
            domain: srv.string("domain"),
            target: srv.string("target"),
            port: srv.decimal("port", 65535)?.map(|p| p as u16),
            priority: srv.decimal("priority", 65535)?.map(|p| p as u16),
            weight: srv.decimal("weight", 65535)?.map(|p| p as u16),
        });
    }
    for txt in node.children("txt") {
        let txt = txt.node();
        txt.only_attributes(&["name", "value"], &[])?;
        txt.only_children(&[])?;
        dns.txts.push(DnsTxt {
            name: txt.required("name")?.to_string(),
            value: txt.required("value")?.to_string(),
        });
    }
    Ok(dns)
}

fn vlan(node: Node) -> Result<Vlan, XmlError> {
    node.only_attributes(&["trunk"], &[])?;
    node.only_children(&["tag"])?;
    let mut vlan = Vlan {
        trunk: node.yes_no("trunk")?,
        tags: Vec::new(),
    };
    for tag in node.children("tag") {
        let tag = tag.node();
        tag.only_attributes(&["id", "nativeMode"], &[])?;
        tag.only_children(&[])?;
        let id = tag
            .decimal("id", 4095)?
            .ok_or_else(|| tag.attribute_error("id", "a vlan <tag> needs an id"))?;
        vlan.tags.push(VlanTag {
            id: id as u16,
            native_mode: tag.choice(
                "nativeMode",
                &[
                    ("tagged", VlanNativeMode::Tagged),
                    ("untagged", VlanNativeMode::Untagged),
                ],
            )?,
        });
    }
    if vlan.tags.is_empty() {
        return Err(node.error("each <vlan> needs at least one <tag id='n'/>"));
    }
    Ok(vlan)
}

/// libvirt drops a `<bandwidth>` with neither direction.
fn bandwidth(node: Node) -> Result<Option<Bandwidth>, XmlError> {
    if node.attr("classID").is_some() {
        return Err(node.attribute_error(
            "classID",
            "classID is not supported on a network's or portgroup's <bandwidth>",
        ));
    }
    node.only_attributes(&[], &[])?;
    node.only_children(&["inbound", "outbound"])?;
    let limit = |name: &str| -> Result<Option<BandwidthLimit>, XmlError> {
        let Some(child) = node.child(name)? else {
            return Ok(None);
        };
        let child = child.node();
        child.only_attributes(&["average", "peak", "burst", "floor"], &[])?;
        child.only_children(&[])?;
        let limit = BandwidthLimit {
            average: child.decimal("average", u64::MAX)?,
            peak: child.decimal("peak", u64::MAX)?,
            burst: child.decimal("burst", u64::MAX)?,
            floor: child.decimal("floor", u64::MAX)?,
        };
        if limit.average.is_none() && limit.floor.is_none() {
            return Err(child.error(format!("<{name}> needs an average (or a floor)")));
        }
        if limit.average.is_none() && (limit.peak.is_some() || limit.burst.is_some()) {
            return Err(child.attribute_error("average", "peak and burst require an average"));
        }
        // libvirt keeps a direction whose average and floor are 0 but never writes it out,
        // so it limits nothing: leave it out.
        let limits_something =
            limit.average.is_some_and(|a| a > 0) || limit.floor.is_some_and(|f| f > 0);
        Ok(limits_something.then_some(limit))
    };
    let bandwidth = Bandwidth {
        inbound: limit("inbound")?,
        outbound: limit("outbound")?,
    };
    Ok((bandwidth.inbound.is_some() || bandwidth.outbound.is_some()).then_some(bandwidth))
}

fn ip(node: Node) -> Result<IpConfig, XmlError> {
    node.only_attributes(&["family", "address", "netmask", "prefix", "localPtr"], &[])?;
    node.only_children(&["tftp", "dhcp"])?;
    let mut ip = IpConfig {
        family: node.choice(
            "family",
            &[("ipv4", IpFamily::Ipv4), ("ipv6", IpFamily::Ipv6)],
        )?,
        address: Some(ip_text(node.required("address")?)),
        prefix: node.decimal("prefix", 255)?.map(|p| p as u8),
        netmask: node.attr("netmask").map(ip_text),
        local_ptr: node.yes_no("localPtr")?,
        ..Default::default()
    };
    if let Some(tftp) = node.child("tftp")? {
        let tftp = tftp.node();
        tftp.only_attributes(&["root"], &[])?;
        tftp.only_children(&[])?;
        ip.tftp_root = Some(tftp.required("root")?.to_string());
    }
    if let Some(dhcp) = node.child("dhcp")? {
        ip.dhcp = Some(self::dhcp(dhcp.node())?);
    }
    Ok(ip)
}

fn dhcp(node: Node) -> Result<Dhcp, XmlError> {
    node.only_attributes(&[], &[])?;
    node.only_children(&["range", "host", "bootp"])?;
    let mut dhcp = Dhcp::default();
    for range in node.children("range") {
        let range = range.node();
        range.only_attributes(&["start", "end"], &[])?;
        range.only_children(&["lease"])?;
        dhcp.ranges.push(DhcpRange {
            start: ip_text(range.required("start")?),
            end: ip_text(range.required("end")?),
            lease: lease(range)?,
        });
    }
    for host in node.children("host") {
        let host = host.node();
        host.only_attributes(&["mac", "id", "name", "ip"], &[])?;
        host.only_children(&["lease"])?;
        dhcp.hosts.push(DhcpHost {
            // libvirt keeps a DHCP host's MAC as written.
            mac: host.string("mac"),
            id: host.string("id"),
            name: host.string("name"),
            ip: host.attr("ip").map(ip_text),
            lease: lease(host)?,
        });
    }
    if let Some(bootp) = node.child("bootp")? {
        let bootp = bootp.node();
        bootp.only_attributes(&["file", "server"], &[])?;
        bootp.only_children(&[])?;
        dhcp.bootp = Some(Bootp {
            file: bootp.required("file")?.to_string(),
            server: bootp.attr("server").map(ip_text),
        });
    }
    Ok(dhcp)
}

/// libvirt ignores a `<lease>` without an expiry.
fn lease(parent: Node) -> Result<Option<Lease>, XmlError> {
    let Some(lease) = parent.child("lease")? else {
        return Ok(None);
    };
    let lease = lease.node();
    lease.only_attributes(&["expiry", "unit"], &[])?;
    lease.only_children(&[])?;
    let unit = lease.choice(
        "unit",
        &[
            ("seconds", LeaseUnit::Seconds),
            ("minutes", LeaseUnit::Minutes),
            ("hours", LeaseUnit::Hours),
        ],
    )?;
    Ok(lease
        .decimal("expiry", u64::MAX)?
        .map(|expiry| Lease { expiry, unit }))
}

fn route(node: Node) -> Result<Route, XmlError> {
    node.only_attributes(
        &[
            "family", "address", "netmask", "prefix", "gateway", "metric",
        ],
        &[],
    )?;
    node.only_children(&[])?;
    Ok(Route {
        family: node.choice(
            "family",
            &[("ipv4", IpFamily::Ipv4), ("ipv6", IpFamily::Ipv6)],
        )?,
        address: ip_text(node.required("address")?),
        prefix: node.decimal("prefix", 255)?.map(|p| p as u8),
        netmask: node.attr("netmask").map(ip_text),
        gateway: ip_text(node.required("gateway")?),
        metric: node
            .decimal("metric", u64::from(u32::MAX))?
            .map(|m| m as u32),
    })
}

fn virtualport(node: Node) -> Result<VirtualPort, XmlError> {
    node.only_attributes(&["type"], &[])?;
    node.only_children(&["parameters"])?;
    let mut vport = VirtualPort {
        kind: node.choice(
            "type",
            &[
                ("802.1Qbg", VirtualPortType::Qbg),
                ("802.1Qbh", VirtualPortType::Qbh),
                ("openvswitch", VirtualPortType::OpenVswitch),
                ("midonet", VirtualPortType::Midonet),
            ],
        )?,
        ..Default::default()
    };
    if let Some(parameters) = node.child("parameters")? {
        let parameters = parameters.node();
        parameters.only_attributes(
            &[
                "managerid",
                "typeid",
                "typeidversion",
                "instanceid",
                "profileid",
                "interfaceid",
            ],
            &[],
        )?;
        parameters.only_children(&[])?;
        vport.managerid = parameters.c_number("managerid", 0xff)?.map(|n| n as u8);
        vport.typeid = parameters.c_number("typeid", 0xff_ffff)?.map(|n| n as u32);
        vport.typeidversion = parameters.c_number("typeidversion", 0xff)?.map(|n| n as u8);
        vport.instanceid = parameters.attr("instanceid").map(uuid_text);
        vport.profileid = parameters.string("profileid");
        vport.interfaceid = parameters.attr("interfaceid").map(uuid_text);
    }
    Ok(vport)
}

fn uuid_text(value: &str) -> String {
    values::parse_uuid(value).map_or_else(|| value.to_string(), values::format_uuid)
}

fn portgroup(node: Node) -> Result<PortGroup, XmlError> {
    node.only_attributes(&["name", "default", "trustGuestRxFilters"], &[])?;
    node.only_children(&["virtualport", "vlan", "bandwidth"])?;
    let mut portgroup = PortGroup {
        name: node.required("name")?.to_string(),
        default: node.yes_no("default")?,
        trust_guest_rx_filters: node.yes_no("trustGuestRxFilters")?,
        ..Default::default()
    };
    if let Some(vport) = node.child("virtualport")? {
        portgroup.virtualport = Some(virtualport(vport.node())?);
    }
    if let Some(vlan) = node.child("vlan")? {
        portgroup.vlan = Some(self::vlan(vlan.node())?);
    }
    if let Some(bandwidth) = node.child("bandwidth")? {
        portgroup.bandwidth = self::bandwidth(bandwidth.node())?;
    }
    Ok(portgroup)
}
