//! The body codec's guarantees, measured: decoding allocates in proportion to the body (with a
//! counting allocator), ordinary large arguments decode, a panic in a serde implementation is
//! an error, and decode errors read as plain words.
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use rpc_core::__fuzz::{decode_body, encode};
use rpc_core::DEFAULT_MAX_FRAME;
use rpc_core::wire::Header;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[global_allocator]
static ALLOC: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's peak counts every thread, so the tests of this file run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `f` returns, and the most bytes it had allocated at once (net of what it freed): the
/// least of three runs, since the counter is the process's and the test harness's own threads
/// allocate now and then (a run once counted 34 MB for a 20-byte body); `f` never allocates
/// less than it must, so the least is the truest.
fn peak_of<R>(f: impl Fn() -> R) -> (R, usize) {
    let mut least = usize::MAX;
    let mut result = None;
    for _ in 0..3 {
        ALLOC.reset_peak_memory();
        let run = f();
        least = least.min(ALLOC.get_peak_memory());
        result = Some(run);
    }
    (result.expect("three runs"), least)
}

/// The codec's documented bound for a body of `n` bytes whose sequences are `Vec`s of elements
/// at most `s` bytes in memory: `(5·s + 9)·n`, plus room for an error message.
fn rule(n: usize, s: usize) -> usize {
    (5 * s + 9) * n + 1024
}

fn bincode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
}

/// A byte string decoded through `deserialize_byte_buf`, as `serde_bytes::ByteBuf` and
/// `bytes::Bytes` are.
#[derive(Debug, Clone, PartialEq)]
struct ByteBuf(Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// 0xFC: a little-endian u32 follows. `n` as a bincode length.
fn u32_length(n: u32) -> Vec<u8> {
    [&[0xFC][..], &n.to_le_bytes()].concat()
}

#[test]
fn a_five_byte_body_declaring_a_4_mib_string_allocates_almost_nothing() {
    let _alone = alone();
    let body = u32_length(4 << 20);
    assert_eq!(body.len(), 5);
    let (string, string_peak) = peak_of(|| decode_body::<String>(&body));
    let (bytes, bytes_peak) = peak_of(|| decode_body::<ByteBuf>(&body));
    let (seq, seq_peak) = peak_of(|| decode_body::<Vec<u8>>(&body));
    assert!(string.is_err() && bytes.is_err() && seq.is_err());
    for (what, peak) in
        [("String", string_peak), ("byte string", bytes_peak), ("Vec<u8>", seq_peak)]
    {
        assert!(peak < 64 * 1024, "a {what} took {peak} bytes");
    }
}

#[test]
fn nested_sequences_declaring_huge_lengths_reserve_in_proportion_to_the_body() {
    let _alone = alone();
    // Four levels, each declaring u32::MAX elements, then the body ends: serde would reserve up
    // to 1 MiB per level from the declared lengths alone.
    let body = u32_length(u32::MAX).repeat(4);
    let (result, peak) = peak_of(|| decode_body::<Vec<Vec<Vec<Vec<u64>>>>>(&body));
    assert!(result.is_err());
    assert!(peak <= rule(body.len(), 24), "{peak} bytes for a body of {}", body.len());

    // 64 Ki empty inner Vecs under an outer one that declares more than the body holds.
    let body = [u32_length(u32::MAX), vec![0; 64 * 1024]].concat();
    let (result, peak) = peak_of(|| decode_body::<Vec<Vec<u64>>>(&body));
    assert!(result.is_err());
    assert!(peak <= rule(body.len(), 24), "{peak} bytes for a body of {}", body.len());
}

#[test]
fn a_body_over_4_mib_cannot_declare_more_than_it_holds() {
    let _alone = alone();
    // With `max_frame` raised, a body past the default frame once decoded with a 4 GiB limit:
    // a string declaring nearly that many bytes was allocated before its bytes were missed.
    let body = [u32_length(u32::MAX - 255), vec![b'x'; 4 << 20]].concat();
    let (result, peak) = peak_of(|| decode_body::<String>(&body));
    assert!(result.is_err());
    assert!(peak < 64 * 1024, "{peak} bytes");
    let (result, peak) = peak_of(|| decode_body::<Vec<Vec<u8>>>(&body));
    assert!(result.is_err());
    assert!(peak <= rule(body.len(), 24), "{peak} bytes for a body of {}", body.len());
}

#[test]
fn a_million_small_i64_decode_under_the_default_frame() {
    let _alone = alone();
    let numbers: Vec<i64> = (0..1 << 20).map(|i| i % 100 - 50).collect();
    let body = bincode(&numbers);
    assert!(body.len() <= DEFAULT_MAX_FRAME, "{} bytes", body.len());
    let (back, peak) = peak_of(|| decode_body::<Vec<i64>>(&body).unwrap());
    assert_eq!(back, numbers);
    assert!(peak <= rule(body.len(), 8), "{peak} bytes for a body of {}", body.len());
}

#[test]
fn a_body_of_16_mib_decodes() {
    let _alone = alone();
    let value = ((0..1_i64 << 21).map(|i| i % 100).collect::<Vec<_>>(), ByteBuf(vec![7; 12 << 20]));
    let body = bincode(&value);
    assert!(body.len() > 12 << 20 && body.len() < 16 << 20, "{} bytes", body.len());
    assert_eq!(decode_body::<(Vec<i64>, ByteBuf)>(&body).unwrap(), value);
}

#[test]
fn a_sequence_cannot_hold_more_elements_than_its_body_has_bytes() {
    let _alone = alone();
    // Zero-sized elements take no bytes: only the element count stops a declared length.
    let started = Instant::now();
    let error = match decode_body::<Vec<()>>(&u32_length(u32::MAX)) {
        Ok(units) => panic!("decoded {} elements from 5 bytes", units.len()),
        Err(error) => error,
    };
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(error.contains("elements"), "{error}");
    assert_eq!(decode_body::<Vec<()>>(&[1]).unwrap(), vec![()]);
}

/// Panics when decoded, as a buggy `Deserialize` implementation might.
#[derive(Debug)]
struct Grenade;

impl<'de> Deserialize<'de> for Grenade {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("the pin was pulled")
    }
}

