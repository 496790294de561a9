//! What `virsh net-define` checks after parsing (`networkValidate` in bridge_driver.c): which
//! forward modes accept which elements, pool kinds, DHCP per family, vlan support and
//! portgroup uniqueness.

use std::collections::HashMap;

use switchyard_crds::{ForwardMode, NetworkSpec, VirtualPortType};

use super::Problems;
use crate::modes;
use crate::path::FieldPath;
use crate::values;

pub(super) fn check(spec: &NetworkSpec, problems: &mut Problems) {
    layer2_elements(spec, problems);
    bandwidth_allowed(spec, problems);
    pool_kinds(spec, problems);
    one_dhcp_per_family(spec, problems);
    vlan_allowed(spec, problems);
    portgroups(spec, problems);
}

/// Forward modes without a libvirt-managed bridge.
fn is_layer2(mode: Option<ForwardMode>) -> bool {
    matches!(
        mode,
        Some(
            ForwardMode::Bridge
                | ForwardMode::Private
                | ForwardMode::Vepa
                | ForwardMode::Passthrough
                | ForwardMode::Hostdev
        )
    )
}

/// Only libvirt's own bridges have a host address, DNS, a domain or a bridge MAC.
fn layer2_elements(spec: &NetworkSpec, problems: &mut Problems) {
    if !is_layer2(modes::forward_mode(spec)) {
        return;
    }
    let mode = modes::mode_name(spec);
    let root = FieldPath::spec();
    let unsupported = |element: &str| {
        format!(
            "<{element}> is not supported with forward mode {mode}: only nat, route, open and isolated networks have a host-side address; remove it"
        )
    };
    if spec.mac.is_some() {
        problems.add(&root.elem("mac", "mac/@address"), unsupported("mac"));
    }
    if !spec.ips.is_empty() {
        problems.add(&root.elem("ips", "ip").index(0), unsupported("ip"));
    }
    if let Some(dns) = &spec.dns
        && !(dns.txts.is_empty() && dns.hosts.is_empty() && dns.srvs.is_empty())
    {
        problems.add(&root.elem("dns", "dns"), unsupported("dns"));
    }
    if spec.domain.is_some() {
        problems.add(&root.elem("domain", "domain"), unsupported("domain"));
    }
}

/// libvirt shapes bandwidth on its own bridges and on host bridges; nowhere else.
fn bandwidth_allowed(spec: &NetworkSpec, problems: &mut Problems) {
    let mode = modes::forward_mode(spec);
    let allowed = !is_layer2(mode)
        || (mode == Some(ForwardMode::Bridge)
            && spec.bridge.as_ref().is_some_and(|b| b.name.is_some()));
    if allowed {
        return;
    }
    let mode = modes::mode_name(spec);
    let root = FieldPath::spec();
    if spec.bandwidth.is_some() {
        problems.add(
            &root.elem("bandwidth", "bandwidth"),
            format!("a network-wide bandwidth is not supported with forward mode {mode}; only nat, route, open, isolated and host-bridge networks can be shaped"),
        );
    }
    for (i, portgroup) in spec.portgroups.iter().enumerate() {
        if portgroup.bandwidth.is_some() {
            problems.add(
                &root
                    .elem("portgroups", "portgroup")
                    .index(i)
                    .elem("bandwidth", "bandwidth"),
                format!("portgroup bandwidth is not supported with forward mode {mode}"),
            );
        }
    }
}

/// A pool is given by device names, by PCI addresses, or by a pf: one kind only, and PCI
/// addresses exactly for hostdev.
fn pool_kinds(spec: &NetworkSpec, problems: &mut Problems) {
    let Some(forward) = &spec.forward else { return };
    let path = FieldPath::spec().elem("forward", "forward");
    let by_name = forward.dev.is_some() || !forward.interfaces.is_empty();
    let by_address = !forward.addresses.is_empty();
    let by_pf = forward.pf.is_some();
    if usize::from(by_name) + usize::from(by_address) + usize::from(by_pf) > 1 {
        problems.add(
            &path,
            "interfaces (or dev), PCI addresses and pf are mutually exclusive ways to give the device pool; use one",
        );
    }
    if forward.mode == ForwardMode::Hostdev && by_name {
        problems.add(
            &path.elem("interfaces", "interface"),
            "hostdev networks need their devices listed by PCI address (forward.addresses) or a pf, not by network device name",
        );
    }
    if forward.mode != ForwardMode::Hostdev && by_address {
        problems.add(
            &path.elem("addresses", "address").index(0),
            format!(
                "devices listed by PCI address are only supported with forward mode hostdev, not {}; list network device names in forward.interfaces",
                forward.mode.as_str()
            ),
        );
    }
}

