//! A received stream's items on their way from the reader to the consumer, in batches: the
//! reader gathers a run of items read together ([`Delivery`]) and hands them to the stream's
//! slot at once; the consumer moves every item the slot holds at once ([`Intake`]) and takes
//! them one by one without its lock. Small items are copied back to back into one buffer
//! ([`Bodies`]), so that they cost neither an allocation nor a reference count each.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::Error;
use crate::proto::stream::Grant;
use crate::stream_slot::Slot;

/// Bodies up to this size are copied into their stream's buffer, so that they cost neither an
/// allocation nor a reference count each; larger ones keep the reader's buffer they were read
/// into (no copy), which the reader reads into again once they are gone.
pub(crate) const SMALL_ITEM: usize = 16 * 1024;

/// A buffer that once held more than this is not kept once emptied.
const KEEP_AT_MOST: usize = 256 * 1024;

/// Item bodies in order: small ones back to back in one buffer, larger ones as they came.
#[derive(Debug, Default)]
pub(crate) struct Bodies {
    /// The small bodies, back to back; those before `at` were taken.
    small: Vec<u8>,
    at: usize,
    items: VecDeque<Body>,
}

#[derive(Debug)]
enum Body {
    /// The next `len` bytes of `small`.
    Small(usize),
    Large(Bytes),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Small(len) => *len,
            Body::Large(body) => body.len(),
        }
    }
}

impl Bodies {
    /// Adds a body, copied if it is small.
    pub(crate) fn push_slice(&mut self, body: &[u8]) {
        if body.len() <= SMALL_ITEM {
            self.small.extend_from_slice(body);
            self.items.push_back(Body::Small(body.len()));
        } else {
            self.items.push_back(Body::Large(Bytes::copy_from_slice(body)));
        }
    }

    /// Adds a body, copied only if it is small.
    pub(crate) fn push(&mut self, body: Bytes) {
        if body.len() <= SMALL_ITEM {
            self.push_slice(&body);
        } else {
            self.items.push_back(Body::Large(body));
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bodies' sizes, in order.
    pub(crate) fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.items.iter().map(Body::len)
    }

    /// Keeps the first `n` bodies.
    pub(crate) fn truncate(&mut self, n: usize) {
        let small: usize = self.items.iter().skip(n).filter_map(Body::small_len).sum();
        self.small.truncate(self.small.len() - small);
        self.items.truncate(n);
    }

    /// Moves every body of `other` after these, leaving `other` empty; without a copy if
    /// these are empty.
    pub(crate) fn append(&mut self, other: &mut Bodies) {
        if self.is_empty() {
            std::mem::swap(self, other);
        } else {
            self.small.extend_from_slice(&other.small[other.at..]);
            self.items.append(&mut other.items);
        }
        other.clear();
    }

    /// Drops every body; the buffer stays for the next ones unless it grew large.
    pub(crate) fn clear(&mut self) {
        if self.small.capacity() > KEEP_AT_MOST {
            self.small = Vec::new();
        }
        self.small.clear();
        self.at = 0;
        self.items.clear();
    }

    /// Takes the first body: a small one where it lies, a larger one kept in `last` until the
    /// next take.
    fn pop<'a>(&'a mut self, last: &'a mut Bytes) -> Option<&'a [u8]> {
        match self.items.pop_front()? {
            Body::Small(len) => {
                let body = &self.small[self.at..self.at + len];
                self.at += len;
                Some(body)
            }
            Body::Large(body) => {
                *last = body;
                Some(&last[..])
            }
        }
    }
}

impl Body {
    fn small_len(&self) -> Option<usize> {
        match self {
            Body::Small(len) => Some(*len),
            Body::Large(_) => None,
        }
    }
}

/// Items the reader read for one stream, delivered to its slot together: at the end of what
/// one read brought, before any frame that is not an item of that stream, or when an item of
/// another stream comes. The stream of the last item stays at hand, so a run of items costs
/// one lookup in the connection's table.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    stream: Option<(u64, Arc<Slot>)>,
    items: Bodies,
}

