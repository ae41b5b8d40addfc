//! The messages inside frames; this module mirrors WIRE.md and golden tests pin its bytes.
//!
//! Every frame payload is the bincode (standard config: varint integers, little endian) of a
//! [`Header`], followed directly by the body for the messages that carry one:
//!
//! ```text
//! payload = header ++ body
//!   Request  { id, method, budget_us }  ++ bincode(argument tuple)
//!   Response { id }                     ++ bincode(return value)
//!   Failure  { id, code, message }
//!   Cancel   { id }
//!   GoAway   { last_id }
//!   Close    { code, message }
//!   RequestMeta { id, method, budget_us, metadata } ++ bincode(argument tuple)
//!   Item     { id }                     ++ bincode(one stream item)
//!   End      { id }
//!   Credit   { id, items, bytes }
//! ```
//!
//! The first frame in each direction is a [`Hello`] instead.

// Public only with the `internals` feature (for the tests and fuzz targets).
#![cfg_attr(not(feature = "internals"), allow(unreachable_pub))]

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::frame::Building;
use crate::metadata::Metadata;
use crate::{Code, Error};

mod header;
use header::Cursor;

/// The four bytes that open every hello: "RPC" and a zero byte.
pub const MAGIC: [u8; 4] = *b"RPC\0";

/// The protocol version this crate speaks. Version 2 added GoAway's `last_id`; a version-1
/// peer is refused with a Close naming both versions.
pub const VERSION: u16 = 2;

/// The first frame each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The sender's protocol version.
    pub version: u16,
    /// The largest frame payload the sender accepts, in bytes.
    pub max_frame: u32,
}

/// The header of every frame after the hello. Variant order is the wire tag: never reorder.
///
/// A header owns nothing: its text and metadata are borrowed, from the sender's values or
/// from the frame it was decoded from. So it is `Copy` and needs no drop, which every frame
/// sent and received would otherwise pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Header<'a> {
    /// Client → server: call `method`; the body is the argument tuple.
    Request {
        /// Unique among the calls in flight on this connection.
        id: u64,
        /// The method id (see WIRE.md, "Method ids").
        method: u32,
        /// The caller's remaining time budget in microseconds.
        budget_us: u64,
    },
    /// Server → client: the call succeeded; the body is the return value.
    Response {
        /// The request's id.
        id: u64,
    },
    /// Server → client: the call failed with a framework error; no body.
    Failure {
        /// The request's id.
        id: u64,
        /// A [`Code`] number.
        code: u32,
        /// A human-readable explanation.
        message: &'a str,
    },
    /// Client → server: the caller of `id` went away; stop working on it.
    Cancel {
        /// The request's id.
        id: u64,
    },
    /// Server → client: no new requests will be accepted; in-flight ones will finish.
    GoAway {
        /// The highest request id the server took before going away (0: none). A call with a
        /// higher id never started, so it is safe to send again elsewhere.
        last_id: u64,
    },
    /// Either way: a fatal error; the sender closes the connection after this frame.
    Close {
        /// A [`Code`] number.
        code: u32,
        /// A human-readable explanation.
        message: &'a str,
    },
    /// Client → server: a [`Header::Request`] that carries metadata (tag 6). A request
    /// without metadata is sent as a plain `Request`, so it pays nothing for this.
    RequestMeta {
        /// As in `Request`.
        id: u64,
        /// As in `Request`.
        method: u32,
        /// As in `Request`.
        budget_us: u64,
        /// The entries: bincode's `Vec<(String, Vec<u8>)>`.
        metadata: MetadataRef<'a>,
    },
    /// Either way: one item of call `id`'s stream; the body is the item. Sent only within the
    /// credit the receiver granted (see `proto::stream`).
    Item {
        /// The call's request id.
        id: u64,
    },
    /// Client → server: the client's stream of items for call `id` is over.
    End {
        /// The call's request id.
        id: u64,
    },
    /// Either way: the receiver of call `id`'s stream lets the sender send `items` more items
    /// and `bytes` more bytes of item bodies.
    Credit {
        /// The call's request id.
        id: u64,
        /// More items that may be sent.
        items: u32,
        /// More body bytes that may be sent.
        bytes: u64,
    },
}

/// The longest error message sent, in bytes; longer ones are cut (at a character boundary).
pub const MAX_MESSAGE: usize = 512;

