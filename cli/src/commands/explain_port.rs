//! `explain-port`: what a port would get on a network, and where each setting comes from.

use switchyard_crds::{Bandwidth, BandwidthLimit, NetworkSpec, VirtualPort, Vlan, VlanNativeMode};
use switchyard_libvirt::merge::{Explanation, Origin, PortRequest, explain_port};
use switchyard_libvirt::{Connection, modes};
use switchyard_placement::exclusive::port_is_exclusive;

use crate::failure::Failure;
use crate::input::{self, Source};
use crate::output;

/// Arguments of `explain-port`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The network: a libvirt XML file, a Network YAML file, or a Network's name in the
    /// cluster.
    #[arg(long, value_name = "FILE|NAME")]
    network: String,
    /// The portgroup the port names; overrides the port file's. Left out, the network's
    /// default portgroup applies.
    #[arg(long)]
    portgroup: Option<String>,
    /// A NetworkPort YAML file with the port's own virtualport, vlan, bandwidth and trust
    /// settings; - reads standard input.
    #[arg(long, value_name = "FILE.yaml")]
    port: Option<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (network_name, network) = input::network(&args.network)?;
    let port = args
        .port
        .as_deref()
        .map(|file| Source::read(file)?.port())
        .transpose()?;
    let mut request = port
        .as_ref()
        .map(|p| PortRequest::from_port(&p.spec))
        .unwrap_or_default();
    if let Some(portgroup) = args.portgroup.as_deref() {
        request.portgroup = Some(portgroup);
    }
    if let Some(port) = &port {
        let wanted = &port.spec.network;
        let actual = network.metadata.name.as_deref().unwrap_or_default();
        if wanted != actual {
            eprintln!("warning: the port asks for network '{wanted}', explaining it on '{actual}'");
        }
    }
    let explained = explain_port(&network.spec, &request).map_err(|err| {
        Failure::Invalid(format!(
            "{network_name}: the port cannot attach ({}):\n  {err}",
            err.reason()
        ))
    })?;
    output::emit(&describe(&network_name, &network.spec, &explained))
}

fn describe(name: &str, network: &NetworkSpec, explained: &Explanation) -> String {
    let port = &explained.port;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "network",
            format!("{name} (forward mode {})", modes::mode_name(network)),
        ),
        (
            "connection",
            connection(network, port.connection, port_is_exclusive(port)),
        ),
    ];
    rows.push((
        "portgroup",
        match &port.portgroup {
            Some(pg) if explained.portgroup_named => format!("{pg} (named by the port)"),
            Some(pg) => format!("{pg} (the network's default)"),
            None => "none".into(),
        },
    ));
    rows.push((
        "virtualport",
        port.virtualport.as_ref().map_or("none".into(), virtualport),
    ));
    rows.push((
        "vlan",
        with_origin(port.vlan.as_ref().map(vlan), explained.vlan_from.as_ref()),
    ));
    rows.push((
        "bandwidth",
        with_origin(
            port.bandwidth.as_ref().map(bandwidth),
            explained.bandwidth_from.as_ref(),
        ),
    ));
    rows.push((
        "trustGuestRxFilters",
        match port.trust_guest_rx_filters {
            None => "no (not set anywhere)".to_string(),
            Some(trust) => with_origin(
                Some(if trust { "yes" } else { "no" }.to_string()),
                explained.trust_from.as_ref(),
            ),
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
}

fn with_origin(value: Option<String>, origin: Option<&Origin>) -> String {
    match (value, origin) {
        (Some(value), Some(origin)) => format!("{value} (from {origin})"),
        (Some(value), None) => value,
        (None, _) => "none".into(),
    }
}

fn connection(network: &NetworkSpec, connection: Connection, exclusive: bool) -> String {
    match connection {
        Connection::Bridge => {
            let bridge = network
                .bridge
                .as_ref()
                .and_then(|b| b.name.as_deref())
                .unwrap_or("the node group's bridge");
            format!("a port on host bridge {bridge}")
        }
        Connection::Macvtap(mode) => {
            let pool = modes::pool_devices(network);
            let devices = match (
                pool.is_empty(),
                network.forward.as_ref().and_then(|f| f.pf.as_deref()),
            ) {
                (false, _) => pool.join(", "),
                (true, Some(pf)) => format!("the virtual functions of {pf}"),
                (true, None) => "the node groups' devices".into(),
            };
            let sharing = if exclusive {
                "exclusive: a pool device no other port uses"
            } else {
                "shared: the least-used pool device, ties to the first listed"
            };
            format!(
                "macvtap, mode {}, over {devices} ({sharing})",
                mode.as_str()
            )
        }
    }
}

fn virtualport(vport: &VirtualPort) -> String {
    let mut parts = vec![vport.kind.map_or("untyped", |k| k.as_str()).to_string()];
    let numbers = [
        ("managerid", vport.managerid.map(u32::from)),
        ("typeid", vport.typeid),
        ("typeidversion", vport.typeidversion.map(u32::from)),
    ];
    for (key, value) in numbers {
        if let Some(value) = value {
            parts.push(format!("{key}={value}"));
        }
    }
    let texts = [
        ("instanceid", &vport.instanceid),
        ("profileid", &vport.profileid),
        ("interfaceid", &vport.interfaceid),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            parts.push(format!("{key}={value}"));
        }
    }
    parts.join(" ")
}

fn vlan(vlan: &Vlan) -> String {
    let tags: Vec<String> = vlan
        .tags
        .iter()
        .map(|tag| match tag.native_mode {
            Some(VlanNativeMode::Tagged) => format!("{} (native, tagged)", tag.id),
            Some(VlanNativeMode::Untagged) => format!("{} (native, untagged)", tag.id),
            None => tag.id.to_string(),
        })
        .collect();
    let trunk = vlan.trunk == Some(true) || vlan.tags.len() > 1;
    format!(
        "{}{}",
        if trunk { "trunk " } else { "tag " },
        tags.join(", ")
    )
}

fn bandwidth(bandwidth: &Bandwidth) -> String {
    let direction = |name: &str, limit: &Option<BandwidthLimit>| {
        limit.as_ref().map(|l| {
            let mut parts = vec![name.to_string()];
            for (key, value) in [("average", l.average), ("peak", l.peak), ("floor", l.floor)] {
                if let Some(value) = value {
                    parts.push(format!("{key} {value} KiB/s"));
                }
            }
            if let Some(burst) = l.burst {
                parts.push(format!("burst {burst} KiB"));
            }
            parts.join(" ")
        })
    };
    [
        direction("inbound", &bandwidth.inbound),
        direction("outbound", &bandwidth.outbound),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}
