//! libvirt's parse-time rules for the network's identity, `<forward>`, `<bridge>`, `<mtu>` and
//! `<mac>` (virNetworkDefParseXML, virNetworkForwardDefParseXML).

use std::collections::HashMap;

use switchyard_crds::{ForwardMode, NetworkSpec};

use super::Problems;
use crate::modes;
use crate::path::FieldPath;
use crate::values;

pub(super) fn check(spec: &NetworkSpec, problems: &mut Problems) {
    identity(spec, problems);
    forward(spec, problems);
    bridge_and_mtu(spec, problems);
}

fn identity(spec: &NetworkSpec, problems: &mut Problems) {
    if let Some(name) = &spec.libvirt_name {
        let path = FieldPath::spec().elem("libvirtName", "name");
        if name.is_empty() {
            problems.add(
                &path,
                "the libvirt name must not be empty; leave it out to use metadata.name",
            );
        } else if name.contains('/') {
            problems.add(
                &path,
                format!("name '{name}' contains '/', which libvirt does not allow"),
            );
        }
    }
    if let Some(uuid) = &spec.uuid
        && values::parse_uuid(uuid).is_none()
    {
        problems.add(
            &FieldPath::spec().elem("uuid", "uuid"),
            format!(
                "'{uuid}' is not a UUID (32 hex digits, e.g. 81ff0d90-c91e-6742-64da-4a736edb9a8c)"
            ),
        );
    }
    if let Some(title) = &spec.title
        && title.contains('\n')
    {
        problems.add(
            &FieldPath::spec().elem("title", "title"),
            "the title must be one line",
        );
    }
    if let Some(mac) = &spec.mac {
        let path = FieldPath::spec().elem("mac", "mac/@address");
        match values::parse_mac(mac) {
            None => problems.add(
                &path,
                format!("'{mac}' is not a MAC address (six hex bytes separated by ':')"),
            ),
            Some(bytes) if values::is_multicast_mac(bytes) => problems.add(
                &path,
                format!(
                    "'{mac}' is a multicast address; a bridge needs a unicast MAC (even first byte)"
                ),
            ),
            Some(_) => {}
        }
    }
}

