//! Tasks that report their panics: a panic in a handler becomes its call's error, and a panic
//! in one of a connection's own tasks is logged instead of vanishing with its `JoinError`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A future whose panic is caught and returned as its message.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(future).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Spawns one of a connection's own tasks (`what` names it in the log); a panic in it is
/// logged as an error.
pub(crate) fn spawn_logged<F>(what: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(panic) = CatchUnwind(Box::pin(future)).await {
            tracing::error!(task = what, panic, "connection task panicked");
        }
    });
}

/// A future polled only after it woke its task: for the rare events (shutdown, GoAway, the
/// user leaving) that a connection's busy loop waits on beside its socket. `select!` polls
/// every branch each time the task wakes, and a cancellation future takes two locks per poll,
/// which cost a server about 450 instructions per call at one call in flight; behind a gate,
/// a poll that nothing woke is one atomic swap.
///
/// Like the futures it wraps, it is not polled again once it is ready.
pub(crate) struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
    /// `gate` as a waker, handed to `inner`.
    waker: Waker,
    /// The task waker `gate` forwards to, as this side last set it.
    task: Option<Waker>,
}

/// Set when the gated future woke; forwards the wake to the task.
struct Gate {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Gated<F> {
    pub(crate) fn new(future: F) -> Gated<F> {
        let gate = Arc::new(Gate { woken: AtomicBool::new(false), task: Mutex::new(None) });
        Gated { inner: Box::pin(future), waker: Waker::from(gate.clone()), gate, task: None }
    }
}

impl<F> Gated<F> {
    /// The inner future, to look at.
    pub(crate) fn inner(&self) -> &F {
        &self.inner
    }

    /// The inner future, to change (reset a timer): the next poll goes through, so it
    /// registers whatever the change needs.
    pub(crate) fn inner_mut(&mut self) -> Pin<&mut F> {
        self.gate.woken.store(true, Ordering::Release);
        self.inner.as_mut()
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if this.task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
            if !this.gate.woken.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        } else {
            // The first poll, or from another task: wakes go to this one from now on, and the
            // inner future is polled, as it may have been woken for the old one.
            *this.gate.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            this.task = Some(cx.waker().clone());
            this.gate.woken.store(false, Ordering::Release);
        }
        // The flag is down before the poll: a wake during or after it raises it again.
        this.inner.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; ready once `fire` is set, waking whoever waits when fired.
    struct Probe {
        polls: Arc<AtomicUsize>,
        fired: Arc<tokio::sync::Notify>,
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Woken(AtomicUsize);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (counted, fired) = (polls.clone(), notify.clone());
        let gated = Gated::new(async move {
            let probe = Probe { polls: counted, fired };
            let mut notified = std::pin::pin!(probe.fired.notified());
            std::future::poll_fn(|cx| {
                probe.polls.fetch_add(1, Ordering::SeqCst);
                notified.as_mut().poll(cx)
            })
            .await
        });
        let mut gated = std::pin::pin!(gated);
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        // The first poll goes through; later polls that nothing woke do not.
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        for _ in 0..10 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled without a wake");
        // A wake lets the next poll through, which finds the future ready.
        notify.notify_one();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the wake reached the task");
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_inner_future_is_polled_again() {
        let start = tokio::time::Instant::now();
        let mut timer = Gated::new(tokio::time::sleep_until(start + Duration::from_secs(60)));
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
        // Moved earlier: the next poll registers the new deadline, which then wakes the task.
        timer.inner_mut().reset(start + Duration::from_secs(1));
        assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the earlier deadline woke the task");
        assert!(Pin::new(&mut timer).poll(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task_that_polled_last() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let fired = notify.clone();
        let gated = Gated::new(async move { fired.notified().await });
        // Polled once by this task, then awaited by another: the other must be woken.
        let mut gated = Box::pin(gated);
        assert!(gated.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        let waiter = tokio::spawn(gated);
        tokio::task::yield_now().await;
        notify.notify_one();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the wake reached the task awaiting the future")
            .expect("no panic");
    }
}
