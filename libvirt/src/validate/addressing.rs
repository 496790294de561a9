//! libvirt's parse-time rules for `<domain>`, `<dns>`, `<ip>` (with DHCP and TFTP) and
//! `<route>` (virNetworkDNSDefParseXML, virNetworkIPDefParseXML, virNetDevIPRouteCreate).

use std::net::IpAddr;

use switchyard_crds::{Dhcp, IpConfig, IpFamily, Lease, LeaseUnit, NetworkSpec, Route};

use super::Problems;
use crate::path::FieldPath;
use crate::values;

/// dnsmasq's limit on an SRV record's service name (512 minus overhead, RFC 2782).
const SRV_SERVICE_MAX: usize = 512 - 30;
const SERVICE_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/*";
const PROTOCOL_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+/";

pub(super) fn check(spec: &NetworkSpec, problems: &mut Problems) {
    domain(spec, problems);
    dns(spec, problems);
    let root = FieldPath::spec();
    for (i, ip) in spec.ips.iter().enumerate() {
        ip_config(ip, &root.elem("ips", "ip").index(i), problems);
    }
    for (i, route) in spec.routes.iter().enumerate() {
        self::route(
            spec,
            route,
            &root.elem("routes", "route").index(i),
            problems,
        );
    }
}

fn domain(spec: &NetworkSpec, problems: &mut Problems) {
    let Some(domain) = &spec.domain else { return };
    let path = FieldPath::spec().elem("domain", "domain");
    if domain.name.is_empty() {
        problems.add(&path.attr("name", "name"), "the domain name is required");
    }
    if domain.register == Some(true) && domain.local_only != Some(true) {
        problems.add(
            &path.attr("register", "register"),
            "register: yes requires localOnly: yes",
        );
    }
}

fn dns(spec: &NetworkSpec, problems: &mut Problems) {
    let Some(dns) = &spec.dns else { return };
    let path = FieldPath::spec().elem("dns", "dns");
    if dns.enable == Some(false)
        && !(dns.forwarders.is_empty()
            && dns.hosts.is_empty()
            && dns.srvs.is_empty()
            && dns.txts.is_empty())
    {
        problems.add(
            &path,
            "DNS is disabled (enable: no) but forwarders, hosts, SRV or TXT records are given; remove them or enable DNS",
        );
    }
    for (i, forwarder) in dns.forwarders.iter().enumerate() {
        let fwd_path = path.elem("forwarders", "forwarder").index(i);
        match &forwarder.addr {
            Some(addr) if values::parse_ip(addr).is_none() => problems.add(
                &fwd_path.attr("addr", "addr"),
                format!("'{addr}' is not an IP address"),
            ),
            None if forwarder.domain.is_none() => {
                problems.add(&fwd_path, "a forwarder needs an addr, a domain, or both")
            }
            None if forwarder.port.is_some() => problems.add(
                &fwd_path.attr("port", "port"),
                "a forwarder port needs an addr",
            ),
            _ => {}
        }
        if forwarder.port == Some(0) {
            problems.add(
                &fwd_path.attr("port", "port"),
                "port 0 is not valid; leave it out for 53",
            );
        }
    }
    for (i, host) in dns.hosts.iter().enumerate() {
        let host_path = path.elem("hosts", "host").index(i);
        if values::parse_ip(&host.ip).is_none() {
            problems.add(
                &host_path.attr("ip", "ip"),
                format!("'{}' is not an IP address", host.ip),
            );
        }
        if host.hostnames.is_empty() {
            problems.add(
                &host_path.elem("hostnames", "hostname"),
                "a DNS host needs at least one hostname",
            );
        }
        for (j, name) in host.hostnames.iter().enumerate() {
            if name.is_empty() {
                problems.add(
                    &host_path.elem("hostnames", "hostname").index(j),
                    "hostnames must not be empty",
                );
            }
        }
    }
    for (i, srv) in dns.srvs.iter().enumerate() {
        let srv_path = path.elem("srvs", "srv").index(i);
        if srv.service.is_empty() {
            problems.add(
                &srv_path.attr("service", "service"),
                "the SRV service is required",
            );
        } else if srv.service.len() > SRV_SERVICE_MAX {
            problems.add(
                &srv_path.attr("service", "service"),
                format!("the SRV service is too long, limit is {SRV_SERVICE_MAX} bytes"),
            );
        } else if !srv.service.chars().all(|c| SERVICE_CHARS.contains(c)) {
            problems.add(
                &srv_path.attr("service", "service"),
                format!(
                    "invalid character in SRV service '{}' (allowed: letters, digits, _-+/*)",
                    srv.service
                ),
            );
        }
        if srv.protocol.is_empty() {
            problems.add(
                &srv_path.attr("protocol", "protocol"),
                "the SRV protocol is required",
            );
        } else if !srv.protocol.chars().all(|c| PROTOCOL_CHARS.contains(c)) {
            problems.add(
                &srv_path.attr("protocol", "protocol"),
                format!(
                    "invalid character in SRV protocol '{}' (allowed: letters, digits, -+/)",
                    srv.protocol
                ),
            );
        }
        if srv.target.is_none() {
            for (set, attribute) in [
                (srv.port.is_some(), "port"),
                (srv.priority.is_some(), "priority"),
                (srv.weight.is_some(), "weight"),
            ] {
                if set {
                    problems.add(
                        &srv_path.attr(attribute, attribute),
                        format!("SRV {attribute} is not permitted without a target"),
                    );
                }
            }
        }
        if srv.port == Some(0) {
            problems.add(&srv_path.attr("port", "port"), "SRV port must be 1-65535");
        }
    }
    for (i, txt) in dns.txts.iter().enumerate() {
        let txt_path = path.elem("txts", "txt").index(i);
        if txt.name.is_empty() {
            problems.add(
                &txt_path.attr("name", "name"),
                "the TXT record name is required",
            );
        } else if txt.name.contains([' ', ',']) {
            problems.add(
                &txt_path.attr("name", "name"),
                format!(
                    "TXT record name '{}' must not contain spaces or commas",
                    txt.name
                ),
            );
        }
    }
}

/// The prefix length of an `<ip>`: its prefix, else its netmask, else the classful default for
/// IPv4 (libvirt's `virSocketAddrGetIPPrefix`) and 64 for IPv6.
pub fn ip_prefix(ip: &IpConfig, address: IpAddr) -> Option<u8> {
    if let Some(prefix) = ip.prefix.filter(|p| *p > 0) {
        return Some(prefix);
    }
    if let Some(netmask) = ip.netmask.as_deref().and_then(values::parse_ip) {
        return values::netmask_prefix(netmask);
    }
    match address {
        IpAddr::V4(v4) => match v4.octets()[0] {
            0..=127 => Some(8),
            128..=191 => Some(16),
            192..=223 => Some(24),
            _ => None,
        },
        IpAddr::V6(_) => Some(64),
    }
}

fn ip_config(ip: &IpConfig, path: &FieldPath, problems: &mut Problems) {
    let ipv6 = ip.family == Some(IpFamily::Ipv6);
    let family_name = if ipv6 { "ipv6" } else { "ipv4" };
    let Some(address_text) = &ip.address else {
        problems.add(&path.attr("address", "address"), "the address is required");
        return;
    };
    let Some(address) = values::parse_ip(address_text) else {
        problems.add(
            &path.attr("address", "address"),
            format!("'{address_text}' is not an IP address"),
        );
        return;
    };
    if address.is_ipv6() != ipv6 {
        problems.add(
            &path.attr("address", "address"),
            format!(
                "address '{address_text}' does not match family {family_name}{}",
                if ipv6 { "" } else { " (the default)" }
            ),
        );
        return;
    }
    if let Some(netmask) = &ip.netmask {
        let netmask_path = path.attr("netmask", "netmask");
        if ipv6 {
            problems.add(
                &netmask_path,
                "a netmask is not allowed for IPv6; use prefix",
            );
        } else {
            match values::parse_ip(netmask) {
                Some(mask) if mask.is_ipv4() && values::netmask_prefix(mask).is_some() => {}
                _ => problems.add(
                    &netmask_path,
                    format!("'{netmask}' is not a contiguous IPv4 netmask"),
                ),
            }
            if ip.prefix.is_some_and(|p| p > 0) {
                problems.add(
                    &path.attr("prefix", "prefix"),
                    "an address cannot have both a prefix and a netmask",
                );
            }
        }
    }
    let max_prefix = if ipv6 { 128 } else { 32 };
    if let Some(prefix) = ip.prefix.filter(|p| *p > max_prefix) {
        problems.add(
            &path.attr("prefix", "prefix"),
            format!("prefix {prefix} is out of range 0-{max_prefix}"),
        );
    }
    if ip.tftp_root.is_some() && ipv6 {
        problems.add(
            &path.elem("tftpRoot", "tftp/@root"),
            "TFTP is only supported on IPv4 addresses",
        );
    }
    if let Some(dhcp) = &ip.dhcp {
        let prefix = ip_prefix(ip, address);
        self::dhcp(dhcp, address, prefix, &path.elem("dhcp", "dhcp"), problems);
    }
}

fn dhcp(
    dhcp: &Dhcp,
    network: IpAddr,
    prefix: Option<u8>,
    path: &FieldPath,
    problems: &mut Problems,
) {
    let ipv6 = network.is_ipv6();
    for (i, range) in dhcp.ranges.iter().enumerate() {
        let range_path = path.elem("ranges", "range").index(i);
        let start = values::parse_ip(&range.start);
        let end = values::parse_ip(&range.end);
        if start.is_none() {
            problems.add(
                &range_path.attr("start", "start"),
                format!("'{}' is not an IP address", range.start),
            );
        }
        if end.is_none() {
            problems.add(
                &range_path.attr("end", "end"),
                format!("'{}' is not an IP address", range.end),
            );
        }
        if let (Some(start), Some(end)) = (start, end) {
            if start.is_ipv6() != ipv6 || end.is_ipv6() != ipv6 {
                problems.add(
                    &range_path,
                    format!("range {start} - {end} is not of the address's family"),
                );
            } else if values::ip_value(start) > values::ip_value(end) {
                problems.add(
                    &range_path,
                    format!("range start {start} is after its end {end}"),
                );
            } else if let Some(prefix) = prefix {
                let net = values::mask(network, prefix);
                if values::mask(start, prefix) != net || values::mask(end, prefix) != net {
                    problems.add(
                        &range_path,
                        format!(
                            "range {start} - {end} is not entirely within network {net}/{prefix}"
                        ),
                    );
                }
            }
        }
        if let Some(lease) = &range.lease {
            self::lease(lease, &range_path.elem("lease", "lease"), problems);
        }
    }
    for (i, host) in dhcp.hosts.iter().enumerate() {
        let host_path = path.elem("hosts", "host").index(i);
        if let Some(mac) = &host.mac {
            if ipv6 {
                problems.add(
                    &host_path.attr("mac", "mac"),
                    "a MAC address is not allowed in an IPv6 DHCP host; use id",
                );
            } else {
                match values::parse_mac(mac) {
                    None => problems.add(
                        &host_path.attr("mac", "mac"),
                        format!("'{mac}' is not a MAC address"),
                    ),
                    Some(bytes) if values::is_multicast_mac(bytes) => problems.add(
                        &host_path.attr("mac", "mac"),
                        format!("expected a unicast MAC address, found multicast '{mac}'"),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Some(id) = &host.id
            && let Some(bad) = id.chars().find(|c| !(c.is_ascii_hexdigit() || *c == ':'))
        {
            problems.add(
                &host_path.attr("id", "id"),
                format!("invalid character '{bad}' in id '{id}' (hex digits and ':' only)"),
            );
        }
        if let Some(name) = &host.name
            && !name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            problems.add(
                &host_path.attr("name", "name"),
                format!("host name '{name}' must start with a letter or digit"),
            );
        }
        if ipv6 && host.id.is_none() && host.name.is_none() {
            problems.add(&host_path, "a static host on IPv6 needs an id or a name");
        }
        if !ipv6 && host.mac.is_none() && host.name.is_none() {
            problems.add(&host_path, "a static host on IPv4 needs a mac or a name");
        }
        match &host.ip {
            None => problems.add(
                &host_path.attr("ip", "ip"),
                "the static host's IP address is required",
            ),
            Some(ip) if values::parse_ip(ip).is_none() => problems.add(
                &host_path.attr("ip", "ip"),
                format!("'{ip}' is not an IP address"),
            ),
            Some(_) => {}
        }
        if let Some(lease) = &host.lease {
            self::lease(lease, &host_path.elem("lease", "lease"), problems);
        }
    }
    if let Some(bootp) = &dhcp.bootp {
        let bootp_path = path.elem("bootp", "bootp");
        if ipv6 {
            problems.add(&bootp_path, "BOOTP is only supported on IPv4 addresses");
        }
        if bootp.file.is_empty() {
            problems.add(
                &bootp_path.attr("file", "file"),
                "the boot file is required",
            );
        }
        if let Some(server) = &bootp.server
            && values::parse_ip(server).is_none()
        {
            problems.add(
                &bootp_path.attr("server", "server"),
                format!("'{server}' is not an IP address"),
            );
        }
    }
}

/// dnsmasq's minimum lease is two minutes; 0 means infinite.
fn lease(lease: &Lease, path: &FieldPath, problems: &mut Problems) {
    let too_short = match lease.unit.unwrap_or(LeaseUnit::Minutes) {
        LeaseUnit::Seconds => lease.expiry < 120,
        LeaseUnit::Minutes => lease.expiry < 2,
        LeaseUnit::Hours => false,
    };
    if lease.expiry > 0 && too_short {
        problems.add(
            &path.attr("expiry", "expiry"),
            "the minimum lease time is 2 minutes (0 means infinite)",
        );
    }
}

fn route(spec: &NetworkSpec, route: &Route, path: &FieldPath, problems: &mut Problems) {
    let ipv6 = route.family == Some(IpFamily::Ipv6);
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    let address = values::parse_ip(&route.address);
    let gateway = values::parse_ip(&route.gateway);
    match address {
        None => problems.add(
            &path.attr("address", "address"),
            format!("'{}' is not an IP address", route.address),
        ),
        Some(a) if a.is_ipv6() != ipv6 => problems.add(
            &path.attr("address", "address"),
            format!("address '{a}' does not match family {family}"),
        ),
        Some(_) => {}
    }
    match gateway {
        None => problems.add(
            &path.attr("gateway", "gateway"),
            format!("'{}' is not an IP address", route.gateway),
        ),
        Some(g) if g.is_ipv6() != ipv6 => problems.add(
            &path.attr("gateway", "gateway"),
            format!("gateway '{g}' does not match family {family}"),
        ),
        Some(_) => {}
    }
    let mut prefix = route.prefix.unwrap_or(0);
    if let Some(netmask) = &route.netmask {
        if ipv6 {
            problems.add(
                &path.attr("netmask", "netmask"),
                "a netmask is not allowed for IPv6; use prefix",
            );
        } else {
            match values::parse_ip(netmask)
                .filter(IpAddr::is_ipv4)
                .and_then(values::netmask_prefix)
            {
                Some(bits) => prefix = bits,
                None => problems.add(
                    &path.attr("netmask", "netmask"),
                    format!("'{netmask}' is not a contiguous IPv4 netmask"),
                ),
            }
            if route.prefix.is_some() {
                problems.add(
                    &path.attr("prefix", "prefix"),
                    "a route cannot have both a prefix and a netmask",
                );
            }
        }
    }
    let max_prefix = if ipv6 { 128 } else { 32 };
    if prefix > max_prefix {
        problems.add(
            &path.attr("prefix", "prefix"),
            format!("prefix {prefix} is out of range 0-{max_prefix}"),
        );
        return;
    }
    if let Some(address) = address.filter(|a| a.is_ipv6() == ipv6)
        && values::mask(address, prefix) != address
    {
        problems.add(
            &path.attr("address", "address"),
            format!(
                "'{address}' is not a network address for prefix {prefix} (did you mean {}?)",
                values::mask(address, prefix)
            ),
        );
    }
    if route.metric == Some(0) {
        problems.add(
            &path.attr("metric", "metric"),
            "the metric must be greater than 0",
        );
    }
    if let Some(gateway) = gateway.filter(|g| g.is_ipv6() == ipv6) {
        let reachable = spec.ips.iter().any(|ip| {
            let Some(own) = ip.address.as_deref().and_then(values::parse_ip) else {
                return false;
            };
            own.is_ipv6() == gateway.is_ipv6()
                && ip_prefix(ip, own)
                    .is_some_and(|p| values::mask(own, p) == values::mask(gateway, p))
        });
        if !reachable {
            problems.add(
                &path.attr("gateway", "gateway"),
                format!("gateway '{gateway}' is not on any of the network's own <ip> networks, so it is unreachable"),
            );
        }
    }
}