/// Panics when encoded, after its first element was written.
struct Fuse;

impl Serialize for Fuse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&"written")?;
        panic!("the fuse burnt down")
    }
}

#[test]
fn a_panicking_deserialize_is_an_error_and_the_next_decode_works() {
    let _alone = alone();
    let error = decode_body::<(u8, Vec<Grenade>)>(&[1, 1]).unwrap_err();
    assert_eq!(error, "the value's Deserialize implementation panicked: the pin was pulled");
    assert_eq!(decode_body::<(u8, String)>(&[1, 2, b'o', b'k']).unwrap(), (1, "ok".to_owned()));
}

#[test]
fn a_panicking_serialize_is_an_encode_error() {
    let _alone = alone();
    let error = encode(&Header::Response { id: 1 }, Some(&Fuse), DEFAULT_MAX_FRAME).unwrap_err();
    let error = error.to_string();
    assert!(
        error.ends_with("the value's Serialize implementation panicked: the fuse burnt down"),
        "{error}"
    );
    assert!(encode(&Header::Response { id: 1 }, Some(&7_u8), DEFAULT_MAX_FRAME).is_ok());
}

#[test]
fn decode_errors_read_as_plain_words() {
    let _alone = alone();
    let cases = [
        (decode_body::<(u64, u64)>(&[1]).unwrap_err(), "the body ends 1 byte too early"),
        (
            decode_body::<u16>(&[0xFC, 0, 0, 1, 0]).unwrap_err(),
            "an integer marker 0xfc where a u16 was expected",
        ),
        (decode_body::<String>(&[2, 0xC3, 0x28]).unwrap_err(), "a string that is not valid UTF-8"),
        (
            decode_body::<String>(&u32_length(u32::MAX)).unwrap_err(),
            "a length of 4294967295 bytes where the body has 0 left",
        ),
        (
            decode_body::<Option<u8>>(&[2]).unwrap_err(),
            "an option marker 2 where 0 or 1 was expected",
        ),
        (decode_body::<bool>(&[9]).unwrap_err(), "a bool of 9 where 0 or 1 was expected"),
    ];
    for (error, expected) in cases {
        assert_eq!(error, expected);
        assert!(!error.contains('{') && !error.contains("::"), "{error}");
    }
}

/// A value with a bit of everything the decoder treats apart: strings, byte strings, options,
/// sequences, maps, tuples, structs and enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Named { name: String, tags: Vec<String> },
    Blob(ByteBuf),
    Table(BTreeMap<u16, Option<i64>>, (char, bool)),
}

