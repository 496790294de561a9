//! The dnsmasq configuration file, line for line as libvirt 11.3.0's
//! `networkDnsmasqConfContents` writes it.

use std::fmt::Write as _;

use switchyard_crds::{Dns, Network, NetworkSpec};

use super::subnets::{self, Subnet, lease_time, netmask, ptr_domain, range_size};
use super::{
    DnsmasqError, Paths, dns_enabled, line_problem, network_name, one_line, serves_dnsmasq,
};
use crate::modes;
use crate::path::FieldPath;
use crate::values;

/// The configuration dnsmasq is started with (`--conf-file`).
pub fn conf(network: &Network, paths: &Paths) -> Result<String, DnsmasqError> {
    let spec = &network.spec;
    let name_path = FieldPath::spec().field("libvirtName");
    let name = network_name(network)
        .ok_or_else(|| DnsmasqError::at(&name_path, "the network has no name"))?;
    let name = one_line(&name_path, name)?;
    if !serves_dnsmasq(spec) {
        return Err(DnsmasqError::at(
            &FieldPath::spec()
                .elem("forward", "forward")
                .attr("mode", "mode"),
            format!(
                "forward mode {} runs no dnsmasq: only nat, route, open and isolated networks do",
                modes::mode_name(spec)
            ),
        ));
    }
    let bridge_path = FieldPath::spec()
        .elem("bridge", "bridge")
        .attr("name", "name");
    let bridge = spec
        .bridge
        .as_ref()
        .and_then(|b| b.name.as_deref())
        .ok_or_else(|| {
            DnsmasqError::at(&bridge_path, "dnsmasq needs the bridge's name to listen on")
        })?;
    let bridge = one_line(&bridge_path, bridge)?;
    let pid_file = paths.pid_file.as_deref();
    for (setting, value) in [
        ("the state directory", Some(paths.state_dir.as_str())),
        ("the pid file", pid_file),
    ] {
        if let Some(problem) = value.and_then(line_problem) {
            return Err(DnsmasqError {
                field: setting.to_string(),
                message: problem.to_string(),
            });
        }
    }

    let want_dns = dns_enabled(spec);
    let subnets = subnets::subnets(spec)?;
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = write!(
        out,
        "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         ##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:\n\
         ##    virsh net-edit {name}\n\
         ## or other application using the libvirt API.\n\
         ##\n## dnsmasq conf file created by libvirt\n\
         strict-order\n"
    );
    if !want_dns {
        out.push_str("port=0\n");
    }
    if want_dns && let Some(dns) = &spec.dns {
        forwarders(dns, &mut out)?;
    }
    if let Some(domain) = &spec.domain {
        let domain_name = one_line(
            &FieldPath::spec()
                .elem("domain", "domain")
                .attr("name", "name"),
            &domain.name,
        )?;
        if domain.local_only == Some(true) {
            let _ = writeln!(out, "local=/{domain_name}/");
        }
        let _ = write!(out, "domain={domain_name}\nexpand-hosts\n");
    }
    if want_dns {
        local_ptrs(&subnets, &mut out)?;
    }
    if want_dns && spec.dns.as_ref().and_then(|d| d.forward_plain_names) == Some(false) {
        out.push_str("domain-needed\nlocal=//\n");
    }
    if let Some(pid_file) = pid_file {
        let _ = writeln!(out, "pid-file={pid_file}");
    }
    let _ = write!(
        out,
        "except-interface=lo\nbind-dynamic\ninterface={bridge}\n"
    );
    if spec.forward.is_none() {
        // Isolated: no default route, no upstream DNS, IPv6 router lifetime 0.
        out.push_str("dhcp-option=3\nno-resolv\nra-param=*,0,0\n");
    }
    if want_dns && let Some(dns) = &spec.dns {
        txt_records(dns, &mut out)?;
        srv_records(dns, &mut out)?;
    }

    let mut tftp_enabled = false;
    for subnet in subnets.iter().filter(|s| s.address.is_ipv4()) {
        if let Some(root) = &subnet.ip.tftp_root {
            let root = one_line(&subnet.path().elem("tftpRoot", "tftp/@root"), root)?;
            if !tftp_enabled {
                out.push_str("enable-tftp\n");
                tftp_enabled = true;
            }
            let _ = writeln!(out, "tftp-root={root}");
        }
    }
    let (v4, v6) = subnets::dhcp_subnets(&subnets)?;
    let mut leases: u64 = 0;
    for subnet in [v4, v6].into_iter().flatten() {
        leases += dhcp(subnet, &mut out)?;
    }
    if leases > 0 {
        let _ = writeln!(out, "dhcp-lease-max={leases}");
    }
    if v4.is_some() || v6.is_some() {
        let _ = writeln!(out, "dhcp-hostsfile={}", paths.hostsfile(name));
    }
    if want_dns {
        let _ = writeln!(out, "addn-hosts={}", paths.addn_hosts(name));
    }
    if let Some(mtu) = spec.mtu.filter(|m| *m > 0) {
        let _ = writeln!(out, "dhcp-option=option:mtu,{mtu}");
    }
    if v6.is_some() {
        out.push_str("enable-ra\n");
    } else {
        for subnet in subnets.iter().filter(|s| s.address.is_ipv6()) {
            let _ = writeln!(out, "dhcp-range={},ra-only", subnet.address);
        }
    }
    options(spec, &mut out)?;
    Ok(out)
}

