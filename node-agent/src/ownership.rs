//! What marks a kernel link as switchyard's, and how the agent sees the links it owns.
//!
//! The kernel is the durable record of what the agent created: every link it makes has a name
//! with [`LINK_NAME_PREFIX`], sits in a dedicated link group, and carries the port's UID in its
//! alias (`IFLA_IFALIAS`). A link counts as owned only when it is in one of the agent's groups
//! *and* has the prefix, so a foreign link that happens to share a group number is still left
//! alone.

use std::fmt;

use switchyard_crds::{LinkState, MacvtapMode};

/// Every link the agent creates starts with this.
pub const LINK_NAME_PREFIX: &str = "swy";

/// Characters taken from the port UID after the prefix: 3 + 10 + the bridge peer's `p` stays
/// within Linux's 15-byte interface names.
const NAME_ID_LEN: usize = 10;

/// Suffix of the guest-side end of a bridge port's veth pair.
const PEER_SUFFIX: char = 'p';

/// The two link groups the agent owns.
///
/// Links live in `owned`. A batch deletion first moves its links to `doomed` and then deletes
/// that whole group with one `RTM_DELLINK` (one RCU grace period for the batch). A crash between
/// the two steps leaves links in `doomed`, so both groups count as owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkGroups {
    /// Where the agent's live links are.
    pub owned: u32,
    /// Where links wait for a group deletion.
    pub doomed: u32,
}

impl LinkGroups {
    /// ASCII "swy" in the upper bytes keeps the numbers recognisable in `ip -d link` output;
    /// the high bit stays clear because the kernel stores the group as a signed int.
    pub const DEFAULT: Self = Self {
        owned: 0x7377_7901,
        doomed: 0x7377_7902,
    };

    /// Which of the agent's groups `group` is, if any.
    pub fn role(&self, group: u32) -> Option<GroupRole> {
        if group == self.owned {
            Some(GroupRole::Owned)
        } else if group == self.doomed {
            Some(GroupRole::Doomed)
        } else {
            None
        }
    }

    /// The groups must be distinct and non-zero: group 0 is every unconfigured link.
    pub fn is_valid(&self) -> bool {
        self.owned != 0 && self.doomed != 0 && self.owned != self.doomed
    }
}

impl Default for LinkGroups {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which owned group a link is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// A live link.
    Owned,
    /// Tagged for a group deletion that may not have happened yet.
    Doomed,
}

/// The name of the link the agent creates for a port: the prefix and ten characters taken from
/// the port's UID. A UUID-shaped UID gives its first ten hex digits, so an operator can match
/// `swy1a2b3c4d5e` to UID `1a2b3c4d-5e..`; any other UID is hashed.
pub fn link_name(port_uid: &str) -> String {
    let hex: String = port_uid
        .chars()
        .filter(|c| *c != '-')
        .take(NAME_ID_LEN)
        .collect();
    let uuid_shaped =
        port_uid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) && hex.len() == NAME_ID_LEN;
    let id = if uuid_shaped {
        hex.to_ascii_lowercase()
    } else {
        format!("{:016x}", fnv1a64(port_uid.as_bytes()))[..NAME_ID_LEN].to_string()
    };
    format!("{LINK_NAME_PREFIX}{id}")
}

/// The name of the guest-side end of a bridge port's veth pair.
pub fn peer_link_name(port_uid: &str) -> String {
    let mut name = link_name(port_uid);
    name.push(PEER_SUFFIX);
    name
}

/// Whether a link name is one the agent would create.
pub fn has_owned_prefix(name: &str) -> bool {
    name.starts_with(LINK_NAME_PREFIX)
}

/// A stable hash for non-UUID UIDs (the std hasher is randomly seeded per process, and names
/// must be the same after a restart).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A link the agent can act on: its ifindex in the node's namespace, and its name for logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkRef {
    /// The link's ifindex.
    pub ifindex: u32,
    /// The link's name.
    pub name: String,
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.ifindex)
    }
}

/// An owned link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedLink {
    /// Index and name.
    pub link: LinkRef,
    /// Which owned group it is in.
    pub group: GroupRole,
    /// The port UID from the alias; `None` when the alias is missing.
    pub port_uid: Option<String>,
    /// What kind of link it is.
    pub kind: OwnedLinkKind,
    /// The MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// The operational state.
    pub oper_state: LinkState,
}

impl OwnedLink {
    /// The pool device or bridge the link uses, which is what allocation counts.
    pub fn device(&self) -> Option<&str> {
        match &self.kind {
            OwnedLinkKind::Macvtap { lower, .. } => lower.as_deref(),
            OwnedLinkKind::BridgePort { bridge, .. } => bridge.as_deref(),
            OwnedLinkKind::Other { .. } => None,
        }
    }
}

/// The kinds of link the agent creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedLinkKind {
    /// A macvtap on a pool device.
    Macvtap {
        /// The macvtap mode; `None` for a mode switchyard does not use (e.g. `source`).
        mode: Option<MacvtapMode>,
        /// The lower (pool) device's name; `None` if it is in another namespace.
        lower: Option<String>,
    },
    /// The bridge end of a veth pair.
    BridgePort {
        /// The bridge it is attached to; `None` when detached.
        bridge: Option<String>,
        /// The guest-side end's name; `None` once moved to another namespace.
        peer: Option<String>,
    },
    /// Anything else found in an owned group with the owned prefix.
    Other {
        /// The kernel's kind string, e.g. `dummy`; empty when the kernel reports none.
        kind: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_uids_give_readable_names() {
        assert_eq!(
            link_name("1A2B3C4D-5E6F-4711-8000-000000000001"),
            "swy1a2b3c4d5e"
        );
        assert_eq!(
            peer_link_name("1a2b3c4d-5e6f-4711-8000-000000000001"),
            "swy1a2b3c4d5ep"
        );
    }

    /// Names are spelled out: a recovering agent finds its links by name, so a name that
    /// changed between versions would orphan every link across an upgrade.
    #[test]
    fn other_uids_are_hashed_stably_and_fit_ifnamsiz() {
        // The published FNV-1a 64 test vector, so the hash is the documented one.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(link_name("port/with:odd chars"), "swy375ff0aa11");
        assert_eq!(link_name("port/with:odd charz"), "swy375fe7aa11");
        assert_eq!(peer_link_name("x"), "swyaf63f54c86p");
        // A short hex UID is not UUID-shaped: hashed, still 13 bytes.
        assert_eq!(link_name("abc"), "swye71fa21905");
        assert!(peer_link_name("port/with:odd chars").len() <= 15);
    }

    #[test]
    fn groups_have_roles_and_must_be_distinct() {
        let groups = LinkGroups::DEFAULT;
        assert!(groups.is_valid());
        assert_eq!(groups.role(groups.owned), Some(GroupRole::Owned));
        assert_eq!(groups.role(groups.doomed), Some(GroupRole::Doomed));
        assert_eq!(groups.role(0), None);
        assert!(
            !LinkGroups {
                owned: 5,
                doomed: 5
            }
            .is_valid()
        );
        assert!(
            !LinkGroups {
                owned: 0,
                doomed: 5
            }
            .is_valid()
        );
    }
}
