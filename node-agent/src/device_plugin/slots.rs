//! The device plugin's slots: which device IDs a network advertises, which ifindex (and so
//! which `/dev/tap<ifindex>`) each one stands for, and the kubelet's names for them. Pure,
//! apart from [`BlockTable::load`] and [`BlockTable::save`].
//!
//! A device ID *is* an ifindex, in decimal. Every network the node serves gets a block of
//! [`SLOTS_PER_BLOCK`] ifindexes of its own in a range the kernel never picks from (it numbers
//! links from 1 up per namespace) and apart from the range CNI attachments without a slot take
//! theirs from ([`crate::cni::naming::IFINDEX_BASE`]). So `Allocate` needs no state to answer
//! (`/dev/tap<ID>`), the kubelet's allocation is the reservation (it never gives one ID to two
//! pods), and ADD creates the pod's macvtap with ifindex = ID, whatever asked it: Multus
//! passing the ID, or the agent reading it from the kubelet's pod resources.
//!
//! Blocks are handed out first come and kept for the node's boot (the table lives on `/run`):
//! the kubelet checkpoints its allocations by ID, so an ID must mean the same ifindex across
//! agent restarts, and a network deleted and created again gets its old block back.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use switchyard_crds::RESOURCE_PREFIX;
use thiserror::Error;

/// The first ifindex of the first block.
pub const SLOT_BASE: u32 = 0x5000_0000;
/// Ifindexes per network block.
pub const SLOTS_PER_BLOCK: u32 = 0x1_0000;
/// How many blocks there are (networks a node can serve in one boot).
pub const BLOCKS: u32 = 0x1000;
/// At most this many devices are advertised per network, whatever its capacity (a bridge
/// network carries 1023 ports, a shared macvtap network may carry far more): the kubelet keeps
/// and checkpoints every device, and no node runs this many VMs on one network.
pub const MAX_SLOTS: u64 = 1024;

// Every slot lies above the CNI's own range and below i32::MAX (ifindexes are ints).
const _: () = assert!(
    SLOT_BASE >= crate::cni::naming::IFINDEX_BASE + crate::cni::naming::IFINDEX_SPAN
        && SLOT_BASE + BLOCKS * SLOTS_PER_BLOCK - 1 <= i32::MAX as u32
);

/// What is wrong with a slot or a device ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlotError {
    /// Every block is handed out.
    #[error(
        "all {BLOCKS} device plugin blocks of this node are in use; restart the node to reuse those of deleted networks"
    )]
    Full,
    /// Not a number in the slot range.
    #[error("device ID '{0}' is not a switchyard slot (an ifindex from {SLOT_BASE} on)")]
    NotASlot(String),
    /// A slot of another network (or of no network).
    #[error("device ID '{id}' is not a slot of network '{network}'")]
    OtherNetwork {
        /// The ID.
        id: String,
        /// The network asked about.
        network: String,
    },
}

/// Which network holds which block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTable {
    blocks: BTreeMap<String, u32>,
}

impl BlockTable {
    /// The table in `path`; empty when the file does not exist.
    pub fn load(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error),
        }
    }

    /// Writes the table to `path` (a temporary file renamed over it: never torn).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = path.with_extension("tmp");
        std::fs::write(
            &temporary,
            serde_json::to_vec(self).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&temporary, path)
    }

    /// The network's block, if it has one.
    pub fn block_of(&self, network: &str) -> Option<u32> {
        self.blocks.get(network).copied()
    }

    /// The network's block, handing it the lowest free one first; `Ok((block, true))` when
    /// the table changed (and must be saved before the block's IDs are advertised).
    pub fn assign(&mut self, network: &str) -> Result<(u32, bool), SlotError> {
        if let Some(block) = self.block_of(network) {
            return Ok((block, false));
        }
        let taken: std::collections::BTreeSet<u32> = self.blocks.values().copied().collect();
        let block = (0..BLOCKS)
            .find(|b| !taken.contains(b))
            .ok_or(SlotError::Full)?;
        self.blocks.insert(network.to_string(), block);
        Ok((block, true))
    }

    /// The ifindex a device ID of `network` stands for, checked to be one of its slots.
    pub fn ifindex_for(&self, network: &str, id: &str) -> Result<u32, SlotError> {
        let ifindex = parse_device_id(id)?;
        match self.block_of(network) {
            Some(block) if block_of_ifindex(ifindex) == block => Ok(ifindex),
            _ => Err(SlotError::OtherNetwork {
                id: id.to_string(),
                network: network.to_string(),
            }),
        }
    }
}

