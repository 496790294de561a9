//! A port's bandwidth on its host-side link, over rtnetlink's traffic-control messages (the
//! requests `tc` would send for libvirt's command lines; no `tc` processes). The payloads
//! netlink-packet-route does not model come from [`crate::bandwidth::wire`].

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, Nla,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::tc::{
    TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcOption, TcU32Key, TcU32Selector,
    TcU32SelectorFlags,
};

use super::{LinkManager, NetlinkError, errno};
use crate::bandwidth::observed::INGRESS_HANDLE;
use crate::bandwidth::observed::{
    HtbParameters, ObservedClass, ObservedFilter, ObservedQdisc, ObservedTc,
};
use crate::bandwidth::{CLASS_ID, LEAF_HANDLE, PortShaping, ROOT_HANDLE, wire};

/// `TCA_OPTIONS`, for sfq's flat struct.
const TCA_OPTIONS: u16 = 2;
/// `ETH_P_ALL` in network byte order, as `protocol all` puts it in `tcm_info`.
const PROTOCOL_ALL: u16 = 0x0003u16.to_be();
/// `ENOENT`: nothing to delete.
const ENOENT: i32 = 2;
/// `EINVAL`: deleting the default root qdisc (there is none of ours).
const EINVAL: i32 = 22;

pub use crate::bandwidth::MissingTcFeature;

