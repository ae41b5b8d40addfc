//! Length-prefixed frames: a 4-byte big-endian payload length, then the payload.
//!
//! ```text
//! +----------------+---------------------------+
//! | len: u32 (BE)  | payload: len bytes        |
//! +----------------+---------------------------+
//! ```
//!
//! Reading goes through tokio-util's `LengthDelimitedCodec`, which refuses a declared length
//! over the limit before reserving any memory for it. Writing is done in place: the frame is
//! encoded straight into the connection's write buffer and its length patched in afterwards,
//! so a body is serialized once and never copied.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use crate::Error;

/// Bytes of the length prefix.
pub(crate) const HEAD_LEN: usize = 4;

/// The default largest frame payload accepted, in bytes: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// Splits a byte stream into frame payloads.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    codec: LengthDelimitedCodec,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_type::<u32>()
            .max_frame_length(max)
            .new_codec();
        FrameDecoder { codec, max }
    }

    /// The next complete payload in `src`: `Ok(None)` means more bytes are needed, `Err` means
    /// the stream is corrupt and the connection must close.
    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        self.codec.decode(src).map_err(|e| {
            // The codec's only error is an over-long declared length; it leaves the head in
            // `src`, so the size can be named.
            match src.first_chunk::<HEAD_LEN>() {
                Some(head) if u32::from_be_bytes(*head) as usize > self.max => {
                    Error::FrameTooLarge {
                        size: u32::from_be_bytes(*head) as usize,
                        limit: self.max,
                    }
                }
                _ => Error::Protocol(format!("bad frame: {e}")),
            }
        })
    }
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
