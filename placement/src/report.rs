//! What the agent reports about its node: one `NetworkNode` status entry per network that
//! selects the node, and the capacity advertised as the node's extended resource. Pure.

use std::collections::BTreeMap;

use switchyard_crds::{BridgeState, LinkState, NodeNetwork, PoolDevice};

use crate::kernel::MAX_BRIDGE_PORTS;
use crate::ledger::{DeviceLoad, Ledger};
use crate::realisation::{NodeRealisation, RealisationKind, bridge_capacity};

/// A device (pool device or bridge) as the node observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The device name.
    pub name: String,
    /// Its ifindex; `None` when absent.
    pub ifindex: Option<u32>,
    /// Operational state; [`LinkState::Absent`] when the device does not exist.
    pub state: LinkState,
}

impl DeviceState {
    /// Whether the device exists.
    pub fn present(&self) -> bool {
        self.ifindex.is_some()
    }
}

/// Ports on a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgePorts {
    /// All ports, switchyard's and others'.
    pub total: u32,
    /// Ports switchyard created.
    pub owned: u32,
}

/// How many ports one pool device carries: one for a network whose every port needs a device
/// of its own, else the network's per-device limit.
pub fn ports_per_device(exclusive: bool, max_connections_per_device: u32) -> u32 {
    if exclusive {
        1
    } else {
        max_connections_per_device
    }
}

/// A bridge's port limit as reported; 0 (an agent that reports none) is the kernel's.
pub fn bridge_limit(max_ports: u32) -> u32 {
    if max_ports == 0 {
        MAX_BRIDGE_PORTS
    } else {
        max_ports
    }
}

/// Ports a bridge still takes, given its limit as reported ([`bridge_limit`]) and the ports on
/// it, switchyard's and others'.
pub fn bridge_room(max_ports: u32, total_ports: u32) -> u32 {
    bridge_limit(max_ports).saturating_sub(total_ports)
}

