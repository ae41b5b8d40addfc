//! Bytes from a server, read as the client reads them: frames, the hello (or a Close in its
//! place), headers, bodies. Whatever the bytes, decoding ends in events or an error, never in
//! a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::__fuzz::client_reads;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(client_reads(data, rpc_core::DEFAULT_MAX_FRAME));
});
