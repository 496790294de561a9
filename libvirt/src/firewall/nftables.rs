//! libvirt's nftables backend (src/network/network_nftables.c, v11.3.0): the private table's
//! chains, set up once, and each network's rules, one `nft` command each.
//!
//! Every rule is *inserted* (put at the top of its chain), so a chain ends up in the reverse of
//! the order the rules are issued; libvirt issues them so that the result reads: masquerade
//! exemptions first, then tcp, udp and the catch-all masquerade; accepts before the rejects.

use std::net::IpAddr;

use switchyard_crds::{ForwardMode, NetworkSpec};

use super::subnets::{self, NatSettings};
use super::{Command, Family, FirewallError, Program, Subnet, check_table_name, has_firewall};

/// The base chain every forwarded packet passes; it jumps to the three below.
pub const FORWARD_CHAIN: &str = "forward";
/// Traffic from a network's guests out of its bridge.
pub const GUEST_OUTPUT_CHAIN: &str = "guest_output";
/// Traffic into a network's bridge, towards its guests.
pub const GUEST_INPUT_CHAIN: &str = "guest_input";
/// Traffic between two guests of one bridge.
pub const GUEST_CROSS_CHAIN: &str = "guest_cross";
/// Source NAT on the way out.
pub const GUEST_NAT_CHAIN: &str = "guest_nat";

/// libvirt's chains (nftablesChains[]): name, the chain that jumps to it, and the base-chain
/// specification. The host input/output chains are compiled out in 11.3.0.
const CHAINS: [(&str, Option<&str>, Option<&str>); 5] = [
    (
        FORWARD_CHAIN,
        None,
        Some("{ type filter hook forward priority 0; policy accept; }"),
    ),
    (GUEST_OUTPUT_CHAIN, Some(FORWARD_CHAIN), None),
    (GUEST_INPUT_CHAIN, Some(FORWARD_CHAIN), None),
    (GUEST_CROSS_CHAIN, Some(FORWARD_CHAIN), None),
    (
        GUEST_NAT_CHAIN,
        None,
        Some("{ type nat hook postrouting priority 100; policy accept; }"),
    ),
];

const LOCAL_MULTICAST_V4: &str = "224.0.0.0/24";
const LOCAL_MULTICAST_V6: &str = "ff02::/16";
const LOCAL_BROADCAST: &str = "255.255.255.255/32";

/// The table and chain set-up libvirt runs before the first network with a firewall starts
/// (`nftablesSetupPrivateChains`), for a host where the table does not exist yet: per family,
/// `list table` (libvirt reads its output to see what exists), then the table, the chains, and
/// the jumps from `forward`.
pub fn setup_commands(table: &str) -> Result<Vec<Command>, FirewallError> {
    check_table_name(table)?;
    let mut commands = Vec::new();
    for family in Family::ALL {
        let prefix = |verb: &str, object: &str| {
            vec![
                verb.to_string(),
                object.to_string(),
                family.nft().to_string(),
                table.to_string(),
            ]
        };
        commands.push(Command::nft(prefix("list", "table")));
        commands.push(Command::nft(prefix("add", "table")));
        for (chain, parent, spec) in CHAINS {
            let mut add = prefix("add", "chain");
            add.push(chain.into());
            add.extend(spec.map(String::from));
            commands.push(Command::nft(add));
            if let Some(parent) = parent {
                let mut jump = prefix("insert", "rule");
                jump.extend([parent, "counter", "jump", chain].map(String::from));
                commands.push(Command::nft(jump));
            }
        }
    }
    Ok(commands)
}

