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

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::frame::Building;
use crate::metadata::{MAX_ENTRIES, Metadata};
use crate::{Code, Error};

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

// Every frame carries a header, so it is encoded and decoded by hand rather than through
// serde: the bytes are exactly bincode's `standard()` encoding of `Header` (a varint variant
// index, then the fields: varint integers, a string as a varint length and UTF-8 bytes), which
// is what WIRE.md specifies and what a property test compares against bincode itself. The
// decoder refuses two things bincode accepts: an integer wider than it needs to be, and bytes
// after a message that has no body.

/// Marks of bincode's varints: a first byte up to 250 is the value; these say that a
/// little-endian u16, u32 or u64 follows. 254 (u128) and 255 are never valid in a header.
const VARINT_U16: u8 = 251;
const VARINT_U32: u8 = 252;
const VARINT_U64: u8 = 253;

impl Header<'_> {
    /// The message's name, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Header::Request { .. } => "Request",
            Header::Response { .. } => "Response",
            Header::Failure { .. } => "Failure",
            Header::Cancel { .. } => "Cancel",
            Header::GoAway { .. } => "GoAway",
            Header::Close { .. } => "Close",
            Header::RequestMeta { .. } => "RequestMeta",
            Header::Item { .. } => "Item",
            Header::End { .. } => "End",
            Header::Credit { .. } => "Credit",
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Header::Request { id, method, budget_us } => {
                Fixed::new(0).varint(*id).varint(u64::from(*method)).varint(*budget_us).put(buf);
            }
            Header::Response { id } => Fixed::new(1).varint(*id).put(buf),
            Header::Failure { id, code, message } => {
                put_varint(buf, 2);
                put_varint(buf, *id);
                put_varint(buf, u64::from(*code));
                put_str(buf, message);
            }
            Header::Cancel { id } => Fixed::new(3).varint(*id).put(buf),
            Header::GoAway { last_id } => Fixed::new(4).varint(*last_id).put(buf),
            Header::Close { code, message } => {
                put_varint(buf, 5);
                put_varint(buf, u64::from(*code));
                put_str(buf, message);
            }
            Header::RequestMeta { id, method, budget_us, metadata } => {
                put_varint(buf, 6);
                put_varint(buf, *id);
                put_varint(buf, u64::from(*method));
                put_varint(buf, *budget_us);
                match metadata {
                    MetadataRef::Of(metadata) => {
                        put_varint(buf, metadata.len() as u64);
                        for (key, value) in metadata.iter() {
                            put_str(buf, key);
                            put_varint(buf, value.len() as u64);
                            buf.put_slice(value);
                        }
                    }
                    MetadataRef::Received { count, bytes } => {
                        put_varint(buf, *count as u64);
                        buf.put_slice(bytes);
                    }
                }
            }
            Header::Item { id } => Fixed::new(7).varint(*id).put(buf),
            Header::End { id } => Fixed::new(8).varint(*id).put(buf),
            Header::Credit { id, items, bytes } => {
                Fixed::new(9).varint(*id).varint(u64::from(*items)).varint(*bytes).put(buf);
            }
        }
    }

    fn decode<'a>(at: &mut Cursor<'a>) -> Result<Header<'a>, Bad> {
        Ok(match at.u32()? {
            0 => Header::Request { id: at.u64()?, method: at.u32()?, budget_us: at.u64()? },
            1 => Header::Response { id: at.u64()? },
            2 => Header::Failure { id: at.u64()?, code: at.u32()?, message: at.message()? },
            3 => Header::Cancel { id: at.u64()? },
            4 => Header::GoAway { last_id: at.u64()? },
            5 => Header::Close { code: at.u32()?, message: at.message()? },
            6 => Header::RequestMeta {
                id: at.u64()?,
                method: at.u32()?,
                budget_us: at.u64()?,
                metadata: at.metadata()?,
            },
            7 => Header::Item { id: at.u64()? },
            8 => Header::End { id: at.u64()? },
            9 => Header::Credit { id: at.u64()?, items: at.u32()?, bytes: at.u64()? },
            tag => return Err(Bad::UnknownTag(tag)),
        })
    }
}

