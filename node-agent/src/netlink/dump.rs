//! Link dumps read straight off a netlink socket of the namespace, keeping only the attributes
//! the agent reads.
//!
//! rtnetlink's connection parses every dumped link whole and queues the messages faster than a
//! consumer can trim them. A parsed `LinkMessage` is about 10 KB (the attribute enum is as
//! large as its largest variant, and a link's IPv4 and IPv6 settings alone are over a hundred
//! attributes), so one dump of 4,000 macvtaps peaked at 44 MB of the agent's heap. Here each
//! datagram is parsed as it is read, and only the attributes that [`is_read`] names are kept.
//!
//! The socket is blocking and used for dumps only, one at a time; callers run [`LinkDumper::dump`]
//! on a blocking thread.

use std::io;
use std::sync::Mutex;

use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use rtnetlink::packet_core::{
    DecodeError, ErrorBuffer, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NetlinkBuffer, NetlinkMessage, NlasIterator, ParseableParametrized,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkExtentMask, LinkHeader, LinkMessage};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::observe::LinkSummary;

/// `RTM_NEWLINK`: the message type of each link in a dump.
const RTM_NEWLINK: u16 = 16;
/// `sizeof(struct ifinfomsg)`: the link header before the attributes.
const LINK_HEADER_LEN: usize = 16;
/// Room for one dump datagram; the kernel fills at most 32 KiB per read for link dumps unless a
/// single link needs more, and a truncated datagram is reported, never parsed.
const RECV_BUFFER: usize = 256 * 1024;
/// How long one read of a dump may wait for the kernel: far above any real dump's pause.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A dump the kernel flags as inconsistent (links changed under it) is read again, this often.
const ATTEMPTS: u32 = 5;
/// The first pause between interrupted dumps; it doubles each time (2 to 16 ms in all).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// The `IFLA_*` attributes the agent reads from dumped links.
fn is_read(kind: u16) -> bool {
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINK: u16 = 5;
    const IFLA_MASTER: u16 = 10;
    const IFLA_OPERSTATE: u16 = 16;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_IFALIAS: u16 = 20;
    const IFLA_GROUP: u16 = 27;
    const IFLA_LINK_NETNSID: u16 = 37;
    matches!(
        kind,
        IFLA_ADDRESS
            | IFLA_IFNAME
            | IFLA_LINK
            | IFLA_MASTER
            | IFLA_OPERSTATE
            | IFLA_LINKINFO
            | IFLA_IFALIAS
            | IFLA_GROUP
            | IFLA_LINK_NETNSID
    )
}

/// A netlink socket of the namespace, for link dumps.
#[derive(Debug)]
pub(super) struct LinkDumper {
    socket: Mutex<DumpSocket>,
}

#[derive(Debug)]
struct DumpSocket {
    socket: Socket,
    sequence: u32,
}

impl LinkDumper {
    /// Opens the socket; call on a thread inside the target network namespace.
    pub(super) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // A dump the kernel never finishes (or a lost datagram) must not hold the dump lock,
        // and every later dump with it, forever.
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(io::Error::from)?;
        Ok(Self {
            socket: Mutex::new(DumpSocket {
                socket,
                sequence: 0,
            }),
        })
    }

    /// Every link of the namespace, each with only the attributes the agent reads. Blocking.
    pub(super) fn dump(&self) -> io::Result<Dump> {
        // A panic mid-dump leaves at most unread datagrams, which the sequence check skips.
        let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 1..ATTEMPTS {
            if let Some(links) = socket.dump_once()? {
                return Ok(links);
            }
            // Links are changing right now (a burst of creations, say): give the burst a
            // moment rather than meeting it again at once.
            std::thread::sleep(RETRY_PAUSE * (1 << attempt));
        }
        socket.dump_once()?.ok_or_else(|| {
            io::Error::other(format!(
                "the link dump was interrupted by changes {ATTEMPTS} times in a row"
            ))
        })
    }
}

impl DumpSocket {
    /// One dump; `None` when the kernel flagged it inconsistent.
    fn dump_once(&mut self) -> io::Result<Option<Dump>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        self.socket.send(&request(sequence), 0)?;