fn forward(spec: &NetworkSpec, problems: &mut Problems) {
    let Some(forward) = &spec.forward else {
        return;
    };
    let path = FieldPath::spec().elem("forward", "forward");
    let mode = forward.mode;

    if let Some(nat) = &forward.nat {
        let nat_path = path.elem("nat", "nat");
        if mode != ForwardMode::Nat {
            problems.add(
                &nat_path,
                format!(
                    "nat settings can only be used with forward mode nat, not {}",
                    mode.as_str()
                ),
            );
        }
        for (i, range) in nat.addresses.iter().enumerate() {
            let range_path = nat_path.elem("addresses", "address").index(i);
            if i > 0 {
                problems.add(&range_path, "only one nat address range is allowed");
            }
            let start = values::parse_ip(&range.start).filter(|ip| ip.is_ipv4());
            let end = values::parse_ip(&range.end).filter(|ip| ip.is_ipv4());
            if start.is_none() {
                problems.add(
                    &range_path.attr("start", "start"),
                    format!("'{}' is not an IPv4 address", range.start),
                );
            }
            if end.is_none() {
                problems.add(
                    &range_path.attr("end", "end"),
                    format!("'{}' is not an IPv4 address", range.end),
                );
            }
            if let (Some(start), Some(end)) = (start, end)
                && values::ip_value(start) > values::ip_value(end)
            {
                problems.add(
                    &range_path,
                    format!("range start {start} is after its end {end}"),
                );
            }
        }
        for (i, ports) in nat.ports.iter().enumerate() {
            let ports_path = nat_path.elem("ports", "port").index(i);
            if i > 0 {
                problems.add(&ports_path, "only one nat port range is allowed");
            }
            if ports.end < ports.start {
                problems.add(
                    &ports_path.attr("end", "end"),
                    format!(
                        "port range end {} is below its start {}",
                        ports.end, ports.start
                    ),
                );
            }
        }
    }

    if forward.dev.is_some() && (!forward.addresses.is_empty() || forward.pf.is_some()) {
        problems.add(
            &path.attr("dev", "dev"),
            "forward dev cannot be combined with a pf or PCI addresses; list the devices in one way only",
        );
    }
    if let (Some(dev), Some(first)) = (&forward.dev, forward.interfaces.first())
        && *dev != first.dev
    {
        problems.add(
            &path
                .elem("interfaces", "interface")
                .index(0)
                .attr("dev", "dev"),
            format!(
                "forward dev '{dev}' must match the first pool interface, which is '{}'",
                first.dev
            ),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, interface) in forward.interfaces.iter().enumerate() {
        let dev_path = path
            .elem("interfaces", "interface")
            .index(i)
            .attr("dev", "dev");
        if interface.dev.is_empty() {
            problems.add(&dev_path, "the device name is required");
        }
        if let Some(first) = seen.insert(&interface.dev, i) {
            problems.add(
                &dev_path,
                format!(
                    "interface '{}' can only be listed once (it is also pool item {})",
                    interface.dev,
                    first + 1
                ),
            );
        }
    }
    let mut seen_pci = HashMap::new();
    for (i, address) in forward.addresses.iter().enumerate() {
        let address_path = path.elem("addresses", "address").index(i);
        if address.slot > 31 {
            problems.add(
                &address_path.attr("slot", "slot"),
                format!("PCI slot {} is out of range 0-31", address.slot),
            );
        }
        if address.function > 7 {
            problems.add(
                &address_path.attr("function", "function"),
                format!("PCI function {} is out of range 0-7", address.function),
            );
        }
        if let Some(first) = seen_pci.insert(address.clone(), i) {
            problems.add(
                &address_path,
                format!(
                    "PCI device {} can only be listed once (it is also pool item {})",
                    values::format_pci(address),
                    first + 1
                ),
            );
        }
    }

    let pool = modes::pool_devices(spec);
    match mode {
        ForwardMode::Nat | ForwardMode::Route => {
            if spec.ips.is_empty() {
                problems.add(
                    &FieldPath::spec().elem("ips", "ip"),
                    format!("{} forwarding needs an IP address for the network; add an <ip> element", mode.as_str()),
                );
            }
            if pool.len() > 1 {
                problems.add(
                    &path.elem("interfaces", "interface").index(1),
                    format!("{} forwarding supports only one forward interface, {} are listed", mode.as_str(), pool.len()),
                );
            }
        }
        ForwardMode::Open if !pool.is_empty() => problems.add(
            &path.attr("dev", "dev"),
            "forward mode open places no restriction on where traffic goes, so a forward dev or interface is not allowed",
        ),
        _ => {}
    }
}

/// Bridge settings only libvirt-managed bridges have, and mtu.
fn bridge_and_mtu(spec: &NetworkSpec, problems: &mut Problems) {
    let mode = modes::forward_mode(spec);
    let mode_name = modes::mode_name(spec);
    let bridge_path = FieldPath::spec().elem("bridge", "bridge");
    let managed = matches!(
        mode,
        None | Some(ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open)
    );

    if let Some(bridge) = &spec.bridge
        && !managed
    {
        let macvtap_or_hostdev = mode != Some(ForwardMode::Bridge);
        if macvtap_or_hostdev && bridge.name.is_some() {
            problems.add(
                &bridge_path.attr("name", "name"),
                format!("a bridge name is not allowed in {mode_name} mode"),
            );
        }
        if macvtap_or_hostdev && bridge.mac_table_manager.is_some() {
            problems.add(
                &bridge_path.attr("macTableManager", "macTableManager"),
                format!("macTableManager is not allowed in {mode_name} mode"),
            );
        }
        let stp_like = [
            (bridge.stp.is_some(), "stp"),
            (bridge.delay.is_some_and(|d| d != 0), "delay"),
            (bridge.zone.is_some(), "zone"),
        ];
        for (set, attribute) in stp_like {
            if set {
                problems.add(
                    &bridge_path.attr(attribute, attribute),
                    format!("bridge {attribute} is only allowed in open, route, nat and isolated mode, not in {mode_name}"),
                );
            }
        }
        let forward = spec.forward.as_ref();
        let has_devices =
            !modes::pool_devices(spec).is_empty() || forward.is_some_and(|f| f.pf.is_some());
        if bridge.name.is_some() && has_devices && mode == Some(ForwardMode::Bridge) {
            problems.add(
                &bridge_path.attr("name", "name"),
                format!("a network with forward mode {mode_name} can name a bridge or a forward device pool, but not both"),
            );
        }
    }

    if spec.mtu.is_some() && !managed {
        problems.add(
            &FieldPath::spec().elem("mtu", "mtu/@size"),
            format!(
                "mtu is only allowed in open, route, nat and isolated mode, not in {mode_name}"
            ),
        );
    }
}