fn one_dhcp_per_family(spec: &NetworkSpec, problems: &mut Problems) {
    let mut first: HashMap<bool, usize> = HashMap::new();
    for (i, ip) in spec.ips.iter().enumerate() {
        let serves_dhcp = ip
            .dhcp
            .as_ref()
            .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty());
        let Some(address) = ip.address.as_deref().and_then(values::parse_ip) else {
            continue;
        };
        if !serves_dhcp {
            continue;
        }
        if let Some(earlier) = first.insert(address.is_ipv6(), i) {
            let family = if address.is_ipv6() { "IPv6" } else { "IPv4" };
            problems.add(
                &FieldPath::spec().elem("ips", "ip").index(i).elem("dhcp", "dhcp"),
                format!("DHCP is supported on one {family} address per network, and spec.ips[{earlier}] already has it"),
            );
        }
    }
}

/// libvirt applies vlan tags only with hostdev, macvtap passthrough, and host bridges (plain
/// or openvswitch); a default portgroup stands in for the network's own settings.
fn vlan_allowed(spec: &NetworkSpec, problems: &mut Problems) {
    let mode = modes::forward_mode(spec);
    let network_kind = spec.virtualport.as_ref().and_then(|v| v.kind);
    let allowed = matches!(mode, Some(ForwardMode::Hostdev | ForwardMode::Passthrough))
        || (mode == Some(ForwardMode::Bridge)
            && (spec.virtualport.is_none() || network_kind == Some(VirtualPortType::OpenVswitch)));
    let network_vlan = spec.vlan.as_ref().is_some_and(|v| !v.tags.is_empty());
    let root = FieldPath::spec();
    let why = format!(
        "forward mode {} cannot apply vlan tags; only hostdev, passthrough and bridge (plain or openvswitch) networks can",
        modes::mode_name(spec)
    );
    let mut has_default = false;
    for (i, portgroup) in spec.portgroups.iter().enumerate() {
        has_default |= portgroup.default == Some(true);
        let group_vlan = portgroup.vlan.as_ref().is_some_and(|v| !v.tags.is_empty());
        if !(network_vlan || group_vlan) {
            continue;
        }
        // libvirt compares the portgroup's own virtualport type; an untyped portgroup
        // virtualport takes the network's type when merged, so that type is the one used here
        // (or libvirt's own openvswitch-net example would be refused).
        let bad = match &portgroup.virtualport {
            Some(vport) => {
                mode != Some(ForwardMode::Bridge)
                    || vport.kind.or(network_kind) != Some(VirtualPortType::OpenVswitch)
            }
            None => !allowed,
        };
        if bad {
            let path = root.elem("portgroups", "portgroup").index(i);
            let path = if group_vlan {
                path.elem("vlan", "vlan")
            } else {
                path
            };
            problems.add(
                &path,
                format!(
                    "ports in portgroup '{}' would get vlan tags, but {why}",
                    portgroup.name
                ),
            );
        }
    }
    if network_vlan && !allowed && !has_default {
        problems.add(&root.elem("vlan", "vlan"), why);
    }
}

fn portgroups(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    let mut default: Option<&str> = None;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, portgroup) in spec.portgroups.iter().enumerate() {
        let path = root.elem("portgroups", "portgroup").index(i);
        if portgroup.default == Some(true) {
            match default {
                Some(first) => problems.add(
                    &path.attr("default", "default"),
                    format!("only one portgroup can be the default, and '{first}' already is"),
                ),
                None => default = Some(&portgroup.name),
            }
        }
        if let Some(first) = names.insert(&portgroup.name, i) {
            problems.add(
                &path.attr("name", "name"),
                format!(
                    "portgroup name '{}' is used twice (also spec.portgroups[{first}])",
                    portgroup.name
                ),
            );
        }
    }
}
