//! The client's table of calls in flight: ids, the waiting callers, their results and
//! deadlines, the in-flight limit, and the watchdog that ends calls whose deadline passed.
//!
//! Callers register and collect calls while the connection's reader completes them, often on
//! another worker thread at the same moment. So the table is split into shards by id, each with
//! its own lock, and everything else a call touches is an atomic: consecutive calls land on
//! different shards, and no lock is shared by every call.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Code, Error};

/// Number of shards: enough that the reader and a few callers rarely meet on one.
const SHARDS: usize = 8;

/// The calls in flight on one connection.
#[derive(Debug)]
pub(crate) struct Calls {
    shards: [Shard; SHARDS],
    /// The id the next call gets; ids count up from 1. This and `in_flight` change with every
    /// call, so each has a cache line of its own, away from the fields that are mostly read.
    next_id: Padded<AtomicU64>,
    /// Calls registered and not yet removed; at most `max_in_flight`.
    in_flight: Padded<AtomicUsize>,
    max_in_flight: usize,
    /// Callers waiting for a slot (see [`Calls::wait_for_slot`]).
    queued: AtomicUsize,
    /// Wakes a queued caller: a call ended, or the connection closed.
    slot_freed: Notify,
    /// Wakes the watchdog: a shard's alarm moved earlier, or the connection closed.
    alarm_moved: Notify,
    /// Set once the connection is gone; the watchdog stops.
    closed: AtomicBool,
    /// The `last_id` of the server's GoAway ([`NO_GOAWAY`] before one): calls above it never
    /// started. Set before new calls are refused, so whoever is refused sees it.
    last_started: AtomicU64,
    /// Wakes whoever manages the connection (`reconnect`): GoAway came, or the connection closed.
    changed: Notify,
}

/// [`Calls::last_started`] until the server sends GoAway.
const NO_GOAWAY: u64 = u64::MAX;

/// A value on a cache line of its own, so that writes to it do not slow down other threads
/// using its neighbours.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// One lock's worth of the table.
type Shard = Padded<Mutex<ShardState>>;

#[derive(Debug, Default)]
struct ShardState {
    pending: HashMap<u64, Slot, BuildHasherDefault<IdHash>>,
    /// Why no new call may start, once that is so. Kept in every shard, and checked under
    /// the shard's lock, so a call registered while the connection closes is either refused
    /// or ended by [`Calls::close`], never stranded.
    refused: Option<Refusal>,
    /// When the watchdog must look at this shard next: no later than the earliest deadline
    /// of its waiting calls (it may be earlier, for a call since finished); `None` when none
    /// of them has a deadline. Kept per shard, under the lock a call registers with anyway,
    /// so registering compares two instants instead of converting one to a shared integer.
    alarm: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server sent GoAway (its `last_id` is in [`Calls::last_started`]).
    GoingAway,
    /// The connection is gone.
    Closed,
}

#[derive(Debug)]
enum Slot {
    /// `deadline` is `None` for a call without one.
    Waiting {
        waker: Option<Waker>,
        deadline: Option<Instant>,
    },
    Done(Result<Bytes, Error>),
}

/// A new call's id, and whether other calls were in flight when it registered.
pub(crate) struct Registered {
    pub(crate) id: u64,
    pub(crate) concurrent: bool,
}

impl Calls {
    pub(crate) fn new(max_in_flight: usize) -> Calls {
        Calls {
            shards: Default::default(),
            next_id: Padded(AtomicU64::new(1)),
            in_flight: Padded(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.max(1),
            queued: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            alarm_moved: Notify::new(),
            closed: AtomicBool::new(false),
            last_started: AtomicU64::new(NO_GOAWAY),
            changed: Notify::new(),
        }
    }

    /// Calls registered and not yet removed.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.0.load(Ordering::Acquire)
    }

