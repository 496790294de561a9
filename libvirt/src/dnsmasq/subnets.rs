//! The network's `<ip>`s as dnsmasq sees them: parsed addresses and prefixes, which one serves
//! DHCP per family, range sizes, lease times and reverse zones, each as libvirt computes it.

use std::net::IpAddr;

use switchyard_crds::{Dhcp, IpConfig, Lease, LeaseUnit, NetworkSpec};

use super::DnsmasqError;
use crate::path::FieldPath;
use crate::validate::addressing::ip_prefix;
use crate::values;

/// One `<ip>` of the network with its address parsed.
pub(crate) struct Subnet<'a> {
    pub index: usize,
    pub ip: &'a IpConfig,
    pub address: IpAddr,
}

impl<'a> Subnet<'a> {
    pub fn path(&self) -> FieldPath {
        FieldPath::spec().elem("ips", "ip").index(self.index)
    }

    /// libvirt's `virNetworkIPDefPrefix`.
    pub fn prefix(&self) -> Result<u8, DnsmasqError> {
        ip_prefix(self.ip, self.address).ok_or_else(|| {
            DnsmasqError::at(
                &self.path(),
                format!("address {} has no valid prefix or netmask", self.address),
            )
        })
    }

    pub fn dhcp(&self) -> Option<&'a Dhcp> {
        self.ip.dhcp.as_ref()
    }

    /// Whether this address has DHCP ranges or static hosts (a `<dhcp>` with only `<bootp>`
    /// does not count, as in libvirt).
    pub fn serves_dhcp(&self) -> bool {
        self.dhcp()
            .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
    }
}

/// Every `<ip>` of the network, in order.
pub(crate) fn subnets(spec: &NetworkSpec) -> Result<Vec<Subnet<'_>>, DnsmasqError> {
    spec.ips
        .iter()
        .enumerate()
        .map(|(index, ip)| {
            let path = FieldPath::spec().elem("ips", "ip").index(index);
            let text = ip
                .address
                .as_deref()
                .ok_or_else(|| DnsmasqError::at(&path, "the address is required"))?;
            let address = values::parse_ip(text).ok_or_else(|| {
                DnsmasqError::at(
                    &path.attr("address", "address"),
                    format!("'{text}' is not an IP address"),
                )
            })?;
            Ok(Subnet { index, ip, address })
        })
        .collect()
}

/// The first IPv4 and the first IPv6 address with DHCP; a second one of a family is an error,
/// as in libvirt.
pub(crate) fn dhcp_subnets<'s, 'a>(
    subnets: &'s [Subnet<'a>],
) -> Result<(Option<&'s Subnet<'a>>, Option<&'s Subnet<'a>>), DnsmasqError> {
    let mut v4 = None;
    let mut v6 = None;
    for subnet in subnets.iter().filter(|s| s.serves_dhcp()) {
        let (slot, family) = if subnet.address.is_ipv6() {
            (&mut v6, "IPv6")
        } else {
            (&mut v4, "IPv4")
        };
        if slot.is_some() {
            return Err(DnsmasqError::at(
                &subnet.path().elem("dhcp", "dhcp"),
                format!("for {family}, multiple DHCP definitions cannot be specified"),
            ));
        }
        *slot = Some(subnet);
    }
    Ok((v4, v6))
}

/// libvirt's `networkBuildDnsmasqLeaseTime`: `infinite`, or the expiry and the unit's first
/// letter (minutes when none is given).
pub(crate) fn lease_time(lease: &Lease) -> String {
    if lease.expiry == 0 {
        return "infinite".to_string();
    }
    let unit = match lease.unit.unwrap_or(LeaseUnit::Minutes) {
        LeaseUnit::Seconds => 's',
        LeaseUnit::Minutes => 'm',
        LeaseUnit::Hours => 'h',
    };
    format!("{}{unit}", lease.expiry)
}

/// The most addresses one DHCP range may span (libvirt's `virSocketAddrGetRange`).
pub(crate) const MAX_RANGE_SIZE: u32 = 65536;

/// The number of addresses in a DHCP range of `network`/`prefix`, or why libvirt refuses the
/// range (`virSocketAddrGetRange`): not of the network's family, outside it, starting at the
/// network address or ending at the broadcast address (IPv4), reversed, or larger than 65536
/// addresses (IPv4), or differing above the last 16 bits (IPv6).
pub(crate) fn range_size(
    start: IpAddr,
    end: IpAddr,
    network: IpAddr,
    prefix: u8,
) -> Result<u32, String> {
    if start.is_ipv6() != network.is_ipv6() || end.is_ipv6() != network.is_ipv6() {
        return Err(format!(
            "range {start} - {end} is not of the family of network {network}"
        ));
    }
    let net = values::mask(network, prefix);
    if values::mask(start, prefix) != net || values::mask(end, prefix) != net {
        return Err(format!(
            "range {start} - {end} is not entirely within network {net}/{prefix}"
        ));
    }
    let (first, last) = (values::ip_value(start), values::ip_value(end));
    if network.is_ipv4() {
        let host_bits = 32 - u32::from(prefix.min(32));
        let broadcast = values::ip_value(net) | ((1u128 << host_bits) - 1);
        if first == values::ip_value(net) {
            return Err(format!(
                "start of range {start} - {end} is the network address of {net}/{prefix}"
            ));
        }
        if last == broadcast {
            return Err(format!(
                "end of range {start} - {end} is the broadcast address of {net}/{prefix}"
            ));
        }
        if last < first {
            return Err(format!("range {start} - {end} is reversed"));
        }
        if last - first > 65535 {
            return Err(format!(
                "range {start} - {end} is too large (more than {MAX_RANGE_SIZE} addresses)"
            ));
        }
        Ok((last - first + 1) as u32)
    } else {
        if first >> 16 != last >> 16 {
            return Err(format!(
                "range {start} - {end} is too large (IPv6 ranges may differ only in the last 16 bits)"
            ));
        }
        if last < first {
            return Err(format!("range {start} - {end} starts after its end"));
        }
        Ok((last - first + 1) as u32)
    }
}

/// The reverse DNS zone of `address`/`prefix` (libvirt's `virSocketAddrPTRDomain`), or `None`
/// when the prefix is not a whole number of bytes (IPv4) or nibbles (IPv6), or 0 or the full
/// length.
pub(crate) fn ptr_domain(address: IpAddr, prefix: u8) -> Option<String> {
    let mut zone = String::new();
    match address {
        IpAddr::V4(v4) => {
            if prefix == 0 || prefix >= 32 || !prefix.is_multiple_of(8) {
                return None;
            }
            let bytes = v4.octets();
            for i in (0..usize::from(prefix / 8)).rev() {
                zone.push_str(&format!("{}.", bytes[i]));
            }
            zone.push_str("in-addr.arpa");
        }
        IpAddr::V6(v6) => {
            if prefix == 0 || prefix >= 128 || !prefix.is_multiple_of(4) {
                return None;
            }
            let bytes = v6.octets();
            let nibble = |i: usize| {
                let byte = bytes[i / 2];
                if i.is_multiple_of(2) {
                    byte >> 4
                } else {
                    byte & 0xf
                }
            };
            for i in (0..usize::from(prefix / 4)).rev() {
                zone.push_str(&format!("{:x}.", nibble(i)));
            }
            zone.push_str("ip6.arpa");
        }
    }
    Some(zone)
}

/// The IPv4 netmask of a prefix length, as dnsmasq's `dhcp-range` wants it.
pub(crate) fn netmask(prefix: u8) -> IpAddr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    IpAddr::V4(bits.into())
}
