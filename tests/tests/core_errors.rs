//! Error paths over real sockets: bad calls fail alone and the connection stays usable; a lost
//! connection ends every pending call promptly; frame limits are enforced on both sides.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::{Client, Code, Error, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The connection still answers a plain call.
async fn still_works(client: &Client) {
    let sum: i64 = within(client.call(ADD, &(40_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 42);
}

#[tokio::test]
async fn unknown_method_is_refused_and_the_connection_stays_usable() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let err = client.call::<_, i64>(UNKNOWN, &(1_i64,)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::UnknownMethod), "{err:?}");
    assert!(err.to_string().contains("0x00000bad"), "the message names the id: {err}");
    still_works(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn arguments_of_the_wrong_types_are_a_bad_request_and_the_connection_stays_usable() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    // A string whose length runs past the end of the body.
    let err = client.call::<_, String>(ECHO, &(5_u8,)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::BadRequest), "{err:?}");
    // A string that is not UTF-8.
    let err = client.call::<_, String>(ECHO, &(vec![0xff_u8],)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::BadRequest), "{err:?}");
    // Too few arguments.
    let err = client.call::<_, i64>(ADD, &(1_i64,)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::BadRequest), "{err:?}");
    assert!(err.to_string().contains("TestService.add"), "the message names the method: {err}");
    still_works(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn trailing_bytes_after_the_arguments_are_a_bad_request() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let err = client.call::<_, i64>(ADD, &(1_i64, 2_i64, 3_i64)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::BadRequest), "{err:?}");
    assert!(err.to_string().contains("trailing"), "{err}");
    still_works(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_an_error_and_the_server_keeps_serving() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let other = connect_once(&server.endpoint).await.unwrap();
    for method in [PANIC, PANIC_LATER] {
        let err = client.call::<_, ()>(method, &("boom".to_owned(),)).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::HandlerPanicked), "{err:?}");
        assert!(err.to_string().contains("boom"), "the message carries the panic's: {err}");
        still_works(&client).await;
        still_works(&other).await;
    }
    still_works(&connect_once(&server.endpoint).await.unwrap()).await;
    server.stop().await.unwrap();
}

/// Asserts that `client`'s connection is gone: new calls fail at once with `ConnectionClosed`.
async fn refuses_new_calls(client: &Client) {
    let err = within(client.call::<_, i64>(ADD, &(1_i64, 1_i64))).await.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_server_task_ends_pending_calls_and_later_calls_fail_fast() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let pending: Vec<_> = (0..3_u64)
        .map(|v| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
        })
        .collect();
    for _ in 0..3 {
        server.gate.entered().await;
    }
    server.task.abort();
    assert!(within(&mut server.task).await.unwrap_err().is_cancelled());
    for call in pending {
        let err = within(call).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed | Error::Io(_)), "{err:?}");
    }
    refuses_new_calls(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_the_socket_ends_pending_calls_and_later_calls_fail_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let peer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(&HELLO_4MIB).await.unwrap();
        expect_frame(&mut socket).await; // the client's hello
        for _ in 0..3 {
            expect_frame(&mut socket).await; // a request
        }
        // Dropped with nothing unread: a clean end of stream for the client.
    });
    let client = connect_once(endpoint.as_str()).await.unwrap();
    let pending: Vec<_> = (0..3_u64)
        .map(|v| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
        })
        .collect();
    within(peer).await.unwrap();
    for call in pending {
        let err = within(call).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed), "{err:?}");
    }
    refuses_new_calls(&client).await;
}

#[tokio::test]
async fn an_oversized_request_fails_that_call_only() {
    let mut config = ServerConfig::default();
    config.max_frame = 1024;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let client = connect_once(&server.endpoint).await.unwrap();
    let err = client.call::<_, String>(ECHO, &("x".repeat(2000),)).await.unwrap_err();
    match err {
        Error::FrameTooLarge { size, limit } => {
            assert_eq!(limit, 1024);
            assert!(size > 2000, "{size}");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // A request just under the server's limit still goes through on the same connection.
    let echoed: String = client.call(ECHO, &("y".repeat(1000),)).await.unwrap();
    assert_eq!(echoed.len(), 1000);
    still_works(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_response_over_the_clients_limit_is_a_frame_too_large_failure() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut config = one_connection();
    config.max_frame = 1024;
    let client = Client::connect_with(&server.endpoint, config).await.unwrap();
    let err = client.call::<_, Vec<u8>>(BIG, &(4096_u32,)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FrameTooLarge), "{err:?}");
    assert!(err.to_string().contains("1024"), "the message names the limit: {err}");
    let small: Vec<u8> = client.call(BIG, &(100_u32,)).await.unwrap();
    assert_eq!(small.len(), 100);
    still_works(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_response_of_the_wrong_type_is_a_decode_error_for_that_call_only() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = connect_once(&server.endpoint).await.unwrap();
    // echo answers a String; decoding it as a u64 cannot use up the bytes.
    let err = client.call::<_, u64>(ECHO, &("hello".to_owned(),)).await.unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
    still_works(&client).await;
    server.stop().await.unwrap();
}
