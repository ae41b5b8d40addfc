//! The two halves of a connection that client and server share: [`Outbox`] for writing and
//! [`FrameReader`] for reading.
//!
//! Writing is done by whoever has a frame to send, on its own task: it encodes into the shared
//! buffer under a short lock and, if nobody is writing, becomes the writer: it takes the bytes
//! out of the lock and writes them with a non-blocking `try_write`, then writes whatever others
//! queued meanwhile. Only when the socket pushes back does the connection's writer task take
//! over and wait for it to drain. So a call normally costs no task hop to get onto the wire,
//! nobody waits on the lock during a syscall, and frames that queue up while one write is under
//! way leave together in the next.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::frame;
use crate::net::Stream;
use crate::wire::{self, Header};
use crate::{Code, Error};

/// Bytes a held-back batch (corked, or deferred by callers) may reach before it is written
/// anyway. Small, so the peer starts on the first frames of a burst while the rest are still
/// being made, and both ends work at once; a few dozen small frames still share one write.
/// On one loopback connection with 128 callers this took throughput from about 1.5 M to
/// 1.75-2.2 M calls/s; 64 KiB (one write per burst) made the two ends take turns.
const FLUSH_AT: usize = 1024;

/// Queued bytes above which a server stops reading requests from a peer that does not read
/// its responses; with the frame limit this bounds the memory one connection can hold.
const HIGH_WATER: usize = 1024 * 1024;

/// The write side of a connection, shared by every task that sends on it.
#[derive(Debug)]
pub(crate) struct Outbox {
    stream: Arc<Stream>,
    state: Mutex<OutState>,
    /// Wakes the writer task: the socket pushed back, or the outbox closed.
    wake_writer: Notify,
    /// Wakes those waiting for the queue to shrink; see [`Outbox::flooded`].
    drained: Notify,
    /// [`OutState::queued`] as of the last change, readable without the lock.
    queued: AtomicUsize,
}

#[derive(Debug)]
struct OutState {
    /// Where frames are appended.
    buf: BytesMut,
    /// Bytes being written: taken out of the lock by the writer while its syscall runs, so
    /// senders only ever wait for an append, never for a `write`.
    out: BytesMut,
    writer: Writer,
    /// Frames are collected, not written, while the reader handles a batch of requests.
    corked: bool,
    /// A sender has promised to write the buffer soon (see [`Outbox::send_deferred`]).
    flush_owed: bool,
    /// No more frames are accepted; the writer task drains what is left and stops.
    closed: bool,
    /// Writing failed or was abandoned: everything queued is dropped.
    failed: bool,
    /// The largest frame payload the peer accepts.
    peer_max: usize,
}

/// Who writes to the socket; whoever it is also writes what others queue meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Nobody,
    /// A sender, on its own task, with non-blocking writes.
    Sender,
    /// The writer task, because the socket pushed back.
    Task,
}

/// How far a writer got.
enum Progress {
    Drained,
    Blocked,
    Failed,
}

impl Outbox {
    pub(crate) fn new(stream: Arc<Stream>, peer_max: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            stream,
            state: Mutex::new(OutState {
                buf: BytesMut::new(),
                out: BytesMut::new(),
                writer: Writer::Nobody,
                corked: false,
                flush_owed: false,
                closed: false,
                failed: false,
                peer_max,
            }),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            queued: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // The state stays consistent across a panic (every update is a single assignment or a
        // whole frame), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes one frame and starts writing it, unless it is corked, or a [`Flush`] is owed
    /// (see [`Outbox::send_deferred`]), which then writes it within a yield. An encoding error
    /// or an oversized frame fails this frame only; the connection stays usable.
    pub(crate) fn send<B: Serialize + ?Sized>(
        &self,
        header: &Header<'_>,
        body: Option<&B>,
    ) -> Result<(), Error> {
        let st = self.append(header, body)?;
        if !st.corked || st.buf.len() >= FLUSH_AT {
            self.write_out(st);
        }
        Ok(())
    }

    /// Answers call `id` with a framework error. Nothing to do if the connection is gone.
    pub(crate) fn fail_call(&self, id: u64, code: Code, message: &str) {
        let _ = self.send::<()>(&Header::failure(id, code, message), None);
    }

    /// Encodes one frame without writing it, so frames from callers that run one after the
    /// other leave in one write. The first such caller gets a [`Flush`]: it must let the other
    /// runnable tasks run (yield), then drop it, which writes the buffer. Dropping it early, as
    /// a cancelled caller does, writes too, so a frame is never stranded. A buffer that reaches
    /// [`FLUSH_AT`] is written at once by the caller that filled it.
    ///
    /// This holds while a write is under way, too: frames queued during one `write` are not
    /// sent by the writer as soon as it returns, a few at a time, but collected by a `Flush`
    /// like any others. Otherwise callers on two threads keep the writer sending tiny batches,
    /// one per syscall, which at 128 callers halved throughput.
    pub(crate) fn send_deferred<B: Serialize + ?Sized>(
        &self,
        header: &Header<'_>,
        body: Option<&B>,
    ) -> Result<Option<Flush<'_>>, Error> {
        let mut st = self.append(header, body)?;
        if st.corked || st.held_for_flush() {
            // The uncork, or the Flush already owed, writes it.
            return Ok(None);
        }
        if st.buf.len() >= FLUSH_AT {
            self.write_out(st);
            return Ok(None);
        }
        st.flush_owed = true;
        Ok(Some(Flush(self)))
    }