/// `server=[/domain/]addr` per forwarder (`#` for "resolve locally only"), then `no-resolv`
/// when one of them takes every query that has no domain of its own.
fn forwarders(dns: &Dns, out: &mut String) -> Result<(), DnsmasqError> {
    let mut no_resolv = false;
    let base = FieldPath::spec()
        .elem("dns", "dns")
        .elem("forwarders", "forwarder");
    for (i, forwarder) in dns.forwarders.iter().enumerate() {
        let path = base.index(i);
        out.push_str("server=");
        if let Some(domain) = &forwarder.domain {
            let domain = one_line(&path.attr("domain", "domain"), domain)?;
            let _ = write!(out, "/{domain}/");
        }
        match forwarder.addr.as_deref() {
            Some(addr) => {
                let addr = values::parse_ip(addr).ok_or_else(|| {
                    DnsmasqError::at(
                        &path.attr("addr", "addr"),
                        format!("'{addr}' is not an IP address"),
                    )
                })?;
                match forwarder.port {
                    Some(port) => {
                        let _ = writeln!(out, "{addr}#{port}");
                    }
                    None => {
                        let _ = writeln!(out, "{addr}");
                    }
                }
                no_resolv |= forwarder.domain.is_none();
            }
            None => out.push_str("#\n"),
        }
    }
    if no_resolv {
        out.push_str("no-resolv\n");
    }
    Ok(())
}