/// The report entry for one network.
///
/// Capacity is what the scheduler may count on: for exclusive networks
/// ([`crate::exclusive::network_is_exclusive`]) one port per present device; for shared macvtap
/// modes the per-device limit times the present devices; for bridges the kernel's port limit
/// minus ports others put on the bridge.
pub fn node_network(
    realisation: &NodeRealisation,
    devices: &BTreeMap<String, DeviceState>,
    ledger: &Ledger,
    bridge_ports: Option<BridgePorts>,
) -> NodeNetwork {
    let mut entry = NodeNetwork {
        name: realisation.network.clone(),
        ..Default::default()
    };
    match &realisation.kind {
        RealisationKind::Unsupported { reason, message } => {
            entry.reason = Some(reason.to_string());
            entry.message = Some(message.clone());
        }
        RealisationKind::Bridge { bridge } => {
            let present = devices.get(bridge).is_some_and(DeviceState::present);
            let ports = bridge_ports.unwrap_or(BridgePorts { total: 0, owned: 0 });
            let limit = bridge_capacity();
            let foreign = ports.total.saturating_sub(ports.owned);
            entry.bridge = Some(BridgeState {
                name: bridge.clone(),
                present,
                ports: ports.owned,
                total_ports: ports.total,
                max_ports: limit,
            });
            entry.ready = present;
            if present {
                entry.capacity = u64::from(limit.saturating_sub(foreign));
                entry.used = u64::from(ledger.connections(bridge));
                entry.free = u64::from(bridge_room(limit, ports.total));
            } else {
                entry.reason = Some("BridgeAbsent".into());
                entry.message = Some(format!("bridge '{bridge}' does not exist on this node"));
            }
        }
        RealisationKind::Macvtap {
            mode,
            pool,
            max_connections_per_device,
            exclusive,
        } => {
            entry.macvtap_mode = Some(*mode);
            let per_device = ports_per_device(*exclusive, *max_connections_per_device);
            for name in pool {
                let state = devices.get(name);
                let present = state.is_some_and(DeviceState::present);
                let connections = ledger.connections(name);
                let holder = ledger.exclusive_holder(name);
                let load = DeviceLoad {
                    name,
                    present,
                    connections,
                    held_exclusively: holder.is_some(),
                };
                entry.devices.push(PoolDevice {
                    name: name.clone(),
                    present,
                    link_state: state.map_or(LinkState::Absent, |s| s.state),
                    connections,
                    exclusive: holder.is_some(),
                    holder: holder.map(|h| h.port.to_string()),
                });
                if present {
                    entry.capacity += u64::from(per_device);
                    entry.used += u64::from(connections.min(per_device));
                    entry.free += if *exclusive {
                        u64::from(load.takes_exclusive())
                    } else {
                        u64::from(load.shared_room(per_device))
                    };
                }
            }
            let present: Vec<&PoolDevice> = entry.devices.iter().filter(|d| d.present).collect();
            if present.is_empty() {
                entry.reason = Some("DeviceMissing".into());
                entry.message = Some(format!(
                    "none of the pool devices ({}) exists on this node",
                    pool.join(", ")
                ));
            } else if present.iter().all(|d| d.link_state == LinkState::Down) {
                entry.reason = Some("LinkDown".into());
                entry.message = Some(format!(
                    "every pool device present ({}) is down",
                    present
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else {
                entry.ready = true;
            }
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Holding;
    use crate::port_key::PortKey;
    use crate::realisation::realise;
    use switchyard_crds::{
        Forward, ForwardInterface, ForwardMode, MacvtapMode, Network, NetworkSpec, VirtualPort,
        VirtualPortType,
    };

    fn device(name: &str, state: LinkState) -> (String, DeviceState) {
        let ifindex = (state != LinkState::Absent).then_some(7);
        (
            name.to_string(),
            DeviceState {
                name: name.to_string(),
                ifindex,
                state,
            },
        )
    }

    fn macvtap(mode: MacvtapMode, pool: &[&str], max: u32) -> NodeRealisation {
        NodeRealisation {
            network: "net".into(),
            kind: RealisationKind::Macvtap {
                mode,
                pool: pool.iter().map(|p| p.to_string()).collect(),
                max_connections_per_device: max,
                exclusive: mode == MacvtapMode::Passthrough,
            },
        }
    }

    fn hold(ledger: &mut Ledger, uid: &str, device: &str, exclusive: bool) {
        ledger.record(
            uid,
            device,
            Holding {
                port: PortKey::new("ns", uid),
                network: "net".into(),
                exclusive,
            },
        );
    }

    #[test]
    fn passthrough_counts_one_port_per_present_device() {
        let devices = [
            device("eth1", LinkState::Up),
            device("eth2", LinkState::Up),
            device("eth3", LinkState::Absent),
        ]
        .into_iter()
        .collect();
        let mut ledger = Ledger::new();
        hold(&mut ledger, "a", "eth1", true);
        let entry = node_network(
            &macvtap(MacvtapMode::Passthrough, &["eth1", "eth2", "eth3"], 64),
            &devices,
            &ledger,
            None,
        );
        assert!(entry.ready);
        assert_eq!((entry.capacity, entry.used, entry.free), (2, 1, 1));
        assert_eq!(entry.devices[0].holder.as_deref(), Some("ns/a"));
        assert!(entry.devices[0].exclusive);
        assert!(!entry.devices[2].present);
        assert_eq!(entry.devices[2].link_state, LinkState::Absent);
    }

    #[test]
    fn private_with_an_802_1qbh_profile_counts_one_port_per_device() {
        // Every port of this network needs a device of its own (libvirt's rule), so two
        // devices take two ports, not twice the per-device limit.
        let spec = NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Private,
                interfaces: ["eth1", "eth2"]
                    .map(|dev| ForwardInterface { dev: dev.into() })
                    .into(),
                ..Forward::default()
            }),
            virtualport: Some(VirtualPort {
                kind: Some(VirtualPortType::Qbh),
                profileid: Some("finance".into()),
                ..VirtualPort::default()
            }),
            max_connections_per_device: Some(64),
            ..NetworkSpec::default()
        };
        let realisation = realise(&Network::new("net", spec), &BTreeMap::new()).unwrap();
        let devices = [device("eth1", LinkState::Up), device("eth2", LinkState::Up)]
            .into_iter()
            .collect();
        let mut ledger = Ledger::new();
        hold(&mut ledger, "a", "eth1", true);
        let entry = node_network(&realisation, &devices, &ledger, None);
        assert!(entry.ready);
        assert_eq!((entry.capacity, entry.used, entry.free), (2, 1, 1));
    }

    #[test]
    fn bridge_room_counts_every_port_against_the_limit() {
        assert_eq!(bridge_room(0, 3), MAX_BRIDGE_PORTS - 3);
        assert_eq!(bridge_room(10, 3), 7);
        assert_eq!(bridge_room(10, 12), 0);
    }

    #[test]
    fn shared_modes_count_the_per_device_limit() {
        let devices = [device("eth1", LinkState::Up), device("eth2", LinkState::Up)]
            .into_iter()
            .collect();
        let mut ledger = Ledger::new();
        hold(&mut ledger, "a", "eth1", false);
        hold(&mut ledger, "b", "eth1", false);
        hold(&mut ledger, "c", "eth2", true);
        let entry = node_network(
            &macvtap(MacvtapMode::Private, &["eth1", "eth2"], 4),
            &devices,
            &ledger,
            None,
        );
        assert_eq!(entry.capacity, 8);
        assert_eq!(entry.used, 3);
        // eth2 is held exclusively: nothing more fits on it.
        assert_eq!(entry.free, 2);
        assert_eq!(entry.devices[0].connections, 2);
    }

    #[test]
    fn missing_or_down_pools_say_why() {
        let none = BTreeMap::new();
        let entry = node_network(
            &macvtap(MacvtapMode::Vepa, &["eth1"], 64),
            &none,
            &Ledger::new(),
            None,
        );
        assert!(!entry.ready);
        assert_eq!(entry.reason.as_deref(), Some("DeviceMissing"));
        assert_eq!(entry.capacity, 0);

        let down = [device("eth1", LinkState::Down)].into_iter().collect();
        let entry = node_network(
            &macvtap(MacvtapMode::Vepa, &["eth1"], 64),
            &down,
            &Ledger::new(),
            None,
        );
        assert!(!entry.ready);
        assert_eq!(entry.reason.as_deref(), Some("LinkDown"));
    }

    #[test]
    fn bridges_leave_room_for_ports_others_own() {
        let realisation = NodeRealisation {
            network: "br".into(),
            kind: RealisationKind::Bridge {
                bridge: "br0".into(),
            },
        };
        let devices = [device("br0", LinkState::Up)].into_iter().collect();
        let mut ledger = Ledger::new();
        hold(&mut ledger, "a", "br0", false);
        let entry = node_network(
            &realisation,
            &devices,
            &ledger,
            Some(BridgePorts { total: 3, owned: 1 }),
        );
        assert!(entry.ready);
        assert_eq!(entry.capacity, 1021);
        assert_eq!(entry.used, 1);
        assert_eq!(entry.free, 1020);
        assert_eq!(entry.bridge.as_ref().unwrap().total_ports, 3);

        let absent = node_network(&realisation, &BTreeMap::new(), &ledger, None);
        assert_eq!(absent.reason.as_deref(), Some("BridgeAbsent"));
        assert!(!absent.ready);
    }
}
