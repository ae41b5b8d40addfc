//! Hostile peers against streams, over real sockets: items beyond the credit granted, for
//! streams that do not exist, after a stream's end; credit for a stream that sends nothing;
//! a client that never grants credit; a server that floods a client's stream. Each gets a
//! protocol-violation Close (or is held by its own credit and deadline), and nothing it sends
//! is kept beyond the window.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Code, Server, ServerConfig, StreamWindow, Streaming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A service with one stream of each kind.
#[rpc_core::service]
pub trait Streamer {
    /// The sum of the client's items.
    async fn total(&self, items: Streaming<i64>) -> i64;
    /// Never reads its items and never returns.
    async fn hold(&self, items: Streaming<i64>) -> i64;
    /// 0, 1, … below `n`.
    async fn count(&self, n: u64) -> Streaming<u64>;
    /// A plain call.
    async fn echo(&self, x: u64) -> u64;
}

struct Impl;

impl Streamer for Impl {
    async fn total(&self, mut items: Streaming<i64>) -> i64 {
        let mut total = 0;
        while let Some(Ok(item)) = items.next().await {
            total += item;
        }
        total
    }

    async fn hold(&self, items: Streaming<i64>) -> i64 {
        let _items = items;
        std::future::pending().await
    }

    async fn count(&self, n: u64) -> Streaming<u64> {
        Streaming::from_iter(0..n)
    }

    async fn echo(&self, x: u64) -> u64 {
        x
    }
}

const WINDOW: StreamWindow = StreamWindow { items: 4, bytes: 1 << 20 };

/// A server with a window of 4 items, and a raw connection to it past the hellos.
async fn raw() -> TcpStream {
    let mut config = ServerConfig::default();
    config.stream_window = WINDOW;
    let server = Server::bind_with("tcp://127.0.0.1:0", config).await.unwrap();
    let addr = tcp_addr(server.local_endpoint());
    tokio::spawn(server.serve(StreamerServer::new(Impl)));
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&HELLO_4MIB).await.unwrap();
    let _hello = expect_frame(&mut raw).await;
    raw
}

/// Reads frames until a Close, which must say "protocol violation"; returns its message.
async fn expect_violation(raw: &mut TcpStream) -> String {
    loop {
        let payload = expect_frame(raw).await;
        if let (Header::Close { code, message }, _) = decode(&payload) {
            assert_eq!(code, Code::ProtocolViolation.to_u32(), "{message}");
            return message.to_owned();
        }
    }
}

fn item(id: u64, value: i64) -> Vec<u8> {
    message(&Header::Item { id }, &bincode(&value))
}