/// The ifindex of slot `slot` of block `block`.
pub fn slot_ifindex(block: u32, slot: u32) -> u32 {
    SLOT_BASE + block * SLOTS_PER_BLOCK + slot
}

fn block_of_ifindex(ifindex: u32) -> u32 {
    (ifindex - SLOT_BASE) / SLOTS_PER_BLOCK
}

/// Whether an ifindex is a device plugin slot's.
pub fn is_slot(ifindex: u32) -> bool {
    (SLOT_BASE..SLOT_BASE + BLOCKS * SLOTS_PER_BLOCK).contains(&ifindex)
}

/// The ifindex a device ID names (any network's).
pub fn parse_device_id(id: &str) -> Result<u32, SlotError> {
    id.parse::<u32>()
        .ok()
        .filter(|ifindex| is_slot(*ifindex) && id == ifindex.to_string())
        .ok_or_else(|| SlotError::NotASlot(id.to_string()))
}

/// One advertised device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The device ID: the ifindex in decimal.
    pub id: String,
    /// Whether the kubelet may allocate it.
    pub healthy: bool,
}

/// The devices a network advertises: one per port it can carry on the node (at most
/// [`MAX_SLOTS`]), healthy while the node is ready for it. Allocated devices stay listed: the
/// kubelet, not the plugin, counts which are taken.
pub fn slots(block: u32, capacity: u64, ready: bool) -> Vec<Slot> {
    (0..capacity.min(MAX_SLOTS) as u32)
        .map(|slot| Slot {
            id: slot_ifindex(block, slot).to_string(),
            healthy: ready,
        })
        .collect()
}

/// The character device a slot's macvtap gets, inside the container as on the host.
pub fn tap_device(ifindex: u32) -> String {
    format!("/dev/tap{ifindex}")
}

/// The kubelet's resource name of a network, `None` when the network's name cannot be one (an
/// extended resource's name part is a qualified name: at most 63 characters, alphanumerics,
/// `-`, `_` and `.`, starting and ending with an alphanumeric).
pub fn resource_name(network: &str) -> Option<String> {
    let valid = !network.is_empty()
        && network.len() <= 63
        && network.starts_with(|c: char| c.is_ascii_alphanumeric())
        && network.ends_with(|c: char| c.is_ascii_alphanumeric())
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then(|| format!("{RESOURCE_PREFIX}{network}"))
}

/// The plugin's socket's file name in the kubelet's device plugin directory. A unix socket
/// path is at most 107 bytes, so long network names are cut and made unique by a hash.
pub fn socket_name(network: &str) -> String {
    if network.len() <= 40 {
        format!("switchyard-{network}.sock")
    } else {
        let hash = network.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("switchyard-{}-{hash:016x}.sock", &network[..24])
    }
}

