//! Streams of items within a call, as credit accounting without I/O: what a receiver has
//! granted, what a sender may still send, and when an item breaks the protocol.
//!
//! A stream's receiver grants credit ([`Header::Credit`](crate::wire::Header::Credit)): a
//! number of items and a number of body bytes. The sender sends an item only while it holds at
//! least one item of credit and a positive byte credit; the item's body size is then taken off
//! both, so the byte credit may go below zero by one item. The receiver grants again as its
//! consumer takes items, once half its current window was taken; the window starts small and
//! doubles at a grant while the consumer keeps up, up to the configured one. So a receiver
//! holds at most `window.items` items, and at most `window.bytes` plus one frame of bytes, per
//! stream: the reader never waits for a consumer, and an item beyond credit is a protocol
//! violation.

use crate::Error;

/// The most a receiver lets a sender have in flight on one stream: what it may hold of it.
///
/// A receiver does not grant all of it at once: it starts with at most
/// [`StreamWindow::START`] and doubles its window, up to this one, each time it grants credit
/// after its consumer ran out of items to take (the consumer keeps up, so the window, not the
/// consumer, holds the stream back). A consumer that lags never grows its window; one that
/// keeps up gets fewer, larger grants, each of which costs both ends a wakeup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWindow {
    /// Items in flight. At least 1.
    pub items: u32,
    /// Bytes of item bodies in flight (one item may cross it). At least 1.
    pub bytes: u64,
}

impl StreamWindow {
    /// The default window: 8,192 items and 8 MiB, reached from [`StreamWindow::START`] while
    /// the consumer keeps up. One 64 KiB-item stream over a Unix socket moved about 4 GB/s
    /// with a fixed 1 MiB window and about 6 GB/s with 8 MiB: every grant wakes the sender's
    /// connection, and on a multi-threaded runtime that often wakes a second worker too.
    pub const DEFAULT: StreamWindow = StreamWindow { items: 8 * 1024, bytes: 8 * 1024 * 1024 };

    /// Where a receiver's window starts: 1,024 items and 1 MiB, or the configured window if
    /// that is smaller.
    pub const START: StreamWindow = StreamWindow { items: 1024, bytes: 1024 * 1024 };

    /// The window with each part at least 1, so that a stream can always move.
    pub(crate) fn usable(self) -> StreamWindow {
        StreamWindow { items: self.items.max(1), bytes: self.bytes.max(1) }
    }

    /// Each part the smaller of the two.
    fn min(self, other: StreamWindow) -> StreamWindow {
        StreamWindow { items: self.items.min(other.items), bytes: self.bytes.min(other.bytes) }
    }

    /// Each part doubled, but not beyond `most`.
    fn doubled_within(self, most: StreamWindow) -> StreamWindow {
        let doubled = StreamWindow {
            items: self.items.saturating_mul(2),
            bytes: self.bytes.saturating_mul(2),
        };
        doubled.min(most)
    }
}

impl Default for StreamWindow {
    fn default() -> Self {
        StreamWindow::DEFAULT
    }
}

/// A credit to grant: the fields of a Credit frame after the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) items: u32,
    pub(crate) bytes: u64,
}

/// The receiving side of one stream.
#[derive(Debug)]
pub(crate) struct Inflow {
    /// The window granted so far, and the most it may grow to.
    window: StreamWindow,
    most: StreamWindow,
    /// The consumer has taken an item; and it ran out of items since the last grant.
    took: bool,
    starved: bool,
    /// Items the sender may still send.
    items_left: u32,
    /// Bytes the sender may still send; below zero after an item that crossed it.
    bytes_left: i64,
    /// Taken by the consumer since the last grant.
    taken_items: u32,
    taken_bytes: u64,
    /// The sender said the stream is over.
    ended: bool,
}

impl Inflow {
    /// A stream about to start, and the first grant to send: the starting window (see
    /// [`StreamWindow`]).
    pub(crate) fn new(most: StreamWindow) -> (Inflow, Grant) {
        let most = most.usable();
        let window = most.min(StreamWindow::START);
        let inflow = Inflow {
            window,
            most,
            took: false,
            starved: false,
            items_left: window.items,
            bytes_left: clamp(window.bytes),
            taken_items: 0,
            taken_bytes: 0,
            ended: false,
        };
        (inflow, Grant { items: window.items, bytes: window.bytes })
    }

    /// An item of `len` body bytes arrived. Beyond credit or after the end, the peer broke
    /// the protocol.
    pub(crate) fn on_item(&mut self, id: u64, len: usize) -> Result<(), Error> {
        if self.ended {
            return Err(Error::Protocol(format!("an item for stream {id} after its end")));
        }
        if self.items_left == 0 || self.bytes_left <= 0 {
            return Err(Error::Protocol(format!(
                "an item for stream {id} beyond the credit granted ({} items, {} bytes left)",
                self.items_left, self.bytes_left
            )));
        }
        self.items_left -= 1;
        self.bytes_left = self.bytes_left.saturating_sub(clamp(len as u64));
        Ok(())
    }