impl LinkManager {
    /// Replaces whatever root and ingress qdiscs `ifindex` has with `shaping` (libvirt's
    /// `virNetDevBandwidthSet`: clear, then add); `None` only clears. Returns the parts the
    /// kernel has no module for, in the order met.
    pub async fn set_port_bandwidth(
        &self,
        ifindex: u32,
        shaping: Option<&PortShaping>,
    ) -> Result<Vec<MissingTcFeature>, NetlinkError> {
        self.clear_port_bandwidth(ifindex).await?;
        let mut missing = Vec::new();
        let Some(shaping) = shaping else {
            return Ok(missing);
        };
        let index = i32::try_from(ifindex).expect("ifindexes are positive i32s");
        if let Some(class) = &shaping.egress {
            let options = |attrs: Vec<(u16, Vec<u8>)>| {
                TcAttribute::Options(
                    attrs
                        .into_iter()
                        .map(|(kind, value)| TcOption::Other(DefaultNla::new(kind, value)))
                        .collect(),
                )
            };
            self.tc_create(
                "adding the root htb qdisc",
                RouteNetlinkMessage::NewQueueDiscipline(tc_message(
                    index,
                    TcHandle::ROOT,
                    ROOT_HANDLE,
                    0,
                    vec![
                        TcAttribute::Kind("htb".into()),
                        options(wire::htb_qdisc_options(1)),
                    ],
                )),
            )
            .await?;
            self.tc_create(
                "adding htb class 1:1",
                RouteNetlinkMessage::NewTrafficClass(tc_message(
                    index,
                    TcHandle::from(ROOT_HANDLE),
                    CLASS_ID,
                    0,
                    vec![
                        TcAttribute::Kind("htb".into()),
                        options(wire::htb_class_options(class)),
                    ],
                )),
            )
            .await?;
            self.tc_create_optional(
                MissingTcFeature::Sfq,
                &mut missing,
                "adding the sfq leaf qdisc",
                RouteNetlinkMessage::NewQueueDiscipline(tc_message(
                    index,
                    TcHandle::from(CLASS_ID),
                    LEAF_HANDLE,
                    0,
                    vec![
                        TcAttribute::Kind("sfq".into()),
                        TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, wire::sfq_options())),
                    ],
                )),
            )
            .await?;
            self.tc_create_optional(
                MissingTcFeature::Fw,
                &mut missing,
                "adding the fw filter",
                RouteNetlinkMessage::NewTrafficFilter(tc_message(
                    index,
                    TcHandle::from(ROOT_HANDLE),
                    1,
                    (1 << 16) | u32::from(PROTOCOL_ALL),
                    vec![TcAttribute::Kind("fw".into()), options(wire::fw_options(1))],
                )),
            )
            .await?;
        }
        if let Some(police) = &shaping.ingress {
            self.tc_create(
                "adding the ingress qdisc",
                RouteNetlinkMessage::NewQueueDiscipline(tc_message(
                    index,
                    TcHandle::INGRESS,
                    0xffff_0000,
                    0,
                    vec![TcAttribute::Kind("ingress".into())],
                )),
            )
            .await?;
            let mut match_all = TcU32Selector::default();
            match_all.flags = TcU32SelectorFlags::Terminal;
            match_all.nkeys = 1;
            match_all.keys = vec![TcU32Key::default()];
            self.tc_create_optional(
                MissingTcFeature::Police,
                &mut missing,
                "adding the ingress police filter",
                RouteNetlinkMessage::NewTrafficFilter(tc_message(
                    index,
                    TcHandle::from(0xffff_0000),
                    0,
                    u32::from(PROTOCOL_ALL),
                    vec![
                        TcAttribute::Kind("u32".into()),
                        TcAttribute::Options(vec![
                            TcOption::U32(TcFilterU32Option::Police(wire::police_attributes(
                                police,
                            ))),
                            TcOption::U32(TcFilterU32Option::ClassId(TcHandle::from(1))),
                            TcOption::U32(TcFilterU32Option::Selector(match_all)),
                        ]),
                    ],
                )),
            )
            .await?;
        }
        Ok(missing)
    }

    /// Deletes the root and ingress qdiscs of `ifindex` (their classes and filters go with
    /// them); a link with neither is left as it is.
    pub async fn clear_port_bandwidth(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let index = i32::try_from(ifindex).expect("ifindexes are positive i32s");
        for (what, parent) in [("root", TcHandle::ROOT), ("ingress", TcHandle::INGRESS)] {
            let message = RouteNetlinkMessage::DelQueueDiscipline(tc_message(
                index,
                parent,
                0,
                0,
                Vec::new(),
            ));
            match self.tc_request(message, 0).await {
                Ok(()) => {}
                Err(error) if matches!(errno(&error), Some(ENOENT | EINVAL)) => {}
                Err(error) => {
                    return Err(NetlinkError::kernel(
                        format!("deleting the {what} qdisc of ifindex {ifindex}"),
                        error,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Dumps the qdiscs, classes and filters (of the root and the ingress qdisc) of `ifindex`,
    /// as `tc qdisc/class/filter show` would, over rtnetlink.
    pub async fn observe_tc(&self, ifindex: u32) -> Result<ObservedTc, NetlinkError> {
        let index = i32::try_from(ifindex).expect("ifindexes are positive i32s");
        let dump_error = |what: &str| {
            let what = format!("dumping the {what} of ifindex {ifindex}");
            move |error| NetlinkError::kernel(what, error)
        };
        let mut observed = ObservedTc::default();
        // The kernel's qdisc dump lists every link of the namespace whatever the ifindex
        // asked for; the agent reads links back only when it does not know what they carry
        // (after a restart), so the cost stays there.
        let qdiscs: Vec<TcMessage> = self
            .handle
            .qdisc()
            .get()
            .index(index)
            .execute()
            .try_collect()
            .await
            .map_err(dump_error("qdiscs"))?;
        observed.qdiscs = qdiscs
            .iter()
            .filter(|m| m.header.index == index)
            .map(|m| ObservedQdisc {
                kind: kind_of(m),
                handle: m.header.handle.into(),
                parent: m.header.parent.into(),
            })
            .collect();
        let classes: Vec<TcMessage> = self
            .handle
            .traffic_class(index)
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(dump_error("classes"))?;
        observed.classes = classes
            .iter()
            .filter(|m| m.header.index == index)
            .map(|m| ObservedClass {
                kind: kind_of(m),
                handle: m.header.handle.into(),
                parent: m.header.parent.into(),
                htb: htb_parameters(m),
            })
            .collect();
        // Parent 0 lists the root qdisc's filters; the ingress qdisc's are asked for by
        // its handle, and only when it exists.
        let has_ingress = observed.qdisc(INGRESS_HANDLE).is_some();
        let mut requests = vec![(self.handle.traffic_filter(index).get(), None)];
        if has_ingress {
            // Asked for as `tc` does (`ffff:fff2`); reported as the qdisc they hang off.
            requests.push((
                self.handle.traffic_filter(index).get().ingress(),
                Some(INGRESS_HANDLE),
            ));
        }
        for (request, parent) in requests {
            let filters: Vec<TcMessage> = request
                .execute()
                .try_collect()
                .await
                .map_err(dump_error("filters"))?;
            observed.filters.extend(
                filters
                    .iter()
                    .filter(|m| m.header.index == index)
                    .filter_map(filter_of)
                    .map(|mut filter| {
                        if let Some(parent) = parent {
                            filter.parent = parent;
                        }
                        filter
                    }),
            );
        }
        Ok(observed)
    }

    async fn tc_create(
        &self,
        operation: &str,
        message: RouteNetlinkMessage,
    ) -> Result<(), NetlinkError> {
        self.tc_request(message, NLM_F_CREATE | NLM_F_EXCL)
            .await
            .map_err(|error| NetlinkError::kernel(operation, error))
    }

    /// A create whose kind the kernel may lack: `ENOENT` records it as missing.
    async fn tc_create_optional(
        &self,
        feature: MissingTcFeature,
        missing: &mut Vec<MissingTcFeature>,
        operation: &str,
        message: RouteNetlinkMessage,
    ) -> Result<(), NetlinkError> {
        match self.tc_request(message, NLM_F_CREATE | NLM_F_EXCL).await {
            Ok(()) => Ok(()),
            Err(error) if errno(&error) == Some(ENOENT) => {
                missing.push(feature);
                Ok(())
            }
            Err(error) => Err(NetlinkError::kernel(operation, error)),
        }
    }

    async fn tc_request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), rtnetlink::Error> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut responses = self.handle.clone().request(request)?;
        while let Some(response) = responses.next().await {
            if let rtnetlink::packet_core::NetlinkPayload::Error(error) = response.payload
                && error.code.is_some()
            {
                return Err(rtnetlink::Error::NetlinkError(error));
            }
        }
        Ok(())
    }
}

fn tc_message(
    index: i32,
    parent: TcHandle,
    handle: u32,
    info: u32,
    attributes: Vec<TcAttribute>,
) -> TcMessage {
    let mut message = TcMessage::with_index(index);
    message.header.parent = parent;
    message.header.handle = TcHandle::from(handle);
    message.header.info = info;
    message.attributes = attributes;
    message
}

fn kind_of(message: &TcMessage) -> String {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            TcAttribute::Kind(kind) => Some(kind.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn options(message: &TcMessage) -> &[TcOption] {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            TcAttribute::Options(options) => Some(options.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The payload of the nested attribute `kind` of a kind netlink-packet-route does not model:
/// it leaves such a kind's whole `TCA_OPTIONS` as one unparsed attribute, whose payload holds
/// the nested ones.
fn raw_option(options: &[TcOption], kind: u16) -> Option<Vec<u8>> {
    options.iter().find_map(|option| match option {
        TcOption::Other(nla) if nla.kind() == TCA_OPTIONS => {
            let mut value = vec![0; nla.value_len()];
            nla.emit_value(&mut value);
            nested(&value)
                .find(|(nested_kind, _)| *nested_kind == kind)
                .map(|(_, payload)| payload.to_vec())
        }
        _ => None,
    })
}

/// The attributes packed in a netlink attribute payload: (type, payload).
fn nested(mut rest: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = &rest[((len + 3) & !3).min(rest.len())..];
        Some((kind, payload))
    })
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// `TCA_HTB_PARMS` (`struct tc_htb_opt`: rate and ceil ratespecs, buffer, cbuffer, quantum),
/// with the 64-bit rates when the kernel adds them.
fn htb_parameters(message: &TcMessage) -> Option<HtbParameters> {
    if kind_of(message) != "htb" {
        return None;
    }
    let options = options(message);
    let parms = raw_option(options, wire::TCA_HTB_PARMS)?;
    let rate64 = raw_option(options, wire::TCA_HTB_RATE64).and_then(|b| u64_of(&b));
    let ceil64 = raw_option(options, wire::TCA_HTB_CEIL64).and_then(|b| u64_of(&b));
    Some(HtbParameters {
        rate: rate64.unwrap_or(u64::from(u32_at(&parms, 8)?)),
        ceil: ceil64.unwrap_or(u64::from(u32_at(&parms, 20)?)),
        buffer: u32_at(&parms, 24)?,
        quantum: u32_at(&parms, 32)?,
    })
}

/// The police action's rate and burst from the nested `TCA_POLICE_*` attributes
/// (`struct tc_police`: burst at 12, the rate's ratespec at 20).
fn police_of(attributes: &[u8]) -> Option<(u64, u32)> {
    let (mut rate, mut burst, mut rate64) = (None, None, None);
    for (kind, payload) in nested(attributes) {
        match kind {
            wire::TCA_POLICE_TBF => {
                burst = u32_at(payload, 12);
                rate = u32_at(payload, 28).map(u64::from);
            }
            wire::TCA_POLICE_RATE64 => rate64 = u64_of(payload),
            _ => {}
        }
    }
    Some((rate64.or(rate)?, burst?))
}

/// A filter that sends somewhere or polices; the heads and hash tables a dump also lists
/// (fw's handle-0 entry, u32's `800:` table) carry neither and are left out.
fn filter_of(message: &TcMessage) -> Option<ObservedFilter> {
    let kind = kind_of(message);
    let options = options(message);
    let (classid, police) = match kind.as_str() {
        "fw" => (
            raw_option(options, wire::TCA_FW_CLASSID).and_then(|b| u32_at(&b, 0)),
            None,
        ),
        "u32" => options
            .iter()
            .fold((None, None), |(classid, police), option| match option {
                TcOption::U32(TcFilterU32Option::ClassId(handle)) => {
                    (Some(u32::from(*handle)), police)
                }
                TcOption::U32(TcFilterU32Option::Police(attributes)) => {
                    (classid, police_of(attributes))
                }
                _ => (classid, police),
            }),
        _ => (None, None),
    };
    if classid.is_none() && police.is_none() {
        return None;
    }
    Some(ObservedFilter {
        kind,
        parent: message.header.parent.into(),
        prio: u16::try_from(message.header.info >> 16).unwrap_or(u16::MAX),
        classid,
        police,
    })
}