/// Of the device IDs the kubelet gave a pod for a network, the first that none of the pod's
/// other interfaces on it took already.
pub fn unused_slot<'a>(allocated: &'a [String], taken: &[u32]) -> Option<&'a str> {
    allocated
        .iter()
        .find(|id| parse_device_id(id).is_ok_and(|ifindex| !taken.contains(&ifindex)))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_lowest_first_and_kept() {
        let mut table = BlockTable::default();
        assert_eq!(table.assign("a"), Ok((0, true)));
        assert_eq!(table.assign("b"), Ok((1, true)));
        assert_eq!(table.assign("a"), Ok((0, false)), "a keeps its block");
        let mut full = BlockTable::default();
        for i in 0..BLOCKS {
            full.assign(&format!("n{i}")).unwrap();
        }
        assert_eq!(full.assign("one-more"), Err(SlotError::Full));
    }

    #[test]
    fn the_table_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/blocks.json");
        assert_eq!(BlockTable::load(&path).unwrap(), BlockTable::default());
        let mut table = BlockTable::default();
        table.assign("a").unwrap();
        table.assign("b").unwrap();
        table.save(&path).unwrap();
        let loaded = BlockTable::load(&path).unwrap();
        assert_eq!(loaded, table);
        assert_eq!(loaded.block_of("b"), Some(1));
    }

    #[test]
    fn slots_are_ifindexes_of_the_networks_block_and_follow_capacity_and_readiness() {
        let listed = slots(2, 3, true);
        let first = SLOT_BASE + 2 * SLOTS_PER_BLOCK;
        assert_eq!(
            listed,
            (0..3)
                .map(|i| Slot {
                    id: (first + i).to_string(),
                    healthy: true
                })
                .collect::<Vec<_>>()
        );
        assert!(slots(2, 3, false).iter().all(|s| !s.healthy));
        assert_eq!(slots(0, 0, true), vec![]);
        assert_eq!(slots(0, 1_000_000, true).len() as u64, MAX_SLOTS);
    }

    #[test]
    fn a_device_id_names_its_networks_ifindex_only() {
        let mut table = BlockTable::default();
        table.assign("a").unwrap();
        table.assign("b").unwrap();
        let a0 = slots(0, 1, true)[0].id.clone();
        assert_eq!(table.ifindex_for("a", &a0), Ok(SLOT_BASE));
        assert_eq!(
            table.ifindex_for("b", &a0),
            Err(SlotError::OtherNetwork {
                id: a0.clone(),
                network: "b".into()
            })
        );
        assert!(matches!(
            table.ifindex_for("unknown", &a0),
            Err(SlotError::OtherNetwork { .. })
        ));
        for bad in ["", "eth0", "7", "0001342177280", "-1", "4294967295"] {
            assert_eq!(
                table.ifindex_for("a", bad),
                Err(SlotError::NotASlot(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resource_names_follow_the_kubelets_rules() {
        assert_eq!(resource_name("lan").as_deref(), Some("switchyard.dev/lan"));
        assert!(resource_name("a.b-c_d").is_some());
        assert!(resource_name(&"a".repeat(63)).is_some());
        for bad in ["", "-a", "a-", &"a".repeat(64), "a/b", "a b"] {
            assert_eq!(resource_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn socket_names_fit_a_unix_socket_path_and_stay_distinct() {
        assert_eq!(socket_name("lan"), "switchyard-lan.sock");
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        let dir = "/var/lib/kubelet/device-plugins/";
        for name in [&long_a, &long_b] {
            assert!(dir.len() + socket_name(name).len() < 108, "{name}");
        }
        assert_ne!(socket_name(&long_a), socket_name(&long_b));
    }

    #[test]
    fn each_interface_of_a_pod_takes_its_own_allocated_slot() {
        let ids: Vec<String> = slots(0, 3, true).into_iter().map(|s| s.id).collect();
        assert_eq!(unused_slot(&ids, &[]), Some(ids[0].as_str()));
        assert_eq!(unused_slot(&ids, &[SLOT_BASE]), Some(ids[1].as_str()));
        assert_eq!(
            unused_slot(&ids, &[SLOT_BASE, SLOT_BASE + 1, SLOT_BASE + 2]),
            None
        );
        assert_eq!(unused_slot(&["not-ours".to_string()], &[]), None);
    }
}
