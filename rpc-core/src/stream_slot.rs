//! One stream's state shared by the connection's reader and the task that takes or sends its
//! items: the credit accounting of `proto::stream` under a lock, the items delivered and not
//! yet taken, and the wakers of whoever waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::Error;
use crate::proto::stream::{Grant, Inflow, Outflow, StreamWindow};
use crate::stream_items::Bodies;

/// The streams of one connection's calls, by request id.
#[derive(Debug, Default)]
pub(crate) struct Slots(Mutex<HashMap<u64, Arc<Slot>>>);

impl Slots {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // Every change is one insert or remove: nothing half-done survives a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, id: u64, slot: Arc<Slot>) {
        if let Some(old) = self.lock().insert(id, slot) {
            old.close();
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Slot>> {
        self.lock().get(&id).cloned()
    }

    /// Removes and closes `slot` if it is still the stream of `id`.
    pub(crate) fn remove(&self, id: u64, slot: &Arc<Slot>) {
        let mut slots = self.lock();
        if slots.get(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&id);
        }
        drop(slots);
        slot.close();
    }

    /// Whether no call has a stream open.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Closes every stream: the connection is gone.
    pub(crate) fn close_all(&self) {
        let slots: Vec<_> = self.lock().drain().map(|(_, slot)| slot).collect();
        slots.iter().for_each(|slot| slot.close());
    }
}

/// The streams of one call: items coming in, items going out, or both.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// Receiving: the accounting, the items delivered and not taken, who waits for one.
    inflow: Option<Inflow>,
    queue: Bodies,
    consumer: Option<Waker>,
    /// Sending: the credit, and who waits for it.
    outflow: Option<Outflow>,
    producer: Option<Waker>,
    /// The call or the connection is over: nothing more moves.
    closed: bool,
}

impl Slot {
    /// A slot for a call whose streams are as given; returns the first grant to send when
    /// it receives.
    pub(crate) fn new(receive: Option<StreamWindow>, send: bool) -> (Arc<Slot>, Option<Grant>) {
        let (inflow, grant) = receive.map(Inflow::new).unzip();
        let outflow = send.then(Outflow::default);
        (Arc::new(Slot(Mutex::new(State { inflow, outflow, ..State::default() }))), grant)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every transition is a few assignments after the checks that may fail.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader delivers an item, which is copied. One beyond credit, after the end, or
    /// for a call whose stream only sends breaks the protocol; it is never queued.
    pub(crate) fn on_item(&self, id: u64, body: &[u8]) -> Result<(), Error> {
        let mut state = self.lock();
        let delivered = state.check(id, body.len());
        if delivered.is_ok() && !state.closed {
            state.queue.push_slice(body);
        }
        wake_consumer(state, delivered)
    }

    /// The reader delivers a run of items read together, in order, under one lock and with
    /// one wakeup; `items` is left empty. Items up to one that breaks the protocol are queued.
    pub(crate) fn on_items(&self, id: u64, items: &mut Bodies) -> Result<(), Error> {
        let mut state = self.lock();
        let mut accepted = 0;
        let mut delivered = Ok(());
        for len in items.sizes() {
            if let Err(e) = state.check(id, len) {
                delivered = Err(e);
                break;
            }
            accepted += 1;
        }
        items.truncate(accepted);
        if state.closed {
            items.clear();
        } else {
            state.queue.append(items);
        }
        wake_consumer(state, delivered)
    }

    /// The reader delivers the sender's end of the stream.
    pub(crate) fn on_end(&self, id: u64) -> Result<(), Error> {
        let mut state = self.lock();
        state.inflow.as_mut().ok_or_else(|| not_receiving(id))?.on_end(id)?;
        let consumer = state.consumer.take();
        drop(state);
        if let Some(waker) = consumer {
            waker.wake();
        }
        Ok(())
    }

    /// The reader delivers more credit for the stream this call sends.
    pub(crate) fn on_credit(&self, id: u64, grant: Grant) -> Result<(), Error> {
        let mut state = self.lock();
        let outflow = state.outflow.as_mut().ok_or_else(|| {
            Error::Protocol(format!("credit for call {id}, which sends no stream"))
        })?;
        outflow.on_credit(id, grant)?;
        let producer = state.producer.take();
        drop(state);
        if let Some(waker) = producer {
            waker.wake();
        }
        Ok(())
    }

    /// Ends both directions: waiters wake and find the stream over once they took the items
    /// already delivered (the connection may close right after a call's last items and its
    /// answer; they still count). The items go with the last holder of the slot.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let wakers = [state.consumer.take(), state.producer.take()];
        drop(state);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }

