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
#[inline]
pub(crate) fn complete(src: &[u8], max: usize) -> Result<Option<usize>, Error> {
    let Some(size) = declared(src) else { return Ok(None) };
    if size > max {
        return Err(Error::FrameTooLarge { size, limit: max });
    }
    Ok((src.len() - HEAD_LEN >= size).then_some(size))
}

/// A frame being appended to a buffer. Unless [`Building::finish`] accepts it, dropping it
/// removes every byte it added, also when the encoder panics and unwinds through it: a buffer
/// shared by a connection holds whole frames or none, whatever the serializer does.
pub(crate) struct Building<'a> {
    buf: &'a mut BytesMut,
    start: usize,
    finished: bool,
}

impl<'a> Building<'a> {
    /// Starts a frame at the end of `buf`, with room for its length.
    #[inline]
    pub(crate) fn begin(buf: &'a mut BytesMut) -> Building<'a> {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEAD_LEN]);
        Building { buf, start, finished: false }
    }

    /// Where the payload is appended.
    pub(crate) fn payload(&mut self) -> &mut BytesMut {
        self.buf
    }

    /// Patches in the length and keeps the frame; a payload over `limit` is removed and
    /// reported instead.
    #[inline]
    pub(crate) fn finish(mut self, limit: usize) -> Result<(), Error> {
        let size = self.buf.len() - self.start - HEAD_LEN;
        if size > limit || u32::try_from(size).is_err() {
            return Err(Error::FrameTooLarge { size, limit });
        }
        self.buf[self.start..self.start + HEAD_LEN].copy_from_slice(&(size as u32).to_be_bytes());
        self.finished = true;
        Ok(())
    }
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.buf.truncate(self.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_dropped_unfinished_leaves_the_buffer_as_it_was() {
        let mut buf = BytesMut::from(&b"kept"[..]);
        let mut frame = Building::begin(&mut buf);
        frame.payload().extend_from_slice(b"half a frame");
        drop(frame);
        assert_eq!(&buf[..], b"kept");
    }

    #[test]
    fn a_frame_is_removed_when_its_encoder_panics() {
        let mut buf = BytesMut::from(&b"kept"[..]);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut frame = Building::begin(&mut buf);
            frame.payload().extend_from_slice(b"partial");
            panic!("serializer failed midway");
        }));
        assert!(unwound.is_err());
        assert_eq!(&buf[..], b"kept");
    }

    #[test]
    fn a_finished_frame_gets_its_length_and_an_oversized_one_is_removed() {
        let mut buf = BytesMut::new();
        let mut frame = Building::begin(&mut buf);
        frame.payload().extend_from_slice(b"abc");
        frame.finish(3).expect("within the limit");
        assert_eq!(&buf[..], b"\0\0\0\x03abc");
        let mut frame = Building::begin(&mut buf);
        frame.payload().extend_from_slice(b"abcd");
        let err = frame.finish(3).expect_err("over the limit");
        assert!(matches!(err, Error::FrameTooLarge { size: 4, limit: 3 }));
        assert_eq!(buf.len(), 7);
    }
}