    /// Encodes one frame at the end of the queue; returns the lock for the caller to decide
    /// about writing.
    fn append<B: Serialize + ?Sized>(
        &self,
        header: &Header<'_>,
        body: Option<&B>,
    ) -> Result<MutexGuard<'_, OutState>, Error> {
        let mut st = self.lock();
        if st.closed {
            return Err(Error::ConnectionClosed);
        }
        let limit = st.peer_max;
        wire::encode(&mut st.buf, header, body, limit)?;
        self.queued.store(st.queued(), Ordering::Relaxed);
        Ok(st)
    }

    /// Holds frames back until [`Outbox::uncork`], so a batch of responses leaves in one write.
    pub(crate) fn cork(&self) {
        self.lock().corked = true;
    }

    /// Writes everything held back by [`Outbox::cork`].
    pub(crate) fn uncork(&self) {
        let mut st = self.lock();
        st.corked = false;
        self.write_out(st);
    }

    /// Whether more than [`HIGH_WATER`] bytes wait for the socket, without waiting for that
    /// to change; see [`Outbox::flooded`].
    pub(crate) fn over_high_water(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > HIGH_WATER
    }

    /// Whether more than [`HIGH_WATER`] bytes wait for the socket. `wake` (made from
    /// [`Outbox::drained`] before the call) completes once the writer task has made progress.
    pub(crate) fn flooded(&self, wake: Pin<&mut Notified<'_>>) -> bool {
        if !self.over_high_water() {
            return false;
        }
        // Register first, then look again, so a drain in between is not missed: the writer
        // updates the count before it notifies.
        wake.enable();
        self.over_high_water()
    }

    /// A future for [`Outbox::flooded`].
    pub(crate) fn drained(&self) -> Notified<'_> {
        self.drained.notified()
    }

    /// Refuses further frames. With `flush`, the writer task writes what is queued, then
    /// stops; without, what is queued is dropped and the writer stops at once.
    pub(crate) fn close(&self, flush: bool) {
        let mut st = self.lock();
        if flush {
            st.closed = true;
            st.corked = false;
            self.wake_writer.notify_one();
        } else {
            self.fail(&mut st);
        }
    }

    /// Writes what is queued, if nobody else is writing; hands what the socket does not take
    /// now to the writer task.
    fn write_out(&self, mut st: MutexGuard<'_, OutState>) {
        if st.writer != Writer::Nobody || st.failed {
            // The writer at work takes these bytes too before it stops.
            return;
        }
        st.writer = Writer::Sender;
        let (mut st, progress) = self.drain(st);
        st.writer = match progress {
            Progress::Blocked => {
                self.wake_writer.notify_one();
                Writer::Task
            }
            Progress::Drained | Progress::Failed => Writer::Nobody,
        };
        if st.closed {
            // The writer task may be waiting for us to finish before it stops.
            self.wake_writer.notify_one();
        }
    }

    /// Writes `out`, then what was queued meanwhile, until both are empty or the socket
    /// pushes back; the lock is released for every syscall. Only the writer calls it.
    fn drain<'a>(
        &'a self,
        mut st: MutexGuard<'a, OutState>,
    ) -> (MutexGuard<'a, OutState>, Progress) {
        loop {
            if st.failed {
                return (st, Progress::Failed);
            }
            if st.out.is_empty() {
                if st.buf.is_empty() || st.held_for_flush() {
                    return (st, Progress::Drained);
                }
                let st = &mut *st;
                std::mem::swap(&mut st.out, &mut st.buf);
            }
            let mut out = std::mem::take(&mut st.out);
            drop(st);
            let written = write_some(&self.stream, &mut out);
            st = self.lock();
            if st.failed {
                // Closed meanwhile: what was being written is dropped with the rest.
                return (st, Progress::Failed);
            }
            st.out = out;
            self.queued.store(st.queued(), Ordering::Relaxed);
            match written {
                Ok(true) => {}
                Ok(false) => return (st, Progress::Blocked),
                Err(_) => {
                    self.fail(&mut st);
                    return (st, Progress::Failed);
                }
            }
        }
    }

    /// Drops what is queued and stops accepting frames: a write failed (the reader sees the
    /// same error and ends the calls), or nobody needs the rest.
    fn fail(&self, st: &mut OutState) {
        st.closed = true;
        st.failed = true;
        st.buf = BytesMut::new();
        st.out = BytesMut::new();
        self.queued.store(0, Ordering::Relaxed);
        self.wake_writer.notify_one();
    }

    /// The connection's writer task: drains the queue whenever the socket pushed back, and
    /// returns once the outbox is closed and everything queued is written (or writing failed).
    pub(crate) async fn run_writer(self: Arc<Self>) {
        loop {
            let mine = {
                let st = self.lock();
                let leftover = st.closed && st.writer == Writer::Nobody && st.queued() > 0;
                if st.failed || st.closed && st.writer == Writer::Nobody && !leftover {
                    return;
                }
                st.writer == Writer::Task || leftover
            };
            if !mine {
                // A notify sent since the check above is kept as a permit, so none is lost.
                self.wake_writer.notified().await;
                continue;
            }
            if self.stream.writable().await.is_err() {
                self.fail(&mut self.lock());
                return;
            }
            let mut st = self.lock();
            if st.writer == Writer::Sender {
                continue;
            }
            st.writer = Writer::Task;
            let (mut st, progress) = self.drain(st);
            match progress {
                Progress::Drained => st.writer = Writer::Nobody,
                Progress::Blocked => {}
                Progress::Failed => return,
            }
            drop(st);
            self.drained.notify_waiters();
        }
    }
}