    /// The consumer's turn at the queue, once it took every item it took from here before:
    /// it reports those (`taken`: items and body bytes) and gets the credit to grant back for
    /// them, if it is time, and moves every item delivered since into `into` (empty). `Ready`
    /// with `true` when it got items, with `false` when the stream is over (the sender ended
    /// it, or it was closed) and nothing is left; `Pending` until one of them is so.
    pub(crate) fn take(
        &self,
        taken: (u32, u64),
        into: &mut Bodies,
        cx: &mut Context<'_>,
    ) -> (Option<Grant>, Poll<bool>) {
        debug_assert!(into.is_empty(), "the consumer takes everything it moved before");
        let mut state = self.lock();
        let grant = match (taken, state.inflow.as_mut()) {
            ((0, 0), _) | (_, None) => None,
            ((items, bytes), Some(inflow)) => inflow.on_taken(items, bytes),
        };
        if !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, into);
            return (grant, Poll::Ready(true));
        }
        let state = &mut *state;
        match state.inflow.as_mut() {
            Some(inflow) if !state.closed && !inflow.is_ended() => inflow.on_starved(),
            _ => return (grant, Poll::Ready(false)),
        }
        set_waker(&mut state.consumer, cx);
        (grant, Poll::Pending)
    }

    /// The credit the sender may spend now, a copy (see [`Outflow`]), or `None` once the
    /// stream is over; `Pending` until one of them is so.
    pub(crate) fn poll_credit(&self, cx: &mut Context<'_>) -> Poll<Option<Outflow>> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(None);
        }
        match state.outflow {
            Some(outflow) if outflow.can_send() => Poll::Ready(Some(outflow)),
            _ => {
                set_waker(&mut state.producer, cx);
                Poll::Pending
            }
        }
    }

    /// `Ready` once the stream is closed; otherwise registers the producer to be woken then.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(());
        }
        set_waker(&mut state.producer, cx);
        Poll::Pending
    }

    /// `items` items of `bytes` body bytes in all were sent, within a copy of the credit
    /// [`Slot::poll_credit`] gave.
    pub(crate) fn sent(&self, items: u64, bytes: u64) {
        if let Some(outflow) = self.lock().outflow.as_mut() {
            outflow.sent_many(items, bytes);
        }
    }
}

impl State {
    /// Checks one delivered item of `len` body bytes against the credit. Once the slot is
    /// closed nobody takes items any more, but the accounting still holds the peer to its
    /// credit.
    fn check(&mut self, id: u64, len: usize) -> Result<(), Error> {
        self.inflow.as_mut().ok_or_else(|| not_receiving(id))?.on_item(id, len)
    }
}

/// Wakes the consumer, if it waits and there is something to take, after a delivery; unlocks
/// first.
fn wake_consumer(
    mut state: MutexGuard<'_, State>,
    delivered: Result<(), Error>,
) -> Result<(), Error> {
    let consumer = if state.queue.is_empty() { None } else { state.consumer.take() };
    drop(state);
    if let Some(waker) = consumer {
        waker.wake();
    }
    delivered
}

fn not_receiving(id: u64) -> Error {
    Error::Protocol(format!("a stream item or end for call {id}, which takes none"))
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}
