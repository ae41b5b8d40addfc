//! The read side of a connection: bytes as they arrive, cut into frame payloads. No socket in
//! here: the I/O layer hands [`FrameReader::fill`] a function that reads.

use std::collections::VecDeque;
use std::io;

use bytes::{Buf, Bytes, BytesMut};

use crate::budget::Charge;
use crate::{Error, frame};

/// Size of each read from the socket; frames larger than this are read in several.
const READ_CHUNK: usize = 8 * 1024;

/// Room a frame gets at first, however large it says it is; it doubles as bytes arrive.
/// Large enough that a frame of a few hundred KiB grows in a few steps (each a larger read).
const GROW_FROM: usize = 64 * 1024;

/// A buffer emptied with more capacity than this is given back, so a connection that once
/// received a large frame does not keep its room while idle.
const KEEP_AT_MOST: usize = 64 * 1024;

/// Buffers that frames were taken out of, kept to read into again once those frames are
/// dropped. Fresh memory costs a page fault per 4 KiB when first written, and an allocator that
/// gives freed memory back to the system makes every buffer fresh: that was most of what a
/// stream of 64 KiB items cost its reader.
const SPARES: usize = 4;

/// Buffers larger than this are not kept as spares, so that a connection keeps at most
/// [`SPARES`] times this for reuse.
const SPARE_AT_MOST: usize = 256 * 1024;

/// What [`FrameReader::next_with`] did with the next frame.
#[derive(Debug)]
pub(crate) enum Next<R> {
    /// Handled where it lay, with this outcome.
    Handled(R),
    /// Taken out of the buffer.
    Frame(Bytes),
}

/// Bytes received and not yet handled, cut into frames. The buffer grows as bytes arrive, at
/// most doubling at a time, never to a frame's declared size at once; every growth is charged
/// to the process's buffer budget first. Frames taken out keep their buffer alive; the reader
/// goes on in another one (a spare whose frames are all gone, or a new one) and reuses the old
/// one once they are gone too.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    /// Earlier buffers, oldest first, each empty and shared with frames taken out of it.
    spares: VecDeque<BytesMut>,
    /// A frame taken out of `buf` may still hold it.
    shared: bool,
    /// About the size of the allocation `buf` reads into.
    size: usize,
    max_frame: usize,
    charge: Charge,
}

