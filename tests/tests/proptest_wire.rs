//! Property tests of the wire decoders, through the same `rpc_core::__fuzz` entry points as the
//! fuzz targets: every header round-trips exactly, no byte string makes a decoder panic, and a
//! stream cut at any points decodes the same as in one piece. Also keeps the fuzz seeds in
//! `fuzz/corpus/` equal to what the encoder makes.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use proptest::prelude::*;
use rpc_core::__fuzz::{self as fuzz, Event, Frames};
use rpc_core::DEFAULT_MAX_FRAME;
use rpc_core::wire::{Header, MetadataRef};

/// Any header, with integers often at the edges of their varint forms, and messages of any
/// text up to the 512 bytes a sender may send (not only what `Header::failure` would send).
///
/// A header borrows its text and metadata; these are leaked, so that a case's header may be
/// `'static` like the rest of it (a few hundred small cases per test).
fn header() -> impl Strategy<Value = Header<'static>> {
    prop_oneof![
        2 => header_with_body(),
        1 => (int(), int(), ".{0,40}").prop_map(|(id, code, message)| {
            Header::Failure { id, code: code as u32, message: message.leak() }
        }),
        1 => (int(), int(), int(), metadata()).prop_map(|(id, method, budget_us, metadata)| {
            Header::RequestMeta {
                id,
                method: method as u32,
                budget_us,
                metadata: MetadataRef::Of(Box::leak(Box::new(metadata))),
            }
        }),
        1 => int().prop_map(|id| Header::Cancel { id }),
        1 => int().prop_map(|last_id| Header::GoAway { last_id }),
        1 => int().prop_map(|id| Header::End { id }),
        1 => (int(), int(), int()).prop_map(|(id, items, bytes)| Header::Credit {
            id,
            items: items as u32,
            bytes
        }),
        // At most 4 bytes a character: within the limit; longer ones are cut when decoded.
        1 => (int(), ".{0,128}").prop_map(|(code, message)| Header::Close {
            code: code as u32,
            message: message.leak()
        }),
    ]
}

/// Metadata within its limits: a few entries of short keys and values of any bytes.
fn metadata() -> impl Strategy<Value = rpc_core::Metadata> {
    let entry = ("[a-z0-9._-]{1,12}", proptest::collection::vec(any::<u8>(), 0..40));
    proptest::collection::vec(entry, 0..5).prop_map(|entries| {
        let mut metadata = rpc_core::Metadata::new();
        for (key, value) in entries {
            metadata.insert(&key, value).expect("within the limits");
        }
        metadata
    })
}

/// A header and the body bytes that follow it (any bytes for a message with a body: the header
/// does not know its body).
fn message() -> impl Strategy<Value = (Header<'static>, Vec<u8>)> {
    (header(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(header, body)| {
        // Only a Request or a Response may have bytes after its header.
        let body = if has_body(&header) { body } else { Vec::new() };
        (header, body)
    })
}

/// A header of a message that carries a body: a Request or a Response.
fn header_with_body() -> impl Strategy<Value = Header<'static>> {
    prop_oneof![
        (int(), int(), int()).prop_map(|(id, method, budget_us)| Header::Request {
            id,
            method: method as u32,
            budget_us
        }),
        int().prop_map(|id| Header::Response { id }),
        int().prop_map(|id| Header::Item { id }),
    ]
}

