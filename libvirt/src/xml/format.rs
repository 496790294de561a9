//! `NetworkSpec` → libvirt network XML, in the order and form `virNetworkDefFormatBuf` writes
//! (libvirt v11.3.0): elements in libvirt's order, single-quoted attributes, two-space indent,
//! and libvirt's normalisations — the pool's first interface as `forward dev`, an implicit
//! `<interface>` for a lone `forward dev`, `stp`/`delay` spelled out on libvirt-managed
//! bridges, canonical MAC/UUID/IP spellings, defaults (`ipv6='no'`, `default='no'`, zero
//! counts) left out.

use std::fmt::Write as _;

use switchyard_crds::{
    Bandwidth, BandwidthLimit, Dhcp, Dns, Forward, ForwardMode, IpConfig, IpFamily, Lease,
    LeaseUnit, MacTableManager, NetworkSpec, PortGroup, Route, VirtualPort, VirtualPortType, Vlan,
    VlanNativeMode,
};

use super::{DNSMASQ_NAMESPACE, metadata};
use crate::modes;
use crate::values;

/// Writes indented elements.
struct Writer {
    out: String,
    depth: usize,
}

type Attrs<'a> = [(&'a str, Option<String>)];

impl Writer {
    fn line(&mut self, content: &str) {
        self.out.push_str(&"  ".repeat(self.depth));
        self.out.push_str(content);
        self.out.push('\n');
    }

    fn tag(name: &str, attrs: &Attrs) -> String {
        let mut tag = format!("<{name}");
        for (key, value) in attrs {
            if let Some(value) = value {
                let _ = write!(tag, " {key}='{}'", escape_attribute(value));
            }
        }
        tag
    }

    fn open(&mut self, name: &str, attrs: &Attrs) {
        let tag = Self::tag(name, attrs);
        self.line(&format!("{tag}>"));
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.line(&format!("</{name}>"));
    }

    fn empty(&mut self, name: &str, attrs: &Attrs) {
        let tag = Self::tag(name, attrs);
        self.line(&format!("{tag}/>"));
    }

    fn text(&mut self, name: &str, text: &str) {
        self.line(&format!("<{name}>{}</{name}>", escape_text(text)));
    }

    /// An element that is self-closing without children, as virXMLFormatElement writes.
    fn element(&mut self, name: &str, attrs: &Attrs, children: impl FnOnce(&mut Writer)) {
        let mut inner = Writer {
            out: String::new(),
            depth: self.depth + 1,
        };
        children(&mut inner);
        if inner.out.is_empty() {
            self.empty(name, attrs);
        } else {
            self.line(&format!("{}>", Self::tag(name, attrs)));
            self.out.push_str(&inner.out);
            self.line(&format!("</{name}>"));
        }
    }
}

fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // Escaped so that attribute-value normalisation gives them back on import.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn yes_no(value: Option<bool>) -> Option<String> {
    value.map(|v| if v { "yes" } else { "no" }.to_string())
}

fn number<T: ToString>(value: Option<T>) -> Option<String> {
    value.map(|v| v.to_string())
}

fn nonzero<T: Into<u64> + Copy>(value: Option<T>) -> Option<String> {
    value
        .filter(|v| (*v).into() > 0)
        .map(|v| v.into().to_string())
}

fn some(value: &str) -> Option<String> {
    Some(value.to_string())
}

fn ip(value: &str) -> Option<String> {
    Some(values::canonical_ip(value).unwrap_or_else(|| value.to_string()))
}

fn uuid(value: &str) -> String {
    values::parse_uuid(value).map_or_else(|| value.to_string(), values::format_uuid)
}

