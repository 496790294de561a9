use super::*;
use crate::bandwidth::{HostView, plan_port};

fn limit(average: u64, peak: Option<u64>, burst: Option<u64>) -> BandwidthLimit {
    BandwidthLimit {
        average: Some(average),
        peak,
        burst,
        floor: None,
    }
}

fn both_ways() -> Bandwidth {
    Bandwidth {
        inbound: Some(limit(1250, Some(2500), Some(64))),
        outbound: Some(limit(625, Some(900), None)),
    }
}

fn qdisc(kind: &str, handle: u32, parent: u32) -> ObservedQdisc {
    ObservedQdisc {
        kind: kind.into(),
        handle,
        parent,
    }
}

/// What the kernel shows after the agent applied `shaping` on a kernel with every module.
fn full_dump(shaping: &PortShaping) -> ObservedTc {
    let mut tc = ObservedTc::default();
    if let Some(class) = &shaping.egress {
        tc.qdiscs.push(qdisc("htb", ROOT_HANDLE, ROOT_PARENT));
        tc.qdiscs.push(qdisc("sfq", LEAF_HANDLE, CLASS_ID));
        tc.classes.push(ObservedClass {
            kind: "htb".into(),
            handle: CLASS_ID,
            // As the kernel reports a class directly under the root qdisc.
            parent: ROOT_PARENT,
            htb: Some(HtbParameters {
                rate: class.rate,
                ceil: class.ceil.unwrap_or(class.rate),
                buffer: 0,
                quantum: class.quantum,
            }),
        });
        tc.filters.push(ObservedFilter {
            kind: "fw".into(),
            parent: ROOT_HANDLE,
            prio: 1,
            classid: Some(1),
            police: None,
        });
    } else {
        tc.qdiscs.push(qdisc("noqueue", 0, ROOT_PARENT));
    }
    if let Some(police) = &shaping.ingress {
        tc.qdiscs
            .push(qdisc("ingress", INGRESS_HANDLE, 0xffff_fff1));
        tc.filters.push(ObservedFilter {
            kind: "u32".into(),
            parent: INGRESS_HANDLE,
            prio: 49152,
            classid: Some(1),
            police: Some((police.rate, 0)),
        });
    }
    tc
}

#[test]
fn a_link_showing_the_plan_is_adopted_and_absent_optional_parts_are_named() {
    let shaping = plan_port(Some(&both_ways()), HostView::Swapped)
        .unwrap()
        .unwrap();
    let full = full_dump(&shaping);
    assert_eq!(adoptable(&full, Some(&shaping)), Some(vec![]));

    let mut without_sfq_and_fw = full.clone();
    without_sfq_and_fw.qdiscs.retain(|q| q.kind != "sfq");
    without_sfq_and_fw.filters.retain(|f| f.kind != "fw");
    assert_eq!(
        adoptable(&without_sfq_and_fw, Some(&shaping)),
        Some(vec![MissingTcFeature::Sfq, MissingTcFeature::Fw])
    );

    let mut without_police = full.clone();
    without_police
        .filters
        .retain(|f| f.parent != INGRESS_HANDLE);
    assert_eq!(
        adoptable(&without_police, Some(&shaping)),
        Some(vec![MissingTcFeature::Police])
    );
}

#[test]
fn a_link_showing_another_plan_or_leftovers_is_set_anew() {
    let shaping = plan_port(Some(&both_ways()), HostView::Swapped)
        .unwrap()
        .unwrap();
    let full = full_dump(&shaping);

    let slower = plan_port(
        Some(&Bandwidth {
            inbound: Some(limit(1000, Some(2500), Some(64))),
            ..both_ways()
        }),
        HostView::Swapped,
    )
    .unwrap()
    .unwrap();
    assert_eq!(adoptable(&full, Some(&slower)), None, "another rate");

    let mut other_police = full.clone();
    other_police.filters.last_mut().unwrap().police = Some((1, 0));
    assert_eq!(adoptable(&other_police, Some(&shaping)), None);

    // Shaping left from a spec that has since dropped its bandwidth.
    assert_eq!(adoptable(&full, None), None);
    let inbound_only = plan_port(
        Some(&Bandwidth {
            outbound: None,
            ..both_ways()
        }),
        HostView::Swapped,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        adoptable(&full, Some(&inbound_only)),
        None,
        "a stale ingress"
    );

    // A bare link is adopted as "nothing to do" only when nothing is wanted.
    let bare = full_dump(&PortShaping {
        egress: None,
        ingress: None,
        view: HostView::Swapped,
    });
    assert_eq!(adoptable(&bare, None), Some(vec![]));
    assert_eq!(adoptable(&bare, Some(&shaping)), None);
}

#[test]
fn actual_claims_what_the_kernel_enforces_per_direction() {
    let requested = Bandwidth {
        inbound: Some(BandwidthLimit {
            floor: Some(10),
            ..limit(1250, Some(2500), Some(64))
        }),
        outbound: Some(limit(625, Some(900), Some(32))),
    };
    let bridge_port = plan_port(Some(&requested), HostView::Swapped)
        .unwrap()
        .unwrap();
    assert_eq!(
        applied_bandwidth(Some(&requested), Some(&bridge_port), &[]),
        Some(Bandwidth {
            inbound: Some(limit(1250, Some(2500), Some(64))),
            outbound: Some(limit(625, None, Some(32))),
        }),
        "the HTB side keeps its peak, police drops it, floor is the bridge's"
    );
    let macvtap = plan_port(Some(&requested), HostView::Shared)
        .unwrap()
        .unwrap();
    assert_eq!(
        applied_bandwidth(
            Some(&requested),
            Some(&macvtap),
            &[MissingTcFeature::Police]
        ),
        Some(Bandwidth {
            inbound: None,
            outbound: Some(limit(625, Some(900), Some(32))),
        }),
        "a macvtap shapes what the guest sends; without police nothing limits what it receives"
    );
    assert_eq!(
        applied_bandwidth(
            Some(&requested),
            Some(&bridge_port),
            &[MissingTcFeature::Sfq]
        ),
        applied_bandwidth(Some(&requested), Some(&bridge_port), &[]),
        "without sfq the limits hold"
    );
    assert_eq!(applied_bandwidth(Some(&requested), None, &[]), None);
}