/// The commands libvirt runs to put the firewall around a network whose bridge is `bridge`
/// (`nftablesAddFirewallRules`), in order: the DHCP checksum fix through tc, the catch-all
/// rejects and guest-to-guest accept per family, then each `<ip>`'s NAT or routing rules.
/// Open networks, and modes without a managed bridge, get no commands at all.
pub fn network_commands(
    spec: &NetworkSpec,
    bridge: &str,
    table: &str,
) -> Result<Vec<Command>, FirewallError> {
    check_table_name(table)?;
    if !has_firewall(spec) {
        return Ok(Vec::new());
    }
    let bridge = subnets::checked_bridge(bridge)?;
    let rules = Rules {
        table,
        bridge,
        forward_dev: subnets::forward_device(spec)?,
    };
    let subnets = subnets::subnets(spec)?;
    let mode = spec.forward.as_ref().map(|f| f.mode);
    let nat = match mode {
        Some(ForwardMode::Nat) => Some(subnets::nat_settings(spec)?),
        _ => None,
    };

    let mut commands = udp_checksum_fix(bridge);
    let mut rule_args = Vec::new();
    rules.general(Family::Ipv4, &mut rule_args);
    let has_ipv6 = subnets.iter().any(|s| s.family == Family::Ipv6);
    if has_ipv6 || spec.ipv6 == Some(true) {
        rules.general(Family::Ipv6, &mut rule_args);
    }
    for subnet in &subnets {
        match (mode, &nat) {
            (Some(ForwardMode::Nat), Some(nat)) if subnet.family == Family::Ipv4 || nat.ipv6 => {
                rules.masquerading(subnet, nat, &mut rule_args)
            }
            // IPv6 has no NAT by default: a nat network routes it.
            (Some(ForwardMode::Nat | ForwardMode::Route), _) => {
                rules.routing(subnet, &mut rule_args)
            }
            _ => {}
        }
    }
    commands.extend(rule_args.into_iter().map(|args| Command {
        program: Program::Nft,
        echo_handle: true,
        args,
    }));
    Ok(commands)
}

/// libvirt's `nftablesAddUdpChecksumFixWithTC`: DHCP replies from the host carry a partial
/// checksum some guests drop, so an htb root qdisc (unless `qdisc show` finds one) gets a
/// filter that recomputes it (tc's `csum` action).
fn udp_checksum_fix(bridge: &str) -> Vec<Command> {
    vec![
        Command::tc(&["qdisc", "show", "dev", bridge, "handle", "1:"]),
        Command::tc(&[
            "qdisc", "add", "dev", bridge, "root", "handle", "1:", "htb", "default", "2",
        ]),
        Command::tc(&checksum_filter("add", bridge)),
    ]
}

/// The checksum filter's arguments; libvirt removes it with the same words and `del`.
pub(super) fn checksum_filter<'a>(verb: &'a str, bridge: &'a str) -> [&'a str; 21] {
    [
        "filter", verb, "dev", bridge, "prio", "2", "protocol", "ip", "parent", "1:", "u32",
        "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
    ]
}

/// One network's rules, as argument lists after `nft -ae`.
struct Rules<'a> {
    table: &'a str,
    bridge: &'a str,
    forward_dev: Option<&'a str>,
}

