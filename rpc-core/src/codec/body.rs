//! The body being decoded: its unread bytes and its budgets, shared by bincode's reader and
//! the bounded deserializer.

use std::cell::Cell;

use bincode::de::read::Reader;
use bincode::error::DecodeError;
use serde::de;

/// The body being decoded, shared by the reader bincode pulls from and by `Bounded`, so both
/// see one position.
pub(super) struct Body<'a> {
    len: usize,
    /// The bytes not consumed yet: the end of the body.
    rest: Cell<&'a [u8]>,
    /// Room that sequences and maps may still be told to reserve, in elements, for the whole
    /// body: it starts at the body's length.
    unreserved: Cell<usize>,
    /// Elements that sequences and maps may still hold, for the whole body: it starts at the
    /// body's length.
    elements_left: Cell<usize>,
}

impl<'a> Body<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Body<'a> {
        let len = bytes.len();
        Body {
            len,
            rest: Cell::new(bytes),
            unreserved: Cell::new(len),
            elements_left: Cell::new(len),
        }
    }

    /// Bytes consumed so far.
    pub(super) fn used(&self) -> usize {
        self.len - self.left()
    }

    /// Bytes not consumed yet.
    #[inline]
    pub(super) fn left(&self) -> usize {
        self.rest.get().len()
    }

    /// The next `len` bytes, consumed; `None` (consuming nothing) if fewer are left.
    #[inline]
    pub(super) fn take(&self, len: usize) -> Option<&'a [u8]> {
        let rest = self.rest.get();
        let taken = rest.get(..len)?;
        self.rest.set(rest.get(len..).unwrap_or_default());
        Some(taken)
    }

    /// How many of `declared` elements a sequence starting now may reserve room for: no more
    /// than the bytes left, nor than what earlier sequences left of the body-wide budget.
    pub(super) fn reserve(&self, declared: usize) -> usize {
        let granted = declared.min(self.left()).min(self.unreserved.get());
        self.unreserved.set(self.unreserved.get() - granted);
        granted
    }

    /// Counts one more element of a sequence or map. Every element counts as at least one
    /// byte: without it, a declared length of zero-sized elements (a `Vec<()>`) would run the
    /// decoder for as long as it says, reading nothing.
    #[inline]
    pub(super) fn count_element<E: de::Error>(&self) -> Result<(), E> {
        match self.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.elements_left.set(left);
                Ok(())
            }
            None => Err(too_many_elements(self.len)),
        }
    }
}

#[cold]
fn too_many_elements<E: de::Error>(body: usize) -> E {
    E::custom(format_args!("more sequence or map elements than the {body} bytes of the body"))
}

/// The reader bincode decodes from: the body, at its shared position.
pub(super) struct BodyReader<'b>(pub(super) &'b Body<'b>);

impl Reader for BodyReader<'_> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        match self.0.take(out.len()) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                Ok(())
            }
            None => {
                let additional = out.len() - self.0.left();
                Err(DecodeError::UnexpectedEnd { additional })
            }
        }
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.0.rest.get().get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.0.rest.set(self.0.rest.get().get(n..).unwrap_or_default());
    }
}
