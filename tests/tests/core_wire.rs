//! Golden byte vectors pinning the wire format of WIRE.md: a change to the bytes fails here and
//! must come with a WIRE.md edit. Built with bincode directly, then checked against what a real
//! client and a real server put on a socket.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::__fuzz as fuzz;
use rpc_core::wire::{Header, Hello, MAGIC, MetadataRef, VERSION};
use rpc_core::{Client, DEFAULT_MAX_FRAME};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The frame of `header` followed by `body`, built the way WIRE.md describes it.
fn golden<B: serde::Serialize>(header: &Header<'_>, body: Option<&B>) -> Vec<u8> {
    let body = body.map(|b| bincode(b)).unwrap_or_default();
    message(header, &body)
}

const NONE: Option<&()> = None;

#[test]
fn hello_announcing_4_mib_is_magic_version_and_limit() {
    let hello = Hello { magic: MAGIC, version: VERSION, max_frame: 4_194_304 };
    assert_eq!(MAGIC, *b"RPC\0");
    assert_eq!(VERSION, 2);
    assert_eq!(DEFAULT_MAX_FRAME, 4_194_304);
    assert_eq!(
        frame(&bincode(&hello)),
        [0x00, 0x00, 0x00, 0x0a, 0x52, 0x50, 0x43, 0x00, 0x02, 0xfc, 0x00, 0x00, 0x40, 0x00]
    );
    assert_eq!(frame(&bincode(&hello)), HELLO_4MIB);
}

#[test]
fn request_is_tag_id_method_budget_then_the_argument_tuple() {
    let header = Header::Request { id: 1, method: 0xDEAD_BEEF, budget_us: 30_000_000 };
    assert_eq!(
        golden(&header, Some(&(2_i64, 3_i64))),
        [
            0x00, 0x00, 0x00, 0x0e, // length 14
            0x00, // Request
            0x01, // id 1
            0xfc, 0xef, 0xbe, 0xad, 0xde, // method 0xDEADBEEF
            0xfc, 0x80, 0xc3, 0xc9, 0x01, // budget_us 30_000_000
            0x04, 0x06, // (2, 3), zigzag
        ]
    );
}

fn token_abc() -> rpc_core::Metadata {
    let mut metadata = rpc_core::Metadata::new();
    metadata.insert("token", "abc").expect("fits");
    metadata
}

#[test]
fn request_meta_is_the_request_fields_then_the_entries_then_the_argument_tuple() {
    let header = Header::RequestMeta {
        id: 1,
        method: 0xDEAD_BEEF,
        budget_us: 30_000_000,
        metadata: MetadataRef::Of(&token_abc()),
    };
    assert_eq!(
        golden(&header, Some(&(2_i64, 3_i64))),
        [
            0x00, 0x00, 0x00, 0x19, // length 25
            0x06, // RequestMeta
            0x01, // id 1
            0xfc, 0xef, 0xbe, 0xad, 0xde, // method 0xDEADBEEF
            0xfc, 0x80, 0xc3, 0xc9, 0x01, // budget_us 30_000_000
            0x01, // one entry
            0x05, b't', b'o', b'k', b'e', b'n', // key "token"
            0x03, b'a', b'b', b'c', // value "abc"
            0x04, 0x06, // (2, 3), zigzag
        ]
    );
}

#[test]
fn response_is_tag_id_then_the_return_value() {
    assert_eq!(golden(&Header::Response { id: 1 }, Some(&5_i64)), [0, 0, 0, 3, 0x01, 0x01, 0x0a]);
}

#[test]
fn failure_is_tag_id_code_and_message() {
    let header = Header::Failure { id: 7, code: 1, message: "no" };
    assert_eq!(golden(&header, NONE), [0, 0, 0, 6, 0x02, 0x07, 0x01, 0x02, b'n', b'o']);
}

#[test]
fn cancel_is_tag_and_id() {
    // 300 does not fit in one byte: 0xfb, then a little-endian u16.
    assert_eq!(golden(&Header::Cancel { id: 300 }, NONE), [0, 0, 0, 4, 0x03, 0xfb, 0x2c, 0x01]);
}

#[test]
fn goaway_is_its_tag_alone() {
    assert_eq!(golden(&Header::GoAway { last_id: 0 }, NONE), [0, 0, 0, 2, 0x04, 0x00]);
    assert_eq!(
        golden(&Header::GoAway { last_id: 300 }, NONE),
        [0, 0, 0, 4, 0x04, 0xfb, 0x2c, 0x01]
    );
}

