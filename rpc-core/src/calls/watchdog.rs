//! The connection's deadline watchdog: one timer for all the calls of a connection.

use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::{Calls, SHARDS, Slot};
use crate::Error;

impl Calls {
    /// Ends the waiting calls whose deadline is not after `now` with `DeadlineExceeded`,
    /// and sets each shard's alarm to its earliest deadline left; returns the ids of the
    /// calls ended, for Cancel frames.
    fn expire(&self, now: Instant) -> Vec<u64> {
        let (mut expired, mut wakers) = (Vec::new(), Vec::new());
        for k in 0..SHARDS {
            let mut shard = self.lock_shard(k);
            let mut next: Option<Instant> = None;
            for (&id, slot) in shard.pending.iter_mut() {
                let Slot::Waiting { waker, deadline: Some(deadline) } = slot else { continue };
                if *deadline > now {
                    next = Some(next.map_or(*deadline, |next| next.min(*deadline)));
                    continue;
                }
                expired.push(id);
                wakers.extend(waker.take());
                // The caller replaces the zero with its own timeout.
                *slot = Slot::Done(Err(Error::DeadlineExceeded(Duration::ZERO)));
            }
            shard.alarm = next;
        }
        wakers.into_iter().for_each(Waker::wake);
        expired
    }

    /// The earliest alarm of any shard: when the watchdog must look next.
    fn alarm(&self) -> Option<Instant> {
        (0..SHARDS).filter_map(|k| self.lock_shard(k).alarm).min()
    }

    /// The connection's deadline watchdog: one timer for all its calls, instead of one per
    /// call, armed for the earliest deadline. `cancel` tells the server about each call it
    /// ends. Returns when the connection closes.
    pub(crate) async fn watchdog(&self, cancel: impl Fn(u64)) {
        loop {
            // A move of an alarm after this look is kept as a permit, so none is missed.
            let moved = self.alarm_moved.notified();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            match self.alarm() {
                None => moved.await,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            self.expire(Instant::now()).into_iter().for_each(&cancel);
                        }
                        () = moved => {}
                    }
                }
            }
        }
    }
}
