//! Pool allocation: which device a new port gets, as libvirt's `networkAllocatePort` picks it,
//! with one fix.
//!
//! - Exclusive requests ([`crate::exclusive`]: passthrough, and private with an 802.1Qbh
//!   profile) take the first listed device with no connection at all.
//! - Shared requests (other macvtap modes) take the device with the fewest connections, ties
//!   going to the first listed, skipping devices at the per-device limit.
//! - The fix: libvirt checks exclusivity only for the exclusive requester, so a shared port can
//!   land on a device a passthrough port holds. Here a device held exclusively is never shared.
//!
//! Devices absent from the node are skipped: a macvtap cannot be created on them.
//!
//! [`Ledger`] keeps who holds what, keyed by port UID, so counts are the number of holders and
//! releasing twice or releasing a port that holds nothing cannot drive a count wrong (libvirt's
//! restart bug: two port files claiming one device, deleting one zeroes the real holder's count).

use std::collections::BTreeMap;

use switchyard_libvirt::merge::EffectivePort;
use thiserror::Error;

use crate::exclusive::port_is_exclusive;

use crate::port_key::PortKey;

/// `NetworkSpec.maxConnectionsPerDevice` when the spec leaves it out.
pub use switchyard_crds::DEFAULT_MAX_CONNECTIONS_PER_DEVICE;

/// What a port needs from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// The device alone, with no other connection.
    Exclusive,
    /// A share of the device, up to `max_connections` ports on it.
    Shared {
        /// The network's per-device limit.
        max_connections: u32,
    },
}

impl Sharing {
    /// Shared with the network's limit, or the default when it sets none.
    pub fn shared(max_connections_per_device: Option<u32>) -> Self {
        Self::Shared {
            max_connections: max_connections_per_device
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_DEVICE),
        }
    }

    /// What a port with these merged settings asks for on a network with this per-device
    /// limit: a device of its own when [`crate::exclusive::port_is_exclusive`], else a share.
    pub fn for_port(port: &EffectivePort, max_connections_per_device: u32) -> Self {
        if port_is_exclusive(port) {
            Self::Exclusive
        } else {
            Self::Shared {
                max_connections: max_connections_per_device,
            }
        }
    }

    /// Whether this is an exclusive request.
    pub fn is_exclusive(self) -> bool {
        matches!(self, Self::Exclusive)
    }
}

/// One pool device as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLoad<'a> {
    /// The device name.
    pub name: &'a str,
    /// Whether it exists on the node.
    pub present: bool,
    /// Ports using it (of any network).
    pub connections: u32,
    /// Whether one port holds it exclusively.
    pub held_exclusively: bool,
}

impl DeviceLoad<'_> {
    /// Whether a port needing a device of its own can take it: present, no connection, not
    /// held. The migration check and the node's report count free devices by this too.
    pub fn takes_exclusive(&self) -> bool {
        self.present && self.connections == 0 && !self.held_exclusively
    }

    /// How many more shared ports it takes at `max_connections` per device: none when absent
    /// or held exclusively (unlike libvirt, which lets a shared port onto a device a
    /// passthrough port holds).
    pub fn shared_room(&self, max_connections: u32) -> u32 {
        if !self.present || self.held_exclusively {
            0
        } else {
            max_connections.saturating_sub(self.connections)
        }
    }
}

/// Why no device could be picked. The messages are what the port's condition says.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocationError {
    /// The network lists no device (libvirt's wording).
    #[error("network '{network}' uses a direct mode, but has no forward dev and no interface pool")]
    NoPool {
        /// The network's name.
        network: String,
    },
    /// None of the listed devices exists on the node.
    #[error("network '{network}': none of its pool devices ({}) is present on this node", .devices.join(", "))]
    NoDevicePresent {
        /// The network's name.
        network: String,
        /// The pool, in order.
        devices: Vec<String>,
    },
    /// Every present device has a connection (libvirt's wording).
    #[error("network '{network}' requires exclusive access to interfaces, but none are available")]
    NoExclusiveDevice {
        /// The network's name.
        network: String,
    },
    /// Every present device is at the limit or held exclusively.
    #[error(
        "network '{network}' has no pool device with room: each present device is held \
         exclusively or carries its limit of {max_connections} connections"
    )]
    DevicesFull {
        /// The network's name.
        network: String,
        /// The per-device limit.
        max_connections: u32,
    },
}

