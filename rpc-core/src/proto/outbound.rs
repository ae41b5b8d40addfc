//! The write side of a connection as a state machine: frames go in whole, bytes to write come
//! out, and the writer reports how each write went. No socket, lock or task in here: the I/O
//! layer (`conn.rs`) keeps an [`Outbound`] under a mutex and moves the bytes.
//!
//! Whoever has a frame to send queues it and, if nobody is writing, becomes the writer: it
//! takes the bytes ([`Turn::Write`]) and reports the outcome ([`Outbound::wrote`]), which hands
//! it the next bytes, until everything is written or the socket pushes back. Then the state is
//! `Blocked` and the connection's writer task takes over once the socket is writable.

use std::collections::VecDeque;
use std::io;

use bytes::BytesMut;

use crate::Error;
use crate::budget::Charge;
use crate::codec::CodecError;
use crate::wire::{self, Header};

/// Bytes a held-back batch (see [`Outbound::hold`]) may reach before it is written anyway.
/// Small, so the peer starts on the first frames of a burst while the rest are still being
/// made, and both ends work at once; a few dozen small frames still share one write. On one
/// loopback connection with 128 callers this took throughput from about 1.5 M to 1.75-2.2 M
/// calls/s; 64 KiB (one write per burst) made the two ends take turns.
pub(crate) const FLUSH_AT: usize = 1024;

/// Queued bytes above which the connection counts as flooded: a server stops reading requests
/// from a peer that does not read its responses. With the frame limit this bounds the memory
/// one connection can hold.
pub(crate) const HIGH_WATER: usize = 1024 * 1024;

/// Frames encoded elsewhere ([`Outbound::append`]) at least this large are queued as they are,
/// to be written on their own, rather than copied after the frames already queued.
const APPEND_WHOLE_AT: usize = 4 * 1024;

/// A written batch's buffer of at most this many bytes is kept to give back to the next
/// sender of a batch, so that a stream of large items allocates (and faults in) fewer buffers.
const SPARE_AT_MOST: usize = 256 * 1024;

/// Whether frames are accepted, and who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// New frames are accepted.
    Open(Io),
    /// No new frames; what is queued is still written, then the state is `Closed`.
    Closing(Io),
    /// Everything queued was written; nothing more will be.
    Closed,
    /// Writing failed or was abandoned: what was queued is dropped.
    Failed,
}

/// Who is writing, while frames are still written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// Nobody: the next sender with something to write becomes the writer.
    Idle,
    /// One writer holds bytes taken from the queue and is writing them; others only queue.
    Writing,
    /// The socket pushed back; the writer task waits until it is writable.
    Blocked,
}

/// Granularity of what the queue charges to the process's buffer budget: a queue that stays
/// under it touches the budget once, not for every frame.
const CHARGE_STEP: usize = 4096;

/// What a writer does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Write these bytes, then report with [`Outbound::wrote`].
    Write(BytesMut),
    /// Nothing for this writer: another one writes, the batch is held, or nothing is queued.
    Rest,
    /// The socket pushed back: the writer task must wait until it is writable.
    Wait,
    /// Writing is over: closed or failed.
    Stop,
}

/// How a write went, as the writer saw it.
#[derive(Debug)]
pub(crate) enum Written {
    /// Everything was written.
    All,
    /// Some or none was written; the socket would block for the rest.
    WouldBlock,
}

/// What waiters on the connection can observe; the I/O layer wakes them whenever it changes,
/// so nobody waits for one event while another has happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signal {
    state: State,
    flooded: bool,
}

/// The write side of one connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    state: State,
    /// Bytes a writer handed back unwritten; they go before `queue`. Between writes it keeps
    /// the buffer's allocation, which the next swap gives to `queue`.
    out: BytesMut,
    /// Batches of whole frames appended whole after `out`, each written on its own.
    batches: VecDeque<BytesMut>,
    /// The bytes in `batches`.
    batched: usize,
    /// Whole frames queued after `out` and `batches`.
    queue: BytesMut,
    /// The empty buffer of a written batch, for [`Outbound::append`] to give back.
    spare: Option<BytesMut>,
    /// Reasons to hold queued frames back: a server reading a batch of requests, a caller that
    /// owes a flush. A batch that reaches [`FLUSH_AT`] is written anyway.
    holds: u32,
    /// The largest frame payload the peer accepts.
    peer_max: usize,
    /// What the queued bytes charge to the process's buffer budget, in [`CHARGE_STEP`]s.
    charge: Charge,
}