/// The libvirt XML of a network named `name`.
pub(super) fn network(name: &str, spec: &NetworkSpec) -> String {
    let mut w = Writer {
        out: String::new(),
        depth: 0,
    };
    w.open(
        "network",
        &[
            (
                "xmlns:dnsmasq",
                (!spec.dnsmasq_options.is_empty()).then(|| DNSMASQ_NAMESPACE.to_string()),
            ),
            ("ipv6", (spec.ipv6 == Some(true)).then(|| "yes".to_string())),
            ("trustGuestRxFilters", yes_no(spec.trust_guest_rx_filters)),
        ],
    );
    w.text("name", name);
    if let Some(id) = &spec.uuid {
        w.text("uuid", &uuid(id));
    }
    if let Some(title) = &spec.title {
        w.text("title", title);
    }
    if let Some(description) = &spec.description {
        w.text("description", description);
    }
    if let Some(content) = &spec.libvirt_metadata {
        metadata_element(&mut w, content);
    }
    if let Some(forward) = &spec.forward {
        self::forward(&mut w, spec, forward);
    }
    bridge(&mut w, spec);
    if let Some(mtu) = spec.mtu.filter(|m| *m > 0) {
        w.empty("mtu", &[("size", number(Some(mtu)))]);
    }
    if let Some(mac) = &spec.mac {
        let canonical =
            values::parse_mac(mac).map_or_else(|| mac.clone(), |b| values::format_mac(&b));
        w.empty("mac", &[("address", Some(canonical))]);
    }
    if let Some(domain) = &spec.domain {
        w.empty(
            "domain",
            &[
                ("name", some(&domain.name)),
                ("localOnly", yes_no(domain.local_only)),
                ("register", yes_no(domain.register)),
            ],
        );
    }
    if let Some(dns) = &spec.dns {
        self::dns(&mut w, dns);
    }
    if let Some(vlan) = &spec.vlan {
        self::vlan(&mut w, vlan);
    }
    if let Some(bandwidth) = &spec.bandwidth {
        self::bandwidth(&mut w, bandwidth);
    }
    if let Some(isolated) = spec.port.as_ref().and_then(|p| p.isolated) {
        w.empty("port", &[("isolated", yes_no(Some(isolated)))]);
    }
    for config in &spec.ips {
        self::ip_config(&mut w, config);
    }
    for route in &spec.routes {
        self::route(&mut w, route);
    }
    if let Some(vport) = &spec.virtualport {
        virtualport(&mut w, vport);
    }
    for portgroup in &spec.portgroups {
        self::portgroup(&mut w, portgroup);
    }
    if !spec.dnsmasq_options.is_empty() {
        w.open("dnsmasq:options", &[]);
        for option in &spec.dnsmasq_options {
            w.empty("dnsmasq:option", &[("value", some(option))]);
        }
        w.close("dnsmasq:options");
    }
    w.close("network");
    w.out
}

fn metadata_element(w: &mut Writer, content: &str) {
    if metadata::check(content).is_ok() {
        w.open("metadata", &[]);
        w.out.push_str(&metadata::indent(content, 2 * w.depth));
        w.out.push('\n');
        w.close("metadata");
    } else {
        // Not XML (only possible from a hand-written spec, which validation refuses): keep it
        // visible as text rather than break the document.
        w.text("metadata", content);
    }
}

fn forward(w: &mut Writer, spec: &NetworkSpec, forward: &Forward) {
    let pool = modes::pool_devices(spec);
    let dev = if forward.pf.is_none() {
        pool.first().map(|d| d.to_string())
    } else {
        None
    };
    let managed = (forward.mode == ForwardMode::Hostdev).then(|| {
        if forward.managed == Some(true) {
            "yes"
        } else {
            "no"
        }
        .to_string()
    });
    let attrs = [
        ("dev", dev),
        ("mode", some(forward.mode.as_str())),
        ("managed", managed),
    ];
    w.element("forward", &attrs, |w| {
        if let Some(driver) = &forward.driver
            && (driver.name.is_some() || driver.model.is_some())
        {
            w.empty(
                "driver",
                &[
                    ("name", driver.name.clone()),
                    ("model", driver.model.clone()),
                ],
            );
        }
        if let Some(nat) = &forward.nat
            && (nat.ipv6.is_some()
                || !nat.addresses.is_empty()
                || nat.ports.iter().any(|p| p.start > 0 || p.end > 0))
        {
            w.element("nat", &[("ipv6", yes_no(nat.ipv6))], |w| {
                for range in &nat.addresses {
                    w.empty(
                        "address",
                        &[("start", ip(&range.start)), ("end", ip(&range.end))],
                    );
                }
                // libvirt writes a port range only when it is not 0-0.
                for ports in nat.ports.iter().filter(|p| p.start > 0 || p.end > 0) {
                    w.empty(
                        "port",
                        &[
                            ("start", number(Some(ports.start))),
                            ("end", nonzero(Some(ports.end))),
                        ],
                    );
                }
            });
        }
        if let Some(pf) = &forward.pf {
            w.empty("pf", &[("dev", some(pf))]);
        }
        for dev in &pool {
            w.empty("interface", &[("dev", some(dev))]);
        }
        for address in &forward.addresses {
            w.empty(
                "address",
                &[
                    ("type", some("pci")),
                    ("domain", Some(format!("0x{:04x}", address.domain))),
                    ("bus", Some(format!("0x{:02x}", address.bus))),
                    ("slot", Some(format!("0x{:02x}", address.slot))),
                    ("function", Some(format!("0x{:x}", address.function))),
                ],
            );
        }
    });
}