/// `local=/<reverse zone>/` for each address with `localPtr: true`.
fn local_ptrs(subnets: &[Subnet], out: &mut String) -> Result<(), DnsmasqError> {
    for subnet in subnets.iter().filter(|s| s.ip.local_ptr == Some(true)) {
        let prefix = subnet.prefix()?;
        let zone = ptr_domain(subnet.address, prefix).ok_or_else(|| {
            DnsmasqError::at(
                &subnet.path().attr("localPtr", "localPtr"),
                format!(
                    "PTR domain for {} network with prefix {prefix} cannot be automatically created",
                    if subnet.address.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            )
        })?;
        let _ = writeln!(out, "local=/{zone}/");
    }
    Ok(())
}

fn txt_records(dns: &Dns, out: &mut String) -> Result<(), DnsmasqError> {
    let base = FieldPath::spec().elem("dns", "dns").elem("txts", "txt");
    for (i, txt) in dns.txts.iter().enumerate() {
        let path = base.index(i);
        let name = one_line(&path.attr("name", "name"), &txt.name)?;
        let value = one_line(&path.attr("value", "value"), &txt.value)?;
        let _ = writeln!(out, "txt-record={name},{value}");
    }
    Ok(())
}

/// `srv-host=_service._protocol[.domain][,target[,port[,priority[,weight]]]]`: port,
/// priority and weight are positional, so an unset one before a set one is written as its
/// default (port 1, priority 0); a target of `.` means "no such service" and takes none.
fn srv_records(dns: &Dns, out: &mut String) -> Result<(), DnsmasqError> {
    let base = FieldPath::spec().elem("dns", "dns").elem("srvs", "srv");
    for (i, srv) in dns.srvs.iter().enumerate() {
        let path = base.index(i);
        let service = one_line(&path.attr("service", "service"), &srv.service)?;
        let protocol = one_line(&path.attr("protocol", "protocol"), &srv.protocol)?;
        let _ = write!(out, "srv-host=_{service}._{protocol}");
        if let Some(domain) = &srv.domain {
            let _ = write!(
                out,
                ".{}",
                one_line(&path.attr("domain", "domain"), domain)?
            );
        }
        if let Some(target) = srv.target.as_deref().filter(|t| *t != ".") {
            let target = one_line(&path.attr("target", "target"), target)?;
            let _ = write!(out, ",{target}");
            let port = srv.port.unwrap_or(0);
            let priority = srv.priority.unwrap_or(0);
            let weight = srv.weight.unwrap_or(0);
            if port != 0 || priority != 0 || weight != 0 {
                let _ = write!(out, ",{}", if port != 0 { port } else { 1 });
            }
            if priority != 0 || weight != 0 {
                let _ = write!(out, ",{priority}");
            }
            if weight != 0 {
                let _ = write!(out, ",{weight}");
            }
        }
        out.push('\n');
    }
    Ok(())
}

/// The `dhcp-range` lines of one address, and for IPv4 `dhcp-no-override`,
/// `dhcp-authoritative` and `dhcp-boot`. Returns the number of addresses its ranges hold.
fn dhcp(subnet: &Subnet, out: &mut String) -> Result<u64, DnsmasqError> {
    let Some(dhcp) = subnet.dhcp() else {
        return Ok(0);
    };
    let dhcp_path = subnet.path().elem("dhcp", "dhcp");
    let prefix = subnet.prefix()?;
    let mut leases = 0u64;
    for (i, range) in dhcp.ranges.iter().enumerate() {
        let path = dhcp_path.elem("ranges", "range").index(i);
        let start = parse_ip(&path.attr("start", "start"), &range.start)?;
        let end = parse_ip(&path.attr("end", "end"), &range.end)?;
        if subnet.address.is_ipv6() {
            let _ = write!(out, "dhcp-range={start},{end},{prefix}");
        } else {
            let _ = write!(out, "dhcp-range={start},{end},{}", netmask(prefix));
        }
        if let Some(lease) = &range.lease {
            let _ = write!(out, ",{}", lease_time(lease));
        }
        out.push('\n');
        let size = range_size(start, end, subnet.address, prefix)
            .map_err(|message| DnsmasqError::at(&path, message))?;
        leases += u64::from(size);
    }
    if dhcp.ranges.is_empty() && !dhcp.hosts.is_empty() {
        let _ = write!(out, "dhcp-range={},static", subnet.address);
        if subnet.address.is_ipv6() {
            let _ = write!(out, ",{prefix}");
        }
        out.push('\n');
    }
    if subnet.address.is_ipv4() {
        if !dhcp.ranges.is_empty() || !dhcp.hosts.is_empty() {
            out.push_str("dhcp-no-override\ndhcp-authoritative\n");
        }
        if let Some(bootp) = &dhcp.bootp {
            let bootp_path = dhcp_path.elem("bootp", "bootp");
            let file = one_line(&bootp_path.attr("file", "file"), &bootp.file)?;
            match &bootp.server {
                Some(server) => {
                    let server = parse_ip(&bootp_path.attr("server", "server"), server)?;
                    let _ = writeln!(out, "dhcp-boot={file},,{server}");
                }
                None => {
                    let _ = writeln!(out, "dhcp-boot={file}");
                }
            }
        }
    }
    Ok(leases)
}

fn parse_ip(path: &FieldPath, text: &str) -> Result<std::net::IpAddr, DnsmasqError> {
    values::parse_ip(text)
        .ok_or_else(|| DnsmasqError::at(path, format!("'{text}' is not an IP address")))
}

/// `<dnsmasq:options>`, verbatim, one per line.
fn options(spec: &NetworkSpec, out: &mut String) -> Result<(), DnsmasqError> {
    let base = FieldPath::spec().elem("dnsmasqOptions", "dnsmasq:options/dnsmasq:option");
    for (i, option) in spec.dnsmasq_options.iter().enumerate() {
        let option = one_line(&base.index(i), option)?;
        let _ = writeln!(out, "{option}");
    }
    Ok(())
}
