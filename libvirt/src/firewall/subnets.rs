//! What the rules are made of: the network's subnets, its forward device and its NAT
//! settings, read from the spec as libvirt reads its definition.

use std::net::IpAddr;

use switchyard_crds::{AddressRange, NetworkSpec};

use super::FirewallError;
use crate::path::FieldPath;
use crate::validate::ip_prefix;
use crate::{modes, values};

/// An address family, as nft names its tables' families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: nft family `ip`.
    Ipv4,
    /// IPv6: nft family `ip6`.
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first, as libvirt sets them up.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// nft's name of the family, also its address-match keyword (`ip saddr`, `ip6 saddr`).
    pub fn nft(self) -> &'static str {
        match self {
            Self::Ipv4 => "ip",
            Self::Ipv6 => "ip6",
        }
    }

    fn of(address: IpAddr) -> Self {
        if address.is_ipv4() {
            Self::Ipv4
        } else {
            Self::Ipv6
        }
    }

    fn max_prefix(self) -> u8 {
        match self {
            Self::Ipv4 => 32,
            Self::Ipv6 => 128,
        }
    }
}

/// One `<ip>` of the network as the rules name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The address family.
    pub family: Family,
    /// The network in CIDR form, host bits cleared (`192.168.122.0/24`), as libvirt's
    /// `virSocketAddrFormatWithPrefix` prints it.
    pub cidr: String,
}

/// The network's `<ip>`s, in definition order.
pub(crate) fn subnets(spec: &NetworkSpec) -> Result<Vec<Subnet>, FirewallError> {
    let root = FieldPath::spec();
    spec.ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let path = root.elem("ips", "ip").index(i);
            let address_path = path.attr("address", "address");
            let text = ip
                .address
                .as_deref()
                .ok_or_else(|| FirewallError::field(&address_path, "the address is required"))?;
            let address = values::parse_ip(text).ok_or_else(|| {
                FirewallError::field(&address_path, format!("'{text}' is not an IP address"))
            })?;
            let family = Family::of(address);
            let prefix = ip_prefix(ip, address)
                .filter(|p| *p <= family.max_prefix())
                .ok_or_else(|| {
                    FirewallError::field(
                        &path.attr("prefix", "prefix"),
                        "invalid prefix or netmask (and no classful default for this address)",
                    )
                })?;
            Ok(Subnet {
                family,
                cidr: format!("{}/{prefix}", values::mask(address, prefix)),
            })
        })
        .collect()
}

/// libvirt's `virNetworkDefForwardIf(def, 0)`: the device traffic must leave through, which
/// the rules then name (`oifname`, `iifname`).
pub(crate) fn forward_device(spec: &NetworkSpec) -> Result<Option<&str>, FirewallError> {
    let Some(dev) = modes::pool_devices(spec).first().copied() else {
        return Ok(None);
    };
    let forward = FieldPath::spec().elem("forward", "forward");
    let path = match spec.forward.as_ref().map(|f| f.interfaces.is_empty()) {
        Some(false) => forward
            .elem("interfaces", "interface")
            .index(0)
            .attr("dev", "dev"),
        _ => forward.attr("dev", "dev"),
    };
    check_device_name(dev, &path)?;
    Ok(Some(dev))
}

/// The bridge name, checked like every device name the rules carry.
pub(crate) fn checked_bridge(bridge: &str) -> Result<&str, FirewallError> {
    check_device_name(
        bridge,
        &FieldPath::spec()
            .elem("bridge", "bridge")
            .attr("name", "name"),
    )?;
    Ok(bridge)
}

