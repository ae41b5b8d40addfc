//! Thin entry points to the decoders, for the fuzz targets (`fuzz/`) and the property tests.
//! Not a public API: hidden from the docs, and changed without notice.
//!
//! [`server_reads`] and [`client_reads`] take bytes as one side takes them from the socket: cut
//! into frames, the first a hello, then headers and bodies, stopping where that side would
//! close the connection.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::proto::inbound::FrameReader;
use crate::wire::{self, Header};

/// Cuts a byte stream into frame payloads, as a connection's reader does.
#[derive(Debug)]
pub struct Frames(FrameReader);

impl Frames {
    /// A reader that refuses payloads over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Frames {
        Frames(FrameReader::new(max_frame))
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.0.push(bytes);
    }

    /// The next complete payload; `Ok(None)` until more bytes arrive, `Err` when the stream is
    /// corrupt and the connection would close.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.0.with_next(|payload| Some(payload.to_vec()))
    }

    /// Bytes held until the rest of their frame arrives.
    pub fn buffered(&self) -> usize {
        self.0.buffered()
    }
}

/// Decodes a hello payload; returns the largest frame the peer accepts.
pub fn decode_hello(payload: &[u8]) -> Result<usize, Error> {
    wire::decode_hello(payload)
}

/// Decodes the header at the front of a payload; returns it and where the body starts.
pub fn decode_header(payload: &[u8]) -> Result<(Header<'_>, usize), Error> {
    wire::decode_header(payload)
}

/// Decodes a body that must fill `body` exactly.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    wire::decode_body(body)
}

/// One frame holding `header` and `body`, as a connection sends it (length prefix included).
pub fn encode<B: Serialize + ?Sized>(
    header: &Header<'_>,
    body: Option<&B>,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let mut buf = BytesMut::new();
    match body {
        Some(body) => wire::encode(&mut buf, header, wire::body(body), limit)?,
        None => wire::encode(&mut buf, header, wire::no_body, limit)?,
    }
    Ok(buf.to_vec())
}

/// A hello frame announcing `max_frame`.
pub fn encode_hello(max_frame: usize) -> Vec<u8> {
    let mut buf = BytesMut::new();
    wire::encode_hello(&mut buf, max_frame);
    buf.to_vec()
}

/// What one side made of a byte stream, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's hello, announcing its frame limit.
    Hello(usize),
    /// A message after the hello: its payload, header and body (see [`decode_header`]).
    Message(Vec<u8>),
}

/// Decodes `bytes` as the server reads a client: the hello, then messages (a request's body
/// as a few argument types) until the stream ends, a frame is corrupt, or the client sends
/// what closes the connection. Returns what was read and the error it stopped on, if any.
pub fn server_reads(bytes: &[u8], max_frame: usize) -> (Vec<Event>, Option<Error>) {
    read(bytes, max_frame, false)
}

/// Decodes `bytes` as the client reads a server: a hello (or a Close in its place), then
/// messages (a response's body as a few value types), as for [`server_reads`].
pub fn client_reads(bytes: &[u8], max_frame: usize) -> (Vec<Event>, Option<Error>) {
    read(bytes, max_frame, true)
}

fn read(bytes: &[u8], max_frame: usize, client: bool) -> (Vec<Event>, Option<Error>) {
    let mut frames = Frames::new(max_frame);
    frames.push(bytes);
    let mut events = Vec::new();
    loop {
        let payload = match frames.next_payload() {
            Ok(Some(payload)) => payload,
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        };
        let read =
            if events.is_empty() { hello(&payload, client) } else { message(&payload, client) };
        match read {
            Ok((event, close)) => {
                events.push(event.unwrap_or(Event::Message(payload)));
                if close {
                    return (events, None);
                }
            }
            Err(e) => return (events, Some(e)),
        }
    }
}

/// What a first frame is: a hello, or (`None`: the frame is a message) the Close a server
/// sends in its place; and whether the connection closes after it.
fn hello(payload: &[u8], client: bool) -> Result<(Option<Event>, bool), Error> {
    // A server that refuses a client sends a Close in place of its hello.
    if let (true, Ok((Header::Close { .. }, _))) = (client, wire::decode_header(payload)) {
        return Ok((None, true));
    }
    wire::decode_hello(payload).map(|max| (Some(Event::Hello(max)), false))
}

/// Checks a message after the hello (`None`: it is kept as it is), and whether the
/// connection closes after it.
fn message(payload: &[u8], client: bool) -> Result<(Option<Event>, bool), Error> {
    let (header, at) = wire::decode_header(payload)?;
    let body = &payload[at..];
    match (&header, client) {
        // Bodies are decoded by generated code with the method's types; these stand for them.
        (Header::Request { .. } | Header::RequestMeta { .. }, false) => {
            let _ = wire::decode_body::<(i64, i64)>(body);
            let _ = wire::decode_body::<(String,)>(body);
            let _ = wire::decode_body::<(Vec<u8>, Option<u64>)>(body);
        }
        (Header::Response { .. }, true) => {
            let _ = wire::decode_body::<i64>(body);
            let _ = wire::decode_body::<Result<String, (u8, bool)>>(body);
        }
        (Header::Item { .. }, _) => {
            let _ = wire::decode_body::<u64>(body);
            let _ = wire::decode_body::<Result<String, (u8, bool)>>(body);
        }
        (Header::Cancel { .. } | Header::End { .. }, false) => {}
        (Header::Close { .. } | Header::Credit { .. }, _) => {}
        (Header::Failure { .. } | Header::GoAway { .. }, true) => {}
        _ => return Err(Error::Protocol("a message only the other side sends".to_owned())),
    }
    Ok((None, matches!(header, Header::Close { .. })))
}
