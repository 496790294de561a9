//! What a network's dnsmasq files need, so that a network that passes validation never gives a
//! broken or hijacked dnsmasq:
//! - [`written_values`] (parse time): every value the generators write into the
//!   configuration, hostsfile or addn-hosts file is one line. libvirt 11.3.0 writes DNS TXT
//!   and SRV values verbatim, so `&#10;` in one injects dnsmasq directives (CVE-2026-61477;
//!   Debian's 11.3.0-3+deb13u3 refuses line breaks in TXT and SRV values at parse time). Here
//!   the rule covers every written value, `dnsmasqOptions` included. DHCP ranges must be
//!   countable as libvirt's parser counts them (`virSocketAddrGetRange`).
//! - [`limits`] (define time): what dnsmasq would misread or libvirt would fail to start with:
//!   field separators inside one value (`,` in SRV targets and domains, boot files, TFTP roots
//!   and the domain; `/` in domains; blanks in DNS hostnames), DHCP host names dnsmasq refuses
//!   (anything but letters, digits, `-`, `_` and `.`), a `localPtr` whose prefix names no
//!   reverse zone, two static hosts with one address, and more static hosts than dnsmasq will
//!   lease.
//!
//! How many DHCP hosts: there is no fixed limit. dnsmasq hands out at most `dhcp-lease-max`
//! leases, static ones included; libvirt sets it to the number of addresses in the network's
//! DHCP ranges, and without ranges dnsmasq's default of 1,000 applies. A network with more
//! static hosts than that is refused, naming both numbers, since some hosts could never get
//! their lease. 10,000 hosts with ranges that span 10,000 addresses or more are fine: dnsmasq
//! reads a hostsfile of that size without trouble, and the object stays well under the API
//! server's size limit (about 80 bytes per host).

use std::collections::HashMap;
use std::net::IpAddr;

use switchyard_crds::NetworkSpec;

use super::Problems;
use crate::dnsmasq::line_problem;
use crate::dnsmasq::subnets::{self, ptr_domain, range_size};
use crate::path::FieldPath;
use crate::values;

/// dnsmasq's `dhcp-lease-max` when the configuration sets none (no DHCP ranges).
pub const DNSMASQ_DEFAULT_LEASE_MAX: u64 = 1000;

/// Refuses line breaks and NULs in every value written into a dnsmasq file, and DHCP ranges
/// libvirt's parser cannot count.
pub(super) fn written_values(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    let mut check = |path: FieldPath, value: &str| {
        if let Some(problem) = line_problem(value) {
            problems.add(&path, problem);
        }
    };
    if let Some(name) = &spec.libvirt_name {
        check(root.elem("libvirtName", "name"), name);
    }
    // A bridge name with '\n' is already refused as a device name (cluster.rs).
    if let Some(bridge) = spec.bridge.as_ref().and_then(|b| b.name.as_deref())
        && !bridge.contains('\n')
    {
        check(root.elem("bridge", "bridge").attr("name", "name"), bridge);
    }
    if let Some(domain) = &spec.domain {
        check(
            root.elem("domain", "domain").attr("name", "name"),
            &domain.name,
        );
    }
    if let Some(dns) = &spec.dns {
        let dns_path = root.elem("dns", "dns");
        for (i, forwarder) in dns.forwarders.iter().enumerate() {
            if let Some(domain) = &forwarder.domain {
                let path = dns_path.elem("forwarders", "forwarder").index(i);
                check(path.attr("domain", "domain"), domain);
            }
        }
        for (i, host) in dns.hosts.iter().enumerate() {
            let path = dns_path.elem("hosts", "host").index(i);
            for (j, name) in host.hostnames.iter().enumerate() {
                check(path.elem("hostnames", "hostname").index(j), name);
            }
        }
        for (i, txt) in dns.txts.iter().enumerate() {
            let path = dns_path.elem("txts", "txt").index(i);
            check(path.attr("name", "name"), &txt.name);
            check(path.attr("value", "value"), &txt.value);
        }
        for (i, srv) in dns.srvs.iter().enumerate() {
            let path = dns_path.elem("srvs", "srv").index(i);
            // service and protocol are limited to a character set without line breaks.
            if let Some(domain) = &srv.domain {
                check(path.attr("domain", "domain"), domain);
            }
            if let Some(target) = &srv.target {
                check(path.attr("target", "target"), target);
            }
        }
    }
    for (i, ip) in spec.ips.iter().enumerate() {
        let path = root.elem("ips", "ip").index(i);
        if let Some(root) = &ip.tftp_root {
            check(path.elem("tftpRoot", "tftp/@root"), root);
        }
        let Some(dhcp) = &ip.dhcp else { continue };
        let dhcp_path = path.elem("dhcp", "dhcp");
        if let Some(bootp) = &dhcp.bootp {
            check(
                dhcp_path.elem("bootp", "bootp").attr("file", "file"),
                &bootp.file,
            );
        }
        // MAC, id and ip are checked for their syntax, which has no room for line breaks.
        for (j, host) in dhcp.hosts.iter().enumerate() {
            if let Some(name) = &host.name {
                let host_path = dhcp_path.elem("hosts", "host").index(j);
                check(host_path.attr("name", "name"), name);
            }
        }
    }
    for (i, option) in spec.dnsmasq_options.iter().enumerate() {
        check(
            root.elem("dnsmasqOptions", "dnsmasq:options/dnsmasq:option")
                .index(i),
            option,
        );
    }
    countable_ranges(spec, problems);
}

