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

use rtnetlink::packet_core::{
    DecodeError, ErrorBuffer, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NetlinkBuffer, NetlinkMessage, NlasIterator, ParseableParametrized,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkExtentMask, LinkHeader, LinkMessage};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// `RTM_NEWLINK`: the message type of each link in a dump.
const RTM_NEWLINK: u16 = 16;
/// `sizeof(struct ifinfomsg)`: the link header before the attributes.
const LINK_HEADER_LEN: usize = 16;
/// Room for one dump datagram; the kernel fills at most 32 KiB per read for link dumps unless a
/// single link needs more, and a truncated datagram is reported, never parsed.
const RECV_BUFFER: usize = 256 * 1024;
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
        Ok(Self {
            socket: Mutex::new(DumpSocket {
                socket,
                sequence: 0,
            }),
        })
    }

    /// Every link of the namespace, each with only the attributes the agent reads. Blocking.
    pub(super) fn dump(&self) -> io::Result<Vec<LinkMessage>> {
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
    fn dump_once(&mut self) -> io::Result<Option<Vec<LinkMessage>>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        self.socket.send(&request(sequence), 0)?;

        let mut links = Vec::new();
        let mut interrupted = false;
        let mut datagram = Vec::with_capacity(RECV_BUFFER);
        loop {
            datagram.clear();
            let size = self.socket.recv(&mut datagram, libc::MSG_TRUNC)?;
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
    links: &mut Vec<LinkMessage>,
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
                RTM_NEWLINK => links.push(lean_link(message.payload())?),
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

/// A link message with only the attributes [`is_read`] names.
fn lean_link(payload: &[u8]) -> io::Result<LinkMessage> {
    let header = LinkHeader::parse(payload).map_err(decode_error)?;
    let family = header.interface_family;
    let mut link = LinkMessage::default();
    link.header = header;
    let attributes = payload.get(LINK_HEADER_LEN..).unwrap_or_default();
    for attribute in NlasIterator::new(attributes) {
        let attribute = attribute.map_err(decode_error)?;
        if is_read(attribute.kind()) {
            link.attributes
                .push(LinkAttribute::parse_with_param(&attribute, family).map_err(decode_error)?);
        }
    }
    Ok(link)
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

        let lean = lean_link(&bytes).unwrap();
        assert_eq!(lean.header.index, 7);
        assert_eq!(
            lean.attributes,
            vec![
                LinkAttribute::IfName("swy0123456789".into()),
                LinkAttribute::Group(0x7377_7901),
                LinkAttribute::IfAlias("uid".into()),
                LinkAttribute::Link(3),
            ]
        );
    }

    #[test]
    fn a_message_claiming_no_length_is_an_error_not_a_loop() {
        let mut datagram = vec![0u8; 32];
        datagram[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence 1, length 0
        let (mut links, mut interrupted) = (Vec::new(), false);
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
        let (mut links, mut interrupted) = (Vec::new(), false);
        assert!(read_datagram(&datagram, 8, &mut links, &mut interrupted).unwrap());
        assert!(links.is_empty() && !interrupted);
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