impl AllocationError {
    /// The CamelCase reason for the port's condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoPool { .. } => "NoPool",
            Self::NoDevicePresent { .. } => "DeviceMissing",
            Self::NoExclusiveDevice { .. } => "NoFreeDevice",
            Self::DevicesFull { .. } => "DevicesFull",
        }
    }
}

/// Picks a device from `pool` (in pool order) for a request; returns its position in `pool`.
pub fn pick_device(
    network: &str,
    pool: &[DeviceLoad<'_>],
    sharing: Sharing,
) -> Result<usize, AllocationError> {
    if pool.is_empty() {
        return Err(AllocationError::NoPool {
            network: network.to_string(),
        });
    }
    let mut present = pool
        .iter()
        .enumerate()
        .filter(|(_, device)| device.present)
        .peekable();
    if present.peek().is_none() {
        return Err(AllocationError::NoDevicePresent {
            network: network.to_string(),
            devices: pool.iter().map(|d| d.name.to_string()).collect(),
        });
    }
    match sharing {
        Sharing::Exclusive => present
            .find(|(_, device)| device.takes_exclusive())
            .map(|(index, _)| index)
            .ok_or_else(|| AllocationError::NoExclusiveDevice {
                network: network.to_string(),
            }),
        Sharing::Shared { max_connections } => present
            .filter(|(_, device)| device.shared_room(max_connections) > 0)
            // `min_by_key` keeps the first of equal minima: ties go to the first listed.
            .min_by_key(|(_, device)| device.connections)
            .map(|(index, _)| index)
            .ok_or_else(|| AllocationError::DevicesFull {
                network: network.to_string(),
                max_connections,
            }),
    }
}

/// One pool device of a network: its name and whether the node has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// The device name.
    pub name: String,
    /// Whether it exists on the node.
    pub present: bool,
}

/// Why a port holds a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The port.
    pub port: PortKey,
    /// The network it was allocated for.
    pub network: String,
    /// Whether it holds the device alone.
    pub exclusive: bool,
}