/// The range rules of `virSocketAddrGetRange` that the address checks do not already cover:
/// an IPv4 range must not start at the network address nor end at the broadcast address,
/// and a range spans at most 65,536 addresses (IPv6: differs only in the last 16 bits).
fn countable_ranges(spec: &NetworkSpec, problems: &mut Problems) {
    let Ok(subnets) = subnets::subnets(spec) else {
        return;
    };
    for subnet in &subnets {
        let (Some(dhcp), Ok(prefix)) = (subnet.dhcp(), subnet.prefix()) else {
            continue;
        };
        if subnet.address.is_ipv6() != (subnet.ip.family == Some(switchyard_crds::IpFamily::Ipv6)) {
            continue; // reported as a family mismatch
        }
        for (i, range) in dhcp.ranges.iter().enumerate() {
            let (Some(start), Some(end)) =
                (values::parse_ip(&range.start), values::parse_ip(&range.end))
            else {
                continue;
            };
            if !in_order_within(start, end, subnet.address, prefix) {
                continue; // reported by the address checks
            }
            if let Err(message) = range_size(start, end, subnet.address, prefix) {
                let path = subnet
                    .path()
                    .elem("dhcp", "dhcp")
                    .elem("ranges", "range")
                    .index(i);
                problems.add(&path, message);
            }
        }
    }
}

fn in_order_within(start: IpAddr, end: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let net = values::mask(network, prefix);
    start.is_ipv6() == network.is_ipv6()
        && end.is_ipv6() == network.is_ipv6()
        && values::ip_value(start) <= values::ip_value(end)
        && values::mask(start, prefix) == net
        && values::mask(end, prefix) == net
}

/// What dnsmasq would misread, or libvirt fail to start with (see the module docs).
pub(super) fn limits(spec: &NetworkSpec, problems: &mut Problems) {
    separators(spec, problems);
    let Ok(subnets) = subnets::subnets(spec) else {
        return;
    };
    let dns_enabled = spec.dns.as_ref().and_then(|d| d.enable) != Some(false);
    for subnet in subnets.iter().filter(|s| s.ip.local_ptr == Some(true)) {
        if let Ok(prefix) = subnet.prefix()
            && dns_enabled
            && ptr_domain(subnet.address, prefix).is_none()
        {
            problems.add(
                &subnet.path().attr("localPtr", "localPtr"),
                format!(
                    "no reverse zone for prefix {prefix}: localPtr needs a prefix that is a multiple of {} (and not 0 or the full length)",
                    if subnet.address.is_ipv4() { "8 for IPv4" } else { "4 for IPv6" }
                ),
            );
        }
    }
    let Ok((v4, v6)) = subnets::dhcp_subnets(&subnets) else {
        return; // reported by the one-DHCP-per-family rule
    };
    let mut lease_max = 0u64;
    let mut static_hosts = 0u64;
    let mut last_hosts = None;
    for subnet in [v4, v6].into_iter().flatten() {
        let Some(dhcp) = subnet.dhcp() else { continue };
        let hosts_path = subnet.path().elem("dhcp", "dhcp").elem("hosts", "host");
        if let Ok(prefix) = subnet.prefix() {
            for range in &dhcp.ranges {
                if let (Some(start), Some(end)) =
                    (values::parse_ip(&range.start), values::parse_ip(&range.end))
                    && let Ok(size) = range_size(start, end, subnet.address, prefix)
                {
                    lease_max += u64::from(size);
                }
            }
        }
        let mut holder: HashMap<IpAddr, usize> = HashMap::new();
        for (i, host) in dhcp.hosts.iter().enumerate() {
            let Some(ip) = host.ip.as_deref().and_then(values::parse_ip) else {
                continue;
            };
            static_hosts += 1;
            if let Some(first) = holder.insert(ip, i) {
                holder.insert(ip, first);
                problems.add(
                    &hosts_path.index(i).attr("ip", "ip"),
                    format!(
                        "address {ip} is already given to {}",
                        hosts_path.index(first).spec_path()
                    ),
                );
            }
        }
        if !dhcp.hosts.is_empty() {
            last_hosts = Some(hosts_path);
        }
    }
    let (limit, why) = if lease_max > 0 {
        (lease_max, "the number of addresses in the DHCP ranges")
    } else {
        (
            DNSMASQ_DEFAULT_LEASE_MAX,
            "dnsmasq's default, as there are no DHCP ranges",
        )
    };
    if let Some(path) = last_hosts
        && static_hosts > limit
    {
        problems.add(
            &path,
            format!(
                "{static_hosts} static DHCP hosts, but dnsmasq leases at most {limit} addresses on this network ({why}); widen the ranges or remove hosts"
            ),
        );
    }
}

