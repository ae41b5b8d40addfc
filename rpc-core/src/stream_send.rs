//! Sending one stream's items in batches, so that a run of small items costs one lock and one
//! write rather than a few locks each: the items that are ready and within credit are encoded
//! into a buffer of the stream's own and queued on the connection at once ([`send_items`]).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use serde::Serialize;

use crate::conn::Outbox;
use crate::proto::stream::Outflow;
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

    /// While the socket pushes back, what completes once it does not: a sender with more
    /// batches waits for it rather than queue them all.
    fn room(&self) -> Option<Room<'_>>;
}

/// See [`Frames::room`].
pub(crate) type Room<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl Frames for Outbox {
    fn max_frame(&self) -> usize {
        self.peer_max()
    }

    fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error> {
        Outbox::send_frames(self, frames)
    }

    fn room(&self) -> Option<Room<'_>> {
        self.room_if_pushed_back()
    }
}

impl Outbox {
    /// [`Frames::room`] of the connection.
    pub(crate) fn room_if_pushed_back(&self) -> Option<Room<'_>> {
        self.is_pushed_back().then(|| Box::pin(self.room()) as Room<'_>)
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
        if batch.frames.len() >= BATCH_BYTES {
            // A full batch while the socket pushes back waits for it to take bytes again (or
            // for the stream to close), so that the batches of a fast sender do not pile up
            // in the connection's queue, each in a buffer of its own.
            if let Some(mut room) = out.room() {
                let closed = poll_fn(|cx| match room.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(false),
                    Poll::Pending => slot.poll_closed(cx).map(|()| true),
                });
                if closed.await {
                    return Sent::Closed;
                }
            }
            if let Err(sent) = batch.flush(slot, out) {
                return sent;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stream::Grant;
    use std::cell::Cell;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A connection that keeps what is queued on it, and whose socket pushes back while told.
    #[derive(Default)]
    struct Kept(Mutex<Vec<BytesMut>>, AtomicBool);

    impl Frames for Kept {
        fn max_frame(&self) -> usize {
            1 << 20
        }

        fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error> {
            self.0.lock().expect("not poisoned").push(std::mem::take(frames));
            Ok(())
        }

        fn room(&self) -> Option<Room<'_>> {
            let pushed_back = &self.1;
            pushed_back.load(Ordering::SeqCst).then(|| {
                let room = poll_fn(|_| match pushed_back.load(Ordering::SeqCst) {
                    true => Poll::Pending,
                    false => Poll::Ready(()),
                });
                Box::pin(room) as Room<'_>
            })
        }
    }

    impl Kept {
        /// The batches queued so far, as the number of frames in each.
        fn batches(&self) -> Vec<usize> {
            let batches = self.0.lock().expect("not poisoned");
            batches.iter().map(|batch| items_in(batch)).collect()
        }
    }

    /// The Item frames of call 1 in `batch`; panics at anything else.
    fn items_in(mut batch: &[u8]) -> usize {
        let mut n = 0;
        while let Some(size) = crate::frame::complete(batch, 1 << 20).expect("a frame") {
            let payload = &batch[crate::frame::HEAD_LEN..crate::frame::HEAD_LEN + size];
            let (header, _) = wire::decode_header(payload).expect("a header");
            assert_eq!(header, Header::Item { id: 1 });
            batch = &batch[crate::frame::HEAD_LEN + size..];
            n += 1;
        }
        assert!(batch.is_empty(), "whole frames only");
        n
    }

    fn poll<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn ready_items_leave_in_one_batch_within_the_credit_and_one_waits_beyond_it() {
        let (slot, _) = Slot::new(None, true);
        slot.on_credit(1, Grant { items: 3, bytes: 1000 }).expect("valid");
        let (out, pulled) = (Kept::default(), Cell::new(0));
        let mut items = (0..10_u64).inspect(|_| pulled.set(pulled.get() + 1));
        let next = |_: &mut Context<'_>| Poll::Ready(items.next().map(Ok));
        let mut sending = pin!(send_items(1, &slot, &out, next));
        assert!(poll(sending.as_mut()).is_pending(), "waits for credit");
        assert_eq!(out.batches(), [3], "three items, in one batch");
        assert_eq!(pulled.get(), 4, "one item taken beyond the credit");
        slot.on_credit(1, Grant { items: 100, bytes: 1000 }).expect("valid");
        assert!(matches!(poll(sending.as_mut()), Poll::Ready(Sent::Ended)));
        assert_eq!(out.batches(), [3, 7]);
    }

    #[test]
    fn the_byte_credit_stops_a_batch_after_the_item_that_crosses_it() {
        let (slot, _) = Slot::new(None, true);
        slot.on_credit(1, Grant { items: 100, bytes: 10 }).expect("valid");
        let out = Kept::default();
        {
            let mut items = std::iter::repeat_n([1_u8; 8], 5);
            let next = |_: &mut Context<'_>| Poll::Ready(items.next().map(Ok));
            let mut sending = pin!(send_items(1, &slot, &out, next));
            assert!(poll(sending.as_mut()).is_pending());
            assert_eq!(out.batches(), [2], "8 bytes, then 8 more crossing the 10 granted");
        }
        slot.close();
        let mut items = std::iter::repeat_n([1_u8; 8], 5);
        let next = |_: &mut Context<'_>| Poll::Ready(items.next().map(Ok));
        assert!(matches!(poll(pin!(send_items(1, &slot, &out, next))), Poll::Ready(Sent::Closed)));
    }

    #[test]
    fn a_batch_goes_once_it_is_large_and_when_the_items_make_us_wait() {
        let (slot, _) = Slot::new(None, true);
        slot.on_credit(1, Grant { items: 10_000, bytes: 1 << 30 }).expect("valid");
        let out = Kept::default();
        let mut items = (0..3_000_u64).map(|i| [i; 2]);
        let more = Cell::new(false);
        let next = |_: &mut Context<'_>| match items.next() {
            Some(item) => Poll::Ready(Some(Ok(item))),
            None if more.get() => Poll::Ready(None),
            None => Poll::Pending,
        };
        let mut sending = pin!(send_items(1, &slot, &out, next));
        assert!(poll(sending.as_mut()).is_pending(), "the items make us wait");
        let batches = out.batches();
        assert!(batches.len() > 1, "{batches:?}: a large batch goes before the items end");
        assert_eq!(batches.iter().sum::<usize>(), 3_000, "and the rest when they make us wait");
        more.set(true);
        assert!(matches!(poll(sending.as_mut()), Poll::Ready(Sent::Ended)));
    }