fn shape() -> impl Strategy<Value = Shape> {
    let text = ".{0,12}";
    prop_oneof![
        Just(Shape::Empty),
        (text, proptest::collection::vec(text, 0..4))
            .prop_map(|(name, tags)| Shape::Named { name, tags }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Shape::Blob(ByteBuf(b))),
        (
            proptest::collection::btree_map(any::<u16>(), any::<Option<i64>>(), 0..5),
            any::<(char, bool)>()
        )
            .prop_map(|(map, pair)| Shape::Table(map, pair)),
    ]
}

/// bincode's own decode of a body that must be used up, for comparison. Its limit keeps a
/// declared length from aborting the test; the bodies here are far too small to reach it.
fn bincode_alone<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let config = bincode::config::standard().with_limit::<{ 1 << 20 }>();
    match bincode::serde::decode_from_slice::<T, _>(body, config) {
        Ok((value, used)) if used == body.len() => Some(value),
        _ => None,
    }
}

/// The bounded decoder changes what is allocated, not what is accepted: any body, valid, cut
/// short or with one byte changed, decodes to what bincode alone makes of it. The whole run
/// holds the lock (proptest allocates between cases, which would count in the peak of a
/// measurement running meanwhile), so it is run by hand rather than by `proptest!`.
#[test]
fn the_bounded_decoder_accepts_what_bincode_accepts() {
    let _alone = alone();
    let config = proptest::test_runner::Config {
        source_file: Some(file!()),
        ..proptest::test_runner::Config::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let cases = (
        proptest::collection::vec(shape(), 0..4),
        any::<prop::sample::Index>(),
        any::<(prop::sample::Index, u8)>(),
        0..3,
    );
    let checked = runner.run(&cases, |(shapes, cut, flip, how)| {
        let mut body = bincode(&shapes);
        match how {
            0 => {}
            1 => body.truncate(cut.index(body.len() + 1)),
            _ => {
                let at = flip.0.index(body.len());
                body[at] ^= flip.1.max(1);
            }
        }
        let ours = decode_body::<Vec<Shape>>(&body);
        prop_assert_eq!(ours.clone().ok(), bincode_alone::<Vec<Shape>>(&body), "{:?}", ours);
        Ok(())
    });
    if let Err(e) = checked {
        panic!("{e}");
    }
}

/// Decode throughput, compared with bincode on its own (no limit, no proxy). Run with
/// `cargo test --release -p rpc-tests --test codec_bounds -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run it in release"]
fn decode_throughput() {
    let _alone = alone();
    // glibc's malloc serves a block from the heap, not a fresh mapping, once a mapping as large
    // has been freed: free a large one first, so that every case sees what a long-running
    // process sees, whatever ran before it.
    drop(std::hint::black_box(vec![0_u8; 32 << 20]));
    let small: Vec<i64> = (0..1 << 20).map(|i| i % 100 - 50).collect();
    let large: Vec<i64> = (0..1 << 20).map(|i| 100_000 + i).collect();
    let bytes = ByteBuf(vec![0xA5; 1 << 20]);
    measure("Vec<i64>, 1 Mi small numbers", &bincode(&small), |b| {
        decode_body::<Vec<i64>>(b).map(|v| v.len())
    });
    measure("Vec<i64>, 1 Mi 5-byte numbers", &bincode(&large), |b| {
        decode_body::<Vec<i64>>(b).map(|v| v.len())
    });
    measure("byte string, 1 MiB", &bincode(&bytes), |b| {
        decode_body::<ByteBuf>(b).map(|v| v.0.len())
    });
    let standard = bincode::config::standard();
    measure("bincode alone: Vec<i64>, 1 Mi small numbers", &bincode(&small), |b| {
        bincode::serde::decode_from_slice::<Vec<i64>, _>(b, standard)
            .map(|v| v.0.len())
            .map_err(|e| e.to_string())
    });
    measure("bincode alone: byte string, 1 MiB", &bincode(&bytes), |b| {
        bincode::serde::decode_from_slice::<ByteBuf, _>(b, standard)
            .map(|v| v.0.0.len())
            .map_err(|e| e.to_string())
    });
}

fn measure(what: &str, body: &[u8], decode: impl Fn(&[u8]) -> Result<usize, String>) {
    if let Err(e) = decode(body) {
        println!("{what}: refused: {e}");
        return;
    }
    let mut runs = 0_u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(decode(std::hint::black_box(body)).unwrap());
        runs += 1;
    }
    let each = started.elapsed() / runs;
    let rate = body.len() as f64 / each.as_secs_f64() / f64::from(1 << 20);
    println!("{what}: {} body bytes in {each:?}: {rate:.0} MiB/s", body.len());
}