#[test]
fn close_is_tag_code_and_message() {
    let header = Header::Close { code: 9, message: "x" };
    assert_eq!(golden(&header, NONE), [0, 0, 0, 4, 0x05, 0x09, 0x01, b'x']);
}

#[test]
fn item_is_tag_and_id_then_the_item() {
    assert_eq!(golden(&Header::Item { id: 1 }, Some(&5_i64)), [0, 0, 0, 3, 0x07, 0x01, 0x0a]);
}

#[test]
fn end_is_tag_and_id() {
    assert_eq!(golden(&Header::End { id: 300 }, NONE), [0, 0, 0, 4, 0x08, 0xfb, 0x2c, 0x01]);
}

#[test]
fn credit_is_tag_id_items_and_bytes() {
    let header = Header::Credit { id: 1, items: 256, bytes: 262_144 };
    assert_eq!(
        golden(&header, NONE),
        [0, 0, 0, 10, 0x09, 0x01, 0xfb, 0x00, 0x01, 0xfc, 0x00, 0x00, 0x04, 0x00]
    );
}

#[test]
fn large_integers_use_the_wider_varint_forms() {
    let header = Header::Request { id: u64::MAX, method: 250, budget_us: 251 };
    let mut expected = vec![0x00, 0xfd];
    expected.extend_from_slice(&u64::MAX.to_le_bytes());
    expected.extend_from_slice(&[250, 0xfb, 251, 0]);
    assert_eq!(bincode(&header), expected);
}

#[test]
fn golden_payloads_decode_back_to_their_headers() {
    let headers = [
        Header::Request { id: 1, method: 0xDEAD_BEEF, budget_us: 30_000_000 },
        Header::Response { id: 1 },
        Header::Failure { id: 7, code: 1, message: "no" },
        Header::Cancel { id: 300 },
        Header::GoAway { last_id: 7 },
        Header::Close { code: 9, message: "x" },
        Header::RequestMeta {
            id: 0,
            method: 1,
            budget_us: 2,
            metadata: MetadataRef::Of(&token_abc()),
        },
        Header::Item { id: 1 },
        Header::End { id: 300 },
        Header::Credit { id: 1, items: 256, bytes: 262_144 },
    ];
    for header in headers {
        let (decoded, body) = decode(&bincode(&header));
        assert_eq!(decoded, header);
        assert!(body.is_empty());
    }
}

/// A raw listener that captures the client's frames and answers like WIRE.md's example.
#[tokio::test]
async fn a_real_client_sends_its_hello_first_then_the_golden_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let server = async {
        let (mut socket, _) = listener.accept().await.unwrap();
        let hello = expect_frame(&mut socket).await;
        assert_eq!(frame(&hello), HELLO_4MIB, "the client's first frame is its hello");
        socket.write_all(&HELLO_4MIB).await.unwrap();
        let request = expect_frame(&mut socket).await;
        socket.write_all(&[0, 0, 0, 3, 0x01, 0x01, 0x0a]).await.unwrap();
        (socket, request)
    };
    let client = async {
        let client = Client::connect(endpoint.as_str()).await.unwrap();
        let five: i64 = client.call(0xDEAD_BEEF, &(2_i64, 3_i64)).await.unwrap();
        five
    };
    let (five, (_socket, request)) = within(async { tokio::join!(client, server) }).await;
    assert_eq!(
        frame(&request),
        [0, 0, 0, 14, 0x00, 0x01, 0xfc, 0xef, 0xbe, 0xad, 0xde, 0xfc, 0x80, 0xc3, 0xc9, 0x01, 4, 6]
    );
    assert_eq!(five, 5);
}

/// A raw client sends the golden hello and request to a real server serving `add` as method
/// 0xDEADBEEF and gets exactly the golden response.
#[tokio::test]
async fn a_real_server_sends_its_hello_first_and_answers_with_the_golden_response() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    let hello = expect_frame(&mut socket).await;
    assert_eq!(frame(&hello), HELLO_4MIB, "the server's first frame is its hello");
    socket.write_all(&HELLO_4MIB).await.unwrap();
    socket
        .write_all(&[
            0, 0, 0, 14, 0x00, 0x01, 0xfc, 0xef, 0xbe, 0xad, 0xde, 0xfc, 0x80, 0xc3, 0xc9, 0x01, 4,
            6,
        ])
        .await
        .unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), [0, 0, 0, 3, 0x01, 0x01, 0x0a]);
    drop(socket);
    server.stop().await.unwrap();
}

