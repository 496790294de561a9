//! libvirt's iptables backend (src/network/network_iptables.c, v11.3.0): its own chains
//! (`LIBVIRT_INP`, `LIBVIRT_OUT`, `LIBVIRT_FWO`, `LIBVIRT_FWI`, `LIBVIRT_FWX` in filter,
//! `LIBVIRT_PRT` in nat and mangle) jumped to from the host's built-in chains, and each
//! network's rules. Unlike the nftables backend it also accepts DHCP, DNS and TFTP to and from
//! the host, and fixes DHCP checksums with the mangle table's CHECKSUM target instead of tc.
//!
//! The chain names are libvirt's and not a parameter: this backend lives in the host's own
//! tables, so switchyard's nodes use the nftables backend and its private table instead. It is
//! here to reproduce libvirt's other set of golden commands, and to show what a libvirtd using
//! it (Debian's default choice) adds to a host.

use switchyard_crds::{ForwardMode, NetworkSpec};

use super::subnets::{self, NatSettings};
use super::{Command, Family, FirewallError, Program, Subnet, has_firewall};

const INPUT_CHAIN: &str = "LIBVIRT_INP";
const OUTPUT_CHAIN: &str = "LIBVIRT_OUT";
const FORWARD_OUT_CHAIN: &str = "LIBVIRT_FWO";
const FORWARD_IN_CHAIN: &str = "LIBVIRT_FWI";
const FORWARD_CROSS_CHAIN: &str = "LIBVIRT_FWX";
const POSTROUTING_CHAIN: &str = "LIBVIRT_PRT";

/// Per table, libvirt's chains and the built-in chain that jumps to each.
const CHAINS: [(&str, &[(&str, &str)]); 3] = [
    (
        "filter",
        &[
            ("INPUT", INPUT_CHAIN),
            ("OUTPUT", OUTPUT_CHAIN),
            ("FORWARD", FORWARD_OUT_CHAIN),
            ("FORWARD", FORWARD_IN_CHAIN),
            ("FORWARD", FORWARD_CROSS_CHAIN),
        ],
    ),
    ("nat", &[("POSTROUTING", POSTROUTING_CHAIN)]),
    ("mangle", &[("POSTROUTING", POSTROUTING_CHAIN)]),
];

const LOCAL_MULTICAST_V4: &str = "224.0.0.0/24";
const LOCAL_MULTICAST_V6: &str = "ff02::/16";
const LOCAL_BROADCAST: &str = "255.255.255.255/32";

fn command(family: Family, table: &str, words: &[&str]) -> Command {
    let mut args = vec!["-w".to_string(), "--table".to_string(), table.to_string()];
    args.extend(words.iter().map(|w| w.to_string()));
    Command {
        program: Program::iptables(family),
        echo_handle: false,
        args,
    }
}

/// The chain set-up libvirt runs before the first network with a firewall starts
/// (`iptablesSetupPrivateChains`), for a host without its chains: per family, the three
/// `--list-rules` it reads, then each chain and the jump to it.
pub fn setup_commands() -> Vec<Command> {
    let mut commands = Vec::new();
    for family in Family::ALL {
        for (table, _) in CHAINS {
            commands.push(command(family, table, &["--list-rules"]));
        }
        for (table, chains) in CHAINS {
            for (parent, chain) in chains {
                commands.push(command(family, table, &["--new-chain", chain]));
                commands.push(command(
                    family,
                    table,
                    &["--insert", parent, "--jump", chain],
                ));
            }
        }
    }
    commands
}

/// The commands libvirt's iptables backend runs for a network whose bridge is `bridge`
/// (`iptablesAddFirewallRules`): host-facing accepts and the catch-all rules per family, each
/// `<ip>`'s NAT or routing rules, then the DHCP checksum fix when the network serves DHCPv4.
/// Open networks, and modes without a managed bridge, get none.
pub fn network_commands(spec: &NetworkSpec, bridge: &str) -> Result<Vec<Command>, FirewallError> {
    if !has_firewall(spec) {
        return Ok(Vec::new());
    }
    let bridge = subnets::checked_bridge(bridge)?;
    let rules = Rules {
        bridge,
        forward_dev: subnets::forward_device(spec)?,
    };
    let subnets = subnets::subnets(spec)?;
    let mode = spec.forward.as_ref().map(|f| f.mode);
    let nat = match mode {
        Some(ForwardMode::Nat) => Some(subnets::nat_settings(spec)?),
        _ => None,
    };
    let ipv4: Vec<_> = spec
        .ips
        .iter()
        .zip(&subnets)
        .filter(|(_, subnet)| subnet.family == Family::Ipv4)
        .map(|(ip, _)| ip)
        .collect();
    let serves_dhcp = |ip: &&switchyard_crds::IpConfig| {
        ip.dhcp
            .as_ref()
            .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
    };
    // libvirt looks at the first IPv4 `<ip>` with DHCP or TFTP only.
    let tftp = ipv4
        .iter()
        .find(|ip| serves_dhcp(ip) || ip.tftp_root.is_some())
        .is_some_and(|ip| ip.tftp_root.is_some());

    let mut out = Vec::new();
    rules.general_ipv4(tftp, &mut out);
    let has_ipv6 = subnets.iter().any(|s| s.family == Family::Ipv6);
    if has_ipv6 || spec.ipv6 == Some(true) {
        rules.general_ipv6(has_ipv6, &mut out);
    }
    for subnet in &subnets {
        match (mode, &nat) {
            (Some(ForwardMode::Nat), Some(nat)) if subnet.family == Family::Ipv4 || nat.ipv6 => {
                rules.masquerading(subnet, nat, &mut out)
            }
            (Some(ForwardMode::Nat | ForwardMode::Route), _) => rules.routing(subnet, &mut out),
            _ => {}
        }
    }
    if ipv4.iter().any(serves_dhcp) {
        out.push(command(
            Family::Ipv4,
            "mangle",
            &[
                "--insert",
                POSTROUTING_CHAIN,
                "--out-interface",
                bridge,
                "--protocol",
                "udp",
                "--destination-port",
                "68",
                "--jump",
                "CHECKSUM",
                "--checksum-fill",
            ],
        ));
    }
    Ok(out)
}