fn bridge(w: &mut Writer, spec: &NetworkSpec) {
    let managed = matches!(
        modes::forward_mode(spec),
        None | Some(ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open)
    );
    let bridge = spec.bridge.clone().unwrap_or_default();
    if !(managed || bridge.name.is_some() || bridge.mac_table_manager.is_some()) {
        return;
    }
    let (stp, delay) = if managed {
        (
            Some(
                if bridge.stp.unwrap_or(true) {
                    "on"
                } else {
                    "off"
                }
                .to_string(),
            ),
            Some(bridge.delay.unwrap_or(0).to_string()),
        )
    } else {
        (None, None)
    };
    let mac_table_manager = bridge.mac_table_manager.map(|m| {
        match m {
            MacTableManager::Kernel => "kernel",
            MacTableManager::Libvirt => "libvirt",
        }
        .to_string()
    });
    w.empty(
        "bridge",
        &[
            ("name", bridge.name.clone()),
            ("zone", bridge.zone.clone()),
            ("stp", stp),
            ("delay", delay),
            ("macTableManager", mac_table_manager),
        ],
    );
}

fn dns(w: &mut Writer, dns: &Dns) {
    let has_records = !(dns.forwarders.is_empty()
        && dns.hosts.is_empty()
        && dns.srvs.is_empty()
        && dns.txts.is_empty());
    if !(dns.enable.is_some() || dns.forward_plain_names.is_some() || has_records) {
        return;
    }
    let attrs = [
        ("enable", yes_no(dns.enable)),
        ("forwardPlainNames", yes_no(dns.forward_plain_names)),
    ];
    w.element("dns", &attrs, |w| {
        for forwarder in &dns.forwarders {
            let addr = forwarder.addr.as_deref().and_then(ip);
            let port = forwarder.port.filter(|_| addr.is_some());
            w.empty(
                "forwarder",
                &[
                    ("domain", forwarder.domain.clone()),
                    ("addr", addr),
                    ("port", nonzero(port)),
                ],
            );
        }
        for txt in &dns.txts {
            w.empty(
                "txt",
                &[("name", some(&txt.name)), ("value", some(&txt.value))],
            );
        }
        for srv in dns
            .srvs
            .iter()
            .filter(|s| !s.service.is_empty() && !s.protocol.is_empty())
        {
            w.empty(
                "srv",
                &[
                    ("service", some(&srv.service)),
                    ("protocol", some(&srv.protocol)),
                    ("domain", srv.domain.clone()),
                    ("target", srv.target.clone()),
                    ("port", nonzero(srv.port)),
                    ("priority", nonzero(srv.priority)),
                    ("weight", nonzero(srv.weight)),
                ],
            );
        }
        for host in &dns.hosts {
            w.open("host", &[("ip", ip(&host.ip))]);
            for hostname in &host.hostnames {
                w.text("hostname", hostname);
            }
            w.close("host");
        }
    });
}

fn vlan(w: &mut Writer, vlan: &Vlan) {
    if vlan.tags.is_empty() {
        return;
    }
    let trunk = vlan.trunk == Some(true) || vlan.tags.len() > 1;
    w.open("vlan", &[("trunk", trunk.then(|| "yes".to_string()))]);
    for tag in &vlan.tags {
        let native = tag.native_mode.map(|m| {
            match m {
                VlanNativeMode::Tagged => "tagged",
                VlanNativeMode::Untagged => "untagged",
            }
            .to_string()
        });
        w.empty(
            "tag",
            &[("id", number(Some(tag.id))), ("nativeMode", native)],
        );
    }
    w.close("vlan");
}

fn bandwidth(w: &mut Writer, bandwidth: &Bandwidth) {
    w.open("bandwidth", &[]);
    for (name, limit) in [
        ("inbound", &bandwidth.inbound),
        ("outbound", &bandwidth.outbound),
    ] {
        if let Some(limit) = limit {
            rate(w, name, limit);
        }
    }
    w.close("bandwidth");
}

fn rate(w: &mut Writer, name: &str, limit: &BandwidthLimit) {
    if nonzero(limit.average).is_none() && nonzero(limit.floor).is_none() {
        return;
    }
    w.empty(
        name,
        &[
            ("average", nonzero(limit.average)),
            ("peak", nonzero(limit.peak)),
            ("floor", nonzero(limit.floor)),
            ("burst", nonzero(limit.burst)),
        ],
    );
}

