//! Whether a port's VLAN tags can be applied on this node; the agent reports in `status.actual`
//! only what it applied, and fails a port whose tags it cannot apply rather than leave the
//! guest on the untagged network while the API says it is tagged.
//!
//! libvirt sets a port's tags in three places only (qemuDomainValidateActualNetDef,
//! virNetDevSetNetConfig): on an SR-IOV virtual function through its physical function (a
//! macvtap in passthrough mode, or hostdev), on an Open vSwitch port, and, in recent releases,
//! on a Linux bridge port with VLAN filtering. Passthrough on a device that is not a VF fails
//! at domain start ("vlan can only be set for SR-IOV VFs, but eth0 is not a VF"), and a VF takes
//! a single tag. The network merge (`switchyard_libvirt::merge`) already refuses tags where
//! libvirt never sets them; this is the part that depends on the node's device — and on what
//! switchyard's agent itself does, which today is none of the three: a runtime handed the
//! agent's macvtap or veth cannot tag it either, so tags it has not applied fail the port.

use switchyard_crds::MacvtapMode;
use switchyard_libvirt::merge::{Connection, EffectivePort};

/// The condition reason of a passthrough port with tags on a device that is not a VF.
pub const REASON_NEEDS_VIRTUAL_FUNCTION: &str = "VlanNeedsVirtualFunction";
/// The condition reason of a port with tags the agent does not set.
pub const REASON_NOT_APPLIED: &str = "VlanNotApplied";

/// Why a port's tags cannot be applied, for its `Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanRefusal {
    /// A CamelCase reason.
    pub reason: &'static str,
    /// What is wrong and what to change.
    pub message: String,
}

/// The refusal of `effective`'s VLAN tags on `device` (the pool device of a macvtap, the bridge
/// of a bridge port), if they cannot be applied. `is_virtual_function` is asked only for a
/// passthrough port with tags.
pub fn refusal(
    effective: &EffectivePort,
    device: &str,
    is_virtual_function: impl FnOnce() -> bool,
) -> Option<VlanRefusal> {
    let vlan = effective
        .vlan
        .as_ref()
        .filter(|vlan| !vlan.tags.is_empty())?;
    let tags = vlan
        .tags
        .iter()
        .map(|tag| tag.id.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match effective.connection {
        Connection::Macvtap(MacvtapMode::Passthrough) if !is_virtual_function() => {
            Some(VlanRefusal {
                reason: REASON_NEEDS_VIRTUAL_FUNCTION,
                message: format!(
                    "vlan {tags}: a passthrough port's tags are set on its device as an SR-IOV \
                     virtual function, through the physical function, but '{device}' is not \
                     an SR-IOV virtual function (libvirt fails such a port at start: \"vlan can \
                     only be set for SR-IOV VFs\"); give the network a pool of VFs, or remove \
                     the vlan"
                ),
            })
        }
        Connection::Macvtap(MacvtapMode::Passthrough) => Some(VlanRefusal {
            reason: REASON_NOT_APPLIED,
            message: format!(
                "vlan {tags}: switchyard does not set vlan tags on SR-IOV virtual functions \
                 yet, and the VM's runtime cannot tag a macvtap it is handed; set the tag on \
                 the VF from the host (`ip link set <pf> vf <n> vlan <id>`) and remove the \
                 vlan"
            ),
        }),
        // The merge refuses these before any agent sees them; said here all the same.
        Connection::Macvtap(mode) => Some(VlanRefusal {
            reason: REASON_NOT_APPLIED,
            message: format!(
                "vlan {tags}: a macvtap in mode {} cannot carry vlan tags; remove the vlan",
                mode.as_str()
            ),
        }),
        Connection::Bridge => Some(VlanRefusal {
            reason: REASON_NOT_APPLIED,
            message: format!(
                "vlan {tags}: switchyard does not tag ports of bridge '{device}' yet, and the \
                 VM's runtime cannot tag a port it is handed; put the bridge on a vlan device \
                 (e.g. eth0.{first}) and remove the vlan",
                first = vlan.tags[0].id
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use switchyard_crds::{Vlan, VlanTag};

    use super::*;

    fn port(connection: Connection, tags: &[u16]) -> EffectivePort {
        EffectivePort {
            portgroup: None,
            virtualport: None,
            vlan: Some(Vlan {
                trunk: None,
                tags: tags
                    .iter()
                    .map(|id| VlanTag {
                        id: *id,
                        native_mode: None,
                    })
                    .collect(),
            }),
            bandwidth: None,
            trust_guest_rx_filters: None,
            connection,
        }
    }

    const PASSTHROUGH: Connection = Connection::Macvtap(MacvtapMode::Passthrough);

    #[test]
    fn a_port_without_tags_is_never_refused() {
        let mut untagged = port(PASSTHROUGH, &[]);
        assert_eq!(refusal(&untagged, "eth0", || false), None);
        untagged.vlan = None;
        assert_eq!(refusal(&untagged, "eth0", || unreachable!()), None);
    }

    #[test]
    fn passthrough_tags_on_a_device_that_is_not_a_vf_say_so() {
        let refused = refusal(&port(PASSTHROUGH, &[7]), "eth0", || false).unwrap();
        assert_eq!(refused.reason, REASON_NEEDS_VIRTUAL_FUNCTION);
        assert!(
            refused.message.contains("vlan 7")
                && refused
                    .message
                    .contains("'eth0' is not an SR-IOV virtual function"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn tags_the_agent_does_not_set_are_refused_not_reported() {
        let on_vf = refusal(&port(PASSTHROUGH, &[7]), "vf0", || true).unwrap();
        assert_eq!(on_vf.reason, REASON_NOT_APPLIED);
        let on_bridge = refusal(&port(Connection::Bridge, &[42, 43]), "br0", || false).unwrap();
        assert_eq!(on_bridge.reason, REASON_NOT_APPLIED);
        assert!(
            on_bridge.message.contains("vlan 42, 43") && on_bridge.message.contains("eth0.42"),
            "{}",
            on_bridge.message
        );
    }
}
