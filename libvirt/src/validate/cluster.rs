//! switchyard's own rules: node groups, device names the kernel accepts, capacity limits, and
//! content that must survive export to XML.

use std::collections::HashMap;

use switchyard_crds::{ForwardInterface, ForwardMode, NetworkSpec};

use super::Problems;
use crate::modes;
use crate::names::MAX_IFNAME_LEN;
use crate::path::FieldPath;
use crate::xml;

/// The per-device port limit's range.
const MAX_CONNECTIONS: std::ops::RangeInclusive<u32> = 1..=4096;

pub(super) fn check(spec: &NetworkSpec, problems: &mut Problems) {
    device_names(spec, problems);
    node_groups(spec, problems);
    if let Some(limit) = spec.max_connections_per_device
        && !MAX_CONNECTIONS.contains(&limit)
    {
        problems.add(
            &FieldPath::spec().field("maxConnectionsPerDevice"),
            format!(
                "{limit} is out of range {}-{}",
                MAX_CONNECTIONS.start(),
                MAX_CONNECTIONS.end()
            ),
        );
    }
    if let Some(metadata) = &spec.libvirt_metadata
        && let Err(err) = xml::check_metadata(metadata)
    {
        problems.add(
            &FieldPath::spec().elem("libvirtMetadata", "metadata"),
            format!("must be XML elements, each in its own namespace: {err}"),
        );
    }
}

fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("the device name is required".into())
    } else if name.len() > MAX_IFNAME_LEN {
        Some(format!(
            "device name '{name}' is longer than the kernel's {MAX_IFNAME_LEN} characters"
        ))
    } else if name.contains(['/', ' ', '\t', '\n', ':']) || name == "." || name == ".." {
        Some(format!("'{name}' is not a valid network device name"))
    } else {
        None
    }
}

fn device_names(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    if let Some(forward) = &spec.forward {
        let path = root.elem("forward", "forward");
        let named = [
            (forward.dev.as_deref(), path.attr("dev", "dev")),
            (forward.pf.as_deref(), path.elem("pf", "pf/@dev")),
        ];
        for (name, name_path) in named {
            if let Some(problem) = name.and_then(ifname_problem) {
                problems.add(&name_path, problem);
            }
        }
        for (i, interface) in forward.interfaces.iter().enumerate() {
            // Empty names are already reported by the definition rules.
            if let Some(problem) = Some(interface.dev.as_str())
                .filter(|d| !d.is_empty())
                .and_then(ifname_problem)
            {
                problems.add(
                    &path
                        .elem("interfaces", "interface")
                        .index(i)
                        .attr("dev", "dev"),
                    problem,
                );
            }
        }
    }
    if let Some(name) = spec.bridge.as_ref().and_then(|b| b.name.as_deref())
        && let Some(problem) = ifname_problem(name)
    {
        problems.add(&root.elem("bridge", "bridge").attr("name", "name"), problem);
    }
}

fn node_groups(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    let mode = modes::forward_mode(spec);
    let pool_mode = matches!(
        mode,
        Some(
            ForwardMode::Bridge
                | ForwardMode::Private
                | ForwardMode::Vepa
                | ForwardMode::Passthrough
                | ForwardMode::Hostdev
        )
    );
    let mode_name = modes::mode_name(spec);
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, group) in spec.node_groups.iter().enumerate() {
        let path = root.field("nodeGroups").index(i);
        if group.name.is_empty() {
            problems.add(&path.field("name"), "the node group name is required");
        } else if let Some(first) = names.insert(&group.name, i) {
            problems.add(
                &path.field("name"),
                format!(
                    "node group '{}' is defined twice (also spec.nodeGroups[{first}])",
                    group.name
                ),
            );
        }
        let gives_pool = !group.interfaces.is_empty() || group.pf.is_some();
        if gives_pool && !pool_mode {
            problems.add(&path, format!("forward mode {mode_name} uses no device pool, so node groups cannot replace one"));
        }
        if group.bridge.is_some() && mode != Some(ForwardMode::Bridge) {
            problems.add(
                &path.field("bridge"),
                format!("only forward mode bridge uses a host bridge, not {mode_name}"),
            );
        }
        if group.bridge.is_some() && gives_pool {
            problems.add(
                &path,
                "a node group gives either a bridge or a device pool, not both",
            );
        }
        if !group.interfaces.is_empty() && group.pf.is_some() {
            problems.add(
                &path,
                "a node group gives either interfaces or a pf, not both",
            );
        }
        check_pool_names(&group.interfaces, &path.field("interfaces"), problems);
        if let Some(problem) = group.pf.as_deref().and_then(ifname_problem) {
            problems.add(&path.field("pf"), problem);
        }
        if let Some(problem) = group.bridge.as_deref().and_then(ifname_problem) {
            problems.add(&path.field("bridge"), problem);
        }
    }
    // The spec alone mixing both is a libvirt rule, reported with the definition rules.
    let spec_mixes_both = spec.bridge.as_ref().is_some_and(|b| b.name.is_some())
        && spec
            .forward
            .as_ref()
            .is_some_and(|f| f.dev.is_some() || !f.interfaces.is_empty() || f.pf.is_some());
    if mode == Some(ForwardMode::Bridge)
        && modes::names_bridge(spec)
        && modes::has_pool(spec)
        && !spec_mixes_both
    {
        problems.add(
            &root.elem("forward", "forward"),
            "forward mode bridge uses either a host bridge (a bridge name) or macvtap over a device pool; the spec and its node groups give both",
        );
    }
}

fn check_pool_names(interfaces: &[ForwardInterface], path: &FieldPath, problems: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, interface) in interfaces.iter().enumerate() {
        let dev_path = path.index(i).field("dev");
        if let Some(problem) = ifname_problem(&interface.dev) {
            problems.add(&dev_path, problem);
        }
        if let Some(first) = seen.insert(&interface.dev, i) {
            problems.add(
                &dev_path,
                format!(
                    "interface '{}' is listed twice (also item {first})",
                    interface.dev
                ),
            );
        }
    }
}
