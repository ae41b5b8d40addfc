//! The one place that calls bincode: every encode and decode in the crate goes through here.
//!
//! Keeping bincode behind these four functions means the body codec can be swapped without
//! touching framing, the client or the server.

use bincode::config::{Configuration, standard};
use bincode::enc::write::Writer;
use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// bincode's `standard()` configuration: little endian, variable-length integers.
const CONFIG: Configuration = standard();

/// A value could not be encoded or decoded; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError {
    pub(crate) message: String,
    /// The value's own `Serialize` or `Deserialize` code panicked.
    pub(crate) panicked: bool,
}

impl CodecError {
    fn new(message: String) -> CodecError {
        CodecError { message, panicked: false }
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
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.put_slice(bytes);
        Ok(())
    }
}

/// Encodes `value` at the end of `buf`. On error `buf` may hold a partial encoding; callers
/// truncate it back.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    bincode::serde::encode_into_writer(value, BytesWriter(buf), CONFIG)
        .map_err(|e| CodecError::new(e.to_string()))
}

/// The decode limit for payloads up to the default frame size.
const SMALL_LIMIT: usize = crate::frame::DEFAULT_MAX_FRAME;

/// The decode limit for larger payloads: the largest frame a 4-byte length can declare.
const LARGE_LIMIT: usize = u32::MAX as usize;

/// Decodes one `T` from the front of `bytes` and returns it with the number of bytes it used.
///
/// bincode allocates a string's or byte buffer's declared length before it reads the bytes,
/// so without a limit a peer's 9-byte length could ask for a terabyte and abort the process.
/// With one, a length past it is a decode error. Everything decoded comes from one frame, so a
/// length longer than `bytes` is bogus anyway: a payload up to the default frame size is
/// decoded with that size as its limit, a larger one (a raised `max_frame`) with 4 GiB.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    let decoded = if bytes.len() <= SMALL_LIMIT {
        bincode::serde::decode_from_slice(bytes, CONFIG.with_limit::<SMALL_LIMIT>())
    } else {
        bincode::serde::decode_from_slice(bytes, CONFIG.with_limit::<LARGE_LIMIT>())
    };
    decoded.map_err(|e| CodecError::new(e.to_string()))
}

/// Decodes a `T` that must use every byte of `bytes`: trailing bytes are an error, since they
/// mean the peer's idea of the type differs from ours.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::new(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}