/// The body bytes the crate's own encoder writes for `value` (as a Response's body), checked
/// to decode back to `value`.
fn body_of<T>(value: &T) -> Vec<u8>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = fuzz::encode(&Header::Response { id: 1 }, Some(value), DEFAULT_MAX_FRAME).unwrap();
    // Length prefix, then Response (1) and id 1.
    assert_eq!(frame[4..6], [0x01, 0x01]);
    let body = frame[6..].to_vec();
    assert_eq!(&fuzz::decode_body::<T>(&body).unwrap(), value, "{body:02x?}");
    body
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Newtype(u32);

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Shape {
    Empty,
    Dot(u16),
    Line { from: Point, to: Point },
}

/// A byte string: serde's `serialize_bytes`, as `serde_bytes` and `bytes::Bytes` use.
#[derive(Debug, PartialEq)]
struct ByteString(Vec<u8>);

impl serde::Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ByteString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// WIRE.md's encoding table, row by row, through the crate's own encoder and decoder.
#[test]
fn the_encoding_table_of_wire_md_holds_row_by_row() {
    // u8 and i8: one raw byte, never a varint; i8 in two's complement.
    assert_eq!(body_of(&200_u8), [0xc8]);
    assert_eq!(body_of(&255_u8), [0xff]);
    assert_eq!(body_of(&-1_i8), [0xff]);
    assert_eq!(body_of(&-128_i8), [0x80]);
    // u16..u64 and usize: varints.
    assert_eq!(body_of(&250_u16), [0xfa]);
    assert_eq!(body_of(&251_u16), [0xfb, 0xfb, 0x00]);
    assert_eq!(body_of(&65_536_u32), [0xfc, 0x00, 0x00, 0x01, 0x00]);
    assert_eq!(body_of(&(1_u64 << 32)), [0xfd, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(body_of(&300_usize), [0xfb, 0x2c, 0x01]);
    // i16..i64 and isize: zigzag, then a varint.
    assert_eq!(body_of(&-1_i16), [0x01]);
    assert_eq!(body_of(&1_i32), [0x02]);
    assert_eq!(body_of(&-2_i64), [0x03]);
    assert_eq!(body_of(&i64::MIN), [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(body_of(&-2_isize), [0x03]);
    // u128 and i128: the same varint with one more form, 0xfe and 16 bytes.
    assert_eq!(body_of(&7_u128), [0x07]);
    let mut wide = vec![0xfe];
    wide.extend_from_slice(&(1_u128 << 64).to_le_bytes());
    assert_eq!(body_of(&(1_u128 << 64)), wide);
    assert_eq!(body_of(&-1_i128), [0x01]);
    // bool: one byte, 0 or 1; f32, f64: IEEE 754, little endian.
    assert_eq!(body_of(&true), [0x01]);
    assert_eq!(body_of(&1.0_f32), [0x00, 0x00, 0x80, 0x3f]);
    assert_eq!(body_of(&-2.0_f64), [0, 0, 0, 0, 0, 0, 0x00, 0xc0]);
    // char: its UTF-8 bytes, one to four, no length.
    assert_eq!(body_of(&'A'), [0x41]);
    assert_eq!(body_of(&'é'), [0xc3, 0xa9]);
    assert_eq!(body_of(&'€'), [0xe2, 0x82, 0xac]);
    // Strings: a varint length in bytes, then UTF-8.
    assert_eq!(body_of(&"hé".to_owned()), [0x03, b'h', 0xc3, 0xa9]);
    // Sequences: a varint count, then the elements. Vec<u8> and a byte string are the same.
    assert_eq!(body_of(&vec![1_u8, 2, 3]), [0x03, 1, 2, 3]);
    assert_eq!(body_of(&ByteString(vec![1, 2, 3])), [0x03, 1, 2, 3]);
    assert_eq!(body_of(&vec![-1_i64, 300]), [0x02, 0x01, 0xfb, 0x58, 0x02]);
    // Maps: a varint count, then key and value, pair by pair.
    let map: std::collections::BTreeMap<u8, String> =
        [(1, "a".to_owned()), (2, String::new())].into();
    assert_eq!(body_of(&map), [0x02, 0x01, 0x01, b'a', 0x02, 0x00]);
    // Option: a byte 0 for None, 1 then the value for Some.
    assert_eq!(body_of(&None::<u32>), [0x00]);
    assert_eq!(body_of(&Some(300_u32)), [0x01, 0xfb, 0x2c, 0x01]);
    // Tuples, arrays and structs: the fields in order, nothing else.
    assert_eq!(body_of(&(1_u8, true, -1_i64)), [0x01, 0x01, 0x01]);
    assert_eq!(body_of(&[9_u8, 8, 7]), [9, 8, 7]);
    assert_eq!(body_of(&Point { x: -1, y: 1 }), [0x01, 0x02]);
    // Unit, unit structs: nothing; newtype structs: their one field.
    assert_eq!(body_of(&()), [0u8; 0]);
    assert_eq!(body_of(&Unit), [0u8; 0]);
    assert_eq!(body_of(&Newtype(300)), [0xfb, 0x2c, 0x01]);
    // Enums: the variant's declaration position as a varint u32, then its fields.
    assert_eq!(body_of(&Shape::Empty), [0x00]);
    assert_eq!(body_of(&Shape::Dot(5)), [0x01, 0x05]);
    let line = Shape::Line { from: Point { x: 0, y: 0 }, to: Point { x: 1, y: -1 } };
    assert_eq!(body_of(&line), [0x02, 0x00, 0x00, 0x02, 0x01]);
    assert_eq!(body_of(&Ok::<i64, String>(5)), [0x00, 0x0a]);
    assert_eq!(body_of(&Err::<i64, String>("no".to_owned())), [0x01, 0x02, b'n', b'o']);
}

#[test]
fn an_integer_wider_than_it_needs_to_be_is_refused_in_a_header() {
    // Cancel { id: 5 } in its only valid form, then with id 5 as a u16, u32 and u64.
    assert_eq!(fuzz::decode_header(&[0x03, 0x05]).unwrap(), (Header::Cancel { id: 5 }, 2));
    for wide in [&[0xfb, 0x05, 0x00][..], &[0xfc, 5, 0, 0, 0], &[0xfd, 5, 0, 0, 0, 0, 0, 0, 0]] {
        let payload = [&[0x03][..], wide].concat();
        let err = fuzz::decode_header(&payload).unwrap_err();
        assert!(err.to_string().contains("shortest form"), "{err}");
    }
    // The boundaries: 251 is the smallest u16 form, 65,536 the smallest u32, 2^32 the smallest u64.
    assert!(fuzz::decode_header(&[0x03, 0xfb, 0xfa, 0x00]).is_err());
    assert!(fuzz::decode_header(&[0x03, 0xfb, 0xfb, 0x00]).is_ok());
    assert!(fuzz::decode_header(&[0x03, 0xfc, 0xff, 0xff, 0x00, 0x00]).is_err());
    assert!(fuzz::decode_header(&[0x03, 0xfc, 0x00, 0x00, 0x01, 0x00]).is_ok());
    assert!(fuzz::decode_header(&[0x03, 0xfd, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
    assert!(fuzz::decode_header(&[0x03, 0xfd, 0, 0, 0, 0, 1, 0, 0, 0]).is_ok());
    // The message type is an integer too: GoAway (4) written as a u16.
    assert!(fuzz::decode_header(&[0xfb, 0x04, 0x00]).is_err());
    // A form wider than the field's type is refused as before: a u32 code marked as a u64.
    let err = fuzz::decode_header(&[0x05, 0xfd, 1, 0, 0, 0, 1, 0, 0, 0, 0x00]).unwrap_err();
    assert!(err.to_string().contains("wider than the field allows"), "{err}");
}

#[test]
fn the_hello_refuses_an_integer_wider_than_it_needs_to_be() {
    assert_eq!(fuzz::decode_hello(&HELLO_4MIB[4..]).unwrap(), DEFAULT_MAX_FRAME);
    // Version 2 as a u16.
    assert!(fuzz::decode_hello(&[b'R', b'P', b'C', 0, 0xfb, 2, 0, 0xfc, 0, 0, 0x40, 0]).is_err());
    // max_frame 4 MiB as a u64 form, and 1024 as a u32 form.
    let wide = [b'R', b'P', b'C', 0, 2, 0xfd, 0, 0, 0x40, 0, 0, 0, 0, 0];
    assert!(fuzz::decode_hello(&wide).is_err());
    assert!(fuzz::decode_hello(&[b'R', b'P', b'C', 0, 2, 0xfc, 0, 4, 0, 0]).is_err());
    assert_eq!(fuzz::decode_hello(&[b'R', b'P', b'C', 0, 2, 0xfb, 0, 4]).unwrap(), 1024);
}

#[test]
fn in_a_body_an_integer_wider_than_it_needs_is_read_as_bincode_reads_it() {
    // add(2, 3) with 2 (zigzag 4) written as a u16: the body follows bincode, which accepts it.
    let args: (i64, i64) = fuzz::decode_body(&[0xfb, 0x04, 0x00, 0x06]).unwrap();
    assert_eq!(args, (2, 3));
}

#[test]
fn bytes_after_a_message_without_a_body_are_refused() {
    let bodyless = [
        Header::Failure { id: 7, code: 1, message: "no" },
        Header::Cancel { id: 300 },
        Header::GoAway { last_id: 4 },
        Header::Close { code: 9, message: "x" },
        Header::End { id: 300 },
        Header::Credit { id: 1, items: 256, bytes: 262_144 },
    ];
    for header in bodyless {
        let mut payload = bincode(&header);
        assert_eq!(fuzz::decode_header(&payload).unwrap().0, header);
        payload.push(0x00);
        let err = fuzz::decode_header(&payload).unwrap_err();
        assert!(err.to_string().contains("1 bytes after a"), "{err}");
    }
    // A Request's, a Response's and an Item's body is whatever follows the header.
    assert_eq!(fuzz::decode_header(&[0x07, 0x01, 0x0a]).unwrap(), (Header::Item { id: 1 }, 2));
    let request = [0x00, 0x01, 0x02, 0x03, 0x04, 0x06];
    let (header, at) = fuzz::decode_header(&request).unwrap();
    assert_eq!((header, at), (Header::Request { id: 1, method: 2, budget_us: 3 }, 4));
    assert_eq!(fuzz::decode_header(&[0x01, 0x01, 0x0a]).unwrap(), (Header::Response { id: 1 }, 2));
}

/// Messages sent on the wire are read by people using any language: no Rust debug output.
#[test]
fn decoder_errors_are_plain_text() {
    let cases: [&[u8]; 7] = [
        &[0x00, 0x01],                   // a Request cut short
        &[0x09],                         // an unknown message type
        &[0x03, 0xfb, 0x05, 0x00],       // a wider integer than needed
        &[0x05, 0x01, 0x02, 0xff, 0xfe], // text that is not UTF-8
        &[0x05, 0x01, 0x09, b'x'],       // text longer than what is left
        &[0x05, 0xfe],                   // a u128 mark
        &[0x04, 0x00, 0x00],             // a byte after GoAway
    ];
    for payload in cases {
        let message = fuzz::decode_header(payload).unwrap_err().to_string();
        assert!(!message.contains(['{', '}', '[', ']']), "{payload:02x?}: {message}");
    }
    let hellos: [&[u8]; 4] = [b"", b"RP", b"GET / HTTP/1.1", &[b'R', b'P', b'C', 0, 1, 0xfe]];
    for payload in hellos {
        let message = fuzz::decode_hello(payload).unwrap_err().to_string();
        assert!(!message.contains(['{', '}', '[', ']']), "{payload:02x?}: {message}");
    }
}

/// WIRE.md, "Error messages": a receiver cuts a message over 512 bytes as a sender does, at
/// the start of the character that would be split.
#[test]
fn a_received_message_over_512_bytes_is_cut_at_a_character_boundary() {
    let long = "€".repeat(200);
    for header in [
        Header::Failure { id: 1, code: 2, message: &long },
        Header::Close { code: 11, message: &long },
    ] {
        let payload = bincode(&header);
        let (decoded, _) = fuzz::decode_header(&payload).unwrap();
        let (Header::Failure { message, .. } | Header::Close { message, .. }) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(message, "€".repeat(170), "510 bytes: a 171st character would end at 513");
    }
    let exact = "x".repeat(512);
    let header = Header::Close { code: 11, message: &exact };
    assert_eq!(fuzz::decode_header(&bincode(&header)).unwrap().0, header);
}