impl FrameReader {
    pub(crate) fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            spares: VecDeque::new(),
            shared: false,
            size: 0,
            max_frame,
            charge: Charge::default(),
        }
    }

    /// Changes the largest frame accepted from here on (after a hello read with a small one).
    pub(crate) fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Whether the buffer holds the start of a frame that has not all arrived.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty() && matches!(frame::complete(&self.buf, self.max_frame), Ok(None))
    }

    /// Hands the next complete payload in the buffer to `handle`, where it lies, and then
    /// drops it from the buffer, unless `handle` returns `None`: then the frame stays, to be
    /// handled later. `Ok(None)` when no complete frame is buffered, or it stays.
    pub(crate) fn with_next<R>(
        &mut self,
        handle: impl FnOnce(&[u8]) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let Some(size) = frame::complete(&self.buf, self.max_frame)? else { return Ok(None) };
        let payload = &self.buf[frame::HEAD_LEN..frame::HEAD_LEN + size];
        let handled = handle(payload);
        if handled.is_some() {
            self.buf.advance(frame::HEAD_LEN + size);
        }
        Ok(handled)
    }

    /// The next complete payload, taken out of the buffer so it can outlive it; `Ok(None)`
    /// when no complete frame is buffered.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(size) = frame::complete(&self.buf, self.max_frame)? else { return Ok(None) };
        self.buf.advance(frame::HEAD_LEN);
        self.shared = true;
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// The next complete payload, handled where it lies if `handle` returns `Some` for it
    /// ([`Next::Handled`]), or else taken out of the buffer ([`Next::Frame`]); `Ok(None)` when
    /// no complete frame is buffered.
    #[inline]
    pub(crate) fn next_with<R>(
        &mut self,
        handle: impl FnOnce(&[u8]) -> Option<R>,
    ) -> Result<Option<Next<R>>, Error> {
        let Some(size) = frame::complete(&self.buf, self.max_frame)? else { return Ok(None) };
        let payload = &self.buf[frame::HEAD_LEN..frame::HEAD_LEN + size];
        let handled = handle(payload);
        self.buf.advance(frame::HEAD_LEN);
        Ok(Some(match handled {
            Some(handled) => {
                self.buf.advance(size);
                Next::Handled(handled)
            }
            None => {
                self.shared = true;
                Next::Frame(self.buf.split_to(size).freeze())
            }
        }))
    }

    /// Appends bytes as if read from the socket.
    #[cfg(feature = "internals")]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held until the rest of their frame arrives.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Makes room and lets `read` append what the socket has (it returns the count, as
    /// `read(2)` does). `Ok(false)` is a clean end of stream; an end in the middle of a frame
    /// is an error; a read that would block changes nothing.
    pub(crate) fn fill(
        &mut self,
        read: impl FnOnce(&mut BytesMut) -> io::Result<usize>,
    ) -> Result<bool, Error> {
        // An emptied large buffer goes back, unless frames taken out of it are alive: then it
        // is theirs anyway, and this reader reuses it once they are gone (see `release`).
        if self.buf.is_empty() && self.buf.capacity() > KEEP_AT_MOST && !self.shared {
            self.drop_buffer();
        }
        // Room for more of a frame whose head is in (one over the limit is refused before this
        // is reached), but at most as much again as has arrived: a peer that declares a large
        // frame and sends little of it gets little room, and a large frame still grows in a
        // few doublings rather than a read's worth at a time.
        let missing = frame::declared(&self.buf)
            .filter(|&size| size <= self.max_frame)
            .map_or(0, |size| (frame::HEAD_LEN + size).saturating_sub(self.buf.len()));
        let room = missing.min(self.buf.len().max(GROW_FROM)).max(READ_CHUNK / 4);
        if self.buf.capacity() - self.buf.len() < room {
            // Charged at growths only (the budget is one atomic shared by every connection):
            // what the buffer needs from here on, which also gives back what frames split off
            // took with them.
            let grow = room.max(READ_CHUNK);
            self.charge.set(self.buf.len() + grow)?;
            self.make_room(grow);
        }
        match read(&mut self.buf) {
            Ok(0) if self.buf.is_empty() => Ok(false),
            Ok(0) => Err(Error::Protocol(format!(
                "connection closed in the middle of a frame ({} bytes unread)",
                self.buf.len()
            ))),
            Ok(_) => Ok(true),
            Err(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
            {
                Ok(true)
            }
            Err(e) => Err(Error::Io(e)),
        }
    }
}

impl FrameReader {
    /// Whether the reader keeps room beyond a small buffer: spares, or an emptied large buffer.
    pub(crate) fn keeps_room(&self) -> bool {
        !self.spares.is_empty() || (self.buf.is_empty() && self.buf.capacity() > KEEP_AT_MOST)
    }

    /// Gives back the spares, and the buffer if it is empty: for a connection with nothing in
    /// flight, which has no use for them until more comes.
    pub(crate) fn release(&mut self) {
        self.spares.clear();
        if self.buf.is_empty() {
            self.drop_buffer();
        }
    }

    fn drop_buffer(&mut self) {
        self.buf = BytesMut::new();
        (self.shared, self.size) = (false, 0);
        let _ = self.charge.set(0);
    }

