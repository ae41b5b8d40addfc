//! Open-file descriptors: the process's limit raised once, and the connections of every server
//! in the process counted against it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept out of the connections' budget: listeners, the runtime's own, the spare
/// descriptor and the refusals of peers over a limit (see `accept`), and whatever the
/// application and its handlers open.
pub(crate) const RESERVE: usize = 64;

/// Connections being served by every server of the process: they share one descriptor table.
static SERVED: AtomicUsize = AtomicUsize::new(0);

/// Raises the process's soft open-file limit to its hard limit, the first time it is called
/// (when the first server binds); returns the soft limit then in force, every time.
///
/// The soft limit is often 1,024 while the hard one is far higher: a server holding one
/// descriptor per connection would otherwise run out at a thousand connections. Raising it
/// up to the hard limit needs no privilege. A limit lowered later by the application is not
/// seen here; accept's handling of "out of descriptors" covers that.
pub(crate) fn raise_limit() -> u64 {
    static SOFT: OnceLock<u64> = OnceLock::new();
    *SOFT.get_or_init(|| {
        let limit = getrlimit(Resource::Nofile);
        let Some(soft) = limit.current else { return u64::MAX };
        // An unlimited hard limit still has a ceiling the kernel enforces.
        let Some(target) = limit.maximum.or_else(kernel_ceiling) else { return soft };
        if target <= soft {
            return soft;
        }
        let raised = Rlimit { current: Some(target), maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = soft, to = target, "raised the open-file limit");
                target
            }
            Err(e) => {
                tracing::debug!(soft, target, error = %e, "could not raise the open-file limit");
                soft
            }
        }
    })
}

/// The most descriptors a process may have on Linux (`fs.nr_open`).
fn kernel_ceiling() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// Connections all servers of the process may serve at once: the open-file limit less
/// [`RESERVE`], and at least one.
pub(crate) fn budget() -> usize {
    let budget = raise_limit().saturating_sub(RESERVE as u64);
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// One connection being served, counted against the process's [`budget`] until dropped.
#[derive(Debug)]
pub(crate) struct Slot(&'static AtomicUsize);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits one more connection to a server serving `serving` connections with a limit of
/// `max`: a [`Slot`] to hold while serving it, or the limit in the way, `max` or the process's
/// [`budget`], whichever is reached first.
///
/// `max` (`ServerConfig::max_connections`) counts this server's connections alone, as its
/// documentation says; the budget counts every server's, since they share the descriptors.
pub(crate) fn admit(serving: usize, max: usize) -> Result<Slot, usize> {
    take(&SERVED, serving, max, budget())
}

fn take(
    count: &'static AtomicUsize,
    serving: usize,
    max: usize,
    budget: usize,
) -> Result<Slot, usize> {
    if serving >= max {
        return Err(max);
    }
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < budget).then_some(n + 1))
        .map(|_| Slot(count))
        .map_err(|_| budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_to_the_hard_limit_once() {
        let soft = raise_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(soft), "the limit in force is the one reported");
        if let Some(hard) = now.maximum {
            assert_eq!(soft, hard, "raised all the way");
        }
        assert_eq!(raise_limit(), soft, "later calls change nothing");
        assert_eq!(budget() as u64, soft.saturating_sub(RESERVE as u64).max(1));
    }

    #[test]
    fn a_server_at_its_own_limit_is_refused_with_that_limit() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        assert_eq!(take(&COUNT, 3, 3, 100).map(drop), Err(3));
        assert_eq!(take(&COUNT, 0, 0, 100).map(drop), Err(0));
        assert_eq!(COUNT.load(Ordering::Acquire), 0);
    }

    /// Servers each below their own limit still share one budget.
    #[test]
    fn the_budget_is_shared_by_every_server_and_a_slot_is_given_back_when_dropped() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let first = take(&COUNT, 0, 10, 3).expect("room");
        let second = take(&COUNT, 0, 10, 3).expect("room"); // another server, serving none yet
        let third = take(&COUNT, 1, 10, 3).expect("room");
        assert_eq!(take(&COUNT, 0, 10, 3).map(drop), Err(3), "the budget is spent");
        assert_eq!(COUNT.load(Ordering::Acquire), 3);
        drop(second);
        let again = take(&COUNT, 0, 10, 3).expect("a slot came back");
        drop((first, third, again));
        assert_eq!(COUNT.load(Ordering::Acquire), 0);
    }
}
