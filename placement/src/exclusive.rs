//! Which ports need a pool device of their own: libvirt's rule, written once.
//!
//! libvirt's `networkAllocatePort` and `networkNotifyPort` (src/network/bridge_driver.c) give
//! a port a device with no other connection when the network's forward mode is passthrough,
//! or when it is private and the port's merged virtualport is 802.1Qbh. Every other macvtap
//! mode shares devices, with an 802.1Qbh profile or without; a bridge port never holds its
//! bridge alone.

use switchyard_crds::{MacvtapMode, NetworkSpec, PortActual, VirtualPortType};
use switchyard_libvirt::merge::{Connection, EffectivePort};
use switchyard_libvirt::modes::{self, Realisation};

/// libvirt's rule: passthrough, or private with an 802.1Qbh virtualport.
pub fn needs_own_device(mode: MacvtapMode, virtualport: Option<VirtualPortType>) -> bool {
    match mode {
        MacvtapMode::Passthrough => true,
        MacvtapMode::Private => virtualport == Some(VirtualPortType::Qbh),
        MacvtapMode::Vepa | MacvtapMode::Bridge => false,
    }
}

/// Whether a port with these merged settings needs a device of its own.
pub fn port_is_exclusive(port: &EffectivePort) -> bool {
    match port.connection {
        Connection::Macvtap(mode) => {
            needs_own_device(mode, port.virtualport.as_ref().and_then(|v| v.kind))
        }
        Connection::Bridge => false,
    }
}

/// Whether the port that recorded this `status.actual` holds its device alone (recovery,
/// when the network is gone or no longer merges).
pub fn actual_is_exclusive(actual: &PortActual) -> bool {
    actual.mode.is_some_and(|mode| {
        needs_own_device(mode, actual.virtualport.as_ref().and_then(|v| v.kind))
    })
}

/// Whether every port of the network needs a device of its own, so that a device carries one
/// port: passthrough, or private with the network's own virtualport 802.1Qbh (a port or
/// portgroup cannot change a virtualport's type; a mismatch fails the merge). A private
/// network whose 802.1Qbh profile comes only from some portgroups is counted as shared.
pub fn network_is_exclusive(spec: &NetworkSpec) -> bool {
    match modes::realisation(spec) {
        Realisation::Macvtap(mode) => {
            needs_own_device(mode, spec.virtualport.as_ref().and_then(|v| v.kind))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Forward, ForwardInterface, ForwardMode, PortGroup, VirtualPort};
    use switchyard_libvirt::merge::{PortRequest, effective_port};

    fn qbh() -> VirtualPort {
        VirtualPort {
            kind: Some(VirtualPortType::Qbh),
            profileid: Some("finance".into()),
            ..VirtualPort::default()
        }
    }

    fn network(mode: ForwardMode, virtualport: Option<VirtualPort>) -> NetworkSpec {
        NetworkSpec {
            forward: Some(Forward {
                mode,
                interfaces: vec![ForwardInterface { dev: "eth1".into() }],
                ..Forward::default()
            }),
            virtualport,
            ..NetworkSpec::default()
        }
    }

    #[test]
    fn passthrough_and_private_with_qbh_only_as_libvirt() {
        use MacvtapMode::*;
        let qbh = Some(VirtualPortType::Qbh);
        let qbg = Some(VirtualPortType::Qbg);
        assert!(needs_own_device(Passthrough, None));
        assert!(needs_own_device(Passthrough, qbh));
        assert!(needs_own_device(Private, qbh));
        assert!(!needs_own_device(Private, None));
        assert!(!needs_own_device(Private, qbg));
        // libvirt shares vepa and bridge devices even with an 802.1Qbh profile.
        assert!(!needs_own_device(Vepa, qbh));
        assert!(!needs_own_device(Bridge, qbh));
    }

    #[test]
    fn merged_settings_decide_for_a_port() {
        let exclusive = |spec: &NetworkSpec, portgroup: Option<&str>| {
            let request = PortRequest {
                portgroup,
                ..PortRequest::default()
            };
            port_is_exclusive(&effective_port(spec, &request).expect("merges"))
        };
        assert!(exclusive(&network(ForwardMode::Private, Some(qbh())), None));
        assert!(!exclusive(&network(ForwardMode::Vepa, Some(qbh())), None));
        assert!(!exclusive(&network(ForwardMode::Private, None), None));
        assert!(exclusive(&network(ForwardMode::Passthrough, None), None));

        let mut grouped = network(ForwardMode::Private, None);
        grouped.portgroups = vec![PortGroup {
            name: "qbh".into(),
            virtualport: Some(qbh()),
            ..PortGroup::default()
        }];
        assert!(exclusive(&grouped, Some("qbh")));
        assert!(!exclusive(&grouped, None));
    }

    #[test]
    fn a_recorded_actual_follows_the_same_rule() {
        let mut actual = PortActual {
            mode: Some(MacvtapMode::Passthrough),
            ..PortActual::default()
        };
        assert!(actual_is_exclusive(&actual));
        actual.mode = Some(MacvtapMode::Private);
        assert!(!actual_is_exclusive(&actual));
        actual.virtualport = Some(qbh());
        assert!(actual_is_exclusive(&actual));
        actual.mode = Some(MacvtapMode::Vepa);
        assert!(!actual_is_exclusive(&actual));
        actual.mode = None;
        assert!(!actual_is_exclusive(&actual));
    }

    #[test]
    fn a_network_is_exclusive_when_every_port_must_be() {
        assert!(network_is_exclusive(&network(
            ForwardMode::Passthrough,
            None
        )));
        assert!(network_is_exclusive(&network(
            ForwardMode::Private,
            Some(qbh())
        )));
        assert!(!network_is_exclusive(&network(ForwardMode::Private, None)));
        assert!(!network_is_exclusive(&network(
            ForwardMode::Vepa,
            Some(qbh())
        )));
        assert!(!network_is_exclusive(&NetworkSpec::default()));
    }
}
