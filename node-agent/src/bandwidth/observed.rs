//! What the kernel reports of a port's traffic control, and what the agent concludes from it:
//! whether a link already carries a plan (adoption after a restart, no flap), which optional
//! parts the kernel lacks, and what the port's `status.actual` may claim. Pure; the dump that
//! fills [`ObservedTc`] is [`crate::netlink::LinkManager::observe_tc`].

use switchyard_crds::{Bandwidth, BandwidthLimit};

use super::{CLASS_ID, Direction, LEAF_HANDLE, PortShaping, ROOT_HANDLE};

/// The ingress qdisc's handle, `ffff:`.
pub const INGRESS_HANDLE: u32 = 0xffff_0000;
/// `TC_H_ROOT`, the parent of a root qdisc.
pub const ROOT_PARENT: u32 = 0xffff_ffff;

/// A traffic-control module libvirt's shaping uses that the running kernel does not have
/// (the kernel answers `ENOENT` for an unknown qdisc, classifier or action kind).
///
/// libvirt fails the interface when any `tc` command fails. The agent follows it where the
/// limit itself would be lost ([`MissingTcFeature::Police`]: the port fails) and installs the
/// rest with a condition where the limit still holds (sfq, fw).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MissingTcFeature {
    /// `sch_sfq`: the class keeps the kernel's default fifo leaf; its rate is unchanged.
    Sfq,
    /// `cls_fw`: libvirt's mark filter only re-selects the default class 1:1, so shaping is
    /// unchanged without it.
    Fw,
    /// `act_police`: the received direction is not limited.
    Police,
}

impl MissingTcFeature {
    /// The kernel option that provides it.
    pub fn kernel_option(self) -> &'static str {
        match self {
            Self::Sfq => "CONFIG_NET_SCH_SFQ",
            Self::Fw => "CONFIG_NET_CLS_FW",
            Self::Police => "CONFIG_NET_ACT_POLICE",
        }
    }

    /// Whether the limit still holds without it (then the port is realised with a condition).
    pub fn limit_holds_without(self) -> bool {
        !matches!(self, Self::Police)
    }

    /// What its absence means for the port, for the port's condition.
    pub fn consequence(self) -> &'static str {
        match self {
            Self::Sfq => {
                "sfq unavailable: average/peak/burst applied without fair queueing between the port's flows"
            }
            Self::Fw => {
                "fw classifier unavailable: libvirt's mark filter is not installed; all traffic still falls into class 1:1 by default"
            }
            Self::Police => {
                "police action unavailable: the limit on received traffic cannot be enforced"
            }
        }
    }
}

/// One qdisc as dumped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedQdisc {
    /// `htb`, `sfq`, `ingress`, `noqueue`...
    pub kind: String,
    /// Its handle (`1:` is `0x0001_0000`).
    pub handle: u32,
    /// Its parent (`TC_H_ROOT` for a root qdisc, a class id for a leaf).
    pub parent: u32,
}

/// One class as dumped, with HTB's rates when it is an HTB class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedClass {
    /// `htb`.
    pub kind: String,
    /// Its class id (`1:1` is `0x0001_0001`).
    pub handle: u32,
    /// Its parent qdisc or class.
    pub parent: u32,
    /// `TCA_HTB_PARMS` (and the 64-bit rates when present).
    pub htb: Option<HtbParameters>,
}

/// What an HTB class was configured with, in the kernel's units (bytes/s, psched ticks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtbParameters {
    /// `rate`.
    pub rate: u64,
    /// `ceil`.
    pub ceil: u64,
    /// `buffer`, in ticks: the burst at the rate.
    pub buffer: u32,
    /// `quantum`.
    pub quantum: u32,
}

/// One filter as dumped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFilter {
    /// `fw`, `u32`...
    pub kind: String,
    /// The qdisc it hangs off.
    pub parent: u32,
    /// Its priority (`pref`).
    pub prio: u16,
    /// The class it sends to, when it says.
    pub classid: Option<u32>,
    /// A u32 filter's police action: rate (bytes/s) and burst (ticks).
    pub police: Option<(u64, u32)>,
}

/// A link's traffic-control objects, as one dump of qdiscs, classes and filters shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTc {
    /// Every qdisc of the link (including the kernel's default `noqueue` or `mq`).
    pub qdiscs: Vec<ObservedQdisc>,
    /// Every class.
    pub classes: Vec<ObservedClass>,
    /// The filters of the root qdisc and of the ingress qdisc.
    pub filters: Vec<ObservedFilter>,
}

impl ObservedTc {
    /// The qdisc with this handle.
    pub fn qdisc(&self, handle: u32) -> Option<&ObservedQdisc> {
        self.qdiscs.iter().find(|q| q.handle == handle)
    }