struct Rules<'a> {
    bridge: &'a str,
    forward_dev: Option<&'a str>,
}

impl Rules<'_> {
    fn host_port(&self, family: Family, incoming: bool, protocol: &str, port: u16) -> Command {
        let (chain, direction) = if incoming {
            (INPUT_CHAIN, "--in-interface")
        } else {
            (OUTPUT_CHAIN, "--out-interface")
        };
        let port = port.to_string();
        command(
            family,
            "filter",
            &[
                "--insert",
                chain,
                direction,
                self.bridge,
                "--protocol",
                protocol,
                "--destination-port",
                &port,
                "--jump",
                "ACCEPT",
            ],
        )
    }

    fn catch_all(&self, family: Family, out: &mut Vec<Command>) {
        let bridge = self.bridge;
        out.push(command(
            family,
            "filter",
            &[
                "--insert",
                FORWARD_OUT_CHAIN,
                "--in-interface",
                bridge,
                "--jump",
                "REJECT",
            ],
        ));
        out.push(command(
            family,
            "filter",
            &[
                "--insert",
                FORWARD_IN_CHAIN,
                "--out-interface",
                bridge,
                "--jump",
                "REJECT",
            ],
        ));
        out.push(command(
            family,
            "filter",
            &[
                "--insert",
                FORWARD_CROSS_CHAIN,
                "--in-interface",
                bridge,
                "--out-interface",
                bridge,
                "--jump",
                "ACCEPT",
            ],
        ));
    }

    /// DHCP and DNS (and TFTP) to the host's dnsmasq and back, then the catch-alls.
    fn general_ipv4(&self, tftp: bool, out: &mut Vec<Command>) {
        let v4 = Family::Ipv4;
        for port in [(67, 68), (53, 53)] {
            out.push(self.host_port(v4, true, "tcp", port.0));
            out.push(self.host_port(v4, true, "udp", port.0));
            out.push(self.host_port(v4, false, "tcp", port.1));
            out.push(self.host_port(v4, false, "udp", port.1));
        }
        if tftp {
            out.push(self.host_port(v4, true, "udp", 69));
            out.push(self.host_port(v4, false, "udp", 69));
        }
        self.catch_all(v4, out);
    }

    /// The catch-alls, then DNS and DHCPv6 when the network has an IPv6 address.
    fn general_ipv6(&self, has_address: bool, out: &mut Vec<Command>) {
        let v6 = Family::Ipv6;
        self.catch_all(v6, out);
        if has_address {
            out.push(self.host_port(v6, true, "tcp", 53));
            out.push(self.host_port(v6, true, "udp", 53));
            out.push(self.host_port(v6, false, "tcp", 53));
            out.push(self.host_port(v6, false, "udp", 53));
            out.push(self.host_port(v6, true, "udp", 547));
            out.push(self.host_port(v6, false, "udp", 546));
        }
    }

    fn allow_out(&self, subnet: &Subnet) -> Command {
        let mut words = vec![
            "--insert",
            FORWARD_OUT_CHAIN,
            "--source",
            &subnet.cidr,
            "--in-interface",
            self.bridge,
        ];
        if let Some(dev) = self.forward_dev {
            words.extend(["--out-interface", dev]);
        }
        words.extend(["--jump", "ACCEPT"]);
        command(subnet.family, "filter", &words)
    }

    fn allow_in(&self, subnet: &Subnet, related_only: bool) -> Command {
        let mut words = vec!["--insert", FORWARD_IN_CHAIN, "--destination", &subnet.cidr];
        if let Some(dev) = self.forward_dev {
            words.extend(["--in-interface", dev]);
        }
        words.extend(["--out-interface", self.bridge]);
        if related_only {
            words.extend(["--match", "conntrack", "--ctstate", "ESTABLISHED,RELATED"]);
        }
        words.extend(["--jump", "ACCEPT"]);
        command(subnet.family, "filter", &words)
    }

    fn masquerading(&self, subnet: &Subnet, nat: &NatSettings, out: &mut Vec<Command>) {
        out.push(self.allow_out(subnet));
        out.push(self.allow_in(subnet, true));
        for protocol in [None, Some("udp"), Some("tcp")] {
            out.push(self.masquerade(subnet, nat, protocol));
        }
        if subnet.family == Family::Ipv4 {
            out.push(self.dont_masquerade(subnet, LOCAL_BROADCAST));
        }
        out.push(self.dont_masquerade(
            subnet,
            match subnet.family {
                Family::Ipv4 => LOCAL_MULTICAST_V4,
                Family::Ipv6 => LOCAL_MULTICAST_V6,
            },
        ));
    }

    /// iptablesForwardMasquerade: MASQUERADE, or SNAT to the `<nat><address>` range.
    fn masquerade(&self, subnet: &Subnet, nat: &NatSettings, protocol: Option<&str>) -> Command {
        let family = subnet.family;
        let net = subnet.cidr.as_str();
        let mut words = vec!["--insert", POSTROUTING_CHAIN, "--source", net];
        if let Some(protocol) = protocol {
            words.extend(["-p", protocol]);
        }
        words.extend(["!", "--destination", net]);
        if let Some(dev) = self.forward_dev {
            words.extend(["--out-interface", dev]);
        }
        let ports = protocol.map(|_| format!("{}-{}", nat.ports.0, nat.ports.1));
        let same_family = |a: &std::net::IpAddr| a.is_ipv4() == (family == Family::Ipv4);
        let snat_range;
        match nat.addresses.filter(|(start, _)| same_family(start)) {
            Some((start, end)) => {
                let mut range = start.to_string();
                if let Some(end) = end.filter(same_family) {
                    range = format!("{range}-{end}");
                }
                if let Some(ports) = &ports {
                    range = format!("{range}:{ports}");
                }
                snat_range = range;
                words.extend(["--jump", "SNAT", "--to-source", &snat_range]);
            }
            None => {
                words.extend(["--jump", "MASQUERADE"]);
                if let Some(ports) = &ports {
                    words.extend(["--to-ports", ports]);
                }
            }
        }
        command(family, "nat", &words)
    }

    fn dont_masquerade(&self, subnet: &Subnet, destination: &str) -> Command {
        let mut words = vec!["--insert", POSTROUTING_CHAIN];
        if let Some(dev) = self.forward_dev {
            words.extend(["--out-interface", dev]);
        }
        words.extend([
            "--source",
            &subnet.cidr,
            "--destination",
            destination,
            "--jump",
            "RETURN",
        ]);
        command(subnet.family, "nat", &words)
    }

    fn routing(&self, subnet: &Subnet, out: &mut Vec<Command>) {
        out.push(self.allow_out(subnet));
        out.push(self.allow_in(subnet, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Bridge, Dhcp, DhcpRange, Forward, IpConfig};

    fn line(command: &Command) -> String {
        command.argv().join(" ")
    }

    #[test]
    fn setup_lists_then_adds_chains_and_jumps_per_family() {
        let setup = setup_commands();
        assert_eq!(setup.len(), 2 * (3 + 2 * 7));
        assert!(setup[..3].iter().all(Command::is_query));
        assert_eq!(
            line(&setup[3]),
            "iptables -w --table filter --new-chain LIBVIRT_INP"
        );
        assert_eq!(line(&setup[17]), "ip6tables -w --table filter --list-rules");
    }

    #[test]
    fn dhcp_brings_the_checksum_fix_and_tftp_its_ports() {
        let spec = NetworkSpec {
            bridge: Some(Bridge {
                name: Some("virbr7".into()),
                ..Default::default()
            }),
            forward: Some(Forward {
                mode: ForwardMode::Route,
                ..Default::default()
            }),
            ips: vec![IpConfig {
                address: Some("10.7.0.1".into()),
                prefix: Some(24),
                tftp_root: Some("/srv/tftp".into()),
                dhcp: Some(Dhcp {
                    ranges: vec![DhcpRange {
                        start: "10.7.0.10".into(),
                        end: "10.7.0.20".into(),
                        lease: None,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let lines: Vec<String> = network_commands(&spec, "virbr7")
            .unwrap()
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            lines[8],
            "iptables -w --table filter --insert LIBVIRT_INP --in-interface virbr7 --protocol udp --destination-port 69 --jump ACCEPT"
        );
        assert_eq!(
            lines.last().unwrap(),
            "iptables -w --table mangle --insert LIBVIRT_PRT --out-interface virbr7 --protocol udp --destination-port 68 --jump CHECKSUM --checksum-fill"
        );
        let mut no_dhcp = spec.clone();
        no_dhcp.ips[0].dhcp = None;
        no_dhcp.ips[0].tftp_root = None;
        let lines: Vec<String> = network_commands(&no_dhcp, "virbr7")
            .unwrap()
            .iter()
            .map(line)
            .collect();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("CHECKSUM") || l.contains(" 69 "))
        );
    }
}