/// Who holds which device on the node, keyed by port UID. Devices are kernel devices (pool
/// devices and bridges), shared by every network that lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    by_device: BTreeMap<String, BTreeMap<String, Holding>>,
    by_port: BTreeMap<String, String>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks a device for the port and records the holding. A port that already holds a device
    /// keeps it (the call is idempotent).
    pub fn allocate(
        &mut self,
        port_uid: &str,
        port: &PortKey,
        network: &str,
        pool: &[PoolMember],
        sharing: Sharing,
    ) -> Result<String, AllocationError> {
        if let Some(device) = self.by_port.get(port_uid) {
            return Ok(device.clone());
        }
        let loads: Vec<DeviceLoad<'_>> = pool
            .iter()
            .map(|member| DeviceLoad {
                name: &member.name,
                present: member.present,
                connections: self.connections(&member.name),
                held_exclusively: self.exclusive_holder(&member.name).is_some(),
            })
            .collect();
        let index = pick_device(network, &loads, sharing)?;
        let device = pool[index].name.clone();
        self.record(
            port_uid,
            &device,
            Holding {
                port: port.clone(),
                network: network.to_string(),
                exclusive: sharing.is_exclusive(),
            },
        );
        Ok(device)
    }

    /// Records that a port holds a device, whatever else holds it: recovery uses this to
    /// mirror what the kernel shows. A port holding another device is moved.
    pub fn record(&mut self, port_uid: &str, device: &str, holding: Holding) {
        self.release(port_uid);
        self.by_device
            .entry(device.to_string())
            .or_default()
            .insert(port_uid.to_string(), holding);
        self.by_port
            .insert(port_uid.to_string(), device.to_string());
    }

    /// Drops the port's holding; returns the device it held. Releasing a port that holds
    /// nothing changes nothing.
    pub fn release(&mut self, port_uid: &str) -> Option<String> {
        let device = self.by_port.remove(port_uid)?;
        if let Some(holders) = self.by_device.get_mut(&device) {
            holders.remove(port_uid);
            if holders.is_empty() {
                self.by_device.remove(&device);
            }
        }
        Some(device)
    }

    /// Ports using the device.
    pub fn connections(&self, device: &str) -> u32 {
        self.by_device
            .get(device)
            .map_or(0, |holders| holders.len() as u32)
    }

    /// The port holding the device exclusively, if one does.
    pub fn exclusive_holder(&self, device: &str) -> Option<&Holding> {
        self.by_device
            .get(device)?
            .values()
            .find(|holding| holding.exclusive)
    }

    /// The device the port holds.
    pub fn device_of(&self, port_uid: &str) -> Option<&str> {
        self.by_port.get(port_uid).map(String::as_str)
    }

    /// The holdings on a device, by port UID.
    pub fn holders(&self, device: &str) -> impl Iterator<Item = (&str, &Holding)> {
        self.by_device
            .get(device)
            .into_iter()
            .flatten()
            .map(|(uid, holding)| (uid.as_str(), holding))
    }

    /// Ports holding any device.
    pub fn total_connections(&self) -> usize {
        self.by_port.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, connections: u32) -> DeviceLoad<'_> {
        DeviceLoad {
            name,
            present: true,
            connections,
            held_exclusively: false,
        }
    }

    fn pool(names: &[&str]) -> Vec<PoolMember> {
        names
            .iter()
            .map(|name| PoolMember {
                name: name.to_string(),
                present: true,
            })
            .collect()
    }

    fn key(name: &str) -> PortKey {
        PortKey::new("ns", name)
    }

    const SHARED: Sharing = Sharing::Shared {
        max_connections: 64,
    };

    #[test]
    fn passthrough_two_devices_three_ports_as_libvirt() {
        // EXPECTED.md: ports 1, 2 get dev #1, #2; port 3 gets libvirt's error.
        let mut ledger = Ledger::new();
        let devs = pool(&["eth1", "eth2"]);
        let got: Vec<_> = ["p1", "p2", "p3"]
            .iter()
            .map(|p| ledger.allocate(p, &key(p), "X", &devs, Sharing::Exclusive))
            .collect();
        assert_eq!(got[0].as_deref(), Ok("eth1"));
        assert_eq!(got[1].as_deref(), Ok("eth2"));
        let err = got[2].clone().unwrap_err();
        assert_eq!(
            err.to_string(),
            "network 'X' requires exclusive access to interfaces, but none are available"
        );
        assert_eq!(err.reason(), "NoFreeDevice");
    }

    #[test]
    fn vepa_least_used_ties_to_first_then_release_as_libvirt() {
        // EXPECTED.md: A,B,C,A,B; after deleting port 2 (on B): A=2, B=1, C=1.
        let mut ledger = Ledger::new();
        let devs = pool(&["A", "B", "C"]);
        let picks: Vec<String> = (1..=5)
            .map(|i| {
                let uid = format!("p{i}");
                ledger
                    .allocate(&uid, &key(&uid), "X", &devs, SHARED)
                    .unwrap()
            })
            .collect();
        assert_eq!(picks, ["A", "B", "C", "A", "B"]);
        assert_eq!(ledger.release("p2").as_deref(), Some("B"));
        assert_eq!(
            (
                ledger.connections("A"),
                ledger.connections("B"),
                ledger.connections("C")
            ),
            (2, 1, 1)
        );
        // The freed slot on B is the next pick (B and C tie at 1, B listed first).
        assert_eq!(
            ledger.allocate("p6", &key("p6"), "X", &devs, SHARED),
            Ok("B".to_string())
        );
    }

    #[test]
    fn exclusive_after_two_shared_fails_as_libvirt() {
        // EXPECTED.md: private + Qbh portgroup, two shared ports first -> Qbh port fails.
        let mut ledger = Ledger::new();
        let devs = pool(&["p0", "p1"]);
        ledger
            .allocate("s1", &key("s1"), "X", &devs, SHARED)
            .unwrap();
        ledger
            .allocate("s2", &key("s2"), "X", &devs, SHARED)
            .unwrap();
        assert!(matches!(
            ledger.allocate("q", &key("q"), "X", &devs, Sharing::Exclusive),
            Err(AllocationError::NoExclusiveDevice { .. })
        ));
    }

    #[test]
    fn exclusively_held_device_is_never_shared_unlike_libvirt() {
        // libvirt: Qbh port gets p0, shared ports get p1 then p0. Here: p1 then p1.
        let mut ledger = Ledger::new();
        let devs = pool(&["p0", "p1"]);
        assert_eq!(
            ledger.allocate("q", &key("q"), "X", &devs, Sharing::Exclusive),
            Ok("p0".into())
        );
        assert_eq!(
            ledger.allocate("s1", &key("s1"), "X", &devs, SHARED),
            Ok("p1".into())
        );
        assert_eq!(
            ledger.allocate("s2", &key("s2"), "X", &devs, SHARED),
            Ok("p1".into())
        );
        assert_eq!(ledger.connections("p0"), 1);
        assert_eq!(ledger.exclusive_holder("p0").unwrap().port, key("q"));
    }

    #[test]
    fn shared_requests_respect_the_per_device_limit() {
        let mut ledger = Ledger::new();
        let devs = pool(&["a", "b"]);
        let limited = Sharing::Shared { max_connections: 2 };
        for uid in ["1", "2", "3", "4"] {
            ledger
                .allocate(uid, &key(uid), "net", &devs, limited)
                .unwrap();
        }
        let err = ledger
            .allocate("5", &key("5"), "net", &devs, limited)
            .unwrap_err();
        assert_eq!(err.reason(), "DevicesFull");
        assert!(err.to_string().contains("limit of 2 connections"));
        assert_eq!(
            Sharing::shared(None),
            Sharing::Shared {
                max_connections: 64
            }
        );
    }

    #[test]
    fn absent_devices_are_skipped_and_an_empty_pool_is_named() {
        let pool_loads = [
            DeviceLoad {
                present: false,
                ..load("gone", 0)
            },
            load("here", 3),
        ];
        assert_eq!(pick_device("n", &pool_loads, SHARED), Ok(1));
        assert_eq!(
            pick_device("n", &pool_loads[..1], SHARED)
                .unwrap_err()
                .reason(),
            "DeviceMissing"
        );
        assert_eq!(
            pick_device("n", &[], Sharing::Exclusive)
                .unwrap_err()
                .to_string(),
            "network 'n' uses a direct mode, but has no forward dev and no interface pool"
        );
    }

    #[test]
    fn pick_prefers_fewest_connections_then_pool_order() {
        let loads = [load("a", 2), load("b", 1), load("c", 1)];
        assert_eq!(pick_device("n", &loads, SHARED), Ok(1));
        let held = [
            DeviceLoad {
                held_exclusively: true,
                ..load("a", 1)
            },
            load("b", 5),
        ];
        assert_eq!(pick_device("n", &held, SHARED), Ok(1));
        assert_eq!(
            pick_device("n", &held, Sharing::Exclusive)
                .unwrap_err()
                .reason(),
            "NoFreeDevice"
        );
    }

    #[test]
    fn allocation_is_idempotent_and_release_cannot_drift() {
        let mut ledger = Ledger::new();
        let devs = pool(&["a", "b"]);
        assert_eq!(
            ledger.allocate("p", &key("p"), "n", &devs, SHARED),
            Ok("a".into())
        );
        assert_eq!(
            ledger.allocate("p", &key("p"), "n", &devs, SHARED),
            Ok("a".into())
        );
        assert_eq!(ledger.connections("a"), 1);
        assert_eq!(ledger.release("p").as_deref(), Some("a"));
        assert_eq!(ledger.release("p"), None);
        assert_eq!(ledger.release("never"), None);
        assert_eq!(ledger.connections("a"), 0);
        assert_eq!(ledger.total_connections(), 0);
    }

    #[test]
    fn devices_are_shared_across_networks() {
        // Two networks listing one NIC: a passthrough port of one blocks shared ports of the other.
        let mut ledger = Ledger::new();
        let nic = pool(&["eth1"]);
        ledger
            .allocate("pt", &key("pt"), "passthru-net", &nic, Sharing::Exclusive)
            .unwrap();
        assert_eq!(
            ledger
                .allocate("v", &key("v"), "vepa-net", &nic, SHARED)
                .unwrap_err()
                .reason(),
            "DevicesFull"
        );
        assert_eq!(ledger.holders("eth1").count(), 1);
        assert_eq!(ledger.device_of("pt"), Some("eth1"));
    }
}
