//! The I/O side of writing a connection: an [`Outbound`] state machine under a lock, whose bytes
//! go onto the socket on the task of whoever sends, or on the writer task once the socket has
//! pushed back.
//!
//! A sender queues its frame under a short lock and, if nobody is writing, becomes the writer:
//! it writes with non-blocking `try_write`, outside the lock, then writes whatever others queued
//! meanwhile. So a call normally costs no task hop to get onto the wire, nobody waits on the
//! lock during a syscall, and frames that queue up during one write leave together in the next.
//! Every change of what waiters can observe ([`Signal`]) wakes them through one [`Notify`].

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::Error;
use crate::codec::CodecError;
use crate::net::Stream;
use crate::proto::inbound::FrameReader;
use crate::proto::outbound::{FLUSH_AT, HIGH_WATER, Io, Outbound, State, Turn, Written};
use crate::wire::Header;

/// How long a closing connection's writer waits for a peer that does not read the last bytes.
const LINGER: Duration = Duration::from_secs(5);

/// The write side of a connection, shared by every task that sends on it.
#[derive(Debug)]
pub(crate) struct Outbox {
    stream: Arc<Stream>,
    state: Mutex<Outbound>,
    /// Wakes waiters (the writer task, a server waiting for its peer to read) whenever the
    /// state's [`Signal`](crate::proto::outbound::Signal) changes.
    changed: Notify,
    /// [`Outbound::queued`] as of the last change, readable without the lock.
    queued: AtomicUsize,
}