    /// Whether new calls may start here: no GoAway came and the connection is open.
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self.last_started.load(Ordering::Acquire) == NO_GOAWAY
    }

    /// Whether call `id`, which ended in an error, certainly never started on the server: its
    /// id is above the last one the server's GoAway says it took.
    pub(crate) fn never_started(&self, id: u64) -> bool {
        id > self.last_started.load(Ordering::Acquire)
    }

    /// Waits until the connection stops being [`Calls::usable`]. For one waiter at a time:
    /// a change while nobody waits is kept for the next wait.
    pub(crate) async fn unusable(&self) {
        while self.usable() {
            self.changed.notified().await;
        }
    }

    /// The shard that holds call `id`.
    fn shard(&self, id: u64) -> MutexGuard<'_, ShardState> {
        self.lock_shard((id % SHARDS as u64) as usize)
    }

    fn lock_shard(&self, k: usize) -> MutexGuard<'_, ShardState> {
        // Every update of a shard is complete before any code that could panic runs.
        self.shards[k].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new call whose task `waker` waits for it. `Ok(None)`: all
    /// `max_in_flight` slots are taken; wait with [`Calls::wait_for_slot`] and try again.
    pub(crate) fn register(
        &self,
        deadline: Option<Instant>,
        waker: &Waker,
    ) -> Result<Option<Registered>, Error> {
        let Ok(before) = self.in_flight.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < self.max_in_flight).then_some(n + 1)
        }) else {
            return Ok(None);
        };
        let id = self.next_id.0.fetch_add(1, Ordering::SeqCst);
        let mut shard = self.shard(id);
        if let Some(refusal) = shard.refused {
            drop(shard);
            self.release_slot();
            return Err(match refusal {
                Refusal::Closed => Error::ConnectionClosed,
                Refusal::GoingAway => Error::Remote {
                    code: Code::ShuttingDown,
                    message: "the server is shutting down (it sent GoAway)".to_owned(),
                },
            });
        }
        shard.pending.insert(id, Slot::Waiting { waker: Some(waker.clone()), deadline });
        // Deadlines mostly grow with each call, so the alarm rarely moves.
        let earlier = deadline.filter(|&at| shard.alarm.is_none_or(|alarm| at < alarm));
        if earlier.is_some() {
            shard.alarm = earlier;
        }
        drop(shard);
        if earlier.is_some() {
            self.alarm_moved.notify_one();
        }
        Ok(Some(Registered { id, concurrent: before > 0 }))
    }

    /// Waits until a slot may be free or `deadline` passes (`false`). Callers that find no
    /// slot in [`Calls::register`] wait here; a slot freed at any moment after `register`
    /// failed wakes them, as does the connection closing.
    pub(crate) async fn wait_for_slot(&self, deadline: Option<Instant>) -> bool {
        let freed = self.slot_freed.notified();
        let mut freed = std::pin::pin!(freed);
        // Counted before looking again, so a slot freed after the look sees us and notifies.
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&self.queued);
        freed.as_mut().enable();
        let full = self.in_flight.0.load(Ordering::SeqCst) >= self.max_in_flight;
        let closed = self.closed.load(Ordering::SeqCst);
        if !full || closed {
            return true;
        }
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, freed).await.is_ok(),
            None => {
                freed.await;
                true
            }
        }
    }

    /// Gives up a call's slot and lets a queued caller in.
    fn release_slot(&self) {
        self.in_flight.0.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.slot_freed.notify_one();
        }
    }

    /// The result of call `id` if it came, which ends the call; otherwise makes `waker` the
    /// one to wake. A call no longer in the table was ended by the connection closing.
    pub(crate) fn poll_result(&self, id: u64, waker: &Waker) -> Poll<Result<Bytes, Error>> {
        let mut shard = self.shard(id);
        match shard.pending.get_mut(&id) {
            Some(Slot::Waiting { waker: registered, .. }) => {
                if !registered.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *registered = Some(waker.clone());
                }
                Poll::Pending
            }
            Some(Slot::Done(_)) => {
                let slot = shard.pending.remove(&id);
                drop(shard);
                self.release_slot();
                match slot {
                    Some(Slot::Done(result)) => Poll::Ready(result),
                    _ => Poll::Ready(Err(Error::ConnectionClosed)),
                }
            }
            None => Poll::Ready(Err(Error::ConnectionClosed)),
        }
    }

    /// Removes call `id`, which ends early (error, deadline or its caller dropped it);
    /// `true` if it was still waiting for its response, so the server should be told.
    pub(crate) fn abandon(&self, id: u64) -> bool {
        let slot = self.shard(id).pending.remove(&id);
        if slot.is_some() {
            self.release_slot();
        }
        matches!(slot, Some(Slot::Waiting { .. }))
    }

    /// Hands a call its result. A response for an id that was never sent is a protocol
    /// violation; one for a call that already ended (cancelled, timed out) is dropped.
    pub(crate) fn complete(&self, id: u64, result: Result<Bytes, Error>) -> Result<(), Error> {
        // Ids count up from 1, and each is taken before its request is sent.
        if id == 0 || id >= self.next_id.0.load(Ordering::SeqCst) {
            return Err(Error::Protocol(format!(
                "response for request id {id}, which was never sent"
            )));
        }
        let mut shard = self.shard(id);
        let waker = match shard.pending.get_mut(&id) {
            Some(slot @ Slot::Waiting { .. }) => {
                match std::mem::replace(slot, Slot::Done(result)) {
                    Slot::Waiting { waker, .. } => waker,
                    Slot::Done(_) => None,
                }
            }
            Some(Slot::Done(_)) => {
                tracing::debug!(id, "duplicate response dropped");
                None
            }
            None => None,
        };
        drop(shard);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether a call with this id was ever registered: ids count up from 1.
    pub(crate) fn was_used(&self, id: u64) -> bool {
        id != 0 && id < self.next_id.0.load(Ordering::SeqCst)
    }

    /// The server sent GoAway: new calls are refused, calls in flight go on; those with ids
    /// above `last_id` never started, and end as such if the connection closes first.
    pub(crate) fn go_away(&self, last_id: u64) {
        // The lowest wins should a server send GoAway twice: a call above either never started.
        self.last_started.fetch_min(last_id, Ordering::AcqRel);
        self.changed.notify_one();
        for k in 0..SHARDS {
            self.lock_shard(k).refused.get_or_insert(Refusal::GoingAway);
        }
    }

    /// Ends every waiting call with an error made by `error` and refuses new ones.
    pub(crate) fn close(&self, error: impl Fn() -> Error) {
        self.closed.store(true, Ordering::SeqCst);
        let mut wakers = Vec::new();
        for k in 0..SHARDS {
            let mut shard = self.lock_shard(k);
            // After a GoAway, later callers keep hearing that the server went away, which
            // says more than that the connection closed.
            if shard.refused != Some(Refusal::GoingAway) {
                shard.refused = Some(Refusal::Closed);
            }
            for (&id, slot) in shard.pending.iter_mut() {
                if let Slot::Waiting { waker, .. } = slot {
                    wakers.extend(waker.take());
                    let never_started = self.never_started(id);
                    *slot = Slot::Done(Err(if never_started {
                        never_started_error()
                    } else {
                        error()
                    }));
                }
            }
        }
        self.alarm_moved.notify_one();
        self.changed.notify_one();
        // Queued callers look again and find the connection closed.
        self.slot_freed.notify_waiters();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The error of a call that the server, going away, never started: it is safe to send again.
fn never_started_error() -> Error {
    Error::Remote {
        code: Code::ShuttingDown,
        message: "the server shut down before the call started; it is safe to send again"
            .to_owned(),
    }
}

/// A caller counted in [`Calls::queued`] while it waits for a slot.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hashes request ids, which count up from 1: a multiply spreads them over the table without
/// SipHash's cost; ids come from us, not from the peer, so there is nothing to defend.
#[derive(Debug, Default, Clone, Copy)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The ids in one shard differ by multiples of SHARDS, which a multiply alone would
        // leave in the low bits the table indexes by; dividing first keeps those bits varied.
        self.0 = (n / SHARDS as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

mod watchdog;

#[cfg(test)]
mod tests;