    #[test]
    fn a_full_batch_waits_while_the_socket_pushes_back_and_not_once_the_stream_closed() {
        let (slot, _) = Slot::new(None, true);
        slot.on_credit(1, Grant { items: 100, bytes: 1 << 30 }).expect("valid");
        let out = Kept::default();
        out.1.store(true, Ordering::SeqCst);
        let mut items = std::iter::repeat_n(vec![7_u8; BATCH_BYTES], 3);
        let next = |_: &mut Context<'_>| Poll::Ready(items.next().map(Ok));
        let mut sending = pin!(send_items(1, &slot, &out, next));
        assert!(poll(sending.as_mut()).is_pending(), "waits for the socket");
        assert!(out.batches().is_empty(), "nothing queued while it pushes back");
        out.1.store(false, Ordering::SeqCst);
        assert!(matches!(poll(sending.as_mut()), Poll::Ready(Sent::Ended)));
        assert_eq!(out.batches(), [1, 1, 1], "each full batch as soon as there is room");
        // A stream closed while it waits for room ends there.
        let (slot, _) = Slot::new(None, true);
        slot.on_credit(1, Grant { items: 100, bytes: 1 << 30 }).expect("valid");
        out.1.store(true, Ordering::SeqCst);
        let mut items = std::iter::repeat_n(vec![7_u8; BATCH_BYTES], 3);
        let next = |_: &mut Context<'_>| Poll::Ready(items.next().map(Ok));
        let mut sending = pin!(send_items(1, &slot, &out, next));
        assert!(poll(sending.as_mut()).is_pending());
        slot.close();
        assert!(matches!(poll(sending.as_mut()), Poll::Ready(Sent::Closed)));
    }
}
