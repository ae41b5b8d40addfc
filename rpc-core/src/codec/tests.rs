//! The codec's promises that only the crate can see: the error's shape, the buffer after a
//! failed encode, and the size hints sequences are given.

use std::cell::RefCell;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{self, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use super::*;

/// Writes one element, then panics.
struct Fuse;

impl Serialize for Fuse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element("half a value")?;
        panic!("the fuse burnt down")
    }
}

/// Writes one element, then fails.
struct Refusal;

impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element("half a value")?;
        Err(ser::Error::custom("no second element today"))
    }
}

#[test]
fn a_panicking_serialize_leaves_the_buffer_as_it_was() {
    let mut buf = BytesMut::from(&b"frames before"[..]);
    let error = encode_into(&Fuse, &mut buf).expect_err("a panic");
    assert_eq!(
        error,
        CodecError {
            message: "the value's Serialize implementation panicked: the fuse burnt down".into(),
            panicked: true,
        }
    );
    assert_eq!(&buf[..], b"frames before");
    encode_into(&7_u8, &mut buf).expect("the next encode");
    assert_eq!(&buf[..], b"frames before\x07");
}

#[test]
fn a_failing_serialize_leaves_the_buffer_as_it_was() {
    let mut buf = BytesMut::from(&b"frames before"[..]);
    let error = encode_into(&Refusal, &mut buf).expect_err("an error");
    assert_eq!(error, CodecError { message: "no second element today".into(), panicked: false });
    assert_eq!(error.to_string(), "no second element today");
    assert_eq!(&buf[..], b"frames before");
}

/// Panics when decoded, after reading one byte.
#[derive(Debug)]
struct Grenade;

impl<'de> Deserialize<'de> for Grenade {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pin = u8::deserialize(deserializer)?;
        panic!("pin {pin} was pulled")
    }
}

#[test]
fn a_panicking_deserialize_is_an_error_and_the_next_decode_works() {
    let error = decode_exact::<Vec<Grenade>>(&[1, 9]).expect_err("a panic");
    assert_eq!(
        error,
        CodecError {
            message: "the value's Deserialize implementation panicked: pin 9 was pulled".into(),
            panicked: true,
        }
    );
    assert_eq!(decode_exact::<(u8, String)>(&[1, 2, b'o', b'k']), Ok((1, "ok".to_owned())));
}

thread_local! {
    /// The size hints `Recorded` sequences were given, outermost first.
    static HINTS: RefCell<Vec<Option<usize>>> = const { RefCell::new(Vec::new()) };
}

/// A sequence that notes its size hint, then reads its elements as `T`.
#[derive(Debug)]
struct Recorded<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Recorded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
            type Value = Recorded<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Recorded<T>, A::Error> {
                HINTS.with(|hints| hints.borrow_mut().push(seq.size_hint()));
                let mut elements = Vec::new();
                while let Some(element) = seq.next_element()? {
                    elements.push(element);
                }
                Ok(Recorded(elements))
            }
        }
        deserializer.deserialize_seq(Elements(std::marker::PhantomData))
    }
}

/// 0xFC: a little-endian u32 follows. u32::MAX as a bincode length.
const HUGE: [u8; 5] = [0xFC, 0xFF, 0xFF, 0xFF, 0xFF];

#[test]
fn a_declared_length_is_hinted_no_further_than_the_bytes_left_and_the_body_wide_budget() {
    HINTS.with(|hints| hints.borrow_mut().clear());
    // Two nested sequences each declaring u32::MAX elements, then 100 bytes: 110 in all.
    let body = [&HUGE[..], &HUGE, &[7; 100]].concat();
    assert!(decode_exact::<Recorded<Recorded<u8>>>(&body).is_err());
    // The outer one may reserve for the 105 bytes after its length; the inner one, for what
    // is left of the body-wide 110.
    assert_eq!(HINTS.with(|hints| hints.borrow().clone()), [Some(105), Some(5)]);
}

#[test]
fn a_fitting_declared_length_is_hinted_in_full() {
    HINTS.with(|hints| hints.borrow_mut().clear());
    let value = vec![vec![1_u8, 2, 3], vec![4, 5]];
    let mut buf = BytesMut::new();
    encode_into(&value, &mut buf).expect("encodes");
    let back = decode_exact::<Recorded<Recorded<u8>>>(&buf).expect("decodes");
    assert_eq!(back.0.iter().map(|inner| inner.0.clone()).collect::<Vec<_>>(), value);
    assert_eq!(HINTS.with(|hints| hints.borrow().clone()), [Some(2), Some(3), Some(2)]);
}

#[test]
fn a_string_longer_than_the_bytes_left_is_refused_before_allocation() {
    let body = [&HUGE[..], b"abc"].concat();
    let error = decode_exact::<String>(&body).expect_err("too long");
    assert_eq!(error.message, "a length of 4294967295 bytes where the body has 3 left");
    assert!(!error.panicked);
}

#[test]
fn trailing_bytes_are_counted_in_words() {
    assert_eq!(
        decode_exact::<u8>(&[1, 2]).expect_err("trailing").message,
        "1 trailing byte after the value"
    );
    assert_eq!(
        decode_exact::<u8>(&[1, 2, 3]).expect_err("trailing").message,
        "2 trailing bytes after the value"
    );
}
