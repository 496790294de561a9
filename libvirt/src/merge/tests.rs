use switchyard_crds::{BandwidthLimit, Bridge, Forward, ForwardInterface, ForwardMode, VlanTag};

use super::*;

fn pool(devs: &[&str]) -> Vec<ForwardInterface> {
    devs.iter()
        .map(|d| ForwardInterface { dev: d.to_string() })
        .collect()
}

fn macvtap_network(mode: ForwardMode) -> NetworkSpec {
    NetworkSpec {
        forward: Some(Forward {
            mode,
            interfaces: pool(&["eth1", "eth2", "eth3"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_bridge_network() -> NetworkSpec {
    NetworkSpec {
        forward: Some(Forward {
            mode: ForwardMode::Bridge,
            ..Default::default()
        }),
        bridge: Some(Bridge {
            name: Some("br0".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn qbg(managerid: Option<u8>, typeid: Option<u32>, typeidversion: Option<u8>) -> VirtualPort {
    VirtualPort {
        kind: Some(VirtualPortType::Qbg),
        managerid,
        typeid,
        typeidversion,
        ..Default::default()
    }
}

fn portgroup(name: &str) -> PortGroup {
    PortGroup {
        name: name.into(),
        ..Default::default()
    }
}

fn vlan(ids: &[u16]) -> Vlan {
    Vlan {
        trunk: None,
        tags: ids
            .iter()
            .map(|id| VlanTag {
                id: *id,
                native_mode: None,
            })
            .collect(),
    }
}

/// libvirt's networkxml2xmlin/vepa-net.xml.
fn vepa_net() -> NetworkSpec {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.trust_guest_rx_filters = Some(false);
    net.virtualport = Some(qbg(Some(11), Some(1193047), Some(2)));
    net.portgroups = vec![
        PortGroup {
            default: Some(true),
            virtualport: Some(qbg(None, Some(2193047), Some(3))),
            ..portgroup("bob")
        },
        PortGroup {
            trust_guest_rx_filters: Some(true),
            virtualport: Some(qbg(Some(13), None, None)),
            ..portgroup("alice")
        },
    ];
    net
}

#[test]
fn portgroup_selection_named_then_default_then_none() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.portgroups = vec![
        portgroup("a"),
        PortGroup {
            default: Some(true),
            ..portgroup("b")
        },
    ];
    assert_eq!(
        select_portgroup(&net, Some("a")).unwrap().unwrap().name,
        "a"
    );
    assert_eq!(select_portgroup(&net, None).unwrap().unwrap().name, "b");
    net.portgroups[1].default = None;
    assert_eq!(select_portgroup(&net, None).unwrap(), None);
}

#[test]
fn naming_a_missing_portgroup_is_an_error_unlike_libvirt() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.portgroups = vec![
        portgroup("a"),
        PortGroup {
            default: Some(true),
            ..portgroup("b")
        },
    ];
    let err = select_portgroup(&net, Some("c")).unwrap_err();
    assert_eq!(err.reason(), "PortgroupNotFound");
    assert_eq!(
        err.to_string(),
        "portgroup 'c' does not exist in the network (it has: a, b); name one of its portgroups, \
         or leave the portgroup out to get the default one"
    );
    let request = PortRequest {
        portgroup: Some("c"),
        ..Default::default()
    };
    assert_eq!(effective_port(&net, &request).unwrap_err(), err);
}

#[test]
fn vepa_net_default_portgroup_conflicts_on_typeid_as_in_libvirt() {
    // EXPECTED.md: "attempt to merge virtualports with mismatched typeids (1193047 and
    // 2193047)", with or without <group>bob</group>.
    let net = vepa_net();
    for request in [
        PortRequest::default(),
        PortRequest {
            portgroup: Some("bob"),
            ..Default::default()
        },
    ] {
        let err = effective_port(&net, &request).unwrap_err();
        assert_eq!(err.reason(), "MergeConflict");
        assert_eq!(
            err.to_string(),
            "virtualport typeid conflicts: 1193047 from the network but 2193047 from portgroup \
             'bob'; set it in one place only, or to the same value"
        );
    }
}

#[test]
fn vepa_net_alice_conflicts_on_managerid() {
    let err = effective_port(
        &vepa_net(),
        &PortRequest {
            portgroup: Some("alice"),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        PortError::VirtualPortConflict {
            attribute: "managerid",
            ref first_value,
            first_origin: Origin::Network,
            ref second_value,
            second_origin: Origin::Portgroup(ref pg),
        } if first_value == "11" && second_value == "13" && pg == "alice"
    ));
}

#[test]
fn virtualport_attributes_combine_from_all_levels() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.virtualport = Some(qbg(Some(11), None, None));
    net.portgroups = vec![PortGroup {
        virtualport: Some(VirtualPort {
            typeid: Some(7),
            ..Default::default()
        }),
        ..portgroup("pg")
    }];
    let own = VirtualPort {
        typeidversion: Some(3),
        instanceid: Some("c7bb5ab2-d42f-4690-89d6-f590eb199d0f".into()),
        ..Default::default()
    };
    let port = effective_port(
        &net,
        &PortRequest {
            portgroup: Some("pg"),
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        port.virtualport,
        Some(VirtualPort {
            kind: Some(VirtualPortType::Qbg),
            managerid: Some(11),
            typeid: Some(7),
            typeidversion: Some(3),
            instanceid: Some("c7bb5ab2-d42f-4690-89d6-f590eb199d0f".into()),
            ..Default::default()
        })
    );
    assert_eq!(port.portgroup.as_deref(), Some("pg"));
    assert_eq!(port.connection, Connection::Macvtap(MacvtapMode::Vepa));
}

#[test]
fn same_value_in_two_places_is_fine() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.virtualport = Some(qbg(Some(11), Some(5), Some(1)));
    let own = qbg(Some(11), None, None);
    let port = effective_port(
        &net,
        &PortRequest {
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(port.virtualport.unwrap().managerid, Some(11));
}

#[test]
fn virtualport_type_mismatch_names_both_sides() {
    let mut net = host_bridge_network();
    net.virtualport = Some(VirtualPort {
        kind: Some(VirtualPortType::OpenVswitch),
        ..Default::default()
    });
    let own = VirtualPort {
        kind: Some(VirtualPortType::Midonet),
        interfaceid: Some("09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f".into()),
        ..Default::default()
    };
    let err = effective_port(
        &net,
        &PortRequest {
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.reason(), "MergeConflict");
    assert_eq!(
        err.to_string(),
        "virtualport type conflicts: midonet from the port but openvswitch from the network; a \
         port has one virtualport type"
    );
}

#[test]
fn attribute_of_another_type_is_an_error() {
    let mut net = host_bridge_network();
    net.virtualport = Some(VirtualPort {
        kind: Some(VirtualPortType::OpenVswitch),
        ..Default::default()
    });
    let own = VirtualPort {
        managerid: Some(1),
        ..Default::default()
    };
    let err = effective_port(
        &net,
        &PortRequest {
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        PortError::VirtualPortExtraAttribute {
            attribute: "managerid",
            kind: VirtualPortType::OpenVswitch,
            origin: Origin::Port,
        }
    );
}

#[test]
fn incomplete_qbg_and_qbh_are_errors() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.virtualport = Some(qbg(Some(1), None, Some(1)));
    let err = effective_port(&net, &PortRequest::default()).unwrap_err();
    assert_eq!(err.reason(), "VirtualPortIncomplete");
    assert_eq!(
        err.to_string(),
        "missing typeid in <virtualport type='802.1Qbg'>: set it on the port, its portgroup or \
         the network"
    );

    let mut private = macvtap_network(ForwardMode::Private);
    private.virtualport = Some(VirtualPort {
        kind: Some(VirtualPortType::Qbh),
        ..Default::default()
    });
    assert!(matches!(
        effective_port(&private, &PortRequest::default()),
        Err(PortError::VirtualPortIncomplete {
            attribute: "profileid",
            ..
        })
    ));
}

#[test]
fn untyped_virtualports_alone_configure_nothing_as_in_libvirt() {
    let net = macvtap_network(ForwardMode::Vepa);
    let own = VirtualPort {
        managerid: Some(3),
        ..Default::default()
    };
    let port = effective_port(
        &net,
        &PortRequest {
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(port.virtualport, None);
}

#[test]
fn openvswitch_on_a_macvtap_network_is_an_error() {
    let net = macvtap_network(ForwardMode::Bridge);
    let own = VirtualPort {
        kind: Some(VirtualPortType::OpenVswitch),
        ..Default::default()
    };
    let err = effective_port(
        &net,
        &PortRequest {
            virtualport: Some(&own),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.reason(), "VirtualPortUnsupported");
    assert_eq!(
        err.to_string(),
        "<virtualport type='openvswitch'> not supported for a network which uses a macvtap \
         device (forward mode 'bridge')"
    );
}

#[test]
fn qbg_and_qbh_need_a_macvtap_network() {
    let mut net = host_bridge_network();
    net.virtualport = Some(qbg(Some(1), Some(2), Some(3)));
    let err = effective_port(&net, &PortRequest::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<virtualport type='802.1Qbg'> not supported for a network which uses a bridge device \
         (forward mode 'bridge')"
    );
}

#[test]
fn openvswitch_on_a_host_bridge_is_fine_and_interfaceid_is_left_to_the_agent() {
    let mut net = host_bridge_network();
    net.virtualport = Some(VirtualPort {
        kind: Some(VirtualPortType::OpenVswitch),
        ..Default::default()
    });
    net.portgroups = vec![PortGroup {
        default: Some(true),
        vlan: Some(vlan(&[666])),
        virtualport: Some(VirtualPort {
            profileid: Some("bob-profile".into()),
            ..Default::default()
        }),
        ..portgroup("bob")
    }];
    let port = effective_port(&net, &PortRequest::default()).unwrap();
    assert_eq!(port.connection, Connection::Bridge);
    assert_eq!(port.vlan, Some(vlan(&[666])));
    let vport = port.virtualport.unwrap();
    assert_eq!(vport.profileid.as_deref(), Some("bob-profile"));
    assert_eq!(vport.interfaceid, None);
}

#[test]
fn vlan_and_trust_precedence_matches_observed_libvirt() {
    // EXPECTED.md: passthrough net with vlan 10 + trust=yes, portgroup vlan 20 + trust=no.
    let mut net = macvtap_network(ForwardMode::Passthrough);
    net.vlan = Some(vlan(&[10]));
    net.trust_guest_rx_filters = Some(true);
    net.portgroups = vec![PortGroup {
        vlan: Some(vlan(&[20])),
        trust_guest_rx_filters: Some(false),
        ..portgroup("pg")
    }];

    let plain = effective_port(&net, &PortRequest::default()).unwrap();
    assert_eq!(
        (plain.vlan, plain.trust_guest_rx_filters),
        (Some(vlan(&[10])), Some(true))
    );

    let grouped = effective_port(
        &net,
        &PortRequest {
            portgroup: Some("pg"),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (grouped.vlan, grouped.trust_guest_rx_filters),
        (Some(vlan(&[20])), Some(false))
    );

    let own_vlan = vlan(&[30]);
    let own = effective_port(
        &net,
        &PortRequest {
            portgroup: Some("pg"),
            vlan: Some(&own_vlan),
            trust_guest_rx_filters: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (own.vlan, own.trust_guest_rx_filters),
        (Some(vlan(&[30])), Some(true))
    );
}

#[test]
fn vlan_on_shared_macvtap_modes_is_an_error() {
    let mut net = macvtap_network(ForwardMode::Vepa);
    net.portgroups = vec![PortGroup {
        vlan: Some(vlan(&[42])),
        ..portgroup("tagged")
    }];
    let err = effective_port(
        &net,
        &PortRequest {
            portgroup: Some("tagged"),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.reason(), "VlanUnsupported");
    assert!(err.to_string().contains("from portgroup 'tagged'"), "{err}");
    assert!(err.to_string().contains("forward mode 'vepa'"), "{err}");
}

#[test]
fn bandwidth_comes_from_port_then_portgroup_never_the_network() {
    let limit = |average| Bandwidth {
        inbound: Some(BandwidthLimit {
            average: Some(average),
            ..Default::default()
        }),
        outbound: None,
    };
    let mut net = host_bridge_network();
    net.bandwidth = Some(limit(1000));
    assert_eq!(
        effective_port(&net, &PortRequest::default())
            .unwrap()
            .bandwidth,
        None,
        "a network-level bandwidth limits the network, it is not a per-port default"
    );
    net.portgroups = vec![PortGroup {
        default: Some(true),
        bandwidth: Some(limit(200)),
        ..portgroup("pg")
    }];
    assert_eq!(
        effective_port(&net, &PortRequest::default())
            .unwrap()
            .bandwidth,
        Some(limit(200))
    );
    let own = limit(50);
    assert_eq!(
        effective_port(
            &net,
            &PortRequest {
                bandwidth: Some(&own),
                ..Default::default()
            }
        )
        .unwrap()
        .bandwidth,
        Some(limit(50))
    );
}

#[test]
fn floor_is_refused_on_networks_switchyard_realises() {
    let net = host_bridge_network();
    let own = Bandwidth {
        inbound: Some(BandwidthLimit {
            average: Some(100),
            floor: Some(10),
            ..Default::default()
        }),
        outbound: None,
    };
    let err = effective_port(
        &net,
        &PortRequest {
            bandwidth: Some(&own),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.reason(), "BandwidthUnavailable");
    assert!(err.to_string().contains("not bridge"), "{err}");
}

#[test]
fn floor_admission_against_the_network_limit() {
    let floor = |f| Bandwidth {
        inbound: Some(BandwidthLimit {
            floor: Some(f),
            ..Default::default()
        }),
        outbound: None,
    };
    let mut net = NetworkSpec::default();
    assert_eq!(admit_floor(&net, 0, None), Ok(()));
    assert_eq!(
        admit_floor(&net, 0, Some(&floor(10))),
        Err(PortError::FloorWithoutNetworkLimit { floor: 10 })
    );
    net.bandwidth = Some(Bandwidth {
        inbound: Some(BandwidthLimit {
            average: Some(1000),
            peak: Some(800),
            ..Default::default()
        }),
        outbound: None,
    });
    assert_eq!(admit_floor(&net, 700, Some(&floor(100))), Ok(()));
    assert_eq!(
        admit_floor(&net, 750, Some(&floor(100))),
        Err(PortError::FloorOvercommit {
            floor: 100,
            total: 850,
            limit_kind: "peak",
            limit: 800,
        })
    );
    net.bandwidth
        .as_mut()
        .unwrap()
        .inbound
        .as_mut()
        .unwrap()
        .peak = None;
    assert_eq!(admit_floor(&net, 900, Some(&floor(100))), Ok(()));
    let err = admit_floor(&net, 901, Some(&floor(100))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inbound floor 100 would bring the network's guaranteed total to 1001, over its inbound \
         average of 1000; lower the floor or raise the network's limit"
    );
}

#[test]
fn a_qbh_portgroup_gives_its_private_ports_the_profile() {
    // EXPECTED.md: private + portgroup with 802.1Qbh; that the Qbh port then needs a free
    // device is switchyard_placement::exclusive's rule.
    let mut net = macvtap_network(ForwardMode::Private);
    net.portgroups = vec![PortGroup {
        virtualport: Some(VirtualPort {
            kind: Some(VirtualPortType::Qbh),
            profileid: Some("spongebob24".into()),
            ..Default::default()
        }),
        ..portgroup("qbh")
    }];
    let shared = effective_port(&net, &PortRequest::default()).unwrap();
    assert_eq!(shared.virtualport, None);
    let qbh = effective_port(
        &net,
        &PortRequest {
            portgroup: Some("qbh"),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        qbh.virtualport.and_then(|v| v.kind),
        Some(VirtualPortType::Qbh)
    );
    assert_eq!(qbh.connection, Connection::Macvtap(MacvtapMode::Private));
}

#[test]
fn isolated_nat_route_and_open_ports_attach_to_the_nodes_own_bridge() {
    for mode in [
        None,
        Some(ForwardMode::Nat),
        Some(ForwardMode::Route),
        Some(ForwardMode::Open),
    ] {
        let net = NetworkSpec {
            forward: mode.map(|mode| Forward {
                mode,
                ..Default::default()
            }),
            ..Default::default()
        };
        let port = effective_port(&net, &PortRequest::default()).unwrap();
        assert_eq!(port.connection, Connection::Bridge, "{mode:?}");
    }
}

#[test]
fn hostdev_is_unsupported() {
    let net = NetworkSpec {
        forward: Some(Forward {
            mode: ForwardMode::Hostdev,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = effective_port(&net, &PortRequest::default()).unwrap_err();
    assert_eq!(err.reason(), "Unsupported");
    assert!(
        err.to_string()
            .starts_with("forward mode 'hostdev' is not realised by switchyard"),
        "{err}"
    );
}

#[test]
fn macvtap_without_a_pool_is_an_error() {
    let net = NetworkSpec {
        forward: Some(Forward {
            mode: ForwardMode::Vepa,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = effective_port(&net, &PortRequest::default()).unwrap_err();
    assert_eq!(err, PortError::NoDevicePool { mode: "vepa" });
    let mut with_pf = net.clone();
    with_pf.forward.as_mut().unwrap().pf = Some("ens1f0".into());
    assert_eq!(
        effective_port(&with_pf, &PortRequest::default())
            .unwrap()
            .connection,
        Connection::Macvtap(MacvtapMode::Vepa)
    );
}

#[test]
fn requests_borrow_from_ports_and_interfaces() {
    let spec = NetworkPortSpec {
        network: "n".into(),
        portgroup: Some("pg".into()),
        node: "node-1".into(),
        mac: "52:54:00:00:00:01".into(),
        trust_guest_rx_filters: Some(true),
        vlan: Some(vlan(&[5])),
        ..Default::default()
    };
    let request = PortRequest::from_port(&spec);
    assert_eq!(request.portgroup, Some("pg"));
    assert_eq!(request.trust_guest_rx_filters, Some(true));
    assert_eq!(request.vlan, Some(&vlan(&[5])));

    let interface = InterfaceRequest {
        network: "n".into(),
        portgroup: Some("pg".into()),
        ..Default::default()
    };
    let request = PortRequest::from_interface(&interface);
    assert_eq!(request.portgroup, Some("pg"));
    assert_eq!(request.bandwidth, None);
}

#[test]
fn explanation_says_where_settings_came_from() {
    let mut net = macvtap_network(ForwardMode::Passthrough);
    net.vlan = Some(vlan(&[10]));
    net.trust_guest_rx_filters = Some(true);
    net.portgroups = vec![PortGroup {
        default: Some(true),
        vlan: Some(vlan(&[20])),
        ..portgroup("pg")
    }];
    let explained = explain_port(&net, &PortRequest::default()).unwrap();
    assert!(!explained.portgroup_named);
    assert_eq!(explained.vlan_from, Some(Origin::Portgroup("pg".into())));
    assert_eq!(explained.trust_from, Some(Origin::Network));
    assert_eq!(explained.bandwidth_from, None);
    assert_eq!(
        explained.port,
        effective_port(&net, &PortRequest::default()).unwrap()
    );
}