fn ip_config(w: &mut Writer, config: &IpConfig) {
    let family = config.family.map(|f| {
        match f {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
        .to_string()
    });
    // libvirt v11.3 always writes <ip> with an end tag.
    w.open(
        "ip",
        &[
            ("family", family),
            ("address", config.address.as_deref().and_then(ip)),
            ("netmask", config.netmask.as_deref().and_then(ip)),
            ("prefix", nonzero(config.prefix)),
            ("localPtr", yes_no(config.local_ptr)),
        ],
    );
    if let Some(root) = &config.tftp_root {
        w.empty("tftp", &[("root", some(root))]);
    }
    if let Some(dhcp) = &config.dhcp {
        self::dhcp(w, dhcp);
    }
    w.close("ip");
}

fn dhcp(w: &mut Writer, dhcp: &Dhcp) {
    // libvirt writes <dhcp> only for ranges or hosts; a lone <bootp> is not kept.
    if dhcp.ranges.is_empty() && dhcp.hosts.is_empty() {
        return;
    }
    w.open("dhcp", &[]);
    for range in &dhcp.ranges {
        w.element(
            "range",
            &[("start", ip(&range.start)), ("end", ip(&range.end))],
            |w| {
                lease(w, range.lease.as_ref());
            },
        );
    }
    for host in &dhcp.hosts {
        let attrs = [
            ("mac", host.mac.clone()),
            ("id", host.id.clone()),
            ("name", host.name.clone()),
            ("ip", host.ip.as_deref().and_then(ip)),
        ];
        w.element("host", &attrs, |w| lease(w, host.lease.as_ref()));
    }
    if let Some(bootp) = &dhcp.bootp {
        w.empty(
            "bootp",
            &[
                ("file", some(&bootp.file)),
                ("server", bootp.server.as_deref().and_then(ip)),
            ],
        );
    }
    w.close("dhcp");
}

fn lease(w: &mut Writer, lease: Option<&Lease>) {
    let Some(lease) = lease else { return };
    if lease.expiry == 0 {
        w.empty("lease", &[("expiry", some("0"))]);
    } else {
        let unit = match lease.unit.unwrap_or(LeaseUnit::Minutes) {
            LeaseUnit::Seconds => "seconds",
            LeaseUnit::Minutes => "minutes",
            LeaseUnit::Hours => "hours",
        };
        w.empty(
            "lease",
            &[("expiry", number(Some(lease.expiry))), ("unit", some(unit))],
        );
    }
}

fn route(w: &mut Writer, route: &Route) {
    let family = route.family.map(|f| {
        match f {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
        .to_string()
    });
    w.empty(
        "route",
        &[
            ("family", family),
            ("address", ip(&route.address)),
            ("netmask", route.netmask.as_deref().and_then(ip)),
            ("prefix", number(route.prefix)),
            ("gateway", ip(&route.gateway)),
            ("metric", nonzero(route.metric)),
        ],
    );
}

fn virtualport(w: &mut Writer, vport: &VirtualPort) {
    let no_parameters = vport.managerid.is_none()
        && vport.typeid.is_none()
        && vport.typeidversion.is_none()
        && vport.instanceid.is_none()
        && vport.profileid.is_none()
        && vport.interfaceid.is_none();
    let kind = vport.kind;
    let type_attr = [("type", kind.map(|k| k.as_str().to_string()))];
    match (kind, no_parameters) {
        (None, true) => return,
        (Some(_), true) => {
            w.empty("virtualport", &type_attr);
            return;
        }
        _ => w.open("virtualport", &type_attr),
    }
    // Like libvirt, a typed virtualport shows only its type's parameters.
    let shows = |types: &[VirtualPortType]| kind.is_none_or(|k| types.contains(&k));
    use VirtualPortType::{Midonet, OpenVswitch, Qbg, Qbh};
    w.empty(
        "parameters",
        &[
            (
                "managerid",
                number(vport.managerid).filter(|_| shows(&[Qbg])),
            ),
            ("typeid", number(vport.typeid).filter(|_| shows(&[Qbg]))),
            (
                "typeidversion",
                number(vport.typeidversion).filter(|_| shows(&[Qbg])),
            ),
            (
                "instanceid",
                vport
                    .instanceid
                    .as_deref()
                    .map(uuid)
                    .filter(|_| shows(&[Qbg])),
            ),
            (
                "interfaceid",
                vport
                    .interfaceid
                    .as_deref()
                    .map(uuid)
                    .filter(|_| shows(&[Midonet, OpenVswitch])),
            ),
            (
                "profileid",
                vport
                    .profileid
                    .clone()
                    .filter(|_| shows(&[OpenVswitch, Qbh])),
            ),
        ],
    );
    w.close("virtualport");
}

fn portgroup(w: &mut Writer, portgroup: &PortGroup) {
    w.open(
        "portgroup",
        &[
            ("name", some(&portgroup.name)),
            (
                "default",
                (portgroup.default == Some(true)).then(|| "yes".to_string()),
            ),
            (
                "trustGuestRxFilters",
                yes_no(portgroup.trust_guest_rx_filters),
            ),
        ],
    );
    if let Some(vlan) = &portgroup.vlan {
        self::vlan(w, vlan);
    }
    if let Some(vport) = &portgroup.virtualport {
        virtualport(w, vport);
    }
    if let Some(bandwidth) = &portgroup.bandwidth {
        self::bandwidth(w, bandwidth);
    }
    w.close("portgroup");
}
