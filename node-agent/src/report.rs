//! What the agent reports about its node: one `NetworkNode` status entry per network that
//! selects the node, and the capacity advertised as the node's extended resource. Pure.

use std::collections::BTreeMap;

use switchyard_crds::{BridgeState, LinkState, MacvtapMode, NodeNetwork, PoolDevice};

use crate::allocator::Ledger;
use crate::netlink::{BridgePorts, DeviceState};
use crate::realisation::{NodeRealisation, RealisationKind, bridge_capacity};

/// The report entry for one network.
///
/// Capacity is what the scheduler may count on: for exclusive (passthrough) networks one port
/// per present device; for shared macvtap modes the per-device limit times the present devices;
/// for bridges the kernel's port limit minus ports others put on the bridge.
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
                entry.free = u64::from(limit.saturating_sub(ports.total));
            } else {
                entry.reason = Some("BridgeAbsent".into());
                entry.message = Some(format!("bridge '{bridge}' does not exist on this node"));
            }
        }
        RealisationKind::Macvtap {
            mode,
            pool,
            max_connections_per_device,
        } => {
            entry.macvtap_mode = Some(*mode);
            let exclusive = *mode == MacvtapMode::Passthrough;
            let per_device = if exclusive {
                1
            } else {
                *max_connections_per_device
            };
            for name in pool {
                let state = devices.get(name);
                let present = state.is_some_and(DeviceState::present);
                let connections = ledger.connections(name);
                let holder = ledger.exclusive_holder(name);
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
                    if holder.is_none() {
                        entry.free += u64::from(per_device.saturating_sub(connections));
                    }
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
    use crate::allocator::Holding;
    use crate::port_key::PortKey;

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
