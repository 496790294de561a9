//! The kubelet's gRPC client (grpc-go as kubelet 1.20 vendors it) dials a plugin's socket by
//! its path and sends that path as the HTTP/2 `:authority` of every request. h2, the HTTP/2
//! server under tonic, refuses such a request as malformed (`/` cannot be in an authority)
//! and resets the stream: the kubelet then logs "listAndWatch ended unexpectedly … RST_STREAM
//! with error code: PROTOCOL_ERROR" and marks every device unhealthy.
//!
//! So each connection from the kubelet goes through [`relay`]: frames pass unchanged, except
//! the kubelet's header blocks, which are decoded (HPACK, with the kubelet's dynamic table)
//! and encoded again with `:authority: localhost`, as literals that never touch the server's
//! dynamic table. The server's answers pass through as they are.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload a peer must accept without asking (SETTINGS_MAX_FRAME_SIZE's
/// initial value).
const MAX_FRAME: usize = 16_384;
/// What the authority becomes.
const AUTHORITY: &[u8] = b"localhost";

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// One HTTP/2 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn encode(&self, out: &mut Vec<u8>) {
        let length = self.payload.len() as u32;
        out.extend_from_slice(&length.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 9];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    }))
}

/// The header block fragment of a HEADERS frame (without padding and priority fields).
fn fragment(frame: &Frame) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = frame.payload.len();
    if frame.flags & PADDED != 0 {
        let pad = usize::from(
            *frame
                .payload
                .first()
                .ok_or_else(|| invalid("empty padded HEADERS"))?,
        );
        start = 1;
        end = end
            .checked_sub(pad)
            .filter(|end| *end >= start)
            .ok_or_else(|| invalid("HEADERS padding longer than the frame"))?;
    }
    if frame.flags & PRIORITY != 0 {
        start += 5;
    }
    frame
        .payload
        .get(start..end)
        .ok_or_else(|| invalid("HEADERS shorter than its fields"))
}

/// An HPACK literal header field without indexing, new name, no Huffman coding: it leaves
/// the receiver's dynamic table as it is.
fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    out.extend(hpack::encoder::encode_integer(name.len(), 7));
    out.extend_from_slice(name);
    out.extend(hpack::encoder::encode_integer(value.len(), 7));
    out.extend_from_slice(value);
}

/// The header block again, with `:authority` replaced.
fn rewrite(decoder: &mut hpack::Decoder<'_>, block: &[u8]) -> io::Result<Vec<u8>> {
    let headers = decoder
        .decode(block)
        .map_err(|error| invalid(format!("decoding the kubelet's headers: {error:?}")))?;
    let mut out = Vec::new();
    for (name, value) in &headers {
        let value = if name.as_slice() == b":authority" {
            AUTHORITY
        } else {
            value.as_slice()
        };
        literal(name, value, &mut out);
    }
    Ok(out)
}

/// A HEADERS frame (and CONTINUATION frames when the block is larger than a frame) carrying
/// `block`, keeping END_STREAM.
fn headers_frames(stream: u32, end_stream: bool, block: &[u8], out: &mut Vec<u8>) {
    // An empty block yields no chunk, and still gets its HEADERS frame.
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut first = true;
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        let mut flags = if last { END_HEADERS } else { 0 };
        if first && end_stream {
            flags |= END_STREAM;
        }
        Frame {
            kind: if first { HEADERS } else { CONTINUATION },
            flags,
            stream,
            payload: chunk.to_vec(),
        }
        .encode(out);
        first = false;
        if last {
            return;
        }
    }
}

/// The client-to-server half: the preface, then every frame, header blocks rewritten.
async fn client_to_server(
    mut client: impl AsyncRead + Unpin,
    mut server: impl AsyncWrite + Unpin,
) -> io::Result<()> {
    let mut preface = [0u8; 24];
    client.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(invalid("not an HTTP/2 connection preface"));
    }
    server.write_all(&preface).await?;
    let mut decoder = hpack::Decoder::new();
    while let Some(frame) = read_frame(&mut client).await? {
        let mut out = Vec::new();
        if frame.kind == HEADERS {
            let end_stream = frame.flags & END_STREAM != 0;
            let mut block = fragment(&frame)?.to_vec();
            let mut flags = frame.flags;
            while flags & END_HEADERS == 0 {
                let next = read_frame(&mut client)
                    .await?
                    .ok_or_else(|| invalid("the connection ended inside a header block"))?;
                if next.kind != CONTINUATION || next.stream != frame.stream {
                    return Err(invalid("a header block not continued by CONTINUATION"));
                }
                block.extend_from_slice(&next.payload);
                flags = next.flags;
            }
            let block = rewrite(&mut decoder, &block)?;
            headers_frames(frame.stream, end_stream, &block, &mut out);
        } else {
            frame.encode(&mut out);
        }
        server.write_all(&out).await?;
    }
    server.shutdown().await
}