impl Outbound {
    pub(crate) fn new(peer_max: usize) -> Outbound {
        Outbound {
            state: State::Open(Io::Idle),
            out: BytesMut::new(),
            batches: VecDeque::new(),
            batched: 0,
            queue: BytesMut::new(),
            spare: None,
            holds: 0,
            peer_max,
            charge: Charge::default(),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Queues one frame, whole or not at all: an encoding error, a panic in the body's
    /// `Serialize`, a frame over the peer's limit or one the process's buffer budget has no
    /// room for leaves the queue as it was, and the connection usable. (An error frame always
    /// fits: it is small, and refusing it would leave a call unanswered.)
    pub(crate) fn push(
        &mut self,
        header: &Header<'_>,
        body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<(), Error> {
        if !matches!(self.state, State::Open(_)) {
            return Err(Error::ConnectionClosed);
        }
        let before = self.queue.len();
        wire::encode(&mut self.queue, header, body, self.peer_max)?;
        let queued = self.queued();
        if queued > self.charge.bytes() {
            let charged = self.charge.set(queued.next_multiple_of(CHARGE_STEP));
            if let Err(e) = charged
                && self.queue.len() - before > wire::MIN_MAX_FRAME
            {
                self.queue.truncate(before);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Queues whole frames encoded elsewhere (each within [`Outbound::peer_max`]), all or
    /// none, and leaves `frames` empty. They move without a copy into an empty queue, or, if
    /// there are [`APPEND_WHOLE_AT`] bytes or more, as a batch of their own after what is
    /// queued; fewer are copied after it. Frames the process's buffer budget has no room for
    /// are refused, as [`Outbound::push`] refuses one frame: unless they are small.
    pub(crate) fn append(&mut self, frames: &mut BytesMut) -> Result<(), Error> {
        if !matches!(self.state, State::Open(_)) {
            return Err(Error::ConnectionClosed);
        }
        let queued = self.queued() + frames.len();
        if queued > self.charge.bytes() {
            let charged = self.charge.set(queued.next_multiple_of(CHARGE_STEP));
            if let Err(e) = charged
                && frames.len() > wire::MIN_MAX_FRAME
            {
                return Err(e);
            }
        }
        if self.queue.is_empty() && self.batches.is_empty() {
            std::mem::swap(&mut self.queue, frames);
        } else if frames.len() < APPEND_WHOLE_AT {
            self.queue.extend_from_slice(frames);
            frames.clear();
        } else {
            self.batched += self.queue.len() + frames.len();
            if !self.queue.is_empty() {
                self.batches.push_back(std::mem::take(&mut self.queue));
            }
            let spare = self.spare.take().unwrap_or_default();
            self.batches.push_back(std::mem::replace(frames, spare));
        }
        Ok(())
    }

    /// The largest frame payload the peer accepts.
    pub(crate) fn peer_max(&self) -> usize {
        self.peer_max
    }

    /// Holds queued frames back until [`Outbound::release`].
    pub(crate) fn hold(&mut self) {
        self.holds += 1;
    }

    /// Ends one [`Outbound::hold`]; call [`Outbound::start`] next to write what it held.
    pub(crate) fn release(&mut self) {
        self.holds = self.holds.saturating_sub(1);
    }

    pub(crate) fn is_held(&self) -> bool {
        self.holds > 0
    }

    /// A sender's turn after queueing or releasing: it becomes the writer if nobody is
    /// writing and something may be written.
    #[inline]
    pub(crate) fn start(&mut self) -> Turn {
        if self.state != State::Open(Io::Idle) {
            return Turn::Rest;
        }
        match self.next_chunk() {
            Some(bytes) => {
                self.state = State::Open(Io::Writing);
                Turn::Write(bytes)
            }
            None => Turn::Rest,
        }
    }

    /// Whether the writer task has work: the socket pushed back, or the connection is closing
    /// with bytes that nobody is writing.
    pub(crate) fn needs_task(&self) -> bool {
        matches!(
            self.state,
            State::Open(Io::Blocked) | State::Closing(Io::Blocked) | State::Closing(Io::Idle)
        )
    }

    /// The writer task's turn, once the socket is writable.
    pub(crate) fn resume(&mut self) -> Turn {
        let closing = match self.state {
            State::Open(Io::Blocked) => false,
            State::Closing(Io::Blocked | Io::Idle) => true,
            State::Closed | State::Failed => return Turn::Stop,
            State::Open(_) | State::Closing(Io::Writing) => return Turn::Rest,
        };
        match self.next_chunk() {
            Some(bytes) => {
                self.state =
                    if closing { State::Closing(Io::Writing) } else { State::Open(Io::Writing) };
                Turn::Write(bytes)
            }
            None if closing => {
                self.state = State::Closed;
                Turn::Stop
            }
            None => {
                self.state = State::Open(Io::Idle);
                Turn::Rest
            }
        }
    }

    /// The writer reports a write of bytes it took: `rest` is what is left of them.
    pub(crate) fn wrote(&mut self, rest: BytesMut, result: io::Result<Written>) -> Turn {
        let closing = match self.state {
            State::Open(Io::Writing) => false,
            State::Closing(Io::Writing) => true,
            // Abandoned while the write ran: the rest is dropped with everything else.
            _ => return Turn::Stop,
        };
        debug_assert!(self.out.is_empty(), "only the writer takes from `out`");
        self.out = rest;
        if self.charge.bytes() > CHARGE_STEP && self.queued() == 0 {
            // Drained after a burst: keep one step, give back the rest.
            let _ = self.charge.set(CHARGE_STEP);
        }
        let io = match result {
            Err(_) => {
                self.fail();
                return Turn::Stop;
            }
            Ok(Written::WouldBlock) => Io::Blocked,
            Ok(Written::All) => match self.next_chunk() {
                Some(bytes) => return Turn::Write(bytes),
                None => Io::Idle,
            },
        };
        self.state = match (closing, io) {
            (true, Io::Idle) => State::Closed,
            (true, io) => State::Closing(io),
            (false, io) => State::Open(io),
        };
        match self.state {
            State::Closed => Turn::Stop,
            State::Open(Io::Blocked) | State::Closing(Io::Blocked) => Turn::Wait,
            _ => Turn::Rest,
        }
    }

    /// The bytes to write next: the rest of an earlier write first, then the batches appended
    /// whole, then the queued frames, unless they are held.
    #[inline]
    fn next_chunk(&mut self) -> Option<BytesMut> {
        if self.out.is_empty() {
            if self.batched > 0 {
                return self.next_batch();
            }
            if self.queue.is_empty() || self.holding() {
                return None;
            }
            std::mem::swap(&mut self.out, &mut self.queue);
        }
        Some(std::mem::take(&mut self.out))
    }

    /// The first batch appended whole; its buffer, once written, is kept as the spare.
    /// Apart, so that the path of every call stays small.
    #[cold]
    fn next_batch(&mut self) -> Option<BytesMut> {
        let batch = self.batches.pop_front()?;
        self.batched -= batch.len();
        let mut written = std::mem::take(&mut self.out);
        // Room for more than the limit can be reclaimed only in a larger buffer.
        if self.spare.is_none() && written.try_reclaim(1) && !written.try_reclaim(SPARE_AT_MOST + 1)
        {
            self.spare = Some(written);
        }
        Some(batch)
    }

    /// Whether queued frames wait for a hold to end: only while open, and below [`FLUSH_AT`].
    fn holding(&self) -> bool {
        self.holds > 0 && matches!(self.state, State::Open(_)) && self.queue.len() < FLUSH_AT
    }

    /// Stops accepting frames; what is queued is still written. Holds no longer apply.
    pub(crate) fn close(&mut self) {
        self.state = match self.state {
            State::Open(Io::Idle) if self.queued() == 0 => State::Closed,
            State::Open(io) => State::Closing(io),
            other => other,
        };
    }

    /// Drops the queued frames and closes after `header` (a Close frame): the bytes of a frame
    /// being written are kept, so the peer still reads whole frames up to it.
    pub(crate) fn close_with(&mut self, header: &Header<'_>) {
        if !matches!(self.state, State::Open(_)) {
            return;
        }
        self.queue.clear();
        self.batches.clear();
        self.batched = 0;
        // An error frame always fits: messages are cut to fit the smallest frame limit.
        let _ = self.push(header, wire::no_body);
        self.close();
    }

    /// Drops everything queued and stops: writing failed, or nobody needs the rest.
    pub(crate) fn fail(&mut self) {
        self.state = State::Failed;
        self.out = BytesMut::new();
        self.batches = VecDeque::new();
        self.batched = 0;
        self.queue = BytesMut::new();
        self.spare = None;
        let _ = self.charge.set(0);
    }

    /// Bytes waiting for the socket, not counting a chunk a writer is writing right now.
    pub(crate) fn queued(&self) -> usize {
        self.out.len() + self.batched + self.queue.len()
    }

    pub(crate) fn signal(&self) -> Signal {
        // Which of the open states, or who writes while closing, is nobody's business but the
        // writers': only a change that someone may wait for is signalled.
        let state = match self.state {
            State::Open(Io::Idle | Io::Writing) => State::Open(Io::Idle),
            other => other,
        };
        Signal { state, flooded: self.queued() > HIGH_WATER }
    }
}

impl Signal {
    /// Whether going from `before` to this may end someone's wait: the state changed, or the
    /// queue fell below the high-water mark. Nobody waits for it to rise (whoever would,
    /// looks before waiting), and waking the writer task for that cost a thread wakeup for
    /// every large frame.
    pub(crate) fn wakes_from(self, before: Signal) -> bool {
        self.state != before.state || (before.flooded && !self.flooded)
    }
}

#[cfg(test)]
mod tests;