impl Rules<'_> {
    fn insert(&self, family: Family, chain: &str) -> Vec<String> {
        ["insert", "rule", family.nft(), self.table, chain]
            .map(String::from)
            .to_vec()
    }

    /// Catch-all rejects and guest-to-guest traffic (`nftablesAddGeneralIPv4FirewallRules`).
    fn general(&self, family: Family, out: &mut Vec<Vec<String>>) {
        let bridge = self.bridge;
        let mut reject_out = self.insert(family, GUEST_OUTPUT_CHAIN);
        push(&mut reject_out, &["iif", bridge, "counter", "reject"]);
        let mut reject_in = self.insert(family, GUEST_INPUT_CHAIN);
        push(&mut reject_in, &["oif", bridge, "counter", "reject"]);
        let mut cross = self.insert(family, GUEST_CROSS_CHAIN);
        push(
            &mut cross,
            &["iif", bridge, "oif", bridge, "counter", "accept"],
        );
        out.extend([reject_out, reject_in, cross]);
    }

    /// `ip saddr NET iif BR [oifname DEV] counter accept`.
    fn allow_out(&self, subnet: &Subnet) -> Vec<String> {
        let mut rule = self.insert(subnet.family, GUEST_OUTPUT_CHAIN);
        push(
            &mut rule,
            &[
                subnet.family.nft(),
                "saddr",
                &subnet.cidr,
                "iif",
                self.bridge,
            ],
        );
        if let Some(dev) = self.forward_dev {
            push(&mut rule, &["oifname", dev]);
        }
        push(&mut rule, &["counter", "accept"]);
        rule
    }

    /// nftablesAddMasqueradingFirewallRules: out, related replies in, then the masquerade
    /// rules in reverse of their final order.
    fn masquerading(&self, subnet: &Subnet, nat: &NatSettings, out: &mut Vec<Vec<String>>) {
        let family = subnet.family;
        let net = subnet.cidr.as_str();
        out.push(self.allow_out(subnet));

        let mut related_in = self.insert(family, GUEST_INPUT_CHAIN);
        if let Some(dev) = self.forward_dev {
            push(&mut related_in, &["iifname", dev]);
        }
        push(
            &mut related_in,
            &[
                "oif",
                self.bridge,
                family.nft(),
                "daddr",
                net,
                "ct",
                "state",
                "related,established",
                "counter",
                "accept",
            ],
        );
        out.push(related_in);

        for protocol in [None, Some("udp"), Some("tcp")] {
            out.push(self.masquerade(subnet, nat, protocol));
        }
        if family == Family::Ipv4 {
            out.push(self.dont_masquerade(subnet, LOCAL_BROADCAST));
        }
        out.push(self.dont_masquerade(
            subnet,
            match family {
                Family::Ipv4 => LOCAL_MULTICAST_V4,
                Family::Ipv6 => LOCAL_MULTICAST_V6,
            },
        ));
    }

    /// nftablesAddForwardMasquerade: `masquerade`, or `snat to` the `<nat><address>` range;
    /// tcp and udp keep to the `<nat><port>` range.
    fn masquerade(
        &self,
        subnet: &Subnet,
        nat: &NatSettings,
        protocol: Option<&str>,
    ) -> Vec<String> {
        let family = subnet.family;
        let net = subnet.cidr.as_str();
        let mut rule = self.insert(family, GUEST_NAT_CHAIN);
        if let Some(protocol) = protocol {
            push(&mut rule, &["meta", "l4proto", protocol]);
        }
        push(
            &mut rule,
            &[family.nft(), "saddr", net, family.nft(), "daddr", "!=", net],
        );
        if let Some(dev) = self.forward_dev {
            push(&mut rule, &["oifname", dev]);
        }
        let ports = protocol.map(|_| format!(":{}-{}", nat.ports.0, nat.ports.1));
        let same_family = |a: &IpAddr| (a.is_ipv4()) == (family == Family::Ipv4);
        match nat.addresses.filter(|(start, _)| same_family(start)) {
            Some((start, end)) => {
                let mut range = start.to_string();
                if let Some(end) = end.filter(same_family) {
                    range = format!("{range}-{end}");
                }
                range.push_str(ports.as_deref().unwrap_or(""));
                push(&mut rule, &["counter", "snat", "to", &range]);
            }
            None => {
                push(&mut rule, &["counter", "masquerade"]);
                if let Some(ports) = &ports {
                    push(&mut rule, &["to", ports]);
                }
            }
        }
        rule
    }

    /// nftablesAddDontMasquerade: traffic to `destination` keeps its source.
    fn dont_masquerade(&self, subnet: &Subnet, destination: &str) -> Vec<String> {
        let family = subnet.family;
        let mut rule = self.insert(family, GUEST_NAT_CHAIN);
        if let Some(dev) = self.forward_dev {
            push(&mut rule, &["oifname", dev]);
        }
        push(
            &mut rule,
            &[
                family.nft(),
                "saddr",
                &subnet.cidr,
                family.nft(),
                "daddr",
                destination,
                "counter",
                "return",
            ],
        );
        rule
    }

    /// nftablesAddRoutingFirewallRules: out and in, no connection tracking.
    fn routing(&self, subnet: &Subnet, out: &mut Vec<Vec<String>>) {
        out.push(self.allow_out(subnet));
        let mut allow_in = self.insert(subnet.family, GUEST_INPUT_CHAIN);
        push(&mut allow_in, &[subnet.family.nft(), "daddr", &subnet.cidr]);
        if let Some(dev) = self.forward_dev {
            push(&mut allow_in, &["iifname", dev]);
        }
        push(&mut allow_in, &["oif", self.bridge, "counter", "accept"]);
        out.push(allow_in);
    }
}