/// Relays one connection between the kubelet (`client`) and the plugin's server, rewriting
/// the authority of the kubelet's requests. Returns when either side closes.
pub(super) async fn relay(
    client: tokio::net::UnixStream,
    server: impl AsyncRead + AsyncWrite + Send + 'static,
) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, server_write) = tokio::io::split(server);
    let answers = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    tokio::select! {
        done = client_to_server(client_read, server_write) => done,
        done = answers => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            frame.encode(&mut out);
        }
        out
    }

    async fn frames(mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut bytes).await.unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn decode(blocks: &[&[u8]]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = hpack::Decoder::new();
        blocks.iter().map(|b| decoder.decode(b).unwrap()).collect()
    }

    /// What grpc-go sends: the path as authority, the second request referring to the first's
    /// dynamic table entries; one request padded and split into a CONTINUATION.
    #[tokio::test]
    async fn the_authority_becomes_localhost_and_everything_else_passes() {
        let request = |path: &str| {
            vec![
                (b":method".to_vec(), b"POST".to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
                (
                    b":authority".to_vec(),
                    b"/var/lib/kubelet/device-plugins/switchyard-lan.sock".to_vec(),
                ),
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
            ]
        };
        let mut encoder = hpack::Encoder::new();
        let first = encoder.encode(
            request("/v1beta1.DevicePlugin/ListAndWatch")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let second = encoder.encode(
            request("/v1beta1.DevicePlugin/Allocate")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let mut padded = vec![3u8];
        padded.extend_from_slice(&second[..4]);
        padded.extend_from_slice(&[0, 0, 0]);
        let settings = Frame {
            kind: 0x4,
            flags: 0,
            stream: 0,
            payload: vec![0, 4, 0, 0, 0xff, 0xff],
        };
        let data = Frame {
            kind: 0x0,
            flags: END_STREAM,
            stream: 1,
            payload: vec![0, 0, 0, 0, 0],
        };
        let mut input = PREFACE.to_vec();
        input.extend(encoded(&[
            settings.clone(),
            Frame {
                kind: HEADERS,
                flags: END_HEADERS,
                stream: 1,
                payload: first,
            },
            data.clone(),
            Frame {
                kind: HEADERS,
                flags: PADDED | END_STREAM,
                stream: 3,
                payload: padded,
            },
            Frame {
                kind: CONTINUATION,
                flags: END_HEADERS,
                stream: 3,
                payload: second[4..].to_vec(),
            },
        ]));

        let mut output = Vec::new();
        client_to_server(input.as_slice(), &mut output)
            .await
            .unwrap();
        assert_eq!(&output[..24], PREFACE);
        let out = frames(&output[24..]).await;
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0], settings);
        assert_eq!(out[2], data);
        assert_eq!(
            (out[1].kind, out[1].flags, out[1].stream),
            (HEADERS, END_HEADERS, 1)
        );
        assert_eq!(
            (out[3].kind, out[3].flags, out[3].stream),
            (HEADERS, END_HEADERS | END_STREAM, 3)
        );
        let decoded = decode(&[&out[1].payload, &out[3].payload]);
        for (headers, path) in decoded.iter().zip([
            "/v1beta1.DevicePlugin/ListAndWatch",
            "/v1beta1.DevicePlugin/Allocate",
        ]) {
            let mut expected = request(path);
            expected[3].1 = b"localhost".to_vec();
            assert_eq!(headers, &expected);
        }
    }

    #[test]
    fn a_large_block_is_continued() {
        let block = vec![7u8; MAX_FRAME + 10];
        let mut out = Vec::new();
        headers_frames(5, true, &block, &mut out);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = rt.block_on(frames(&out));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].kind, out[0].flags), (HEADERS, END_STREAM));
        assert_eq!((out[1].kind, out[1].flags), (CONTINUATION, END_HEADERS));
        assert_eq!(out[0].payload.len() + out[1].payload.len(), block.len());
    }

    #[tokio::test]
    async fn what_is_not_http2_is_refused() {
        let mut output = Vec::new();
        let refused =
            client_to_server(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &mut output).await;
        assert!(refused.is_err());
        assert!(output.is_empty());
    }
}