        let mut links = Dump::default();
        let mut interrupted = false;
        let mut datagram = Vec::with_capacity(RECV_BUFFER);
        loop {
            datagram.clear();
            let size =
                self.socket
                    .recv(&mut datagram, libc::MSG_TRUNC)
                    .map_err(|error| match error.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the kernel sent no part of the link dump for {RECV_TIMEOUT:?}"
                            ),
                        ),
                        _ => error,
                    })?;
            if size > datagram.len() {
                return Err(io::Error::other(format!(
                    "a link dump datagram of {size} bytes exceeds the {RECV_BUFFER}-byte buffer"
                )));
            }
            if read_datagram(&datagram, sequence, &mut links, &mut interrupted)? {
                return Ok((!interrupted).then_some(links));
            }
        }
    }
}

/// The header every netlink message starts with.
const NETLINK_HEADER_LEN: usize = 16;

/// Collects the links of one dump datagram into `links`; `true` once the dump is done. Messages
/// of other requests (an earlier dump cut short) are skipped.
fn read_datagram(
    datagram: &[u8],
    sequence: u32,
    links: &mut Dump,
    interrupted: &mut bool,
) -> io::Result<bool> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let message = NetlinkBuffer::new_checked(rest).map_err(decode_error)?;
        let length = message.length() as usize;
        // A length below the header would never advance: the datagram is corrupt.
        if length < NETLINK_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("parsing a link dump: a message claims {length} bytes"),
            ));
        }
        if message.sequence_number() == sequence {
            *interrupted |= message.flags() & NLM_F_DUMP_INTR != 0;
            match message.message_type() {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let error =
                        ErrorBuffer::new_checked(message.payload()).map_err(decode_error)?;
                    if let Some(code) = error.code() {
                        return Err(io::Error::from_raw_os_error(-code.get()));
                    }
                }
                RTM_NEWLINK => match lean_link(message.payload())? {
                    Ok(link) => links.links.push(link),
                    Err(unreadable) => links.unreadable.push(unreadable),
                },
                _ => {}
            }
        }
        // Messages are 4-byte aligned within a datagram.
        let advance = length.next_multiple_of(4).min(rest.len());
        rest = &rest[advance..];
    }
    Ok(false)
}

