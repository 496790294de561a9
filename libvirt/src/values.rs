//! Parsing and canonical spelling of the small values libvirt stores in binary form (MAC
//! addresses, UUIDs, IP addresses, PCI addresses): libvirt prints them back in one canonical
//! way, so import stores that spelling and export reproduces libvirt's output.

use std::net::IpAddr;

use switchyard_crds::PciAddress;

/// A MAC address as six bytes, accepting libvirt's spellings (`52:54:00:E6:A2:C9`, one or two
/// hex digits per byte).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut bytes = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut bytes {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(bytes)
}

/// libvirt's canonical spelling of a MAC address: lower case, two digits per byte, `:`
/// between them. Takes any length, as the kernel's link addresses come (six bytes for
/// Ethernet).
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether a MAC address is a multicast (group) address, which libvirt refuses for bridges
/// and DHCP hosts.
pub fn is_multicast_mac(bytes: [u8; 6]) -> bool {
    bytes[0] & 1 == 1
}

/// A UUID as 16 bytes: 32 hex digits, dashes between bytes allowed anywhere, surrounding
/// blanks ignored (libvirt's `virUUIDParse`).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = s.trim().bytes().filter(|b| *b != b'-').collect();
    if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&digits[2 * i..2 * i + 2]).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

/// The canonical `8-4-4-4-12` lower-case spelling of a UUID.
pub fn format_uuid(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A numeric IPv4 or IPv6 address.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// The canonical spelling of an IP address (RFC 5952 for IPv6, as libvirt's
/// `virSocketAddrFormat` prints it).
pub fn canonical_ip(s: &str) -> Option<String> {
    parse_ip(s).map(|ip| ip.to_string())
}

/// A number as libvirt's `virStrToLong_ui(..., 0, ...)` reads it: decimal, `0x` hex or
/// leading-zero octal.
pub fn parse_c_integer(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The prefix length of a contiguous netmask, e.g. 24 for `255.255.255.0`.
pub fn netmask_prefix(netmask: IpAddr) -> Option<u8> {
    let bits = match netmask {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The address with every bit past `prefix` cleared.
pub fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let keep = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// The address as a number, to order addresses of one family.
pub fn ip_value(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// libvirt's spelling of a PCI address in `<forward>`: `0000:03:00.1`.
pub fn format_pci(address: &PciAddress) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        address.domain, address.bus, address.slot, address.function
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_lower_cased_and_padded() {
        let mac = parse_mac("52:54:00:E6:A2:C9").unwrap();
        assert_eq!(format_mac(&mac), "52:54:00:e6:a2:c9");
        assert_eq!(
            format_mac(&parse_mac("2:4:0:e:a:c").unwrap()),
            "02:04:00:0e:0a:0c"
        );
        for bad in [
            "",
            "52:54:00:e6:a2",
            "52:54:00:e6:a2:c9:00",
            "5254:00:e6:a2:c9",
            "g2:54:00:e6:a2:c9",
            "52-54-00-e6-a2-c9",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert!(is_multicast_mac(parse_mac("01:00:5e:00:00:01").unwrap()));
        assert!(!is_multicast_mac(mac));
    }

    #[test]
    fn uuids_are_canonical() {
        let canonical = "81ff0d90-c91e-6742-64da-4a736edb9a8c";
        for spelling in [
            canonical,
            "81FF0D90C91E674264DA4A736EDB9A8C",
            " 81ff0d90-c91e-6742-64da-4a736edb9a8c\n",
        ] {
            assert_eq!(format_uuid(parse_uuid(spelling).unwrap()), canonical);
        }
        for bad in [
            "",
            "81ff0d90",
            "81ff0d90-c91e-6742-64da-4a736edb9a8z",
            "é1ff0d90c91e674264da4a736edb9a8c",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn ips_are_canonical() {
        assert_eq!(
            canonical_ip("2001:DB8:0:0::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            canonical_ip("192.168.122.1").as_deref(),
            Some("192.168.122.1")
        );
        assert_eq!(canonical_ip("192.168.122"), None);
        assert_eq!(canonical_ip("host"), None);
    }

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_integer("0x0b"), Some(11));
        assert_eq!(parse_c_integer("011"), Some(9));
        assert_eq!(parse_c_integer("11"), Some(11));
        assert_eq!(parse_c_integer("0"), Some(0));
        for bad in ["", "0x", "-1", "1e3", "09", "99999999999999999999999"] {
            assert_eq!(parse_c_integer(bad), None, "{bad}");
        }
    }

    #[test]
    fn netmasks_and_masking() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(netmask_prefix(ip("255.255.255.0")), Some(24));
        assert_eq!(netmask_prefix(ip("255.255.255.255")), Some(32));
        assert_eq!(netmask_prefix(ip("0.0.0.0")), Some(0));
        assert_eq!(netmask_prefix(ip("255.0.255.0")), None);
        assert_eq!(mask(ip("192.168.122.77"), 24), ip("192.168.122.0"));
        assert_eq!(mask(ip("192.168.122.77"), 0), ip("0.0.0.0"));
        assert_eq!(
            mask(ip("2001:db8:ac10:fd01::1:24"), 64),
            ip("2001:db8:ac10:fd01::")
        );
        assert!(ip_value(ip("10.0.0.2")) > ip_value(ip("10.0.0.1")));
    }

    #[test]
    fn pci_addresses() {
        let address = PciAddress {
            domain: 0,
            bus: 3,
            slot: 0,
            function: 1,
        };
        assert_eq!(format_pci(&address), "0000:03:00.1");
    }
}