impl Outbox {
    pub(crate) fn new(stream: Arc<Stream>, peer_max: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            stream,
            state: Mutex::new(Outbound::new(peer_max)),
            changed: Notify::new(),
            queued: AtomicUsize::new(0),
        })
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Outbound> {
        // A panic cannot leave the state half-changed: frames are pushed whole (a guard
        // removes a partial one on unwind) and every transition is a few assignments.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one transition, then wakes the waiters if it changed what they can observe.
    fn update<R>(&self, transition: impl FnOnce(&mut Outbound) -> R) -> R {
        let mut out = self.lock();
        let before = out.signal();
        let result = transition(&mut out);
        self.queued.store(out.queued(), Ordering::Relaxed);
        let changed = out.signal().wakes_from(before);
        drop(out);
        if changed {
            self.changed.notify_waiters();
        }
        result
    }

    /// Applies a transition that never changes what waiters observe: queueing frames (a
    /// rising queue wakes nobody), holding, releasing, a sender becoming the writer. The
    /// hot path of every call, so it skips comparing signals; debug builds check the claim.
    fn update_quiet<R>(&self, transition: impl FnOnce(&mut Outbound) -> R) -> R {
        let mut out = self.lock();
        #[cfg(debug_assertions)]
        let before = out.signal();
        let result = transition(&mut out);
        self.queued.store(out.queued(), Ordering::Relaxed);
        #[cfg(debug_assertions)]
        assert!(!out.signal().wakes_from(before), "a quiet transition changed the signal");
        result
    }

    /// Writes while the state machine hands this writer bytes.
    #[inline]
    fn write_turns(&self, mut turn: Turn) {
        while let Turn::Write(mut bytes) = turn {
            let written = write_some(&self.stream, &mut bytes);
            turn = self.update(|out| out.wrote(bytes, written));
        }
    }

    /// Queues one frame and writes it now, unless frames are held (see
    /// [`Outbox::send_deferred`] and [`Outbox::cork`]). A frame that cannot be encoded, or is
    /// over the peer's limit, fails alone; the connection stays usable.
    pub(crate) fn send(
        &self,
        header: &Header<'_>,
        body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<(), Error> {
        let turn = self.update_quiet(|out| out.push(header, body).map(|()| out.start()))?;
        self.write_turns(turn);
        Ok(())
    }

    /// Queues whole frames encoded elsewhere, all or none, and writes them now unless frames
    /// are held; leaves `frames` empty. See [`Outbound::append`].
    pub(crate) fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error> {
        let turn = self.update_quiet(|out| out.append(frames).map(|()| out.start()))?;
        self.write_turns(turn);
        Ok(())
    }

    /// Whether the socket pushed back and the writer task waits to write the rest.
    pub(crate) fn is_pushed_back(&self) -> bool {
        self.lock().state() == State::Open(Io::Blocked)
    }

    /// Completes once the socket no longer pushes back, or writing is over.
    pub(crate) async fn room(&self) {
        loop {
            let changed = self.changed();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if !self.is_pushed_back() {
                return;
            }
            changed.await;
        }
    }

    /// The largest frame payload the peer accepts.
    pub(crate) fn peer_max(&self) -> usize {
        self.lock().peer_max()
    }

    /// Answers call `id` with a framework error. Nothing to do if the connection is gone.
    pub(crate) fn fail_call(&self, id: u64, code: crate::Code, message: &str) {
        let _ = self.send(&Header::failure(id, code, message), crate::wire::no_body);
    }

    /// Queues one frame without writing it, so frames from callers that run one after the
    /// other leave in one write. The first such caller gets a [`Flush`]: it must let the other
    /// runnable tasks run (yield), then drop it, which writes the batch. Dropping it early, as
    /// a cancelled caller does, writes too, so a frame is never stranded. A batch that reaches
    /// [`FLUSH_AT`] is written at once by the caller that filled it.
    ///
    /// Frames queued while a write is under way wait for a `Flush` too, rather than leave as
    /// soon as that write returns, a few at a time: with callers on two threads that kept the
    /// writer sending tiny batches, one per syscall, which at 128 callers halved throughput.
    pub(crate) fn send_deferred(
        &self,
        header: &Header<'_>,
        body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<Option<Flush<'_>>, Error> {
        let (turn, owed) = self.update_quiet(|out| {
            out.push(header, body)?;
            if out.is_held() || out.queued() >= FLUSH_AT {
                // The hold already owed writes it, or the batch is big enough to go now.
                return Ok((out.start(), false));
            }
            out.hold();
            Ok::<_, Error>((Turn::Rest, true))
        })?;
        self.write_turns(turn);
        // `then`, not `then_some`: a `Flush` made and dropped here would end the hold that
        // another caller owes, and write its batch at once.
        Ok(owed.then(|| Flush(self)))
    }

    /// Holds frames back until [`Outbox::uncork`], so a batch of responses leaves in one write.
    pub(crate) fn cork(&self) {
        self.update_quiet(Outbound::hold);
    }

    /// Writes everything held back by [`Outbox::cork`].
    pub(crate) fn uncork(&self) {
        let turn = self.update_quiet(|out| {
            out.release();
            out.start()
        });
        self.write_turns(turn);
    }

    /// Whether more than [`HIGH_WATER`] bytes wait for the socket; without the lock.
    pub(crate) fn over_high_water(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > HIGH_WATER
    }

    /// Completes at the next change of what waiters can observe: the queue drained below the
    /// high-water mark, the socket pushed back, closing, failure. Enable it before looking.
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// Whether writing failed or was abandoned (the peer is gone, or nobody needs the rest).
    pub(crate) fn is_failed(&self) -> bool {
        self.lock().state() == State::Failed
    }

    /// Refuses further frames. With `flush`, the writer task writes what is queued, then
    /// stops; without, what is queued is dropped and the writer stops at once.
    pub(crate) fn close(&self, flush: bool) {
        self.update(|out| if flush { out.close() } else { out.fail() });
    }

    /// Drops what is queued, sends `header` (a Close frame) and closes.
    pub(crate) fn close_with(&self, header: &Header<'_>) {
        self.update(|out| out.close_with(header));
    }

    /// The connection's writer task: writes whenever the socket pushed back or a closing
    /// connection has bytes nobody writes, and returns once writing is over. A closing
    /// connection whose peer does not read within [`LINGER`] is given up.
    pub(crate) async fn run_writer(self: Arc<Self>) {
        let mut closing_since = None;
        loop {
            let ready = {
                // Dropped before this task writes: a waiter still registered would be woken by
                // the task's own transitions, and tokio reschedules a task woken while it runs
                // as if it had yielded, waking the other worker thread for nothing.
                let changed = self.changed();
                let mut changed = std::pin::pin!(changed);
                changed.as_mut().enable();
                let (needs_task, state) = {
                    let out = self.lock();
                    (out.needs_task(), out.state())
                };
                match state {
                    State::Closed | State::Failed => return self.shut(state),
                    State::Closing(_) => {
                        closing_since.get_or_insert_with(tokio::time::Instant::now);
                    }
                    State::Open(_) => {}
                }
                if !needs_task {
                    changed.await;
                    continue;
                }
                let linger = closing_since.map(|since| since + LINGER);
                tokio::select! {
                    ready = self.stream.writable() => ready,
                    () = &mut changed => continue,
                    () = sleep_until(linger) => Err(io::ErrorKind::TimedOut.into()),
                }
            };
            if ready.is_err() {
                self.update(Outbound::fail);
                return self.shut(State::Failed);
            }
            let turn = self.update(Outbound::resume);
            self.write_turns(turn);
        }
    }
}

impl Outbox {
    /// Once writing is over, tells the peer: the end of our stream after everything was
    /// written, or of both directions when writing was abandoned. Whoever still holds the
    /// socket (a client handle) then holds a socket the peer has seen close.
    fn shut(&self, end: State) {
        let how = if end == State::Closed { Shutdown::Write } else { Shutdown::Both };
        let _ = self.stream.shutdown(how);
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The promise to write what [`Outbox::send_deferred`] held back; kept when dropped.
#[derive(Debug)]
pub(crate) struct Flush<'a>(&'a Outbox);

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        self.0.uncork();
    }
}

/// Writes from `out` until it is empty or the socket would block; what is written is cut off
/// the front of `out`.
fn write_some(stream: &Stream, out: &mut BytesMut) -> io::Result<Written> {
    while !out.is_empty() {
        match stream.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Written::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Written::All)
}

/// Writes all of `buf`, waiting for the socket as needed; used only before or instead of a
/// connection's writer task (the hellos, a refusing Close).
pub(crate) async fn write_all(stream: &Stream, mut buf: BytesMut) -> io::Result<()> {
    while let Written::WouldBlock = write_some(stream, &mut buf)? {
        stream.writable().await?;
    }
    Ok(())
}

/// Waits for the next frame, before a connection has its reader loop (the hellos).
/// `Ok(None)` is a clean end of stream.
pub(crate) async fn next_frame(
    stream: &Stream,
    reader: &mut FrameReader,
) -> Result<Option<bytes::Bytes>, Error> {
    loop {
        if let Some(frame) = reader.next_buffered()? {
            return Ok(Some(frame));
        }
        stream.readable().await?;
        if !reader.fill(|buf| stream.try_read_buf(buf))? {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests;
