//! Golden byte vectors pinning the wire format of WIRE.md: a change to the bytes fails here and
//! must come with a WIRE.md edit. Built with bincode directly, then checked against what a real
//! client and a real server put on a socket.
#![allow(clippy::unwrap_used)]

mod common;

use std::borrow::Cow;

use common::*;
use rpc_core::wire::{Header, Hello, MAGIC, VERSION};
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
        metadata: Cow::Owned(token_abc()),
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
    let header = Header::Failure { id: 7, code: 1, message: Cow::Borrowed("no") };
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
    let header = Header::Close { code: 9, message: Cow::Borrowed("x") };
    assert_eq!(golden(&header, NONE), [0, 0, 0, 4, 0x05, 0x09, 0x01, b'x']);
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
        Header::Failure { id: 7, code: 1, message: Cow::Borrowed("no") },
        Header::Cancel { id: 300 },
        Header::GoAway { last_id: 7 },
        Header::Close { code: 9, message: Cow::Borrowed("x") },
        Header::RequestMeta { id: 0, method: 1, budget_us: 2, metadata: Cow::Owned(token_abc()) },
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
