//! Bytes from a client, read as the server reads them: frames, the hello, headers, bodies.
//! Whatever the bytes, decoding ends in events or an error, never in a panic, an abort or a
//! hang; and bytes that arrive in two reads are cut into the same frames as in one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::__fuzz::{Frames, server_reads};
use rpc_core::DEFAULT_MAX_FRAME;

/// Every payload complete so far, and whether the stream turned out corrupt.
fn drain(frames: &mut Frames, payloads: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match frames.next_payload() {
            Ok(Some(payload)) => payloads.push(payload),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(server_reads(data, DEFAULT_MAX_FRAME));
    // The first byte says where the rest is cut in two.
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = usize::from(cut).min(rest.len());
    let (mut whole, mut split) = (Frames::new(DEFAULT_MAX_FRAME), Frames::new(DEFAULT_MAX_FRAME));
    let (mut from_whole, mut from_split) = (Vec::new(), Vec::new());
    whole.push(rest);
    let whole_corrupt = drain(&mut whole, &mut from_whole);
    split.push(&rest[..at]);
    let mut split_corrupt = drain(&mut split, &mut from_split);
    if !split_corrupt {
        split.push(&rest[at..]);
        split_corrupt = drain(&mut split, &mut from_split);
    }
    assert_eq!(from_whole, from_split);
    assert_eq!(whole_corrupt, split_corrupt);
});