fn push(args: &mut Vec<String>, more: &[&str]) {
    args.extend(more.iter().map(|a| a.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{AddressRange, Bridge, Forward, IpConfig, IpFamily, Nat};

    fn network(mode: Option<ForwardMode>, ips: &[(&str, u8)]) -> NetworkSpec {
        NetworkSpec {
            forward: mode.map(|mode| Forward {
                mode,
                ..Default::default()
            }),
            bridge: Some(Bridge {
                name: Some("virbr9".into()),
                ..Default::default()
            }),
            ips: ips
                .iter()
                .map(|(address, prefix)| IpConfig {
                    family: address.contains(':').then_some(IpFamily::Ipv6),
                    address: Some(address.to_string()),
                    prefix: Some(*prefix),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn lines(spec: &NetworkSpec) -> Vec<String> {
        network_commands(spec, "virbr9", "t")
            .unwrap()
            .iter()
            .map(|c| c.argv().join(" "))
            .collect()
    }

    #[test]
    fn open_and_unmanaged_modes_get_nothing() {
        for mode in [ForwardMode::Open, ForwardMode::Bridge, ForwardMode::Hostdev] {
            assert!(lines(&network(Some(mode), &[("10.0.0.1", 24)])).is_empty());
        }
    }

    #[test]
    fn isolated_gets_only_the_rejects_and_the_cross_accept() {
        let got = lines(&network(None, &[("10.0.0.1", 24)]));
        assert_eq!(
            got[3..],
            [
                "nft -ae insert rule ip t guest_output iif virbr9 counter reject",
                "nft -ae insert rule ip t guest_input oif virbr9 counter reject",
                "nft -ae insert rule ip t guest_cross iif virbr9 oif virbr9 counter accept",
            ]
        );
        assert!(got[..3].iter().all(|l| l.starts_with("tc ")));
    }

    #[test]
    fn ipv6_yes_without_addresses_adds_the_ip6_general_rules() {
        let mut spec = network(None, &[]);
        spec.ipv6 = Some(true);
        let got = lines(&spec);
        assert_eq!(got.len(), 9);
        assert_eq!(
            got[8],
            "nft -ae insert rule ip6 t guest_cross iif virbr9 oif virbr9 counter accept"
        );
    }

    #[test]
    fn nat_addresses_become_snat_with_the_port_range() {
        let mut spec = network(Some(ForwardMode::Nat), &[("10.0.0.1", 24)]);
        spec.forward.as_mut().unwrap().nat = Some(Nat {
            addresses: vec![AddressRange {
                start: "198.51.100.5".into(),
                end: "198.51.100.9".into(),
            }],
            ..Default::default()
        });
        let got = lines(&spec);
        assert_eq!(
            got[8],
            "nft -ae insert rule ip t guest_nat ip saddr 10.0.0.0/24 ip daddr != 10.0.0.0/24 counter snat to 198.51.100.5-198.51.100.9"
        );
        assert_eq!(
            got[9],
            "nft -ae insert rule ip t guest_nat meta l4proto udp ip saddr 10.0.0.0/24 ip daddr != 10.0.0.0/24 counter snat to 198.51.100.5-198.51.100.9:1024-65535"
        );
    }

    #[test]
    fn route_mode_routes_both_families_without_conntrack() {
        let got = lines(&network(
            Some(ForwardMode::Route),
            &[("10.0.0.1", 24), ("fd00::1", 64)],
        ));
        assert_eq!(
            got[9..],
            [
                "nft -ae insert rule ip t guest_output ip saddr 10.0.0.0/24 iif virbr9 counter accept",
                "nft -ae insert rule ip t guest_input ip daddr 10.0.0.0/24 oif virbr9 counter accept",
                "nft -ae insert rule ip6 t guest_output ip6 saddr fd00::/64 iif virbr9 counter accept",
                "nft -ae insert rule ip6 t guest_input ip6 daddr fd00::/64 oif virbr9 counter accept",
            ]
        );
    }

    #[test]
    fn setup_makes_table_chains_and_jumps_per_family() {
        let setup = setup_commands("t").unwrap();
        assert_eq!(setup.len(), 20);
        assert!(setup[0].is_query());
        assert_eq!(setup[10].to_string(), "list table ip6 t");
        assert_eq!(
            setup[9].to_string(),
            "add chain ip t guest_nat { type nat hook postrouting priority 100; policy accept; }"
        );
        assert!(setup.iter().all(|c| !c.echo_handle));
    }

    #[test]
    fn bad_names_are_refused_with_the_field() {
        let spec = network(None, &[]);
        assert!(network_commands(&spec, "virbr9", "bad table").is_err());
        let err = network_commands(&spec, "a b", "t").unwrap_err();
        assert!(
            err.to_string().starts_with("spec.bridge.name: 'a b'"),
            "{err}"
        );
    }
}
