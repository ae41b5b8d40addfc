//! Length-prefixed frames: a 4-byte big-endian payload length, then the payload.
//!
//! ```text
//! +----------------+---------------------------+
//! | len: u32 (BE)  | payload: len bytes        |
//! +----------------+---------------------------+
//! ```
//!
//! Reading parses the prefix in place: a declared length over the limit is refused before any
//! memory is reserved for it, and a complete frame is handled where it lies in the read buffer,
//! so cutting frames costs no allocation and no reference count. Writing is done in place too:
//! the frame is encoded straight into the connection's write buffer and its length patched in
//! afterwards, so a body is serialized once and never copied.

use bytes::BytesMut;

use crate::Error;

/// Bytes of the length prefix.
pub(crate) const HEAD_LEN: usize = 4;

/// The default largest frame payload accepted, in bytes: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// The payload length the frame at the front of `src` declares, once its head is in; not
/// checked against any limit (see [`complete`]).
pub(crate) fn declared(src: &[u8]) -> Option<usize> {
    src.first_chunk::<HEAD_LEN>().map(|head| u32::from_be_bytes(*head) as usize)
}

/// The payload length of the frame at the front of `src` if all of it is there; `Ok(None)`
/// means more bytes are needed. A declared length over `max` is an error: the stream cannot be
/// trusted after it, and the connection must close.
pub(crate) fn complete(src: &[u8], max: usize) -> Result<Option<usize>, Error> {
    let Some(size) = declared(src) else { return Ok(None) };
    if size > max {
        return Err(Error::FrameTooLarge { size, limit: max });
    }
    Ok((src.len() - HEAD_LEN >= size).then_some(size))
}

/// Starts a frame at the end of `buf`; returns where it starts, for [`finish`].
pub(crate) fn begin(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEAD_LEN]);
    start
}

/// Patches the length of the frame begun at `start`. A payload over `limit` is removed again
/// and reported, leaving `buf` as it was before [`begin`].
pub(crate) fn finish(buf: &mut BytesMut, start: usize, limit: usize) -> Result<(), Error> {
    let size = buf.len() - start - HEAD_LEN;
    if size > limit || u32::try_from(size).is_err() {
        buf.truncate(start);
        return Err(Error::FrameTooLarge { size, limit });
    }
    buf[start..start + HEAD_LEN].copy_from_slice(&(size as u32).to_be_bytes());
    Ok(())
}