/// The smallest `max_frame` a peer may announce: room for any error frame.
pub const MIN_MAX_FRAME: usize = 1024;

/// The largest first frame (a hello, or the Close a server sends in its place) a receiver
/// accepts: a longer one is refused from its length alone, before its bytes are buffered.
pub const MAX_HELLO: usize = MIN_MAX_FRAME;

impl Header<'_> {
    /// A `Failure` header for request `id`.
    pub(crate) fn failure(id: u64, code: Code, message: &str) -> Header<'_> {
        Header::Failure { id, code: code.to_u32(), message: cut(message) }
    }

    /// A `Close` header.
    pub(crate) fn close(code: Code, message: &str) -> Header<'_> {
        Header::Close { code: code.to_u32(), message: cut(message) }
    }
}

/// A request's metadata as a [`Header::RequestMeta`] holds it: borrowed either way.
#[derive(Clone, Copy)]
pub enum MetadataRef<'a> {
    /// Metadata to send.
    Of(&'a Metadata),
    /// Metadata as received: `count` entries in their wire form, checked when the header was
    /// decoded.
    Received {
        /// How many entries `bytes` holds.
        count: usize,
        /// The entries after their count, as bincode writes them.
        bytes: &'a [u8],
    },
}

impl MetadataRef<'_> {
    /// The entries, as a [`Metadata`] of their own.
    pub fn to_metadata(&self) -> Metadata {
        match *self {
            MetadataRef::Of(metadata) => metadata.clone(),
            MetadataRef::Received { count, bytes } => {
                let mut at = Cursor { bytes, at: 0 };
                // Checked when decoded, so every entry reads; should one not, it ends the list.
                let entries = (0..count).map_while(|_| at.entry().ok());
                let entries = entries.map(|(key, value)| (key.to_owned(), value.to_vec()));
                Metadata::from_wire(entries.collect())
            }
        }
    }
}

impl std::fmt::Debug for MetadataRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_metadata().fmt(f)
    }
}

/// Equal when the entries are: metadata received equals the metadata that was sent.
impl PartialEq for MetadataRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_metadata() == other.to_metadata()
    }
}

impl Eq for MetadataRef<'_> {}

impl Serialize for MetadataRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_metadata().serialize(serializer)
    }
}