#[tokio::test]
async fn the_server_grants_its_window_when_a_client_stream_starts() {
    let mut raw = raw().await;
    raw.write_all(&request(1, StreamerClient::TOTAL_ID, &())).await.unwrap();
    let (header, _) = decode(&expect_frame(&mut raw).await);
    assert_eq!(header, Header::Credit { id: 1, items: 4, bytes: 1 << 20 });
    let items: Vec<u8> = (1..=4).flat_map(|v| item(1, v)).collect();
    raw.write_all(&items).await.unwrap();
    raw.write_all(&message(&Header::End { id: 1 }, &[])).await.unwrap();
    // Credit may come back first; then the answer.
    loop {
        match decode(&expect_frame(&mut raw).await) {
            (Header::Credit { id: 1, .. }, _) => {}
            (Header::Response { id: 1 }, body) => break assert_eq!(decode_value::<i64>(&body), 10),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn items_beyond_the_credit_close_the_connection() {
    let mut raw = raw().await;
    raw.write_all(&request(1, StreamerClient::HOLD_ID, &())).await.unwrap();
    let items: Vec<u8> = (1..=5).flat_map(|v| item(1, v)).collect();
    raw.write_all(&items).await.unwrap();
    let message = expect_violation(&mut raw).await;
    assert!(message.contains("beyond the credit"), "{message}");
    expect_closed(&mut raw).await;
}

#[tokio::test]
async fn an_item_for_a_stream_no_request_opened_closes_the_connection() {
    let mut raw = raw().await;
    raw.write_all(&item(9, 1)).await.unwrap();
    let message = expect_violation(&mut raw).await;
    assert!(message.contains("no call has"), "{message}");
}

#[tokio::test]
async fn an_item_after_the_streams_end_closes_the_connection() {
    let mut raw = raw().await;
    raw.write_all(&request(1, StreamerClient::HOLD_ID, &())).await.unwrap();
    let end = message(&Header::End { id: 1 }, &[]);
    raw.write_all(&[item(1, 1), end, item(1, 2)].concat()).await.unwrap();
    let message = expect_violation(&mut raw).await;
    assert!(message.contains("after its end"), "{message}");
}

#[tokio::test]
async fn credit_for_a_stream_that_sends_nothing_or_beyond_any_window_closes_the_connection() {
    let mut raw = raw().await;
    raw.write_all(&request(1, StreamerClient::HOLD_ID, &())).await.unwrap();
    let credit = message(&Header::Credit { id: 1, items: 1, bytes: 1 }, &[]);
    raw.write_all(&credit).await.unwrap();
    expect_violation(&mut raw).await;
    let mut raw = self::raw().await;
    raw.write_all(&request(1, StreamerClient::COUNT_ID, &(10_u64,))).await.unwrap();
    let huge = message(&Header::Credit { id: 1, items: u32::MAX, bytes: 1 }, &[]);
    raw.write_all(&[huge.clone(), huge].concat()).await.unwrap();
    let message = expect_violation(&mut raw).await;
    assert!(message.contains("beyond any window"), "{message}");
}

#[tokio::test]
async fn a_client_that_never_grants_credit_gets_nothing_but_its_deadline_and_other_calls_go_on() {
    let mut raw = raw().await;
    let count = Header::Request { id: 1, method: StreamerClient::COUNT_ID, budget_us: 200_000 };
    raw.write_all(&message(&count, &bincode(&(1_000_000_u64,)))).await.unwrap();
    raw.write_all(&request(2, StreamerClient::ECHO_ID, &(7_u64,))).await.unwrap();
    let (header, body) = decode(&expect_frame(&mut raw).await);
    assert_eq!(header, Header::Response { id: 2 });
    assert_eq!(decode_value::<u64>(&body), 7);
    // No item comes without credit: the next frame is the deadline's Failure.
    match decode(&expect_frame(&mut raw).await) {
        (Header::Failure { id: 1, code, .. }, _) => {
            assert_eq!(code, Code::DeadlineExceeded.to_u32());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn late_frames_for_a_finished_call_are_dropped() {
    let mut raw = raw().await;
    raw.write_all(&request(1, StreamerClient::COUNT_ID, &(0_u64,))).await.unwrap();
    let (header, _) = decode(&expect_frame(&mut raw).await);
    assert_eq!(header, Header::Response { id: 1 });
    let credit = message(&Header::Credit { id: 1, items: 1, bytes: 1 }, &[]);
    raw.write_all(&credit).await.unwrap();
    raw.write_all(&request(2, StreamerClient::ECHO_ID, &(7_u64,))).await.unwrap();
    let (header, _) = decode(&expect_frame(&mut raw).await);
    assert_eq!(header, Header::Response { id: 2 });
}

/// A fake server: the hello, then `frames` once the request arrived.
async fn fake_server(frames: impl FnOnce(u64) -> Vec<u8> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut raw, _) = listener.accept().await.unwrap();
        raw.write_all(&HELLO_4MIB).await.unwrap();
        let _hello = expect_frame(&mut raw).await;
        let (header, _) = decode(&expect_frame(&mut raw).await);
        let Header::Request { id, .. } = header else { panic!("{header:?}") };
        raw.write_all(&frames(id)).await.unwrap();
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink).await;
    });
    format!("tcp://{addr}")
}

#[tokio::test]
async fn a_server_that_sends_beyond_the_clients_credit_fails_the_stream() {
    let endpoint = fake_server(|id| {
        (0..1100_u64).flat_map(|v| message(&Header::Item { id }, &bincode(&v))).collect()
    })
    .await;
    let client = StreamerClient::connect(endpoint).await.unwrap();
    let mut count = client.count(1).await.unwrap();
    let mut ok = 0;
    let err = within(async {
        loop {
            match count.next().await {
                Some(Ok(_)) => ok += 1,
                Some(Err(e)) => break e,
                None => panic!("the stream ended without the violation"),
            }
        }
    })
    .await;
    assert!(ok <= 1024, "{ok} items beyond a window of 1,024");
    assert!(err.to_string().contains("beyond the credit"), "{err}");
}

#[tokio::test]
async fn an_item_for_a_call_never_sent_fails_the_clients_connection() {
    let endpoint = fake_server(|id| message(&Header::Item { id: id + 10 }, &bincode(&1_u64))).await;
    let client = StreamerClient::connect(endpoint).await.unwrap();
    let mut count = client.count(1).await.unwrap();
    let err = within(count.next()).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("no call has"), "{err}");
}