#[inline(always)]
fn put_varint(buf: &mut BytesMut, n: u64) {
    if n <= 250 {
        buf.put_u8(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        buf.put_u8(VARINT_U16);
        buf.put_u16_le(n);
    } else if let Ok(n) = u32::try_from(n) {
        buf.put_u8(VARINT_U32);
        buf.put_u32_le(n);
    } else {
        buf.put_u8(VARINT_U64);
        buf.put_u64_le(n);
    }
}

/// A header of integers only (every message but those with text or metadata), put together
/// on the stack and appended in one copy rather than a capacity check per field.
struct Fixed {
    /// A tag and at most three varints of at most 9 bytes each.
    bytes: [u8; 28],
    len: usize,
}

impl Fixed {
    #[inline(always)]
    fn new(tag: u8) -> Fixed {
        let mut bytes = [0; 28];
        bytes[0] = tag;
        Fixed { bytes, len: 1 }
    }

    /// Appends `n` in the same encoding as [`put_varint`].
    #[inline(always)]
    fn varint(mut self, n: u64) -> Fixed {
        let at = self.len;
        self.len += if n <= 250 {
            self.bytes[at] = n as u8;
            1
        } else if let Ok(n) = u16::try_from(n) {
            self.bytes[at] = VARINT_U16;
            self.bytes[at + 1..at + 3].copy_from_slice(&n.to_le_bytes());
            3
        } else if let Ok(n) = u32::try_from(n) {
            self.bytes[at] = VARINT_U32;
            self.bytes[at + 1..at + 5].copy_from_slice(&n.to_le_bytes());
            5
        } else {
            self.bytes[at] = VARINT_U64;
            self.bytes[at + 1..at + 9].copy_from_slice(&n.to_le_bytes());
            9
        };
        self
    }

    /// Appends the header: all of the array, a copy of constant size, then cuts the unused
    /// end off again; cheaper than a copy of the header's own length.
    #[inline(always)]
    fn put(self, buf: &mut BytesMut) {
        let end = buf.len() + self.len;
        buf.put_slice(&self.bytes);
        buf.truncate(end);
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

/// Reads a hello's or a header's fields from the front of a payload.
///
/// Stricter than bincode in one way: an integer must be in its shortest form (`5` as `05`,
/// never `fb 05 00`). Encoders only write that form, and accepting others would let two
/// byte strings mean the same header. Bodies, decoded by bincode, accept the wider forms.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Why a hello's or a header's bytes do not decode. Small and `Copy`, so the integer readers
/// return it in registers on every field; it becomes words only when decoding fails.
#[derive(Debug, Clone, Copy)]
enum Bad {
    CutShort,
    /// A varint mark wider than the field.
    Wide(u8),
    /// A value and the mark it came with, which has a shorter form.
    NotShortest(u64, u8),
    /// Text that is not UTF-8, valid up to this byte.
    NotUtf8(usize),
    /// What, its declared length, and the bytes left.
    Overlong(&'static str, u64, usize),
    /// A metadata entry count over [`MAX_ENTRIES`].
    Entries(u64),
    UnknownTag(u32),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Bad::CutShort => write!(f, "the message is cut short"),
            Bad::Wide(mark) => {
                write!(f, "an integer marked {mark:#04x}, wider than the field allows")
            }
            Bad::NotShortest(n, mark) => {
                write!(f, "the integer {n} is not in its shortest form (marked {mark:#x})")
            }
            Bad::NotUtf8(at) => write!(f, "a text that is not UTF-8 (at byte {at})"),
            Bad::Overlong(what, len, left) => {
                write!(f, "{what} of {len} bytes with only {left} left")
            }
            Bad::Entries(count) => {
                write!(f, "metadata of {count} entries exceeds the limit of {MAX_ENTRIES}")
            }
            Bad::UnknownTag(tag) => write!(f, "unknown message type {tag}"),
        }
    }
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let rest = &self.bytes[self.at..];
        let bytes = *rest.first_chunk::<N>().ok_or(Bad::CutShort)?;
        self.at += N;
        Ok(bytes)
    }

    /// A varint of at most `max_mark` width, in its shortest form.
    #[inline(always)]
    fn varint(&mut self, max_mark: u8) -> Result<u64, Bad> {
        let [mark] = self.take::<1>()?;
        let (n, shortest) = match mark {
            0..=250 => return Ok(u64::from(mark)),
            _ if mark > max_mark => return Err(Bad::Wide(mark)),
            VARINT_U16 => (u64::from(u16::from_le_bytes(self.take()?)), 251),
            VARINT_U32 => (u64::from(u32::from_le_bytes(self.take()?)), 1 << 16),
            _ => (u64::from_le_bytes(self.take()?), 1 << 32),
        };
        if n < shortest {
            return Err(Bad::NotShortest(n, mark));
        }
        Ok(n)
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, Bad> {
        // A u16 mark never carries more than 16 bits.
        self.varint(VARINT_U16).map(|n| n as u16)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Bad> {
        // A u32 mark never carries more than 32 bits.
        self.varint(VARINT_U32).map(|n| n as u32)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Bad> {
        self.varint(VARINT_U64)
    }

    /// A Failure's or Close's message, cut to [`MAX_MESSAGE`] bytes like one we send: a peer
    /// that sends a longer one still gets it shown, but no longer than ours.
    fn message(&mut self) -> Result<&'a str, Bad> {
        self.string().map(cut)
    }

    /// A length-prefixed UTF-8 text, borrowed from the payload.
    fn string(&mut self) -> Result<&'a str, Bad> {
        let bytes = self.byte_slice("a text")?;
        std::str::from_utf8(bytes).map_err(|e| Bad::NotUtf8(e.valid_up_to()))
    }

    /// A length-prefixed run of bytes, borrowed from the payload.
    fn byte_slice(&mut self, what: &'static str) -> Result<&'a [u8], Bad> {
        let len = self.u64()?;
        let rest = &self.bytes[self.at..];
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|len| rest.get(..len))
            .ok_or(Bad::Overlong(what, len, rest.len()))?;
        self.at += bytes.len();
        Ok(bytes)
    }

    /// A request's metadata, checked and left where it lies. More than [`MAX_ENTRIES`]
    /// entries are refused here: the only limit that breaks the protocol (the others fail the
    /// one call), so that a frame of many empty entries cannot make us hold many.
    fn metadata(&mut self) -> Result<MetadataRef<'a>, Bad> {
        let count = self.u64()?;
        if count > MAX_ENTRIES as u64 {
            return Err(Bad::Entries(count));
        }
        let start = self.at;
        for _ in 0..count {
            self.entry()?;
        }
        let bytes = &self.bytes[start..self.at];
        Ok(MetadataRef::Received { count: count as usize, bytes })
    }

    /// One metadata entry: its key and its value.
    fn entry(&mut self) -> Result<(&'a str, &'a [u8]), Bad> {
        Ok((self.string()?, self.byte_slice("a metadata value")?))
    }
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
