//! A port's bandwidth on its host-side link, over rtnetlink's traffic-control messages (the
//! requests `tc` would send for libvirt's command lines; no `tc` processes). The payloads
//! netlink-packet-route does not model come from [`crate::bandwidth::wire`].

use futures::StreamExt;
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::tc::{
    TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcOption, TcU32Key, TcU32Selector,
    TcU32SelectorFlags,
};

use super::{LinkManager, NetlinkError, errno};
use crate::bandwidth::{CLASS_ID, LEAF_HANDLE, PortShaping, ROOT_HANDLE, wire};

/// `TCA_OPTIONS`, for sfq's flat struct.
const TCA_OPTIONS: u16 = 2;
/// `ETH_P_ALL` in network byte order, as `protocol all` puts it in `tcm_info`.
const PROTOCOL_ALL: u16 = 0x0003u16.to_be();
/// `ENOENT`: nothing to delete.
const ENOENT: i32 = 2;
/// `EINVAL`: deleting the default root qdisc (there is none of ours).
const EINVAL: i32 = 22;

/// A traffic-control module libvirt's shaping uses that the running kernel does not have
/// (the kernel answers `ENOENT` for an unknown qdisc, classifier or action kind). libvirt
/// fails the interface there; the agent installs the rest and reports what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MissingTcFeature {
    /// `sch_sfq`: the class keeps the kernel's default fifo leaf; its rate is unchanged.
    Sfq,
    /// `cls_fw`: libvirt's mark filter only re-selects the default class 1:1, so shaping is
    /// unchanged without it.
    Fw,
    /// `act_police`: guest-outbound traffic is not limited.
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
}

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
