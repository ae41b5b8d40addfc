//! Graceful shutdown: GoAway, in-flight calls finish, new ones are refused, the grace period
//! bounds the wait, and `serve_with_shutdown` returns.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, Code, Error, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_and_new_calls_are_refused_after_the_signal() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, u64>(BLOCK, &(1_u64,)).await }
    });
    assert_eq!(server.gate.entered().await, 1);
    server.shutdown();
    // Calls the server read before it noticed the signal are still served; the first one
    // refused is refused with ShuttingDown, whether by the server or by the client after
    // reading GoAway.
    let refused = within(async {
        loop {
            match client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await {
                Ok(sum) => assert_eq!(sum, 2),
                Err(e) => break e,
            }
        }
    })
    .await;
    assert_eq!(refused.code(), Some(Code::ShuttingDown), "{refused:?}");
    let again = client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap_err();
    assert_eq!(again.code(), Some(Code::ShuttingDown), "{again:?}");
    // The listener closed before GoAway went out.
    let connect = Client::connect(&server.endpoint).await.unwrap_err();
    assert!(matches!(connect, Error::Connect { .. }), "{connect:?}");
    assert!(!server.task.is_finished(), "serve waits for the call in flight");
    server.gate.release(1);
    assert_eq!(within(in_flight).await.unwrap().unwrap(), 1);
    server.stop().await.unwrap();
    let after = within(client.call::<_, i64>(ADD, &(1_i64, 1_i64))).await.unwrap_err();
    assert!(
        matches!(after, Error::ConnectionClosed) || after.code() == Some(Code::ShuttingDown),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_goes_out_at_once_and_requests_after_it_get_shutting_down() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket.write_all(&HELLO_4MIB).await.unwrap();
    socket.write_all(&request(1, BLOCK, &(1_u64,))).await.unwrap();
    assert_eq!(server.gate.entered().await, 1);
    server.shutdown();
    // GoAway names request 1, the last one taken.
    assert_eq!(frame(&expect_frame(&mut socket).await), [0, 0, 0, 2, 0x04, 0x01], "GoAway");
    socket.write_all(&request(2, ADD, &(1_i64, 1_i64))).await.unwrap();
    match decode(&expect_frame(&mut socket).await) {
        (Header::Failure { id: 2, code: 8, .. }, _) => {}
        other => panic!("expected Failure code 8 for id 2, got {other:?}"),
    }
    server.gate.release(1);
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 1 });
    assert_eq!(decode_value::<u64>(&body), 1);
    // The last call answered, the server closes the connection and returns.
    expect_closed(&mut socket).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_still_running_when_the_grace_period_ends_get_shutting_down() {
    let mut config = ServerConfig::default();
    config.shutdown_grace = Duration::from_millis(200);
    let mut server = start_with("tcp://127.0.0.1:0", config).await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let never = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, u64>(BLOCK, &(1_u64,)).await }
    });
    assert_eq!(server.gate.entered().await, 1);
    server.shutdown();
    let err = within(never).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(Code::ShuttingDown), "{err:?}");
    assert_eq!(server.gate.gone().await, 1, "the handler was dropped");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_serve_returns_promptly() {
    let server = start("tcp://127.0.0.1:0").await;
    let clients = [
        connect_once(&server.endpoint).await.unwrap(),
        connect_once(&server.endpoint).await.unwrap(),
    ];
    let endpoint = server.endpoint.clone();
    server.stop().await.unwrap();
    for client in &clients {
        let err = within(client.call::<_, i64>(ADD, &(1_i64, 1_i64))).await.unwrap_err();
        assert!(
            matches!(err, Error::ConnectionClosed) || err.code() == Some(Code::ShuttingDown),
            "{err:?}"
        );
    }
    let connect = Client::connect(&endpoint).await.unwrap_err();
    assert!(matches!(connect, Error::Connect { .. }), "{connect:?}");
}

#[tokio::test]
async fn a_server_with_no_connections_stops_at_once() {
    let server = start("tcp://127.0.0.1:0").await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_other_clients_finish_their_calls_too() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let calls: Vec<_> = (0..3_u64)
        .map(|v| {
            let endpoint = server.endpoint.clone();
            tokio::spawn(async move {
                let client = connect_once(&endpoint).await.unwrap();
                client.call::<_, u64>(BLOCK, &(v,)).await
            })
        })
        .collect();
    for _ in 0..3 {
        server.gate.entered().await;
    }
    server.shutdown();
    server.gate.release(3);
    for (v, call) in (0..).zip(calls) {
        assert_eq!(within(call).await.unwrap().unwrap(), v);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_has_not_sent_its_hello_does_not_hold_up_shutdown() {
    // Timeouts so long that only the shutdown itself can end the silent connection.
    let mut config = ServerConfig::default();
    config.handshake_timeout = Duration::from_secs(3600);
    config.shutdown_grace = Duration::from_secs(3600);
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let mut silent = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    // Its hello read means the server has accepted it and is waiting for ours.
    assert_eq!(frame(&expect_frame(&mut silent).await), HELLO_4MIB);
    let started = Instant::now();
    server.stop().await.unwrap();
    // The server waits at most a second for the peer to hang up after its GoAway.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // It may have sent requests after reading our hello: GoAway 0 says none started.
    assert_eq!(decode(&expect_frame(&mut silent).await).0, Header::GoAway { last_id: 0 });
    expect_closed(&mut silent).await;
}