    /// The sender ended the stream; a second end breaks the protocol.
    pub(crate) fn on_end(&mut self, id: u64) -> Result<(), Error> {
        if std::mem::replace(&mut self.ended, true) {
            return Err(Error::Protocol(format!("stream {id} ended twice")));
        }
        Ok(())
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// The consumer found nothing to take. Once it has taken items, that means it keeps up
    /// with the sender: the window grows at the next grant. (Waiting for the first item says
    /// nothing about the consumer.)
    pub(crate) fn on_starved(&mut self) {
        self.starved |= self.took;
    }

    /// The consumer took `items` items of `bytes` body bytes in all: the credit to grant back,
    /// once half the window of items or bytes was taken (fewer, larger grants), unless the
    /// stream ended; with the window's growth in it if the consumer ran out of items since the
    /// last grant. A consumer may report what it took in batches: what it has not reported yet
    /// still counts as held, so the window still bounds what it holds.
    pub(crate) fn on_taken(&mut self, items: u32, bytes: u64) -> Option<Grant> {
        self.took |= items > 0;
        self.taken_items = self.taken_items.saturating_add(items);
        self.taken_bytes = self.taken_bytes.saturating_add(bytes);
        let half_items = self.taken_items >= self.window.items.div_ceil(2);
        let half_bytes = self.taken_bytes >= self.window.bytes.div_ceil(2);
        if self.ended || !(half_items || half_bytes) {
            return None;
        }
        let grown = match std::mem::take(&mut self.starved) {
            true => self.window.doubled_within(self.most),
            false => self.window,
        };
        let grant = Grant {
            items: std::mem::take(&mut self.taken_items)
                .saturating_add(grown.items - self.window.items),
            bytes: std::mem::take(&mut self.taken_bytes)
                .saturating_add(grown.bytes - self.window.bytes),
        };
        self.window = grown;
        self.items_left = self.items_left.saturating_add(grant.items);
        self.bytes_left = self.bytes_left.saturating_add(clamp(grant.bytes));
        Some(grant)
    }
}

/// The sending side of one stream: the credit the receiver granted. A copy taken at one
/// moment is credit the sender may spend alone: credit only grows behind its back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outflow {
    items: u64,
    bytes: i64,
}

impl Outflow {
    /// Whether an item may be sent now.
    pub(crate) fn can_send(&self) -> bool {
        self.items > 0 && self.bytes > 0
    }

    /// An item of `len` body bytes was sent; call only when [`Outflow::can_send`].
    pub(crate) fn sent(&mut self, len: usize) {
        self.items = self.items.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(clamp(len as u64));
    }

    /// `items` items of `bytes` body bytes in all were sent, each while [`Outflow::can_send`]
    /// held for a copy of this credit (see [`Outflow::sent`]).
    pub(crate) fn sent_many(&mut self, items: u64, bytes: u64) {
        self.items = self.items.saturating_sub(items);
        self.bytes = self.bytes.saturating_sub(clamp(bytes));
    }

    /// The receiver granted more. Credit beyond what any window could give (more than 2^32
    /// items or 2^62 bytes outstanding) breaks the protocol: an honest receiver never grants
    /// more than it has room for.
    pub(crate) fn on_credit(&mut self, id: u64, grant: Grant) -> Result<(), Error> {
        let items = self.items + u64::from(grant.items);
        let bytes = self.bytes.saturating_add(clamp(grant.bytes));
        if items > u64::from(u32::MAX) || bytes > MAX_BYTES {
            return Err(Error::Protocol(format!("credit for stream {id} beyond any window")));
        }
        self.items = items;
        self.bytes = bytes;
        Ok(())
    }
}