    /// The class with this id.
    pub fn class(&self, handle: u32) -> Option<&ObservedClass> {
        self.classes.iter().find(|c| c.handle == handle)
    }

    /// The filters of the qdisc `parent`.
    pub fn filters_of(&self, parent: u32) -> impl Iterator<Item = &ObservedFilter> {
        self.filters.iter().filter(move |f| f.parent == parent)
    }

    fn has_root_htb(&self) -> bool {
        self.qdisc(ROOT_HANDLE)
            .is_some_and(|q| q.kind == "htb" && q.parent == ROOT_PARENT)
    }

    fn has_ingress(&self) -> bool {
        self.qdisc(INGRESS_HANDLE)
            .is_some_and(|q| q.kind == "ingress")
    }
}

/// Whether the link already carries `shaping` (`None`: nothing of libvirt's shaping at all),
/// and then which optional parts are absent from it. `None` means the link must be set anew.
///
/// The essential parts must match exactly: the root HTB and class 1:1 with the plan's rate,
/// ceil and quantum, and the ingress qdisc with a police filter at the plan's rate. The sfq
/// leaf and the fw filter may be absent (a kernel without them), which the answer lists.
pub fn adoptable(
    observed: &ObservedTc,
    shaping: Option<&PortShaping>,
) -> Option<Vec<MissingTcFeature>> {
    let mut missing = Vec::new();
    let egress = shaping.and_then(|s| s.egress.as_ref());
    match egress {
        None if observed.has_root_htb() => return None,
        None => {}
        Some(class) => {
            if !observed.has_root_htb() {
                return None;
            }
            let observed_class = observed.class(CLASS_ID)?;
            let htb = observed_class.htb?;
            let wanted_ceil = class.ceil.unwrap_or(class.rate);
            // The kernel reports a class under the qdisc itself with parent `TC_H_ROOT`.
            if ![ROOT_HANDLE, ROOT_PARENT].contains(&observed_class.parent)
                || htb.rate != class.rate
                || htb.ceil != wanted_ceil
                || htb.quantum != class.quantum
                || observed.classes.len() != 1
            {
                return None;
            }
            if observed.qdisc(LEAF_HANDLE).is_none_or(|q| q.kind != "sfq") {
                missing.push(MissingTcFeature::Sfq);
            }
            if !observed
                .filters_of(ROOT_HANDLE)
                .any(|f| f.kind == "fw" && f.prio == 1)
            {
                missing.push(MissingTcFeature::Fw);
            }
        }
    }
    match shaping.and_then(|s| s.ingress.as_ref()) {
        None if observed.has_ingress() => return None,
        None => {}
        Some(police) => {
            if !observed.has_ingress() {
                return None;
            }
            let filters: Vec<_> = observed.filters_of(INGRESS_HANDLE).collect();
            match filters.as_slice() {
                [] => missing.push(MissingTcFeature::Police),
                [filter] if filter.police.is_some_and(|(rate, _)| rate == police.rate) => {}
                _ => return None,
            }
        }
    }
    Some(missing)
}

/// What a port's `status.actual.bandwidth` may claim once `shaping` is on its link with
/// `missing` absent: per direction, the attributes the kernel enforces. An HTB class enforces
/// average, peak and burst; libvirt's police enforces average and burst only (it sets no peak
/// rate); a floor is the network bridge's, never the port's, and is added by its caller.
pub fn applied_bandwidth(
    requested: Option<&Bandwidth>,
    shaping: Option<&PortShaping>,
    missing: &[MissingTcFeature],
) -> Option<Bandwidth> {
    let (requested, shaping) = (requested?, shaping?);
    let mut applied = Bandwidth::default();
    let mut set = |direction: Direction, limit: BandwidthLimit| match direction {
        Direction::Inbound => applied.inbound = Some(limit),
        Direction::Outbound => applied.outbound = Some(limit),
    };
    if shaping.egress.is_some() {
        let direction = shaping.view.transmit_direction();
        if let Some(limit) = direction.limit(requested) {
            set(
                direction,
                BandwidthLimit {
                    floor: None,
                    ..limit.clone()
                },
            );
        }
    }
    if shaping.ingress.is_some() && !missing.contains(&MissingTcFeature::Police) {
        let direction = shaping.view.receive_direction();
        if let Some(limit) = direction.limit(requested) {
            set(
                direction,
                BandwidthLimit {
                    average: limit.average,
                    burst: limit.burst,
                    peak: None,
                    floor: None,
                },
            );
        }
    }
    (applied != Bandwidth::default()).then_some(applied)
}

#[cfg(test)]
mod tests;
