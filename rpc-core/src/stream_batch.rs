//! One stream's items in batches, so that a run of small items costs one lock and one wakeup
//! rather than a few per item: the sender encodes the items that are ready and within credit
//! into a buffer of its own and queues them on the connection at once ([`send_items`]), the
//! reader delivers a run of items read together ([`Delivery`]), and the consumer moves every
//! delivered item out of the slot at once and takes them one by one ([`Intake`]).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::conn::Outbox;
use crate::proto::stream::{Grant, Outflow};
use crate::stream_slot::Slot;
use crate::wire::{self, Header};
use crate::{Error, codec};

/// Encoded bytes at which a sender's batch goes onto the connection even though more items are
/// ready and within credit, so that the receiver starts on the first ones.
pub(crate) const BATCH_BYTES: usize = 16 * 1024;

/// Where a sender's batches go: the connection's queue of outgoing frames.
pub(crate) trait Frames {
    /// The largest frame payload the peer accepts.
    fn max_frame(&self) -> usize;

    /// Queues whole frames, all or none, and writes them unless frames are held back; leaves
    /// `frames` empty (its allocation may be another buffer's).
    fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error>;
}

impl Frames for Outbox {
    fn max_frame(&self) -> usize {
        self.peer_max()
    }

    fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error> {
        Outbox::send_frames(self, frames)
    }
}

/// How [`send_items`] ended.
#[derive(Debug)]
pub(crate) enum Sent {
    /// Every item was sent: the stream is over.
    Ended,
    /// The stream was closed (the call ended, the connection is gone): nothing more is sent.
    Closed,
    /// An item could not be sent (encoding failed or panicked, too large for the peer, no
    /// room in the buffer budget); the items before it were sent.
    Unsendable { error: Error, panicked: bool },
    /// The items ended with an error (a received stream being passed on failed).
    Failed(Error),
}

/// Sends the items `next` yields as Item frames of call `id` within the credit `slot` holds,
/// until they end or the stream is closed. Items that are ready at once leave together, up to
/// [`BATCH_BYTES`] at a time; a batch goes as soon as the items or the credit make us wait. An
/// item is taken before waiting for the credit to send it (so the end of the stream needs
/// none): at most one item is taken beyond the credit.
pub(crate) async fn send_items<T, F>(
    id: u64,
    slot: &Slot,
    out: &F,
    mut next: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<T, Error>>>,
) -> Sent
where
    T: Serialize,
    F: Frames + ?Sized,
{
    let mut batch = Batch::new(id, out.max_frame());
    loop {
        let item = match now(&mut next) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => {
                if let Err(sent) = batch.flush(slot, out) {
                    return sent;
                }
                // The call may end while the items have nothing to give.
                poll_fn(|cx| match slot.poll_closed(cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => next(cx).map(Some),
                })
                .await
            }
        };
        let item = match item {
            None => return Sent::Closed,
            Some(None) => return batch.flush(slot, out).err().unwrap_or(Sent::Ended),
            Some(Some(Err(e))) => return batch.flush(slot, out).err().unwrap_or(Sent::Failed(e)),
            Some(Some(Ok(item))) => item,
        };
        if !batch.credit.can_send() {
            if let Err(sent) = batch.flush(slot, out) {
                return sent;
            }
            let credit = match now(|cx| slot.poll_credit(cx)) {
                Poll::Ready(credit) => credit,
                Poll::Pending => poll_fn(|cx| slot.poll_credit(cx)).await,
            };
            match credit {
                Some(credit) => batch.credit = credit,
                None => return Sent::Closed,
            }
        }
        if let Err((error, panicked)) = batch.push(&item) {
            return batch.flush(slot, out).err().unwrap_or(Sent::Unsendable { error, panicked });
        }
        if batch.frames.len() >= BATCH_BYTES
            && let Err(sent) = batch.flush(slot, out)
        {
            return sent;
        }
    }
}

/// Polls once without a waker: whoever gets `Pending` polls again with one.
fn now<R>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<R>) -> Poll<R> {
    poll(&mut Context::from_waker(Waker::noop()))
}

/// Item frames encoded and not yet queued on the connection, and the credit left for more.
struct Batch {
    id: u64,
    frames: BytesMut,
    limit: usize,
    /// A copy of the stream's credit, less what the batch holds.
    credit: Outflow,
    /// The items and body bytes the batch holds.
    items: u64,
    bytes: u64,
}

