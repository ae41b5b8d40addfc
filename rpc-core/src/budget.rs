//! The process-wide budget for bytes buffered on behalf of peers: what every connection's read
//! buffer and queue of outgoing frames may hold together.
//!
//! Each buffer holds a [`Charge`] for its capacity and asks for more before it grows; a buffer
//! that would pass the budget is refused ([`Error::Overloaded`]) instead of allocated, so peers
//! together cannot pin more than the budget, however many connect or however large the frames
//! they announce.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;

/// The default budget: 256 MiB for all connections of the process together.
pub const DEFAULT_BUFFER_BUDGET: usize = 256 * 1024 * 1024;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_BUFFER_BUDGET);
static USED: AtomicUsize = AtomicUsize::new(0);

/// Sets the process-wide budget (see [`ServerConfig::buffer_budget`](crate::ServerConfig)).
pub(crate) fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Bytes charged to the budget by the buffers of the process now.
#[cfg(test)]
pub(crate) fn used() -> usize {
    USED.load(Ordering::Relaxed)
}

/// The bytes one buffer has charged to the budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Charge(usize);

impl Charge {
    /// Makes the charge `bytes`: a growth is asked for first and refused past the budget; a
    /// shrink always succeeds.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes <= self.0 {
            USED.fetch_sub(self.0 - bytes, Ordering::Relaxed);
            self.0 = bytes;
            return Ok(());
        }
        let more = bytes - self.0;
        let limit = LIMIT.load(Ordering::Relaxed);
        let granted = USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(more).filter(|&total| total <= limit)
        });
        match granted {
            Ok(_) => {
                self.0 = bytes;
                Ok(())
            }
            Err(used) => Err(Error::Overloaded(format!(
                "buffering {more} more bytes would pass the process's budget of {limit} bytes \
                 ({used} in use)"
            ))),
        }
    }

    /// The bytes charged.
    pub(crate) fn bytes(&self) -> usize {
        self.0
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        USED.fetch_sub(self.0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_past_the_budget_is_refused_and_everything_is_given_back_on_drop() {
        // Other tests of this crate charge too: measure relative to now, with room to spare.
        let before = used();
        let mut a = Charge::default();
        a.set(1000).expect("within the budget");
        assert!(used() >= before + 1000);
        let mut huge = Charge::default();
        let err = huge.set(usize::MAX / 2).expect_err("past the budget");
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
        assert_eq!(huge.bytes(), 0);
        a.set(10).expect("a shrink");
        assert_eq!(a.bytes(), 10);
        drop(a);
        drop(huge);
    }
}