/// Device names go into nft commands and scripts (quoted there); the kernel forbids `/`, `:`
/// and white space in them, and nft's quoted strings cannot hold a `"` or a `\`.
fn check_device_name(name: &str, path: &FieldPath) -> Result<(), FirewallError> {
    if name.is_empty() || name.len() > 15 {
        return Err(FirewallError::field(
            path,
            format!("'{name}' is not a device name of 1 to 15 characters"),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) || name.contains(['/', ':', '"', '\\']) {
        return Err(FirewallError::field(
            path,
            format!(
                "'{name}' cannot be written into a firewall rule (printable ASCII without / : \" \\ only)"
            ),
        ));
    }
    Ok(())
}

/// libvirt's `<nat>` settings for the masquerade rules: the one address range and one port
/// range it keeps (`def->forward.addr`, `def->forward.port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NatSettings {
    pub(crate) addresses: Option<(IpAddr, Option<IpAddr>)>,
    /// The source ports, `1024-65535` unless `<port>` says otherwise.
    pub(crate) ports: (u32, u32),
    pub(crate) ipv6: bool,
}

/// The source ports libvirt masquerades to when `<nat>` gives none: guests stay off the
/// privileged ports some services (NFS) trust.
const DEFAULT_NAT_PORTS: (u32, u32) = (1024, 65535);

pub(crate) fn nat_settings(spec: &NetworkSpec) -> Result<NatSettings, FirewallError> {
    let Some(nat) = spec.forward.as_ref().and_then(|f| f.nat.as_ref()) else {
        return Ok(NatSettings {
            ports: DEFAULT_NAT_PORTS,
            ..Default::default()
        });
    };
    let path = FieldPath::spec()
        .elem("forward", "forward")
        .elem("nat", "nat");
    let addresses = nat
        .addresses
        .first()
        .map(|range| nat_addresses(range, &path.elem("addresses", "address").index(0)))
        .transpose()?;
    let ports = match nat.ports.first() {
        None => DEFAULT_NAT_PORTS,
        Some(range) if range.start == 0 && range.end == 0 => DEFAULT_NAT_PORTS,
        // libvirt's own check (nftablesAddForwardMasquerade): a range of at least two ports.
        Some(range) if range.start < range.end => (u32::from(range.start), u32::from(range.end)),
        Some(range) => {
            return Err(FirewallError::field(
                &path.elem("ports", "port").index(0),
                format!(
                    "invalid port range '{}-{}': start must be below end",
                    range.start, range.end
                ),
            ));
        }
    };
    Ok(NatSettings {
        addresses,
        ports,
        ipv6: nat.ipv6 == Some(true),
    })
}

fn nat_addresses(
    range: &AddressRange,
    path: &FieldPath,
) -> Result<(IpAddr, Option<IpAddr>), FirewallError> {
    let parse = |text: &str, attr: &'static str| {
        values::parse_ip(text).ok_or_else(|| {
            FirewallError::field(
                &path.attr(attr, attr),
                format!("'{text}' is not an IP address"),
            )
        })
    };
    let start = parse(&range.start, "start")?;
    let end = if range.end.is_empty() {
        None
    } else {
        Some(parse(&range.end, "end")?)
    };
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Forward, ForwardInterface, ForwardMode, IpConfig, Nat, PortRange};

    fn ip(address: &str, prefix: Option<u8>, netmask: Option<&str>) -> IpConfig {
        IpConfig {
            address: Some(address.into()),
            prefix,
            netmask: netmask.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn subnets_clear_host_bits_and_use_libvirts_prefix_rules() {
        let spec = NetworkSpec {
            ips: vec![
                ip("192.168.122.1", None, Some("255.255.255.0")),
                ip("10.1.2.3", None, None),
                ip("2001:db8:ca2:2::1", Some(64), None),
                ip("172.16.5.9", Some(20), None),
            ],
            ..Default::default()
        };
        let got: Vec<_> = subnets(&spec)
            .unwrap()
            .into_iter()
            .map(|s| (s.family, s.cidr))
            .collect();
        assert_eq!(
            got,
            [
                (Family::Ipv4, "192.168.122.0/24".to_string()),
                (Family::Ipv4, "10.0.0.0/8".to_string()),
                (Family::Ipv6, "2001:db8:ca2:2::/64".to_string()),
                (Family::Ipv4, "172.16.0.0/20".to_string()),
            ]
        );
    }

    #[test]
    fn a_bad_address_or_prefix_names_the_field() {
        let spec = NetworkSpec {
            ips: vec![
                ip("192.168.1.1", Some(24), None),
                ip("nonsense", None, None),
            ],
            ..Default::default()
        };
        assert_eq!(
            subnets(&spec).unwrap_err().to_string(),
            "spec.ips[1].address: 'nonsense' is not an IP address"
        );
        let spec = NetworkSpec {
            ips: vec![ip("224.0.0.1", None, None)],
            ..Default::default()
        };
        assert!(
            subnets(&spec)
                .unwrap_err()
                .to_string()
                .starts_with("spec.ips[0].prefix: invalid prefix")
        );
        let spec = NetworkSpec {
            ips: vec![ip("10.0.0.1", Some(40), None)],
            ..Default::default()
        };
        assert!(subnets(&spec).is_err());
    }

    #[test]
    fn forward_device_is_the_first_of_the_pool() {
        let mut spec = NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Nat,
                dev: Some("enp0s7".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(forward_device(&spec).unwrap(), Some("enp0s7"));
        spec.forward.as_mut().unwrap().interfaces = vec![ForwardInterface {
            dev: "bad\"name".into(),
        }];
        assert_eq!(
            forward_device(&spec).unwrap_err().to_string(),
            "spec.forward.interfaces[0].dev: 'bad\"name' cannot be written into a firewall rule (printable ASCII without / : \" \\ only)"
        );
        assert_eq!(forward_device(&NetworkSpec::default()).unwrap(), None);
    }

    #[test]
    fn nat_ports_default_to_unprivileged_and_must_be_a_range() {
        let with_nat = |nat: Nat| NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Nat,
                nat: Some(nat),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            nat_settings(&NetworkSpec::default()).unwrap().ports,
            (1024, 65535)
        );
        let ports = |start, end| Nat {
            ports: vec![PortRange { start, end }],
            ..Default::default()
        };
        assert_eq!(
            nat_settings(&with_nat(ports(500, 1000))).unwrap().ports,
            (500, 1000)
        );
        assert_eq!(
            nat_settings(&with_nat(ports(0, 0))).unwrap().ports,
            (1024, 65535)
        );
        assert_eq!(
            nat_settings(&with_nat(ports(2000, 2000)))
                .unwrap_err()
                .to_string(),
            "spec.forward.nat.ports[0]: invalid port range '2000-2000': start must be below end"
        );
        let addresses = Nat {
            addresses: vec![AddressRange {
                start: "10.0.0.5".into(),
                end: "10.0.0.9".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            nat_settings(&with_nat(addresses)).unwrap().addresses,
            Some((
                "10.0.0.5".parse().unwrap(),
                Some("10.0.0.9".parse().unwrap())
            ))
        );
    }
}
