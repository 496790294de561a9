//! What a forward mode means for how a network is realised, as libvirt decides it.

use switchyard_crds::{ForwardMode, MacvtapMode, NetworkSpec};

/// How libvirt realises a network on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realisation {
    /// A bridge libvirt creates and manages itself, with IP forwarding, DHCP and DNS:
    /// forward modes nat, route, open, and isolated networks (no `<forward>`).
    ManagedBridge,
    /// An existing host bridge: forward mode bridge with `<bridge name>`.
    HostBridge,
    /// macvtap links over a pool of host devices: forward modes bridge (without a bridge
    /// name), private, vepa and passthrough.
    Macvtap(MacvtapMode),
    /// PCI passthrough of SR-IOV virtual functions: forward mode hostdev.
    Hostdev,
}

/// The network's forward mode; `None` for an isolated network.
pub fn forward_mode(spec: &NetworkSpec) -> Option<ForwardMode> {
    spec.forward.as_ref().map(|f| f.mode)
}

/// The mode's name as libvirt spells it, `isolated` when there is no `<forward>`.
pub fn mode_name(spec: &NetworkSpec) -> &'static str {
    forward_mode(spec).map_or("isolated", ForwardMode::as_str)
}

/// How the network is realised. Forward mode bridge is a host bridge when a bridge name is
/// given (in the spec or by a node group), macvtap bridge mode otherwise.
pub fn realisation(spec: &NetworkSpec) -> Realisation {
    match forward_mode(spec) {
        None | Some(ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open) => {
            Realisation::ManagedBridge
        }
        Some(ForwardMode::Bridge) if names_bridge(spec) => Realisation::HostBridge,
        Some(ForwardMode::Bridge) => Realisation::Macvtap(MacvtapMode::Bridge),
        Some(ForwardMode::Private) => Realisation::Macvtap(MacvtapMode::Private),
        Some(ForwardMode::Vepa) => Realisation::Macvtap(MacvtapMode::Vepa),
        Some(ForwardMode::Passthrough) => Realisation::Macvtap(MacvtapMode::Passthrough),
        Some(ForwardMode::Hostdev) => Realisation::Hostdev,
    }
}

/// Whether a bridge name is given, in the spec or by any node group.
pub fn names_bridge(spec: &NetworkSpec) -> bool {
    spec.bridge.as_ref().is_some_and(|b| b.name.is_some())
        || spec.node_groups.iter().any(|g| g.bridge.is_some())
}

/// Whether a device pool is given anywhere: `forward.dev`, `forward.interfaces`,
/// `forward.pf`, `forward.addresses`, or a node group's interfaces or pf.
pub fn has_pool(spec: &NetworkSpec) -> bool {
    spec.forward.as_ref().is_some_and(|f| {
        f.dev.is_some() || !f.interfaces.is_empty() || f.pf.is_some() || !f.addresses.is_empty()
    }) || spec
        .node_groups
        .iter()
        .any(|g| !g.interfaces.is_empty() || g.pf.is_some())
}

/// The pool of host devices by name, in order, as libvirt builds it: `forward.interfaces`,
/// or the single `forward.dev` when no interfaces are listed.
pub fn pool_devices(spec: &NetworkSpec) -> Vec<&str> {
    let Some(forward) = spec.forward.as_ref() else {
        return Vec::new();
    };
    if forward.interfaces.is_empty() {
        forward.dev.iter().map(String::as_str).collect()
    } else {
        forward.interfaces.iter().map(|i| i.dev.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Bridge, Forward, ForwardInterface, NodeGroup};

    fn with_mode(mode: ForwardMode) -> NetworkSpec {
        NetworkSpec {
            forward: Some(Forward {
                mode,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn managed_bridge_modes() {
        assert_eq!(
            realisation(&NetworkSpec::default()),
            Realisation::ManagedBridge
        );
        assert_eq!(mode_name(&NetworkSpec::default()), "isolated");
        for mode in [ForwardMode::Nat, ForwardMode::Route, ForwardMode::Open] {
            assert_eq!(realisation(&with_mode(mode)), Realisation::ManagedBridge);
        }
    }

    #[test]
    fn bridge_mode_depends_on_a_bridge_name() {
        let mut spec = with_mode(ForwardMode::Bridge);
        assert_eq!(
            realisation(&spec),
            Realisation::Macvtap(MacvtapMode::Bridge)
        );
        spec.bridge = Some(Bridge {
            name: Some("br0".into()),
            ..Default::default()
        });
        assert_eq!(realisation(&spec), Realisation::HostBridge);

        let mut grouped = with_mode(ForwardMode::Bridge);
        grouped.node_groups.push(NodeGroup {
            name: "rack-a".into(),
            bridge: Some("br-a".into()),
            ..Default::default()
        });
        assert_eq!(realisation(&grouped), Realisation::HostBridge);
    }

    #[test]
    fn macvtap_and_hostdev_modes() {
        assert_eq!(
            realisation(&with_mode(ForwardMode::Passthrough)),
            Realisation::Macvtap(MacvtapMode::Passthrough)
        );
        assert_eq!(
            realisation(&with_mode(ForwardMode::Vepa)),
            Realisation::Macvtap(MacvtapMode::Vepa)
        );
        assert_eq!(
            realisation(&with_mode(ForwardMode::Private)),
            Realisation::Macvtap(MacvtapMode::Private)
        );
        assert_eq!(
            realisation(&with_mode(ForwardMode::Hostdev)),
            Realisation::Hostdev
        );
    }

    #[test]
    fn pool_is_interfaces_or_the_forward_dev() {
        let mut spec = with_mode(ForwardMode::Vepa);
        assert!(!has_pool(&spec));
        assert!(pool_devices(&spec).is_empty());
        spec.forward.as_mut().unwrap().dev = Some("eth0".into());
        assert!(has_pool(&spec));
        assert_eq!(pool_devices(&spec), vec!["eth0"]);
        spec.forward.as_mut().unwrap().interfaces = vec![
            ForwardInterface { dev: "eth0".into() },
            ForwardInterface { dev: "eth1".into() },
        ];
        assert_eq!(pool_devices(&spec), vec!["eth0", "eth1"]);
    }
}