impl Delivery {
    /// Adds an item of stream `id` (copied if small); `find` looks up its slot when another
    /// stream is at hand. `Ok(false)` when `id` has no open stream.
    pub(crate) fn add(
        &mut self,
        id: u64,
        body: Bytes,
        find: impl FnOnce(u64) -> Option<Arc<Slot>>,
    ) -> Result<bool, Error> {
        let found = self.at_hand(id, find)?;
        if found {
            self.items.push(body);
        }
        Ok(found)
    }

    /// Adds a small item of stream `id`, copied from where the reader holds it.
    pub(crate) fn add_slice(
        &mut self,
        id: u64,
        body: &[u8],
        find: impl FnOnce(u64) -> Option<Arc<Slot>>,
    ) -> Result<bool, Error> {
        let found = self.at_hand(id, find)?;
        if found {
            self.items.push_slice(body);
        }
        Ok(found)
    }

    /// Makes `id` the stream at hand, delivering the items of the one before.
    fn at_hand(
        &mut self,
        id: u64,
        find: impl FnOnce(u64) -> Option<Arc<Slot>>,
    ) -> Result<bool, Error> {
        if self.stream.as_ref().is_some_and(|(at_hand, _)| *at_hand == id) {
            return Ok(true);
        }
        self.flush()?;
        self.stream = find(id).map(|slot| (id, slot));
        Ok(self.stream.is_some())
    }

    /// Delivers the items held: an error if one broke the protocol.
    #[inline]
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.items.is_empty() {
            return Ok(());
        }
        match &self.stream {
            Some((id, slot)) => slot.on_items(*id, &mut self.items),
            None => Ok(()),
        }
    }
}

/// The consumer's side of a stream it receives: the items moved out of the slot at once, then
/// taken one by one without its lock. What it took is reported at its next turn at the slot,
/// so until then it counts against the window as if still waiting there.
#[derive(Debug)]
pub(crate) struct Intake {
    slot: Arc<Slot>,
    items: Bodies,
    /// The last large body taken, kept while the consumer reads it.
    last: Bytes,
    /// Items and body bytes taken since the last report.
    taken: (u32, u64),
}

impl Intake {
    pub(crate) fn new(slot: Arc<Slot>) -> Intake {
        Intake { slot, items: Bodies::default(), last: Bytes::new(), taken: (0, 0) }
    }

