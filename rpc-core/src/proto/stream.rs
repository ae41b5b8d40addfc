//! Streams of items within a call, as credit accounting without I/O: what a receiver has
//! granted, what a sender may still send, and when an item breaks the protocol.
//!
//! A stream's receiver grants credit ([`Header::Credit`](crate::wire::Header::Credit)): a
//! number of items and a number of body bytes. The sender sends an item only while it holds at
//! least one item of credit and a positive byte credit; the item's body size is then taken off
//! both, so the byte credit may go below zero by one item. The receiver grants again as its
//! consumer takes items, once half a window was taken. So a receiver holds at most
//! `window.items` items, and at most `window.bytes` plus one frame of bytes, per stream: the
//! reader never waits for a consumer, and an item beyond credit is a protocol violation.

use crate::Error;

/// How much a receiver lets a sender have in flight on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWindow {
    /// Items in flight. At least 1.
    pub items: u32,
    /// Bytes of item bodies in flight (one item may cross it). At least 1.
    pub bytes: u64,
}

impl StreamWindow {
    /// The default window: 1,024 items and 1 MiB. Small items need many in flight to keep a
    /// stream moving (8-byte items went from about 1.2 to 2 M items/s going from 256 to 1,024 items
    /// here); the bytes bound what a stream holds: 1 MiB plus one frame.
    pub const DEFAULT: StreamWindow = StreamWindow { items: 1024, bytes: 1024 * 1024 };

    /// The window with each part at least 1, so that a stream can always move.
    pub(crate) fn usable(self) -> StreamWindow {
        StreamWindow { items: self.items.max(1), bytes: self.bytes.max(1) }
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
    window: StreamWindow,
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
    /// A stream about to start, and the first grant to send: a whole window.
    pub(crate) fn new(window: StreamWindow) -> (Inflow, Grant) {
        let window = window.usable();
        let inflow = Inflow {
            window,
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

    /// The consumer took `items` items of `bytes` body bytes in all: the credit to grant back,
    /// once half a window of items or bytes was taken (fewer, larger grants), unless the
    /// stream ended. A consumer may report what it took in batches: what it has not reported
    /// yet still counts as held, so the window still bounds what it holds.
    pub(crate) fn on_taken(&mut self, items: u32, bytes: u64) -> Option<Grant> {
        self.taken_items = self.taken_items.saturating_add(items);
        self.taken_bytes = self.taken_bytes.saturating_add(bytes);
        let half_items = self.taken_items >= self.window.items.div_ceil(2);
        let half_bytes = self.taken_bytes >= self.window.bytes.div_ceil(2);
        if self.ended || !(half_items || half_bytes) {
            return None;
        }
        let grant = Grant { items: self.taken_items, bytes: self.taken_bytes };
        self.items_left += std::mem::take(&mut self.taken_items);
        self.bytes_left =
            self.bytes_left.saturating_add(clamp(std::mem::take(&mut self.taken_bytes)));
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