/// Encodes `messages` after a hello into one stream, as a connection writes them.
fn stream(messages: &[(Header<'static>, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = fuzz::encode_hello(DEFAULT_MAX_FRAME);
    for (header, body) in messages {
        bytes.extend(frame_of(header, body));
    }
    bytes
}

/// One frame: `header` then `body` as raw bytes.
fn frame_of(header: &Header<'_>, body: &[u8]) -> Vec<u8> {
    let mut frame = fuzz::encode::<()>(header, None, DEFAULT_MAX_FRAME).unwrap();
    frame.extend_from_slice(body);
    let len = u32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Every payload `frames` holds so far; `Err` once the stream is corrupt.
fn drain(frames: &mut Frames, into: &mut Vec<Vec<u8>>) -> Result<(), String> {
    while let Some(payload) = frames.next_payload().map_err(|e| e.to_string())? {
        into.push(payload);
    }
    Ok(())
}

/// bincode's own encoding of `value`, which the hand-written header codec must match.
fn bincode_of(header: &Header<'_>) -> Vec<u8> {
    bincode::serde::encode_to_vec(header, bincode::config::standard()).unwrap()
}

/// `header` as a receiver reads it: a message over 512 bytes is cut at a character boundary
/// (WIRE.md, "Error messages").
fn as_received<'a>(header: &Header<'a>) -> Header<'a> {
    let cut = |message: &'a str| {
        let mut end = message.len().min(rpc_core::wire::MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        &message[..end]
    };
    match *header {
        Header::Failure { id, code, message } => {
            Header::Failure { id, code, message: cut(message) }
        }
        Header::Close { code, message } => Header::Close { code, message: cut(message) },
        other => other,
    }
}

/// `Header` as bincode itself reads it: the same variants in the same order, so the same
/// bytes, decoded without our decoder.
#[derive(serde::Deserialize)]
enum AsBincode<'a> {
    Request { id: u64, method: u32, budget_us: u64 },
    Response { id: u64 },
    Failure { id: u64, code: u32, message: &'a str },
    Cancel { id: u64 },
    GoAway { last_id: u64 },
    Close { code: u32, message: &'a str },
    RequestMeta { id: u64, method: u32, budget_us: u64, metadata: rpc_core::Metadata },
    Item { id: u64 },
    End { id: u64 },
    Credit { id: u64, items: u32, bytes: u64 },
}

impl<'a> AsBincode<'a> {
    /// The same header; its metadata, if any, is leaked (a few hundred small cases).
    fn into_header(self) -> Header<'a> {
        match self {
            AsBincode::Request { id, method, budget_us } => {
                Header::Request { id, method, budget_us }
            }
            AsBincode::Response { id } => Header::Response { id },
            AsBincode::Failure { id, code, message } => Header::Failure { id, code, message },
            AsBincode::Cancel { id } => Header::Cancel { id },
            AsBincode::GoAway { last_id } => Header::GoAway { last_id },
            AsBincode::Close { code, message } => Header::Close { code, message },
            AsBincode::RequestMeta { id, method, budget_us, metadata } => {
                let metadata = MetadataRef::Of(Box::leak(Box::new(metadata)));
                Header::RequestMeta { id, method, budget_us, metadata }
            }
            AsBincode::Item { id } => Header::Item { id },
            AsBincode::End { id } => Header::End { id },
            AsBincode::Credit { id, items, bytes } => Header::Credit { id, items, bytes },
        }
    }
}

/// Whether a message carries a body after its header.
fn has_body(header: &Header<'_>) -> bool {
    matches!(
        header,
        Header::Request { .. }
            | Header::RequestMeta { .. }
            | Header::Response { .. }
            | Header::Item { .. }
    )
}

/// One field of a header as it goes on the wire.
#[derive(Clone)]
enum Field {
    /// An integer, and the widest form its type allows in bytes after the mark (2, 4 or 8).
    Int(u64, usize),
    /// Bytes written as they are (a message's text).
    Raw(Vec<u8>),
}

/// The fields of `header` in wire order, the variant index first.
fn fields_of(header: &Header<'_>) -> Vec<Field> {
    use Field::{Int, Raw};
    let text = |message: &str| vec![Int(message.len() as u64, 8), Raw(message.as_bytes().to_vec())];
    match header {
        Header::Request { id, method, budget_us } => {
            vec![Int(0, 4), Int(*id, 8), Int(u64::from(*method), 4), Int(*budget_us, 8)]
        }
        Header::Response { id } => vec![Int(1, 4), Int(*id, 8)],
        Header::Failure { id, code, message } => {
            [vec![Int(2, 4), Int(*id, 8), Int(u64::from(*code), 4)], text(message)].concat()
        }
        Header::Cancel { id } => vec![Int(3, 4), Int(*id, 8)],
        Header::GoAway { last_id } => vec![Int(4, 4), Int(*last_id, 8)],
        Header::Close { code, message } => {
            [vec![Int(5, 4), Int(u64::from(*code), 4)], text(message)].concat()
        }
        Header::RequestMeta { id, method, budget_us, metadata } => {
            let mut fields =
                vec![Int(6, 4), Int(*id, 8), Int(u64::from(*method), 4), Int(*budget_us, 8)];
            let metadata = metadata.to_metadata();
            fields.push(Int(metadata.len() as u64, 8));
            for (key, value) in metadata.iter() {
                fields.extend(text(key));
                fields.extend([Int(value.len() as u64, 8), Raw(value.to_vec())]);
            }
            fields
        }
        Header::Item { id } => vec![Int(7, 4), Int(*id, 8)],
        Header::End { id } => vec![Int(8, 4), Int(*id, 8)],
        Header::Credit { id, items, bytes } => {
            vec![Int(9, 4), Int(*id, 8), Int(u64::from(*items), 4), Int(*bytes, 8)]
        }
    }
}

/// `n` as bincode writes it: in its shortest form.
fn shortest(n: u64) -> Vec<u8> {
    bincode::serde::encode_to_vec(n, bincode::config::standard()).unwrap()
}

/// `n` in the `wider`-th form (0, 1 or 2) wider than its shortest among those its field
/// allows (at most `max_width` bytes after the mark); the shortest form if there is none.
fn wider_than_needed(n: u64, max_width: usize, wider: usize) -> Vec<u8> {
    let forms: [(u8, usize); 3] = [(0xfb, 2), (0xfc, 4), (0xfd, 8)];
    let fitting: Vec<(u8, usize)> = forms
        .into_iter()
        .filter(|&(_, width)| width <= max_width && (width == 8 || n < 1 << (8 * width)))
        .collect();
    let needed = shortest(n).len();
    let wide: Vec<&(u8, usize)> = fitting.iter().filter(|(_, width)| width + 1 > needed).collect();
    match wide.get(wider.min(wide.len().saturating_sub(1))) {
        Some(&&(mark, width)) => [vec![mark], n.to_le_bytes()[..width].to_vec()].concat(),
        None => shortest(n),
    }
}

/// An integer, often at a boundary of bincode's varint forms.
fn int() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=300,
        prop::sample::select(vec![250, 251, 65_535, 65_536, 1 << 32, u64::MAX]),
        (0u64..=u64::from(u32::MAX)),
        any::<u64>(),
    ]
}

