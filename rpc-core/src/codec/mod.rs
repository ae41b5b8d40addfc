//! The one place that calls bincode: every body the crate encodes or decodes goes through here.
//!
//! Keeping bincode behind these functions means the body codec can be swapped without touching
//! framing, the client or the server. A panic in a value's own `Serialize` or `Deserialize` is
//! caught and returned as an error, and encoding appends nothing unless it succeeds.
//!
//! # Limits and guarantees
//!
//! Decoding a body of N bytes allocates only for what those N bytes hold, never for a length
//! they merely declare, whatever the frame limit:
//!
//! - a string or byte string is allocated only once its declared length is known to fit in the
//!   bytes left in the body, so strings take at most N bytes in all;
//! - sequences and maps hold at most N elements in all: every element counts as at least one
//!   byte, which refuses only a sequence of values that take no bytes on the wire (a `Vec<()>`)
//!   longer than its body;
//! - sequences and maps reserve room ahead of their elements for at most N elements in all,
//!   each for no more than the bytes left when it starts (and no more than 1 MiB, serde's own
//!   cap); past that they grow as their elements arrive.
//!
//! In bytes: a value whose sequences are `Vec`s of elements of at most S bytes in memory takes
//! at most (5·S + 9)·N bytes to decode, plus an error message: N for strings, S·N reserved
//! ahead, and 4·S + 8 per element decoded, as a `Vec` that grows by doubling keeps room for up to
//! twice its elements and for at least 4 (8 of one byte). For a `Vec<i64>` that is 49·N. Maps,
//! boxes and other collections add their own overhead per element, and a hand-written
//! `Deserialize` allocates what it chooses.

mod body;
mod bounded;
mod messages;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use bincode::config::{Configuration, standard};
use bincode::enc::write::Writer;
use bincode::serde::OwnedSerdeDecoder;
use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use body::{Body, BodyReader};
use bounded::Bounded;

/// bincode's `standard()` configuration: little endian, variable-length integers. Without a
/// limit: bincode's limit is a budget on what it is about to allocate, and [`Bounded`] leaves
/// it nothing to allocate (it reads strings itself), so the rules above are kept there.
const CONFIG: Configuration = standard();

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError {
    /// What went wrong, in words fit to send to the peer.
    pub(crate) message: String,
    /// The value's own `Serialize` or `Deserialize` panicked: a bug on this side, not the
    /// peer's fault.
    pub(crate) panicked: bool,
}

impl CodecError {
    fn new(message: String) -> CodecError {
        CodecError { message, panicked: false }
    }

    /// `implementation` ("Serialize" or "Deserialize") panicked with `payload`.
    fn panicked(implementation: &str, payload: &(dyn Any + Send)) -> CodecError {
        let why = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let message = match why {
            Some(why) => format!("the value's {implementation} implementation panicked: {why}"),
            None => format!("the value's {implementation} implementation panicked"),
        };
        tracing::error!(error = %message, "caught a panic in serde code");
        CodecError { message, panicked: true }
    }
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Appends bincode's writes to a `BytesMut` without an intermediate buffer.
struct BytesWriter<'a>(&'a mut BytesMut);

impl Writer for BytesWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        // Most writes are one byte (a small integer, a tag): a constant-length copy, rather
        // than a call to `memcpy` for every field.
        match bytes {
            [byte] => self.0.put_u8(*byte),
            _ => self.0.put_slice(bytes),
        }
        Ok(())
    }
}

/// What is appended to `buf` while this lives, taken back when it is dropped uncommitted, by
/// an error or a panic alike.
struct Appended<'a> {
    buf: &'a mut BytesMut,
    start: usize,
    committed: bool,
}

impl<'a> Appended<'a> {
    fn new(buf: &'a mut BytesMut) -> Appended<'a> {
        let start = buf.len();
        Appended { buf, start, committed: false }
    }

    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Appended<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.buf.truncate(self.start);
        }
    }
}

/// Encodes `value` at the end of `buf`. On error, or a panic in `value`'s `Serialize`, `buf`
/// is left as it was: the buffer is shared by every call on a connection, and half a value
/// would corrupt the frame around it.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    let appended = Appended::new(buf);
    let encoded = panic::catch_unwind(AssertUnwindSafe(|| {
        bincode::serde::encode_into_writer(value, BytesWriter(&mut *appended.buf), CONFIG)
    }));
    match encoded {
        Ok(Ok(())) => {
            appended.commit();
            Ok(())
        }
        Ok(Err(e)) => Err(CodecError::new(messages::encode(&e))),
        Err(panic) => Err(CodecError::panicked("Serialize", &*panic)),
    }
}

/// Decodes one `T` from the front of `bytes` and returns it with the number of bytes it used,
/// within the limits of the module docs. A panic in `T`'s `Deserialize` is an error: a peer's
/// bytes must not unwind through the connection.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    let body = Body::new(bytes);
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut decoder = OwnedSerdeDecoder::from_reader(BodyReader(&body), CONFIG);
        T::deserialize(Bounded::new(decoder.as_deserializer(), &body))
    }));
    match decoded {
        Ok(Ok(value)) => Ok((value, body.used())),
        Ok(Err(e)) => Err(CodecError::new(messages::decode(&e))),
        Err(panic) => Err(CodecError::panicked("Deserialize", &*panic)),
    }
}

/// Decodes a `T` that must use every byte of `bytes`: trailing bytes are an error, since they
/// mean the peer's idea of the type differs from ours.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_prefix(bytes)?;
    match bytes.len().saturating_sub(used) {
        0 => Ok(value),
        1 => Err(CodecError::new("1 trailing byte after the value".to_owned())),
        n => Err(CodecError::new(format!("{n} trailing bytes after the value"))),
    }
}
