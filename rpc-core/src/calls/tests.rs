//! The deadline watchdog, on paused time.

use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use super::*;

/// Registers a call with `deadline` and returns its id.
fn register(calls: &Calls, deadline: Option<Instant>) -> u64 {
    match calls.register(deadline, Waker::noop()) {
        Ok(Some(registered)) => registered.id,
        _ => panic!("registered"),
    }
}

/// Whether call `id` has ended with `DeadlineExceeded`; a call that ended so is removed.
fn timed_out(calls: &Calls, id: u64) -> bool {
    match calls.poll_result(id, Waker::noop()) {
        Poll::Pending => false,
        Poll::Ready(Err(Error::DeadlineExceeded(_))) => true,
        Poll::Ready(other) => panic!("call {id} ended otherwise: {other:?}"),
    }
}

/// The watchdog of `calls` on a task of its own, and the ids it cancels.
fn watch(calls: &Arc<Calls>) -> Arc<Mutex<Vec<u64>>> {
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let (calls, seen) = (calls.clone(), cancelled.clone());
    tokio::spawn(async move {
        calls.watchdog(|id| seen.lock().expect("not poisoned").push(id)).await;
    });
    cancelled
}

#[tokio::test(start_paused = true)]
async fn a_call_with_an_earlier_deadline_than_those_before_it_ends_on_time() {
    let calls = Arc::new(Calls::new(16));
    let cancelled = watch(&calls);
    let start = Instant::now();
    let late = register(&calls, Some(start + Duration::from_secs(30)));
    // Let the watchdog arm itself for the late deadline first.
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Consecutive ids sit in different shards: the earlier alarm is another shard's.
    let early = register(&calls, Some(start + Duration::from_secs(1)));
    let none = register(&calls, None);
    tokio::time::sleep_until(start + Duration::from_millis(999)).await;
    assert!(!timed_out(&calls, early), "not before its deadline");
    tokio::time::sleep_until(start + Duration::from_millis(1001)).await;
    assert!(timed_out(&calls, early));
    assert!(!timed_out(&calls, late));
    assert_eq!(*cancelled.lock().expect("not poisoned"), vec![early]);
    tokio::time::sleep_until(start + Duration::from_secs(31)).await;
    assert!(timed_out(&calls, late));
    assert!(!timed_out(&calls, none), "a call without a deadline never times out");
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_looks_again_after_a_finished_calls_alarm() {
    let calls = Arc::new(Calls::new(16));
    let cancelled = watch(&calls);
    let start = Instant::now();
    let first = register(&calls, Some(start + Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(1)).await;
    // The call ends before its deadline; its shard's alarm is left early.
    calls.complete(first, Ok(Bytes::new())).expect("a known id");
    assert!(matches!(calls.poll_result(first, Waker::noop()), Poll::Ready(Ok(_))));
    // A later call in the same shard keeps its own deadline once the early alarm passes.
    let later = (0..SHARDS).map(|_| register(&calls, Some(start + Duration::from_secs(5))));
    let later: Vec<u64> = later.collect();
    tokio::time::sleep_until(start + Duration::from_secs(2)).await;
    assert!(later.iter().all(|&id| !timed_out(&calls, id)));
    assert!(cancelled.lock().expect("not poisoned").is_empty());
    tokio::time::sleep_until(start + Duration::from_millis(5001)).await;
    assert!(later.iter().all(|&id| timed_out(&calls, id)));
}