impl OutState {
    /// Whether the queued frames wait for a [`Flush`] to be dropped, which writes them: one
    /// is owed, the batch is still small, and the outbox is not closing.
    fn held_for_flush(&self) -> bool {
        self.flush_owed && !self.closed && self.buf.len() < FLUSH_AT
    }

    /// Bytes waiting for the socket (not counting a chunk a sender is writing right now).
    fn queued(&self) -> usize {
        self.buf.len() + self.out.len()
    }
}

/// The promise to write what [`Outbox::send_deferred`] queued; kept when dropped.
#[derive(Debug)]
pub(crate) struct Flush<'a>(&'a Outbox);

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.flush_owed = false;
        if !st.corked {
            self.0.write_out(st);
        }
    }
}

/// Size of each read from the socket; frames larger than this are read in several.
const READ_CHUNK: usize = 8 * 1024;

/// The read side of a connection: bytes from the socket, cut into frame payloads.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameReader {
    pub(crate) fn new(max_frame: usize) -> FrameReader {
        FrameReader { buf: BytesMut::new(), max_frame }
    }

    /// Hands the next complete payload in the buffer to `handle`, where it lies, and then
    /// drops it from the buffer; `Ok(None)` when no complete frame is buffered. Never waits.
    pub(crate) fn with_next<R>(
        &mut self,
        handle: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let Some(size) = frame::complete(&self.buf, self.max_frame)? else { return Ok(None) };
        let payload = &self.buf[frame::HEAD_LEN..frame::HEAD_LEN + size];
        let handled = handle(payload);
        self.buf.advance(frame::HEAD_LEN + size);
        Ok(Some(handled))
    }

    /// The next complete payload, taken out of the buffer so it can outlive it; `Ok(None)`
    /// when no complete frame is buffered. Never waits.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(size) = frame::complete(&self.buf, self.max_frame)? else { return Ok(None) };
        self.buf.advance(frame::HEAD_LEN);
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// Appends bytes as if read from the socket (for the fuzz targets).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held until the rest of their frame arrives.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads what the socket has after [`Stream::readable`] fired. `Ok(false)` is a clean end
    /// of stream; an end in the middle of a frame is an error.
    pub(crate) fn fill(&mut self, stream: &Stream) -> Result<bool, Error> {
        // Room for the rest of a frame whose head is in, if it is within the limit (one over
        // it is refused before this is reached), so a large frame is not grown into piecemeal.
        let missing = frame::declared(&self.buf)
            .filter(|&size| size <= self.max_frame)
            .map_or(0, |size| (frame::HEAD_LEN + size).saturating_sub(self.buf.len()));
        let room = missing.max(READ_CHUNK / 4);
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(room.max(READ_CHUNK));
        }
        match stream.try_read_buf(&mut self.buf) {
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

    /// Waits for the next frame. `Ok(None)` is a clean end of stream.
    pub(crate) async fn next(&mut self, stream: &Stream) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(frame) = self.next_buffered()? {
                return Ok(Some(frame));
            }
            stream.readable().await?;
            if !self.fill(stream)? {
                return Ok(None);
            }
        }
    }
}

/// Writes `out` until it is empty (`Ok(true)`) or the socket would block (`Ok(false)`).
fn write_some(stream: &Stream, out: &mut BytesMut) -> io::Result<bool> {
    while !out.is_empty() {
        match stream.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `buf`, waiting for the socket as needed; used only before or instead of a
/// connection's writer task (the hellos, a refusing Close).
pub(crate) async fn write_all(stream: &Stream, mut buf: BytesMut) -> io::Result<()> {
    while !write_some(stream, &mut buf)? {
        stream.writable().await?;
    }
    Ok(())
}