/// An `RTM_GETLINK` dump request without statistics (the agent reads none).
fn request(sequence: u32) -> Vec<u8> {
    let mut filter = LinkMessage::default();
    filter
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut message = NetlinkMessage::from(RouteNetlinkMessage::GetLink(filter));
    message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.header.sequence_number = sequence;
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// What one dump read: every link's summary, and the links whose attributes could not all be
/// parsed (what could be read of them, and why the rest could not).
#[derive(Debug, Default)]
pub(super) struct Dump {
    /// The links read whole (as far as the agent reads links).
    pub links: Vec<LinkSummary>,
    /// The links with an attribute the parser refused.
    pub unreadable: Vec<UnreadableLink>,
}

/// A dumped link with an attribute the parser refused (a kernel newer than the parser, say).
#[derive(Debug)]
pub(super) struct UnreadableLink {
    /// What could be read: the attributes before and beside the refused one.
    pub partial: LinkSummary,
    /// Why the rest could not.
    pub error: String,
}

/// A dumped link read into its summary, keeping only the attributes [`is_read`] names. An
/// attribute the parser refuses makes the link [`UnreadableLink`] (the rest is still read); a
/// message too short for the link header fails the dump.
fn lean_link(payload: &[u8]) -> io::Result<Result<LinkSummary, UnreadableLink>> {
    let header = LinkHeader::parse(payload).map_err(decode_error)?;
    let family = header.interface_family;
    let mut link = LinkMessage::default();
    link.header = header;
    let mut error = None;
    let attributes = payload.get(LINK_HEADER_LEN..).unwrap_or_default();
    for attribute in NlasIterator::new(attributes) {
        let attribute = match attribute {
            Ok(attribute) => attribute,
            // The attributes' framing is broken: nothing after this can be found.
            Err(cause) => {
                error = Some(cause.to_string());
                break;
            }
        };
        if is_read(attribute.kind()) {
            match LinkAttribute::parse_with_param(&attribute, family) {
                Ok(parsed) => link.attributes.push(parsed),
                Err(cause) => {
                    error.get_or_insert_with(|| format!("attribute {}: {cause}", attribute.kind()));
                }
            }
        }
    }
    let summary = LinkSummary::from_message(&link);
    Ok(match error {
        None => Ok(summary),
        Some(error) => Err(UnreadableLink {
            partial: summary,
            error,
        }),
    })
}

fn decode_error(error: DecodeError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("parsing a link dump: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::Emitable;

    use super::*;

    #[test]
    fn only_the_attributes_the_agent_reads_are_kept() {
        let mut full = LinkMessage::default();
        full.header.index = 7;
        full.attributes = vec![
            LinkAttribute::IfName("swy0123456789".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Group(0x7377_7901),
            LinkAttribute::IfAlias("uid".into()),
            LinkAttribute::TxQueueLen(1000),
            LinkAttribute::Link(3),
        ];
        let mut bytes = vec![0; full.buffer_len()];
        full.emit(&mut bytes);

        let lean = lean_link(&bytes).unwrap().unwrap();
        assert_eq!(
            lean,
            LinkSummary {
                index: 7,
                name: Some("swy0123456789".into()),
                group: 0x7377_7901,
                alias: Some("uid".into()),
                mac: None,
                linked: Some(3),
                controller: None,
                oper_state: switchyard_crds::LinkState::Unknown,
                kind: None,
                macvtap_mode: None,
            }
        );
    }

    /// A link message with `name`, then an `IFLA_GROUP` of two bytes, which the parser refuses.
    fn with_a_bad_attribute(name: &str) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = 9;
        link.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::OperState(rtnetlink::packet_route::link::State::Up),
        ];
        let mut bytes = vec![0; link.buffer_len()];
        link.emit(&mut bytes);
        bytes.extend([6, 0, 27, 0, 0xaa, 0xbb, 0, 0]);
        bytes
    }

    #[test]
    fn an_attribute_the_parser_refuses_leaves_the_rest_read() {
        let unreadable = lean_link(&with_a_bad_attribute("eth7"))
            .unwrap()
            .unwrap_err();
        assert_eq!(unreadable.partial.name.as_deref(), Some("eth7"));
        assert_eq!(
            unreadable.partial.oper_state,
            switchyard_crds::LinkState::Up
        );
        assert!(
            unreadable.error.contains("attribute 27"),
            "{}",
            unreadable.error
        );
    }

    #[test]
    fn an_unreadable_link_is_kept_by_name_unless_it_may_be_the_agents() {
        let foreign = lean_link(&with_a_bad_attribute("eth7"))
            .unwrap()
            .unwrap_err();
        let links = super::super::observe::keep_readable(Dump {
            links: Vec::new(),
            unreadable: vec![foreign],
        })
        .unwrap();
        assert_eq!(links[0].name.as_deref(), Some("eth7"));

        let owned = lean_link(&with_a_bad_attribute("swy0123456789"))
            .unwrap()
            .unwrap_err();
        let error = super::super::observe::keep_readable(Dump {
            links: Vec::new(),
            unreadable: vec![owned],
        })
        .unwrap_err();
        assert!(error.to_string().contains("swy0123456789"), "{error}");
    }

    #[test]
    fn a_message_claiming_no_length_is_an_error_not_a_loop() {
        let mut datagram = vec![0u8; 32];
        datagram[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence 1, length 0
        let (mut links, mut interrupted) = (Dump::default(), false);
        assert!(read_datagram(&datagram, 1, &mut links, &mut interrupted).is_err());
    }

    #[test]
    fn other_requests_are_skipped_and_done_ends_the_dump() {
        let mut datagram = Vec::new();
        for (kind, sequence) in [(RTM_NEWLINK, 7u32), (NLMSG_DONE, 7), (NLMSG_DONE, 8)] {
            let mut message = vec![0u8; 20];
            message[0..4].copy_from_slice(&20u32.to_ne_bytes());
            message[4..6].copy_from_slice(&kind.to_ne_bytes());
            message[8..12].copy_from_slice(&sequence.to_ne_bytes());
            datagram.extend(message);
        }
        let (mut links, mut interrupted) = (Dump::default(), false);
        assert!(read_datagram(&datagram, 8, &mut links, &mut interrupted).unwrap());
        assert!(links.links.is_empty() && !interrupted);
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        assert!(lean_link(&[0; 4]).is_err());
    }

    #[test]
    fn the_request_asks_for_a_dump() {
        let bytes = request(42);
        let message = NetlinkBuffer::new_checked(bytes.as_slice()).unwrap();
        assert_eq!(message.sequence_number(), 42);
        assert_eq!(message.flags(), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(message.message_type(), 18); // RTM_GETLINK
    }
}