/// Characters dnsmasq reads as field separators where switchyard writes one value, and DHCP
/// host names dnsmasq refuses ("bad DHCP host name": it then gives that host no lease).
fn separators(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    if let Some(domain) = &spec.domain {
        let path = root.elem("domain", "domain").attr("name", "name");
        forbid(
            problems,
            path,
            &domain.name,
            &[',', '/'],
            "dnsmasq's domain= and local=",
        );
    }
    for (i, ip) in spec.ips.iter().enumerate() {
        let ip_path = root.elem("ips", "ip").index(i);
        if let Some(tftp_root) = &ip.tftp_root {
            let path = ip_path.elem("tftpRoot", "tftp/@root");
            forbid(problems, path, tftp_root, &[','], "dnsmasq's tftp-root=");
        }
        let Some(dhcp) = &ip.dhcp else { continue };
        let dhcp_path = ip_path.elem("dhcp", "dhcp");
        if let Some(bootp) = &dhcp.bootp {
            let path = dhcp_path.elem("bootp", "bootp").attr("file", "file");
            forbid(problems, path, &bootp.file, &[','], "dnsmasq's dhcp-boot=");
        }
        for (j, host) in dhcp.hosts.iter().enumerate() {
            let Some(name) = &host.name else { continue };
            if let Some(c) = name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                problems.add(
                    &dhcp_path
                        .elem("hosts", "host")
                        .index(j)
                        .attr("name", "name"),
                    format!(
                        "host name '{name}' must not contain '{c}': dnsmasq takes only letters, digits, '-', '_' and '.' in a DHCP host name (and ',' separates the hostsfile's fields)"
                    ),
                );
            }
        }
    }
    let Some(dns) = &spec.dns else { return };
    let dns_path = root.elem("dns", "dns");
    for (i, forwarder) in dns.forwarders.iter().enumerate() {
        if let Some(domain) = &forwarder.domain {
            let path = dns_path
                .elem("forwarders", "forwarder")
                .index(i)
                .attr("domain", "domain");
            forbid(problems, path, domain, &['/', ','], "dnsmasq's server=");
        }
    }
    for (i, srv) in dns.srvs.iter().enumerate() {
        let srv_path = dns_path.elem("srvs", "srv").index(i);
        if let Some(domain) = &srv.domain {
            let path = srv_path.attr("domain", "domain");
            forbid(problems, path, domain, &[','], "dnsmasq's srv-host=");
        }
        if let Some(target) = &srv.target {
            let path = srv_path.attr("target", "target");
            forbid(problems, path, target, &[','], "dnsmasq's srv-host=");
        }
    }
    for (i, host) in dns.hosts.iter().enumerate() {
        for (j, name) in host.hostnames.iter().enumerate() {
            let path = dns_path
                .elem("hosts", "host")
                .index(i)
                .elem("hostnames", "hostname")
                .index(j);
            forbid(problems, path, name, &[' ', '\t'], "dnsmasq's hosts file");
        }
    }
}

fn forbid(problems: &mut Problems, path: FieldPath, value: &str, chars: &[char], role: &str) {
    if let Some(c) = value.chars().find(|c| chars.contains(c)) {
        problems.add(
            &path,
            format!("'{value}' must not contain '{c}': it separates the fields of {role}"),
        );
    }
}
