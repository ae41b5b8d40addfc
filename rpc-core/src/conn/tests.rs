//! The write side over a real socket pair.

use super::*;
use crate::wire;

/// An outbox on one end of a Unix socket pair, and the other end to read what it wrote.
async fn pair() -> (Arc<Outbox>, std::os::unix::net::UnixStream) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("non-blocking");
    theirs.set_nonblocking(true).expect("non-blocking");
    let ours = tokio::net::UnixStream::from_std(ours).expect("registered");
    // Until the reactor has seen the socket writable, a `try_write` would not be tried.
    ours.writable().await.expect("writable");
    (Outbox::new(Arc::new(Stream::Unix(ours)), 1 << 20), theirs)
}

fn request(id: u64) -> Header<'static> {
    Header::Request { id, method: 1, budget_us: 1_000 }
}

/// Bytes the peer can read now, without waiting.
fn readable_now(mut peer: &std::os::unix::net::UnixStream) -> usize {
    let mut buf = [0u8; 4096];
    match io::Read::read(&mut peer, &mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("read: {e}"),
    }
}

#[tokio::test]
async fn callers_that_join_a_held_batch_leave_it_to_the_flush_owed() {
    let (outbox, peer) = pair().await;
    let owed = outbox.send_deferred(&request(1), wire::no_body).expect("queued");
    assert!(owed.is_some(), "the first deferred sender owes the flush");
    for id in 2..10 {
        let joined = outbox.send_deferred(&request(id), wire::no_body).expect("queued");
        assert!(joined.is_none(), "a later sender joins the batch");
    }
    assert_eq!(readable_now(&peer), 0, "nothing leaves before the flush");
    drop(owed);
    let one = {
        let mut single = BytesMut::new();
        wire::encode(&mut single, &request(1), wire::no_body, 1 << 20).expect("encodes");
        single.len()
    };
    assert_eq!(readable_now(&peer), 9 * one, "the whole batch leaves in one write");
}

#[tokio::test]
async fn a_batch_that_reaches_flush_at_leaves_without_its_flush() {
    let (outbox, peer) = pair().await;
    let owed = outbox.send_deferred(&request(1), wire::no_body).expect("queued");
    // Joiners add frames until the batch reaches FLUSH_AT and is written (bounded, so a
    // batch that never leaves fails instead of hanging).
    for id in 2..=FLUSH_AT as u64 {
        assert!(outbox.send_deferred(&request(id), wire::no_body).expect("queued").is_none());
        if outbox.lock().queued() == 0 {
            break;
        }
    }
    assert_eq!(outbox.lock().queued(), 0, "a full batch leaves without its flush");
    assert!(readable_now(&peer) >= FLUSH_AT);
    drop(owed);
}

/// A waker that counts how often it is woken.
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_writer_task_is_not_woken_by_its_own_writes() {
    use std::future::Future;
    let (outbox, mut peer) = pair().await;
    // Larger than the socket's buffer: the sender leaves the rest to the writer task.
    let body = |buf: &mut BytesMut| {
        buf.extend_from_slice(&[7; 900_000]);
        Ok(())
    };
    outbox.send(&request(1), body).expect("queued");
    assert!(outbox.lock().needs_task(), "the socket pushed back");
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut writer = Box::pin(outbox.clone().run_writer());
    assert!(writer.as_mut().poll(&mut cx).is_pending(), "waits for the socket");
    let mut sink = vec![0; 1 << 16];
    for _ in 0..1000 {
        if outbox.lock().queued() == 0 {
            return;
        }
        while io::Read::read(&mut peer, &mut sink).is_ok_and(|n| n > 0) {}
        // The reactor reports the socket writable: that wake is the writer's cue.
        let before = wakes.0.load(Ordering::SeqCst);
        for _ in 0..10_000 {
            if wakes.0.load(Ordering::SeqCst) > before {
                break;
            }
            tokio::task::yield_now().await;
        }
        let woken = wakes.0.load(Ordering::SeqCst);
        assert!(woken > before, "the writer was not woken when the socket drained");
        assert!(writer.as_mut().poll(&mut cx).is_pending(), "the writer goes on waiting");
        // Woken while it runs, a task is run again at once, and tokio wakes the other
        // worker thread to share it: a thread wakeup per write for nothing.
        assert_eq!(wakes.0.load(Ordering::SeqCst), woken, "the writer woke itself");
    }
    panic!("the frame was never written");
}