impl Batch {
    fn new(id: u64, limit: usize) -> Batch {
        let credit = Outflow::default();
        Batch { id, frames: BytesMut::new(), limit, credit, items: 0, bytes: 0 }
    }

    /// Encodes one item, whole or not at all; call only while the credit allows one.
    fn push<T: Serialize>(&mut self, item: &T) -> Result<(), (Error, bool)> {
        let (mut panicked, mut len) = (false, 0);
        let body = |buf: &mut BytesMut| {
            let before = buf.len();
            codec::encode_into(item, buf).inspect_err(|e| panicked = e.panicked)?;
            len = buf.len() - before;
            Ok(())
        };
        let header = Header::Item { id: self.id };
        wire::encode(&mut self.frames, &header, body, self.limit).map_err(|e| (e, panicked))?;
        self.credit.sent(len);
        self.items += 1;
        self.bytes += len as u64;
        Ok(())
    }

    /// Queues the batch on the connection and takes what it sent off the stream's credit.
    fn flush<F: Frames + ?Sized>(&mut self, slot: &Slot, out: &F) -> Result<(), Sent> {
        if self.items == 0 {
            return Ok(());
        }
        match out.send_frames(&mut self.frames) {
            Ok(()) => {}
            Err(Error::ConnectionClosed) => return Err(Sent::Closed),
            Err(error) => return Err(Sent::Unsendable { error, panicked: false }),
        }
        slot.sent(std::mem::take(&mut self.items), std::mem::take(&mut self.bytes));
        Ok(())
    }
}

/// Items the reader read for one stream, delivered to its slot together: at the end of what
/// one read brought, before any frame that is not an item of that stream, or when an item of
/// another stream comes. The stream of the last item stays at hand, so a run of items costs
/// one lookup in the connection's table.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    stream: Option<(u64, Arc<Slot>)>,
    items: Vec<Bytes>,
}

impl Delivery {
    /// Adds an item of stream `id`; `find` looks up its slot when another stream is at hand.
    /// `Ok(false)` when `id` has no open stream.
    pub(crate) fn add(
        &mut self,
        id: u64,
        body: Bytes,
        find: impl FnOnce(u64) -> Option<Arc<Slot>>,
    ) -> Result<bool, Error> {
        if self.stream.as_ref().is_none_or(|(at_hand, _)| *at_hand != id) {
            self.flush()?;
            match find(id) {
                Some(slot) => self.stream = Some((id, slot)),
                None => return Ok(false),
            }
        }
        self.items.push(body);
        Ok(true)
    }

    /// Delivers the items held: an error if one broke the protocol.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        match &self.stream {
            Some((id, slot)) if !self.items.is_empty() => slot.on_items(*id, &mut self.items),
            _ => Ok(()),
        }
    }
}

/// The consumer's side of a stream it receives: the items moved out of the slot at once, then
/// taken one by one without its lock. What it took is reported at its next turn at the slot,
/// so until then it counts against the window as if still waiting there.
#[derive(Debug)]
pub(crate) struct Intake {
    slot: Arc<Slot>,
    items: VecDeque<Bytes>,
    /// Items and body bytes taken since the last report.
    taken: (u32, u64),
}

impl Intake {
    pub(crate) fn new(slot: Arc<Slot>) -> Intake {
        Intake { slot, items: VecDeque::new(), taken: (0, 0) }
    }

    /// The next item (`Ready(None)` once the stream is over and every item was taken), and
    /// the credit to grant back now, which the caller sends whatever the poll returned.
    pub(crate) fn poll_item(
        &mut self,
        cx: &mut Context<'_>,
    ) -> (Option<Grant>, Poll<Option<Bytes>>) {
        if let Some(item) = self.take_local() {
            return (None, Poll::Ready(Some(item)));
        }
        let taken = std::mem::take(&mut self.taken);
        let (grant, more) = self.slot.take(taken, &mut self.items, cx);
        let item = match more {
            Poll::Ready(true) => Poll::Ready(self.take_local()),
            Poll::Ready(false) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        };
        (grant, item)
    }

    fn take_local(&mut self) -> Option<Bytes> {
        let item = self.items.pop_front()?;
        self.taken.0 += 1;
        self.taken.1 += item.len() as u64;
        Some(item)
    }
}