    /// `Ready(true)` when an item is there to [`Intake::take`], `Ready(false)` once the stream
    /// is over and every item was taken; and the credit to grant back now, which the caller
    /// sends whatever the poll returned.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> (Option<Grant>, Poll<bool>) {
        if !self.items.is_empty() {
            return (None, Poll::Ready(true));
        }
        self.items.clear();
        self.last = Bytes::new();
        let taken = std::mem::take(&mut self.taken);
        self.slot.take(taken, &mut self.items, cx)
    }

    /// Takes the next item, if [`Intake::poll_ready`] said there is one.
    pub(crate) fn take(&mut self) -> Option<&[u8]> {
        let body = self.items.pop(&mut self.last)?;
        self.taken.0 += 1;
        self.taken.1 += body.len() as u64;
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stream::StreamWindow;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn sizes(bodies: &Bodies) -> Vec<usize> {
        bodies.sizes().collect()
    }

    #[test]
    fn small_bodies_share_one_buffer_large_ones_keep_theirs_and_order_holds() {
        let large = Bytes::from(vec![7; SMALL_ITEM + 1]);
        let mut bodies = Bodies::default();
        bodies.push_slice(b"ab");
        bodies.push(large.clone());
        bodies.push(Bytes::from_static(b"c"));
        assert_eq!(sizes(&bodies), [2, SMALL_ITEM + 1, 1]);
        assert_eq!(bodies.small, b"abc", "the small ones are copied back to back");
        let mut more = Bodies::default();
        more.push_slice(b"d");
        bodies.append(&mut more);
        assert!(more.is_empty());
        bodies.truncate(3);
        assert_eq!(sizes(&bodies), [2, SMALL_ITEM + 1, 1]);
        assert_eq!(bodies.small, b"abc", "the cut small body is gone from the buffer");
        let mut last = Bytes::new();
        assert_eq!(bodies.pop(&mut last), Some(&b"ab"[..]));
        assert_eq!(bodies.pop(&mut last), Some(&large[..]));
        assert_eq!(bodies.pop(&mut last), Some(&b"c"[..]));
        assert_eq!(bodies.pop(&mut last), None);
    }

    #[test]
    fn a_run_is_delivered_at_once_and_items_up_to_one_beyond_credit_are_kept() {
        let (slot, _) = Slot::new(Some(StreamWindow { items: 2, bytes: 1000 }), false);
        let mut delivery = Delivery::default();
        for item in [b"a", b"b", b"c"] {
            assert!(delivery.add_slice(1, item, |_| Some(slot.clone())).expect("fine"));
        }
        let mut intake = Intake::new(slot.clone());
        assert_eq!(intake.poll_ready(&mut cx()), (None, Poll::Pending), "not delivered yet");
        let err = delivery.flush().expect_err("the third is beyond credit");
        assert!(err.to_string().contains("beyond the credit"), "{err}");
        assert_eq!(intake.poll_ready(&mut cx()), (None, Poll::Ready(true)));
        assert_eq!(intake.take(), Some(&b"a"[..]));
        assert_eq!(intake.take(), Some(&b"b"[..]));
        assert_eq!(intake.take(), None);
        // An item of a stream with no slot is told apart.
        assert!(!delivery.add_slice(2, b"x", |_| None).expect("fine"));
    }

    #[test]
    fn what_the_consumer_took_is_granted_back_at_its_next_turn_and_counts_until_then() {
        let (slot, grant) = Slot::new(Some(StreamWindow { items: 4, bytes: 1000 }), false);
        assert_eq!(grant, Some(Grant { items: 4, bytes: 1000 }));
        for item in [b"a", b"b", b"c", b"d"] {
            slot.on_item(1, item).expect("within credit");
        }
        let mut intake = Intake::new(slot.clone());
        assert_eq!(intake.poll_ready(&mut cx()), (None, Poll::Ready(true)));
        while intake.take().is_some() {}
        // Taken, but not reported: the window still holds them.
        assert!(slot.on_item(1, b"e").is_err(), "a fifth item is beyond credit");
        let (grant, ready) = intake.poll_ready(&mut cx());
        assert_eq!(grant, Some(Grant { items: 4, bytes: 4 }));
        assert_eq!(ready, Poll::Pending);
        slot.on_item(1, b"e").expect("granted again");
        slot.on_end(1).expect("the end");
        assert_eq!(intake.poll_ready(&mut cx()), (None, Poll::Ready(true)));
        assert_eq!(intake.take(), Some(&b"e"[..]));
        assert_eq!(intake.poll_ready(&mut cx()), (None, Poll::Ready(false)), "over once taken");
    }

    #[test]
    fn a_consumer_that_runs_dry_widens_its_window_and_one_that_lags_does_not() {
        const HALF: usize = 512 * 1024;
        let item = vec![7u8; HALF];
        let grants = |lags: bool| {
            let most = StreamWindow { items: 1 << 20, bytes: 16 << 20 };
            let (slot, first) = Slot::new(Some(most), false);
            assert_eq!(first, Some(Grant { items: 1024, bytes: 1 << 20 }), "the start");
            let mut intake = Intake::new(slot.clone());
            let mut grants = Vec::new();
            slot.on_item(1, &item).expect("within credit");
            for _ in 0..3 {
                assert_eq!(intake.poll_ready(&mut cx()).1, Poll::Ready(true));
                assert_eq!(intake.take().map(<[u8]>::len), Some(HALF));
                if lags {
                    // The next item is there before the consumer comes back.
                    slot.on_item(1, &item).expect("within credit");
                }
                let (grant, ready) = intake.poll_ready(&mut cx());
                grants.extend(grant);
                if !lags {
                    assert_eq!(ready, Poll::Pending, "it ran dry");
                    slot.on_item(1, &item).expect("within credit");
                }
            }
            grants
        };
        let taken = Grant { items: 1, bytes: HALF as u64 };
        assert_eq!(grants(true), [taken; 3], "a lagging consumer keeps the starting window");
        let kept_up = grants(false);
        assert_eq!(kept_up[0], taken, "it had not run dry before the first grant");
        assert_eq!(kept_up[1], Grant { items: 1 + 1024, bytes: (HALF + (1 << 20)) as u64 });
        // Now 2 MiB: half of it is two items, so the third take grants nothing yet.
        assert_eq!(kept_up.len(), 2);
    }
}
