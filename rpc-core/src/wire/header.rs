//! How a [`Header`] is written and read, byte by byte.
//!
//! Every frame carries a header, so it is encoded and decoded by hand rather than through
//! serde: the bytes are exactly bincode's `standard()` encoding of `Header` (a varint variant
//! index, then the fields: varint integers, a string as a varint length and UTF-8 bytes), which
//! is what WIRE.md specifies and what a property test compares against bincode itself. The
//! decoder refuses two things bincode accepts: an integer wider than it needs to be, and bytes
//! after a message that has no body.

use bytes::{BufMut, BytesMut};

use super::{Header, MetadataRef, cut};
use crate::metadata::MAX_ENTRIES;

/// Marks of bincode's varints: a first byte up to 250 is the value; these say that a
/// little-endian u16, u32 or u64 follows. 254 (u128) and 255 are never valid in a header.
const VARINT_U16: u8 = 251;
const VARINT_U32: u8 = 252;
const VARINT_U64: u8 = 253;

impl Header<'_> {
    /// The message's name, for error messages.
    pub(super) fn kind(&self) -> &'static str {
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

    pub(super) fn encode(&self, buf: &mut BytesMut) {
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

    pub(super) fn decode<'a>(at: &mut Cursor<'a>) -> Result<Header<'a>, Bad> {
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
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

/// Why a hello's or a header's bytes do not decode. Small and `Copy`, so the integer readers
/// return it in registers on every field; it becomes words only when decoding fails.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bad {
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
    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
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
    pub(super) fn u16(&mut self) -> Result<u16, Bad> {
        // A u16 mark never carries more than 16 bits.
        self.varint(VARINT_U16).map(|n| n as u16)
    }

    #[inline]
    pub(super) fn u32(&mut self) -> Result<u32, Bad> {
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
    pub(super) fn entry(&mut self) -> Result<(&'a str, &'a [u8]), Bad> {
        Ok((self.string()?, self.byte_slice("a metadata value")?))
    }
}