/// One field as a peer might write it: a varint in any of its forms (also wider than needed,
/// or wider than the field allows), or a few raw bytes (a string's text, or junk).
fn field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..=250).prop_map(|n| vec![n]),
        (251u8..=255, proptest::collection::vec(any::<u8>(), 16)).prop_map(|(mark, bytes)| {
            let width = [2, 4, 8, 16, 0][usize::from(mark - 251)];
            let mut field = vec![mark];
            field.extend_from_slice(&bytes[..width]);
            field
        }),
        // A small value in a wider form than it needs: bincode reads it, WIRE.md refuses it.
        (0u8..=250, 251u8..=253).prop_map(|(n, mark)| {
            let width = [2, 4, 8][usize::from(mark - 251)];
            [vec![mark, n], vec![0; width - 1]].concat()
        }),
        proptest::collection::vec(any::<u8>(), 0..6),
    ]
}

/// Bytes that start like a header (a message type, valid or not) and go on field by field.
fn header_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (0u8..7, proptest::collection::vec(field(), 0..5)).prop_map(|(tag, fields)| {
        let mut bytes = vec![tag];
        fields.iter().for_each(|f| bytes.extend_from_slice(f));
        bytes
    })
}

proptest! {
    /// The header codec is written by hand for speed; WIRE.md defines headers as bincode's
    /// encoding of `Header`. Both must agree byte for byte.
    #[test]
    fn the_header_codec_writes_exactly_what_bincode_writes(header in header()) {
        let frame = fuzz::encode::<()>(&header, None, DEFAULT_MAX_FRAME).unwrap();
        prop_assert_eq!(&frame[4..], &bincode_of(&header)[..]);
    }

    /// ...and read any bytes as bincode does (the same header and length, or an error for
    /// both), except for the two things WIRE.md forbids and bincode accepts: an integer wider
    /// than it needs to be, and bytes after a message that has no body.
    #[test]
    fn the_header_codec_reads_any_bytes_as_bincode_does_but_stricter(
        bytes in header_like_bytes(),
    ) {
        let ours = fuzz::decode_header(&bytes).ok();
        let config = bincode::config::standard().with_limit::<1024>();
        let theirs: Option<(AsBincode<'_>, usize)> =
            bincode::serde::borrow_decode_from_slice(&bytes, config).ok();
        let allowed = theirs
            .map(|(header, used)| (header.into_header(), used))
            .filter(|(header, used)| {
                let shortest = bincode_of(header) == bytes[..*used];
                shortest && (has_body(header) || *used == bytes.len())
            })
            .map(|(header, used)| (as_received(&header), used));
        prop_assert_eq!(ours, allowed);
    }

    /// A header with one integer written wider than it needs to be is refused, whichever
    /// integer it is.
    #[test]
    fn an_integer_in_a_wider_form_than_needed_is_refused_in_a_header(
        header in header(),
        which in any::<prop::sample::Index>(),
        wider in 0_usize..3,
    ) {
        let fields = fields_of(&header);
        let k = which.index(fields.len());
        let mut bytes = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            match field {
                Field::Int(n, max_width) if i == k => bytes.extend(wider_than_needed(*n, *max_width, wider)),
                Field::Int(n, _) => bytes.extend(shortest(*n)),
                Field::Raw(raw) => bytes.extend(raw),
            }
        }
        match &fields[k] {
            Field::Int(n, max_width) if wider_than_needed(*n, *max_width, wider) != shortest(*n) => {
                let refused = fuzz::decode_header(&bytes);
                prop_assert!(refused.is_err(), "{:02x?} decoded as {:?}", bytes, refused);
            }
            // Nothing wider fits the field (or the field is text): the bytes are the header's own.
            _ => prop_assert_eq!(fuzz::decode_header(&bytes).unwrap().0, as_received(&header)),
        }
    }

    /// Exactly, but for a message over 512 bytes, which the receiver cuts.
    #[test]
    fn every_header_round_trips_exactly_through_encode_and_decode(header in header()) {
        let frame = fuzz::encode::<()>(&header, None, DEFAULT_MAX_FRAME).unwrap();
        let declared = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(declared, frame.len() - 4);
        let (decoded, used) = fuzz::decode_header(&frame[4..]).unwrap();
        prop_assert_eq!(used, frame.len() - 4, "the header fills its frame");
        prop_assert_eq!(decoded, as_received(&header));
    }

    #[test]
    fn a_header_and_body_round_trip_and_the_body_starts_where_the_header_ends(
        header in header_with_body(),
        body in (any::<i64>(), ".{0,20}", proptest::option::of(any::<u64>())),
    ) {
        let frame = fuzz::encode(&header, Some(&body), DEFAULT_MAX_FRAME).unwrap();
        let (decoded, at) = fuzz::decode_header(&frame[4..]).unwrap();
        prop_assert_eq!(decoded, header);
        let back: (i64, String, Option<u64>) = fuzz::decode_body(&frame[4 + at..]).unwrap();
        prop_assert_eq!(back, body);
    }

    #[test]
    fn every_hello_limit_round_trips_or_is_refused_below_the_minimum(max in any::<u32>()) {
        let frame = fuzz::encode_hello(max as usize);
        match fuzz::decode_hello(&frame[4..]) {
            Ok(decoded) => prop_assert_eq!(decoded, max as usize),
            Err(e) => {
                prop_assert!((max as usize) < rpc_core::wire::MIN_MAX_FRAME, "{}", e);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_either_sides_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        max_frame in prop_oneof![Just(1024_usize), Just(DEFAULT_MAX_FRAME)],
    ) {
        let _ = fuzz::server_reads(&bytes, max_frame);
        let _ = fuzz::client_reads(&bytes, max_frame);
    }

    /// Random bytes after a valid hello reach the header and body decoders.
    #[test]
    fn random_frames_after_a_valid_hello_never_panic_either_sides_decoder(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 0..8),
    ) {
        let mut bytes = fuzz::encode_hello(DEFAULT_MAX_FRAME);
        for payload in &payloads {
            bytes.extend((payload.len() as u32).to_be_bytes());
            bytes.extend(payload);
        }
        let (events, _) = fuzz::server_reads(&bytes, DEFAULT_MAX_FRAME);
        prop_assert_eq!(events.first(), Some(&Event::Hello(DEFAULT_MAX_FRAME)));
        let (events, _) = fuzz::client_reads(&bytes, DEFAULT_MAX_FRAME);
        prop_assert_eq!(events.first(), Some(&Event::Hello(DEFAULT_MAX_FRAME)));
    }

    #[test]
    fn a_stream_cut_at_random_points_decodes_the_same_as_whole(
        messages in proptest::collection::vec(message(), 0..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes = stream(&messages);
        let mut whole = Vec::new();
        let mut frames = Frames::new(DEFAULT_MAX_FRAME);
        frames.push(&bytes);
        drain(&mut frames, &mut whole).unwrap();
        prop_assert_eq!(frames.buffered(), 0);
        prop_assert_eq!(whole.len(), messages.len() + 1);

        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.push(bytes.len());
        at.sort_unstable();
        let (mut pieces, mut from) = (Vec::new(), 0);
        let mut frames = Frames::new(DEFAULT_MAX_FRAME);
        for to in at {
            frames.push(&bytes[from..to]);
            from = to;
            drain(&mut frames, &mut pieces).unwrap();
        }
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(fuzz::decode_hello(&pieces[0]).unwrap(), DEFAULT_MAX_FRAME);
        for (payload, (header, body)) in pieces[1..].iter().zip(&messages) {
            let (decoded, at) = fuzz::decode_header(payload).unwrap();
            prop_assert_eq!(&decoded, &as_received(header));
            prop_assert_eq!(&payload[at..], &body[..]);
        }
    }

    /// A corrupt stream is found corrupt however it is cut, after the same frames.
    #[test]
    fn a_declared_length_over_the_limit_is_refused_however_the_stream_is_cut(
        messages in proptest::collection::vec(message(), 0..4),
        too_long in (1025_u32..),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = stream(&messages);
        bytes.extend(too_long.to_be_bytes());
        let at = cut.index(bytes.len() + 1);
        let mut frames = Frames::new(1024);
        let mut payloads = Vec::new();
        frames.push(&bytes[..at]);
        let mut result = drain(&mut frames, &mut payloads);
        if result.is_ok() {
            frames.push(&bytes[at..]);
            result = drain(&mut frames, &mut payloads);
        }
        let error = result.unwrap_err();
        prop_assert!(error.contains(&too_long.to_string()) && error.contains("1024"), "{}", error);
        prop_assert_eq!(payloads.len(), messages.len() + 1);
    }
}

/// Strings and byte buffers declare their length before their bytes; bincode reserves that
/// length before reading, so a huge one must be refused, not allocated (it used to abort the
/// process: "memory allocation of 1099511627776 bytes failed").
#[test]
fn a_huge_declared_string_length_is_a_decode_error_not_an_allocation() {
    // 0xFD: a u64 varint follows; 2^40 bytes.
    let huge = [0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
    assert!(rpc_core::decode_args::<(String,)>(&huge).is_err());
    assert!(fuzz::decode_body::<Vec<u8>>(&huge).is_err());
    // In a header: a Failure's and a Close's message.
    let failure = [&[2, 1, 1][..], &huge].concat();
    assert!(fuzz::decode_header(&failure).is_err());
    let close = [&[5, 1][..], &huge].concat();
    assert!(fuzz::decode_header(&close).is_err());
    // The largest length a payload could hold is still decoded.
    let text = "x".repeat(DEFAULT_MAX_FRAME - 8);
    let frame = fuzz::encode(&Header::Response { id: 1 }, Some(&text), DEFAULT_MAX_FRAME).unwrap();
    let (_, at) = fuzz::decode_header(&frame[4..]).unwrap();
    assert_eq!(fuzz::decode_body::<String>(&frame[4 + at..]).unwrap(), text);
}

/// Metadata as a tracing client sends it.
fn seed_metadata() -> rpc_core::Metadata {
    let mut metadata = rpc_core::Metadata::new();
    metadata.insert("authorization", "Bearer t0ken").unwrap();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    metadata.insert("traceparent", trace).unwrap();
    metadata
}

/// The seed inputs of each fuzz target: valid streams of what its side reads.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let hello = fuzz::encode_hello(DEFAULT_MAX_FRAME);
    let msg = |header: Header<'_>, body: &[u8]| frame_of(&header, body);
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let add = msg(Header::Request { id: 1, method: 0xDEAD_BEEF, budget_us: 30_000_000 }, &[4, 6]);
    let echo = msg(Header::Request { id: 2, method: 1, budget_us: 1_000 }, &[2, b'h', b'i']);
    let close = msg(Header::Close { code: 11, message: "bye" }, &[]);
    vec![
        ("server_reads", "seed-hello", hello.clone()),
        ("server_reads", "seed-request", cat(&[hello.clone(), add.clone()])),
        (
            "server_reads",
            "seed-requests-cancel-close",
            cat(&[hello.clone(), add, echo, msg(Header::Cancel { id: 2 }, &[]), close.clone()]),
        ),
        ("server_reads", "seed-too-long", cat(&[hello.clone(), vec![0xFF; 4]])),
        (
            "server_reads",
            "seed-metadata-and-one-way",
            cat(&[
                hello.clone(),
                msg(
                    Header::RequestMeta {
                        id: 3,
                        method: 0xDEAD_BEEF,
                        budget_us: 30_000_000,
                        metadata: MetadataRef::Of(&seed_metadata()),
                    },
                    &[4, 6],
                ),
                msg(Header::Request { id: 0, method: 1, budget_us: u64::MAX }, &[2, b'h', b'i']),
            ]),
        ),
        ("client_reads", "seed-hello", hello.clone()),
        (
            "client_reads",
            "seed-responses",
            cat(&[
                hello.clone(),
                msg(Header::Response { id: 1 }, &[10]),
                msg(Header::Response { id: 2 }, &[0, 2, b'h', b'i']),
                msg(Header::Failure { id: 3, code: 1, message: "no" }, &[]),
            ]),
        ),
        (
            "client_reads",
            "seed-goaway-close",
            cat(&[
                hello,
                msg(Header::Response { id: 1 }, &[10]),
                msg(Header::GoAway { last_id: 1 }, &[]),
                close,
            ]),
        ),
        (
            "client_reads",
            "seed-close-instead-of-hello",
            msg(Header::Close { code: 5, message: "full" }, &[]),
        ),
        (
            "server_reads",
            "seed-client-stream",
            cat(&[
                fuzz::encode_hello(DEFAULT_MAX_FRAME),
                msg(Header::Request { id: 1, method: 7, budget_us: u64::MAX }, &[]),
                msg(Header::Credit { id: 1, items: 256, bytes: 262_144 }, &[]),
                msg(Header::Item { id: 1 }, &[2]),
                msg(Header::Item { id: 1 }, &[4]),
                msg(Header::End { id: 1 }, &[]),
            ]),
        ),
        (
            "client_reads",
            "seed-server-stream",
            cat(&[
                fuzz::encode_hello(DEFAULT_MAX_FRAME),
                msg(Header::Credit { id: 1, items: 4, bytes: 1024 }, &[]),
                msg(Header::Item { id: 1 }, &[0]),
                msg(Header::Item { id: 1 }, &[1]),
                msg(Header::Response { id: 1 }, &[]),
            ]),
        ),
        (
            "client_reads",
            "seed-idle-close",
            cat(&[
                fuzz::encode_hello(DEFAULT_MAX_FRAME),
                msg(Header::Response { id: 300 }, &[10]),
                msg(Header::GoAway { last_id: 300 }, &[]),
                msg(Header::Close { code: 16, message: "idle for 60s" }, &[]),
            ]),
        ),
    ]
}

/// Checks the committed seeds; `RPC_WRITE_FUZZ_SEEDS=1` writes them instead.
#[test]
fn the_fuzz_seed_corpus_holds_what_the_encoder_makes() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("RPC_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = corpus.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; RPC_WRITE_FUZZ_SEEDS=1 writes it", path.display())
        });
        assert_eq!(
            committed,
            bytes,
            "{} is stale; RPC_WRITE_FUZZ_SEEDS=1 rewrites it",
            path.display()
        );
        // Each seed is a stream its side reads to the end without an error.
        let (events, error) = match target {
            "server_reads" => fuzz::server_reads(&bytes, DEFAULT_MAX_FRAME),
            _ => fuzz::client_reads(&bytes, DEFAULT_MAX_FRAME),
        };
        assert!(!events.is_empty(), "{name}");
        assert_eq!(error.is_some(), name == "seed-too-long", "{name}: {error:?}");
    }
}