/// `message` cut to at most [`MAX_MESSAGE`] bytes, so an error frame always fits the peer.
fn cut(message: &str) -> &str {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Appends one frame holding `header` and the body `encode_body` appends (nothing for the
/// messages without one). On error, or if `encode_body` panics, nothing is appended.
pub(crate) fn encode(
    buf: &mut BytesMut,
    header: &Header<'_>,
    encode_body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
    limit: usize,
) -> Result<(), Error> {
    let mut frame = Building::begin(buf);
    header.encode(frame.payload());
    encode_body(frame.payload()).map_err(Error::from)?;
    frame.finish(limit)
}

/// No body: the argument to [`encode`] for messages that carry none.
pub(crate) fn no_body(_: &mut BytesMut) -> Result<(), CodecError> {
    Ok(())
}

/// A body encoder for `value`.
pub(crate) fn body<T: Serialize + ?Sized>(
    value: &T,
) -> impl FnOnce(&mut BytesMut) -> Result<(), CodecError> + '_ {
    move |buf| codec::encode_into(value, buf)
}

/// Appends a hello frame.
pub(crate) fn encode_hello(buf: &mut BytesMut, max_frame: usize) {
    let hello = Hello {
        magic: MAGIC,
        version: VERSION,
        max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
    };
    // A fixed-size struct of integers always encodes and is far below any limit.
    let _ = encode_framed(buf, |payload| codec::encode_into(&hello, payload));
}

/// Appends a frame whose whole payload `encode_payload` writes, with no limit.
fn encode_framed(
    buf: &mut BytesMut,
    encode_payload: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), Error> {
    let mut frame = Building::begin(buf);
    encode_payload(frame.payload()).map_err(Error::from)?;
    frame.finish(usize::MAX)
}

/// Decodes and checks a peer's hello payload; returns the largest frame the peer accepts.
///
/// Read by hand with the header's [`Cursor`], so the same rules hold: integers in their
/// shortest form, and error messages any reader can follow.
pub(crate) fn decode_hello(payload: &[u8]) -> Result<usize, Error> {
    let mut at = Cursor { bytes: payload, at: 0 };
    let bad = |why: &dyn std::fmt::Display| {
        Error::Protocol(format!("bad hello (is the peer an rpc endpoint?): {why}"))
    };
    let magic = at.take::<4>().map_err(|e| bad(&e))?;
    if magic != MAGIC {
        return Err(bad(&format!("its magic bytes are {}, not {}", hex(&magic), hex(&MAGIC))));
    }
    let version = at.u16().map_err(|e| bad(&e))?;
    // The version is checked before the rest: a later version may lay the hello out otherwise.
    if version != VERSION {
        return Err(Error::VersionMismatch { ours: VERSION, theirs: version });
    }
    let max_frame = at.u32().map_err(|e| bad(&e))? as usize;
    // Later versions may append fields to the hello, so bytes after it are ignored.
    if max_frame < MIN_MAX_FRAME {
        return Err(Error::Protocol(format!(
            "the peer accepts frames of at most {max_frame} bytes; the minimum is {MIN_MAX_FRAME}"
        )));
    }
    Ok(max_frame)
}

/// Bytes as two-digit hex numbers separated by spaces: `52 50 43 00`.
fn hex(bytes: &[u8]) -> String {
    let digits: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    digits.join(" ")
}

/// Decodes the header at the front of `payload`; returns it and where the body starts.
///
/// Only `Request`, `Response` and `Item` carry a body. Bytes after any other message mean the peer's
/// idea of that message differs from ours, so they are a protocol violation, not ignored.
pub(crate) fn decode_header(payload: &[u8]) -> Result<(Header<'_>, usize), Error> {
    let mut at = Cursor { bytes: payload, at: 0 };
    let header =
        Header::decode(&mut at).map_err(|e| Error::Protocol(format!("bad message header: {e}")))?;
    let has_body = matches!(
        header,
        Header::Request { .. }
            | Header::RequestMeta { .. }
            | Header::Response { .. }
            | Header::Item { .. }
    );
    let extra = payload.len() - at.at;
    if !has_body && extra > 0 {
        return Err(Error::Protocol(format!(
            "{extra} bytes after a {} message, which has no body",
            header.kind()
        )));
    }
    Ok((header, at.at))
}

/// Decodes a body that must fill the rest of the frame exactly.
pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    codec::decode_exact(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_over_the_limit_is_cut_at_a_character_boundary_when_decoded() {
        // 'é' is two bytes: 300 of them cross the limit in the middle of one.
        let long = "é".repeat(300);
        let mut buf = BytesMut::new();
        let close = Header::Close { code: 5, message: &long };
        encode(&mut buf, &close, no_body, usize::MAX).expect("encodes");
        let (header, used) = decode_header(&buf[4..]).expect("decodes");
        assert_eq!(used, buf.len() - 4, "the whole message is consumed");
        match header {
            Header::Close { message, .. } => assert_eq!(message, "é".repeat(256)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn received_metadata_is_borrowed_from_its_frame_and_reencodes_to_the_same_bytes() {
        let mut metadata = Metadata::new();
        metadata.insert("token", "abc").expect("fits");
        metadata.insert("tenant", [0xff, 0]).expect("fits");
        let sent = Header::RequestMeta {
            id: 3,
            method: 9,
            budget_us: 1_000,
            metadata: MetadataRef::Of(&metadata),
        };
        let mut buf = BytesMut::new();
        encode(&mut buf, &sent, |b| codec::encode_into(&(1u8,), b), usize::MAX).expect("encodes");
        let (received, body_at) = decode_header(&buf[4..]).expect("decodes");
        let Header::RequestMeta { metadata: received_metadata, .. } = received else {
            panic!("{received:?}")
        };
        assert!(matches!(received_metadata, MetadataRef::Received { count: 2, .. }));
        assert_eq!(received_metadata.to_metadata(), metadata);
        assert_eq!(received, sent, "equal by their entries");
        let body = |b: &mut BytesMut| {
            b.extend_from_slice(&buf[4 + body_at..]);
            Ok(())
        };
        let mut again = BytesMut::new();
        encode(&mut again, &received, body, usize::MAX).expect("encodes");
        assert_eq!(again, buf);
    }
}