    /// Makes room for `grow` more bytes: in place if no frame taken out of the buffer is still
    /// alive, else in the oldest spare whose frames are all gone, else in a new buffer; the
    /// bytes of the frame under way move along, and the old buffer becomes a spare.
    fn make_room(&mut self, grow: usize) {
        if !self.shared || self.buf.try_reclaim(grow) {
            self.shared = false;
            self.buf.reserve(grow);
            self.size = self.buf.capacity();
            return;
        }
        let need = self.buf.len() + grow;
        let reusable = self.spares.iter_mut().position(|spare| spare.try_reclaim(need));
        // A spare may still share its buffer with frames (the room was at its end).
        let (next, shared) = match reusable.and_then(|at| self.spares.remove(at)) {
            Some(spare) => (spare, true),
            None => (BytesMut::with_capacity(need.max(self.size)), false),
        };
        let mut old = std::mem::replace(&mut self.buf, next);
        self.buf.extend_from_slice(&old);
        old.clear();
        if self.size <= SPARE_AT_MOST {
            if self.spares.len() == SPARES {
                self.spares.pop_front();
            }
            self.spares.push_back(old);
        }
        self.size = self.buf.capacity();
        self.shared = shared;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn reads(reader: &mut FrameReader, bytes: &[u8]) -> Result<bool, Error> {
        reader.fill(|buf| {
            buf.put_slice(bytes);
            Ok(bytes.len())
        })
    }

    #[test]
    fn a_frame_arriving_a_byte_at_a_time_is_cut_once_complete() {
        let mut reader = FrameReader::new(1024);
        let stream = [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0];
        for (i, byte) in stream.iter().enumerate() {
            assert!(reads(&mut reader, &[*byte]).expect("fine"));
            let got = reader.with_next(|p| Some(p.to_vec())).expect("not corrupt");
            match i {
                6 => assert_eq!(got, Some(b"abc".to_vec())),
                10 => assert_eq!(got, Some(Vec::new()), "a zero-length frame is a frame"),
                _ => assert_eq!(got, None, "after byte {i}"),
            }
        }
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn a_frame_its_handler_leaves_stays_for_the_next_look() {
        let mut reader = FrameReader::new(1024);
        assert!(reads(&mut reader, &[0, 0, 0, 1, 7, 0, 0, 0, 1, 8]).expect("fine"));
        assert_eq!(reader.with_next(|_| None::<()>).expect("fine"), None);
        assert_eq!(reader.with_next(|p| Some(p.to_vec())).expect("fine"), Some(vec![7]));
        assert_eq!(reader.with_next(|p| Some(p.to_vec())).expect("fine"), Some(vec![8]));
    }

    #[test]
    fn a_frame_is_handled_in_place_or_taken_whole_as_the_handler_says() {
        let mut reader = FrameReader::new(1024);
        assert!(reads(&mut reader, &[0, 0, 0, 1, 7, 0, 0, 0, 2, 8, 9, 0, 0]).expect("fine"));
        let first = reader.next_with(|p| (p == [7]).then_some("here")).expect("fine");
        assert!(matches!(first, Some(Next::Handled("here"))));
        let second = reader.next_with(|p| (p == [7]).then_some("here")).expect("fine");
        assert!(matches!(second, Some(Next::Frame(frame)) if frame[..] == [8, 9]));
        assert!(reader.next_with(|_| Some(())).expect("fine").is_none(), "a frame cut short");
        assert_eq!(reader.buffered(), 2);
    }

    #[test]
    fn a_large_declared_frame_gets_room_as_its_bytes_arrive_not_at_once() {
        let mut reader = FrameReader::new(4 << 20);
        // A head declaring 4 MiB, and one byte of it.
        assert!(reads(&mut reader, &[0, 0x40, 0, 0, 7]).expect("fine"));
        let mut room = 0;
        assert!(
            reader
                .fill(|buf| {
                    room = buf.capacity() - buf.len();
                    Ok(0)
                })
                .is_err(),
            "an end of stream inside the frame"
        );
        assert!(room <= 128 * 1024, "{room} bytes of room for a frame with 1 byte in");
        assert!(reader.has_partial());
        // Fed in full, it arrives whole.
        let mut reader = FrameReader::new(4 << 20);
        let mut frame = vec![0, 0x10, 0, 0];
        frame.extend(vec![9_u8; 1 << 20]);
        for chunk in frame.chunks(64 * 1024) {
            assert!(reads(&mut reader, chunk).expect("fine"));
        }
        let got = reader.with_next(|p| Some(p.len())).expect("fine");
        assert_eq!(got, Some(1 << 20));
        assert!(!reader.has_partial());
    }

    #[test]
    fn clean_eof_between_frames_and_eof_inside_one_are_told_apart() {
        let mut reader = FrameReader::new(1024);
        assert!(!reader.fill(|_| Ok(0)).expect("clean end"));
        assert!(reads(&mut reader, &[0, 0, 0, 9, 1]).expect("fine"));
        let err = reader.fill(|_| Ok(0)).expect_err("end mid-frame");
        assert!(err.to_string().contains("middle of a frame"), "{err}");
    }

    #[test]
    fn would_block_and_interrupted_change_nothing_and_errors_pass_through() {
        let mut reader = FrameReader::new(1024);
        assert!(reader.fill(|_| Err(io::ErrorKind::WouldBlock.into())).expect("fine"));
        assert!(reader.fill(|_| Err(io::ErrorKind::Interrupted.into())).expect("fine"));
        let err = reader.fill(|_| Err(io::ErrorKind::ConnectionReset.into())).expect_err("fails");
        assert!(matches!(err, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_its_bytes_arrive() {
        let mut reader = FrameReader::new(1024);
        assert!(reads(&mut reader, &[0, 0, 4, 1]).expect("fine"));
        let err = reader.with_next(|_| Some(())).expect_err("too large");
        assert!(matches!(err, Error::FrameTooLarge { size: 1025, limit: 1024 }));
    }

    #[test]
    fn a_buffer_is_read_into_again_once_the_frames_taken_out_of_it_are_gone() {
        let mut reader = FrameReader::new(1 << 20);
        let frame = |len: usize| {
            let mut bytes = (len as u32).to_be_bytes().to_vec();
            bytes.resize(4 + len, 7);
            bytes
        };
        let start = |frame: &Bytes| frame.as_ptr() as usize - frame::HEAD_LEN;
        assert!(reads(&mut reader, &frame(1000)).expect("fine"));
        let first = reader.next_buffered().expect("fine").expect("whole");
        // The next frame needs more room than is left while the first holds the buffer: a
        // new buffer, and the old one is kept.
        assert!(reads(&mut reader, &frame(8000)[..1000]).expect("fine"));
        assert!(reads(&mut reader, &frame(8000)[1000..]).expect("fine"));
        let second = reader.next_buffered().expect("fine").expect("whole");
        assert_eq!(reader.spares.len(), 1);
        // Once the first frame is gone, its buffer is the next one read into.
        let old = start(&first);
        drop(first);
        assert!(reads(&mut reader, &frame(1000)).expect("fine"));
        let third = reader.next_buffered().expect("fine").expect("whole");
        assert_eq!(start(&third), old, "the old buffer is reused");
        assert_eq!(reader.spares.len(), 1, "and the second one's is kept in its place");
        drop((second, third));
        // A connection with nothing in flight gives them back.
        assert!(reader.keeps_room());
        reader.release();
        assert!(reader.spares.is_empty());
    }

    #[test]
    fn a_large_buffer_is_not_kept_as_a_spare() {
        let mut reader = FrameReader::new(1 << 20);
        let feed = |reader: &mut FrameReader, len: usize| {
            let mut bytes = (len as u32).to_be_bytes().to_vec();
            bytes.resize(4 + len, 7);
            for chunk in bytes.chunks(2048) {
                assert!(reads(reader, chunk).expect("fine"));
            }
        };
        feed(&mut reader, 300_000);
        let large = reader.next_buffered().expect("fine").expect("whole");
        assert!(reader.size > SPARE_AT_MOST);
        feed(&mut reader, 400_000);
        let _second = reader.next_buffered().expect("fine").expect("whole");
        assert!(reader.spares.is_empty(), "the 300 KB frame's buffer is left to it");
        drop(large);
    }
}