/// The most byte credit a sender may hold.
const MAX_BYTES: i64 = 1 << 62;

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a stream frame (Item, End, Credit) for an id with no open stream means: one for a call
/// that ended (its frames crossed the end on the wire) is dropped; one for an id the peer
/// never used breaks the protocol. `highest` is the highest call id used so far.
pub(crate) fn unknown_stream(id: u64, highest: u64) -> Result<(), Error> {
    if id == 0 || id > highest {
        return Err(Error::Protocol(format!("a stream frame for id {id}, which no call has")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: StreamWindow = StreamWindow { items: 4, bytes: 100 };

    #[test]
    fn a_receiver_grants_a_whole_window_first_and_refuses_items_beyond_it() {
        let (mut inflow, grant) = Inflow::new(W);
        assert_eq!(grant, Grant { items: 4, bytes: 100 });
        for _ in 0..4 {
            inflow.on_item(1, 1).expect("within credit");
        }
        let err = inflow.on_item(1, 1).expect_err("a fifth item");
        assert!(err.to_string().contains("beyond the credit"), "{err}");
    }

    #[test]
    fn one_item_may_cross_the_byte_window_but_none_after_it() {
        let (mut inflow, _) = Inflow::new(W);
        inflow.on_item(1, 99).expect("within credit");
        inflow.on_item(1, 1000).expect("one byte left: the item may cross it");
        assert!(inflow.on_item(1, 0).is_err(), "no byte credit left");
    }

    #[test]
    fn credit_comes_back_after_half_a_window_is_taken() {
        let (mut inflow, _) = Inflow::new(W);
        for _ in 0..4 {
            inflow.on_item(1, 1).expect("within credit");
        }
        assert_eq!(inflow.on_taken(1, 1), None);
        assert_eq!(inflow.on_taken(1, 1), Some(Grant { items: 2, bytes: 2 }));
        inflow.on_item(1, 1).expect("granted again");
        inflow.on_item(1, 1).expect("granted again");
        assert!(inflow.on_item(1, 1).is_err());
        // Half the bytes is enough too.
        assert_eq!(inflow.on_taken(1, 60), Some(Grant { items: 1, bytes: 60 }));
    }

    #[test]
    fn the_window_starts_small_and_doubles_at_a_grant_after_the_consumer_ran_dry() {
        let most = StreamWindow { items: 4096, bytes: 1 << 30 };
        let (mut inflow, grant) = Inflow::new(most);
        assert_eq!(grant, Grant { items: 1024, bytes: 1 << 20 }, "the start, not all of it");
        inflow.on_starved();
        for _ in 0..1024 {
            inflow.on_item(1, 1).expect("within the first grant");
        }
        assert_eq!(
            inflow.on_taken(512, 512),
            Some(Grant { items: 512, bytes: 512 }),
            "waiting for the first item says nothing"
        );
        inflow.on_starved();
        let grown = Some(Grant { items: 512 + 1024, bytes: 512 + (1 << 20) });
        assert_eq!(inflow.on_taken(512, 512), grown, "ran dry after taking: it keeps up");
        for _ in 0..2048 {
            inflow.on_item(1, 1).expect("within the grown window");
        }
        assert!(inflow.on_item(1, 1).is_err(), "all 2,048 items of the window are out");
        // Half the grown window: 1,024 items. A consumer that did not run dry keeps it.
        assert_eq!(inflow.on_taken(1024, 0), Some(Grant { items: 1024, bytes: 0 }));
        inflow.on_starved();
        let grant = inflow.on_taken(1024, 0).expect("half a window");
        assert_eq!(grant, Grant { items: 1024 + 2048, bytes: 2 << 20 }, "items reach the most");
        inflow.on_starved();
        let grant = inflow.on_taken(2048, 0).expect("half a window");
        assert_eq!(grant, Grant { items: 2048, bytes: 4 << 20 }, "bytes grow on alone");
    }

    #[test]
    fn items_after_the_end_and_a_second_end_break_the_protocol_and_no_credit_follows() {
        let (mut inflow, _) = Inflow::new(W);
        inflow.on_item(1, 1).expect("within credit");
        inflow.on_end(1).expect("first end");
        assert!(inflow.is_ended());
        assert!(inflow.on_item(1, 1).is_err());
        assert!(inflow.on_end(1).is_err());
        assert_eq!(inflow.on_taken(1, 100), None, "nothing more will come");
    }

    #[test]
    fn a_sender_waits_without_credit_and_may_cross_the_bytes_by_one_item() {
        let mut out = Outflow::default();
        assert!(!out.can_send(), "no credit before the first grant");
        out.on_credit(1, Grant { items: 2, bytes: 10 }).expect("valid");
        assert!(out.can_send());
        out.sent(50);
        assert!(!out.can_send(), "bytes used up");
        out.on_credit(1, Grant { items: 0, bytes: 100 }).expect("valid");
        assert!(out.can_send());
        out.sent(1);
        assert!(!out.can_send(), "items used up");
    }

    #[test]
    fn credit_beyond_any_window_breaks_the_protocol() {
        let mut out = Outflow::default();
        out.on_credit(1, Grant { items: u32::MAX, bytes: 1 }).expect("one window's worth");
        assert!(out.on_credit(1, Grant { items: 1, bytes: 1 }).is_err());
        let mut out = Outflow::default();
        assert!(out.on_credit(1, Grant { items: 1, bytes: u64::MAX }).is_err());
    }

    #[test]
    fn frames_for_ended_calls_are_dropped_and_for_unused_ids_break_the_protocol() {
        assert!(unknown_stream(3, 5).is_ok());
        assert!(unknown_stream(6, 5).is_err());
        assert!(unknown_stream(0, 5).is_err());
    }

    #[test]
    fn a_zero_window_still_lets_one_item_through() {
        let (mut inflow, grant) = Inflow::new(StreamWindow { items: 0, bytes: 0 });
        assert_eq!(grant, Grant { items: 1, bytes: 1 });
        inflow.on_item(1, 10).expect("one item");
        assert_eq!(inflow.on_taken(1, 10), Some(Grant { items: 1, bytes: 10 }));
    }
}
