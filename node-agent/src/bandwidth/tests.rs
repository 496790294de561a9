use super::*;

fn limit(average: u64, peak: Option<u64>, burst: Option<u64>) -> BandwidthLimit {
    BandwidthLimit {
        average: Some(average),
        peak,
        burst,
        floor: None,
    }
}

fn commands(bandwidth: &Bandwidth) -> Vec<String> {
    plan_port(Some(bandwidth), HostView::Swapped)
        .unwrap()
        .map(|shaping| shaping.libvirt_tc_commands("eth0"))
        .unwrap_or_default()
}

/// The expected command sets of libvirt's tests/virnetdevbandwidthtest.c (`DO_TEST_SET`,
/// swapped as for a tap), without the `tc` binary's path.
#[test]
fn no_bandwidth_and_an_empty_one_install_nothing() {
    assert_eq!(plan_port(None, HostView::Swapped), Ok(None));
    assert_eq!(
        plan_port(Some(&Bandwidth::default()), HostView::Shared),
        Ok(None)
    );
}

#[test]
fn inbound_average_1024_is_libvirts_htb_class() {
    let bandwidth = Bandwidth {
        inbound: Some(limit(1024, None, None)),
        outbound: None,
    };
    assert_eq!(
        commands(&bandwidth),
        [
            "qdisc del dev eth0 root",
            "qdisc del dev eth0 ingress",
            "qdisc add dev eth0 root handle 1: htb default 1",
            "class add dev eth0 parent 1: classid 1:1 htb rate 1024kbps quantum 87",
            "qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10",
            "filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
        ]
    );
}

#[test]
fn outbound_average_1024_is_libvirts_police_filter_with_the_average_as_burst() {
    let bandwidth = Bandwidth {
        inbound: None,
        outbound: Some(limit(1024, None, None)),
    };
    assert_eq!(
        commands(&bandwidth),
        [
            "qdisc del dev eth0 root",
            "qdisc del dev eth0 ingress",
            "qdisc add dev eth0 ingress",
            "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 police rate 1024kbps burst 1024kb mtu 64kb drop flowid :1",
        ]
    );
}

#[test]
fn every_attribute_in_both_directions_matches_libvirt_and_floor_stays_off_the_port() {
    let bandwidth = Bandwidth {
        inbound: Some(BandwidthLimit {
            floor: Some(3),
            ..limit(1, Some(2), Some(4))
        }),
        outbound: Some(limit(5, Some(6), Some(7))),
    };
    assert_eq!(
        commands(&bandwidth),
        [
            "qdisc del dev eth0 root",
            "qdisc del dev eth0 ingress",
            "qdisc add dev eth0 root handle 1: htb default 1",
            "class add dev eth0 parent 1: classid 1:1 htb rate 1kbps ceil 2kbps burst 4kb quantum 1",
            "qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10",
            "filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
            "qdisc add dev eth0 ingress",
            "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 police rate 5kbps burst 7kb mtu 64kb drop flowid :1",
        ]
    );
}

#[test]
fn the_largest_average_caps_the_police_burst_at_what_tc_can_hold() {
    let bandwidth = Bandwidth {
        inbound: Some(limit(4294967295, None, None)),
        outbound: Some(limit(4294967295, None, None)),
    };
    assert_eq!(
        commands(&bandwidth),
        [
            "qdisc del dev eth0 root",
            "qdisc del dev eth0 ingress",
            "qdisc add dev eth0 root handle 1: htb default 1",
            "class add dev eth0 parent 1: classid 1:1 htb rate 4294967295kbps quantum 366503875",
            "qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10",
            "filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
            "qdisc add dev eth0 ingress",
            "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 police rate 4294967295kbps burst 4194303kb mtu 64kb drop flowid :1",
        ]
    );
}

#[test]
fn the_plan_holds_the_bytes_tc_reads_from_libvirts_units() {
    let shaping = plan_port(
        Some(&Bandwidth {
            inbound: Some(limit(1, Some(2), Some(4))),
            outbound: Some(limit(5, None, Some(7))),
        }),
        HostView::Swapped,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        shaping,
        PortShaping {
            egress: Some(HtbClass {
                rate: 1000,
                ceil: Some(2000),
                burst: Some(4096),
                quantum: 1,
            }),
            ingress: Some(Police {
                rate: 5000,
                burst: 7168,
            }),
            view: HostView::Swapped,
        }
    );
}

/// libvirt's `direct` interfaces share the guest's view (`virDomainNetTypeSharesHostView`): a
/// macvtap transmits what the guest sends, so the outbound limit is its HTB class and the
/// inbound one its ingress police; errors name the field the limit came from.
#[test]
fn a_macvtap_shapes_the_outbound_limit_and_polices_the_inbound_one() {
    let bandwidth = Bandwidth {
        inbound: Some(limit(5, None, Some(7))),
        outbound: Some(limit(1, Some(2), Some(4))),
    };
    let shaping = plan_port(Some(&bandwidth), HostView::Shared)
        .unwrap()
        .unwrap();
    assert_eq!(
        (shaping.egress, shaping.ingress),
        (
            Some(HtbClass {
                rate: 1000,
                ceil: Some(2000),
                burst: Some(4096),
                quantum: 1,
            }),
            Some(Police {
                rate: 5000,
                burst: 7168,
            })
        )
    );
    let outbound_only = Bandwidth {
        inbound: None,
        outbound: Some(limit(1250, None, None)),
    };
    let shaping = plan_port(Some(&outbound_only), HostView::Shared)
        .unwrap()
        .unwrap();
    assert!(shaping.ingress.is_none() && shaping.egress.is_some());
    let huge_burst = Bandwidth {
        inbound: None,
        outbound: Some(limit(10, None, Some(u64::from(u32::MAX)))),
    };
    let err = plan_port(Some(&huge_burst), HostView::Shared).unwrap_err();
    assert!(
        err.to_string().starts_with("bandwidth.outbound.burst: "),
        "{err}"
    );
}

#[test]
fn a_floor_only_inbound_puts_nothing_on_the_port() {
    let bandwidth = Bandwidth {
        inbound: Some(BandwidthLimit {
            floor: Some(100),
            ..Default::default()
        }),
        outbound: None,
    };
    assert_eq!(plan_port(Some(&bandwidth), HostView::Swapped), Ok(None));
}

#[test]
fn limits_the_kernel_cannot_take_are_refused_naming_the_field() {
    let outbound_without_average = Bandwidth {
        inbound: None,
        outbound: Some(BandwidthLimit {
            peak: Some(10),
            ..Default::default()
        }),
    };
    let err = plan_port(Some(&outbound_without_average), HostView::Swapped).unwrap_err();
    assert!(
        err.to_string().starts_with("bandwidth.outbound.average: "),
        "{err}"
    );

    let huge_burst = Bandwidth {
        inbound: Some(limit(10, None, Some(u64::from(u32::MAX)))),
        outbound: None,
    };
    let err = plan_port(Some(&huge_burst), HostView::Swapped).unwrap_err();
    assert!(
        err.to_string().starts_with("bandwidth.inbound.burst: "),
        "{err}"
    );

    let huge_rate = Bandwidth {
        inbound: None,
        outbound: Some(limit(u64::MAX, None, None)),
    };
    let err = plan_port(Some(&huge_rate), HostView::Swapped).unwrap_err();
    assert!(
        err.to_string().starts_with("bandwidth.outbound.average: "),
        "{err}"
    );
}
