//! Per-call counters for profiling, shown with `--probe`: worker parks (always), task polls
//! (when built with `RUSTFLAGS="--cfg tokio_unstable"`) and allocations (with
//! `--features count-allocs`). They cover client and server together, both in this process.

#[cfg(feature = "count-allocs")]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts allocations (including reallocations) when installed as the global allocator.
#[cfg(feature = "count-allocs")]
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments.
#[cfg(feature = "count-allocs")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counter readings at one instant.
pub struct Snapshot {
    allocs: u64,
    parks: u64,
    polls: u64,
}

pub fn snapshot() -> Snapshot {
    let m = tokio::runtime::Handle::current().metrics();
    let workers = 0..m.num_workers();
    #[cfg(tokio_unstable)]
    let polls = workers.clone().map(|w| m.worker_poll_count(w)).sum();
    #[cfg(not(tokio_unstable))]
    let polls = 0;
    Snapshot {
        allocs: ALLOCS.load(Ordering::Relaxed),
        parks: workers.map(|w| m.worker_park_count(w)).sum(),
        polls,
    }
}

/// The counters' growth from `before` to `after`, per call.
pub fn per_call(before: &Snapshot, after: &Snapshot, calls: u64) -> Vec<(&'static str, f64)> {
    let calls = calls.max(1) as f64;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / calls;
    let mut out = vec![("parks_per_call", per(before.parks, after.parks))];
    if cfg!(tokio_unstable) {
        out.push(("polls_per_call", per(before.polls, after.polls)));
    }
    if cfg!(feature = "count-allocs") {
        out.push(("allocs_per_call", per(before.allocs, after.allocs)));
    }
    out
}
