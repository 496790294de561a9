//! The DHCP hostsfile (`dhcp-hostsfile`) and the DNS hosts file (`addn-hosts`), the two files
//! dnsmasq re-reads on SIGHUP.

use std::collections::HashMap;

use switchyard_crds::{DhcpHost, NetworkSpec};

use super::subnets::{self, Subnet, lease_time};
use super::{DnsmasqError, one_line};
use crate::path::FieldPath;
use crate::values;

/// The DHCP hostsfile: one line per static host of the first IPv4 and the first IPv6
/// address with DHCP, in that order (libvirt's `hostsfileAdd`). Hosts without an address are
/// skipped, as libvirt skips them. Empty when there are none.
pub fn hostsfile(spec: &NetworkSpec) -> Result<String, DnsmasqError> {
    let subnets = subnets::subnets(spec)?;
    let (v4, v6) = subnets::dhcp_subnets(&subnets)?;
    let mut out = String::new();
    for subnet in [v4, v6].into_iter().flatten() {
        host_lines(subnet, &mut out)?;
    }
    Ok(out)
}

fn host_lines(subnet: &Subnet, out: &mut String) -> Result<(), DnsmasqError> {
    let hosts_path = subnet.path().elem("dhcp", "dhcp").elem("hosts", "host");
    let ipv6 = subnet.address.is_ipv6();
    for (i, host) in subnet
        .dhcp()
        .map_or(&[][..], |d| &d.hosts)
        .iter()
        .enumerate()
    {
        let path = hosts_path.index(i);
        if let Some(line) = host_line(host, ipv6, &path)? {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(())
}

fn host_line(
    host: &DhcpHost,
    ipv6: bool,
    path: &FieldPath,
) -> Result<Option<String>, DnsmasqError> {
    let Some(ip_text) = host.ip.as_deref() else {
        return Ok(None);
    };
    let ip = values::parse_ip(ip_text).ok_or_else(|| {
        DnsmasqError::at(
            &path.attr("ip", "ip"),
            format!("'{ip_text}' is not an IP address"),
        )
    })?;
    let name = host
        .name
        .as_deref()
        .map(|n| one_line(&path.attr("name", "name"), n))
        .transpose()?;
    let mac = host
        .mac
        .as_deref()
        .map(|m| one_line(&path.attr("mac", "mac"), m))
        .transpose()?;
    let id = host
        .id
        .as_deref()
        .map(|m| one_line(&path.attr("id", "id"), m))
        .transpose()?;
    let mut line = if ipv6 {
        let who = match (id, name) {
            (Some(id), Some(name)) => format!("id:{id},{name}"),
            (None, Some(name)) => name.to_string(),
            (Some(id), None) => format!("id:{id}"),
            (None, None) => {
                return Err(DnsmasqError::at(
                    path,
                    "a static host on IPv6 needs an id or a name",
                ));
            }
        };
        format!("{who},[{ip}]")
    } else {
        match (mac, name) {
            (Some(mac), Some(name)) => format!("{mac},{ip},{name}"),
            (None, Some(name)) => format!("{name},{ip}"),
            (Some(mac), None) => format!("{mac},{ip}"),
            (None, None) => {
                return Err(DnsmasqError::at(
                    path,
                    "a static host on IPv4 needs a mac or a name",
                ));
            }
        }
    };
    if let Some(lease) = &host.lease {
        line.push(',');
        line.push_str(&lease_time(lease));
    }
    Ok(Some(line))
}

/// The DNS hosts file: one line per address of `dns.hosts` in order of first appearance, the
/// address then each of its names, every field followed by a tab (libvirt's
/// `addnhostsWrite`). Empty when there are no hosts. (Written whether or not DNS is enabled,
/// as libvirt does; dnsmasq only reads it when it is.)
pub fn addn_hosts(spec: &NetworkSpec) -> Result<String, DnsmasqError> {
    let Some(dns) = &spec.dns else {
        return Ok(String::new());
    };
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    let mut line_of: HashMap<String, usize> = HashMap::new();
    let hosts_path = FieldPath::spec().elem("dns", "dns").elem("hosts", "host");
    for (i, host) in dns.hosts.iter().enumerate() {
        let path = hosts_path.index(i);
        let Some(ip) = values::parse_ip(&host.ip) else {
            return Err(DnsmasqError::at(
                &path.attr("ip", "ip"),
                format!("'{}' is not an IP address", host.ip),
            ));
        };
        let ip = ip.to_string();
        let index = *line_of.entry(ip.clone()).or_insert_with(|| {
            lines.push((ip, Vec::new()));
            lines.len() - 1
        });
        for (j, name) in host.hostnames.iter().enumerate() {
            let name = one_line(&path.elem("hostnames", "hostname").index(j), name)?;
            lines[index].1.push(name);
        }
    }
    let mut out = String::new();
    for (ip, names) in lines {
        out.push_str(&ip);
        out.push('\t');
        for name in names {
            out.push_str(name);
            out.push('\t');
        }
        out.push('\n');
    }
    Ok(out)
}
