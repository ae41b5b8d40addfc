//! A scripted raw server against the real client: whatever the server sends, the client
//! neither panics nor hangs; connecting fails with a clear error, and pending calls end.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, ClientConfig, Code, Error};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A raw listener on a free port and the endpoint a client connects to.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

/// Accepts one client, reads its hello and answers with `hello`.
async fn accept_with(listener: &TcpListener, hello: &[u8]) -> TcpStream {
    let (mut socket, _) = listener.accept().await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket.write_all(hello).await.unwrap();
    socket
}

/// A connected client and the server's end of its connection, past both hellos.
async fn connected() -> (Client, TcpStream) {
    let (listener, endpoint) = listen().await;
    let (client, socket) = within(async {
        tokio::join!(connect_once(endpoint.as_str()), accept_with(&listener, &HELLO_4MIB))
    })
    .await;
    (client.unwrap(), socket)
}

/// Starts a call of `block(v)` on its own task.
fn spawn_call(client: &Client, v: u64) -> JoinHandle<Result<u64, Error>> {
    let client = client.clone();
    tokio::spawn(async move { client.call(BLOCK, &(v,)).await })
}

/// Waits for a call to end with an error; it must not hang or panic.
async fn call_error(call: JoinHandle<Result<u64, Error>>) -> Error {
    within(call).await.expect("the call did not panic").expect_err("the call failed")
}

/// New calls on `client` fail at once.
async fn refuses_new_calls(client: &Client) {
    let err = within(client.call::<_, u64>(BLOCK, &(0_u64,))).await.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed), "{err:?}");
}

#[tokio::test]
async fn a_server_hello_with_another_version_fails_connect_with_version_mismatch() {
    let (listener, endpoint) = listen().await;
    let v1 = hello(1, 1024);
    let (client, _socket) = within(async {
        tokio::join!(Client::connect(endpoint.as_str()), accept_with(&listener, &v1))
    })
    .await;
    match client.unwrap_err() {
        Error::VersionMismatch { ours: 2, theirs: 1 } => {}
        other => panic!("expected VersionMismatch {{ ours: 2, theirs: 1 }}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_hello_with_bad_magic_fails_connect_with_a_protocol_error() {
    let (listener, endpoint) = listen().await;
    let ssh = frame(b"SSH-\x01\xfc\x00\x00\x40\x00");
    let (client, _socket) = within(async {
        tokio::join!(Client::connect(endpoint.as_str()), accept_with(&listener, &ssh))
    })
    .await;
    let err = client.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("magic"), "{err}");
}

/// The timeout is real but short: it bounds the wait, and the result does not depend on timing.
#[tokio::test]
async fn a_server_that_never_says_hello_fails_connect_with_connect_timeout() {
    let (listener, endpoint) = listen().await;
    let mut config = ClientConfig::default();
    config.connect_timeout = Duration::from_millis(200);
    // The server accepts and holds the socket open, silent.
    let (client, _socket) = within(async {
        tokio::join!(Client::connect_with(endpoint.as_str(), config), listener.accept())
    })
    .await;
    match client.unwrap_err() {
        Error::ConnectTimeout { endpoint: named, timeout } => {
            assert_eq!(named, endpoint);
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected ConnectTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_closes_before_its_hello_fails_connect() {
    let (listener, endpoint) = listen().await;
    let server = async {
        let (mut socket, _) = listener.accept().await.unwrap();
        expect_frame(&mut socket).await;
    };
    let (client, ()) =
        within(async { tokio::join!(Client::connect(endpoint.as_str()), server) }).await;
    let err = client.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed | Error::Io(_)), "{err:?}");
}

#[tokio::test]
async fn a_close_in_place_of_the_hello_fails_connect_with_its_code_and_message() {
    let (listener, endpoint) = listen().await;
    let close = message(&Header::Close { code: 5, message: "full" }, &[]);
    let (client, _socket) = within(async {
        tokio::join!(Client::connect(endpoint.as_str()), accept_with(&listener, &close))
    })
    .await;
    match client.unwrap_err() {
        Error::Remote { code: Code::Overloaded, message } => assert_eq!(message, "full"),
        other => panic!("expected Remote Overloaded, got {other:?}"),
    }
}

#[tokio::test]
async fn a_response_for_an_id_never_sent_ends_pending_calls_with_a_protocol_error() {
    for stray in [99_u64, 0] {
        let (client, mut socket) = connected().await;
        let pending = spawn_call(&client, 1);
        let (header, _) = decode(&expect_frame(&mut socket).await);
        assert!(matches!(header, Header::Request { id: 1, .. }), "{header:?}");
        socket
            .write_all(&message(&Header::Response { id: stray }, &bincode(&5_u64)))
            .await
            .unwrap();
        let err = call_error(pending).await;
        assert!(matches!(err, Error::Protocol(_)), "stray id {stray}: {err:?}");
        assert!(err.to_string().contains(&stray.to_string()), "{err}");
        refuses_new_calls(&client).await;
    }
}

#[tokio::test]
async fn a_failure_for_an_id_never_sent_ends_pending_calls_with_a_protocol_error() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    let failure = Header::Failure { id: 50, code: 1, message: "?" };
    socket.write_all(&message(&failure, &[])).await.unwrap();
    let err = call_error(pending).await;
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn a_garbage_header_after_the_hello_ends_pending_calls_with_a_protocol_error() {
    for garbage in [&b"\x09"[..], b"", b"\x01", b"\x00\x01\x01\x01"] {
        let (client, mut socket) = connected().await;
        let pending = spawn_call(&client, 1);
        expect_frame(&mut socket).await;
        socket.write_all(&frame(garbage)).await.unwrap();
        let err = call_error(pending).await;
        assert!(matches!(err, Error::Protocol(_)), "{garbage:02x?}: {err:?}");
        refuses_new_calls(&client).await;
    }
}

#[tokio::test]
async fn a_declared_length_over_the_clients_limit_ends_pending_calls_with_frame_too_large() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    socket.write_all(&[0xff; 4]).await.unwrap();
    match call_error(pending).await {
        Error::FrameTooLarge { size: 0xffff_ffff, limit: 4_194_304 } => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    refuses_new_calls(&client).await;
}

#[tokio::test]
async fn a_frame_cut_short_by_the_end_of_the_stream_ends_pending_calls_with_an_error() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    let response = message(&Header::Response { id: 1 }, &bincode(&1_u64));
    socket.write_all(&response[..response.len() - 1]).await.unwrap();
    drop(socket);
    let err = call_error(pending).await;
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    refuses_new_calls(&client).await;
}

#[tokio::test]
async fn a_request_from_the_server_is_a_protocol_error() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    socket.write_all(&request(1, ADD, &(1_i64, 2_i64))).await.unwrap();
    let err = call_error(pending).await;
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn a_close_frame_ends_pending_calls_with_its_code_and_message() {
    let (client, mut socket) = connected().await;
    let pending = [spawn_call(&client, 1), spawn_call(&client, 2)];
    expect_frame(&mut socket).await;
    expect_frame(&mut socket).await;
    let close = Header::Close { code: 11, message: "you broke it" };
    socket.write_all(&message(&close, &[])).await.unwrap();
    for call in pending {
        match call_error(call).await {
            Error::Remote { code: Code::ProtocolViolation, message } => {
                assert_eq!(message, "you broke it");
            }
            other => panic!("expected Remote ProtocolViolation, got {other:?}"),
        }
    }
    refuses_new_calls(&client).await;
}

#[tokio::test]
async fn an_unknown_failure_code_arrives_as_code_other() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    let failure = Header::Failure { id: 1, code: 4000, message: "new" };
    socket.write_all(&message(&failure, &[])).await.unwrap();
    let err = call_error(pending).await;
    assert_eq!(err.code(), Some(Code::Other(4000)), "{err:?}");
}

#[tokio::test]
async fn duplicate_and_late_responses_are_ignored() {
    let (client, mut socket) = connected().await;
    let first = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    socket.write_all(&message(&Header::Response { id: 1 }, &bincode(&10_u64))).await.unwrap();
    assert_eq!(within(first).await.unwrap().unwrap(), 10);
    // A second answer to call 1 changes nothing; call 2 gets its own.
    socket.write_all(&message(&Header::Response { id: 1 }, &bincode(&11_u64))).await.unwrap();
    let second = spawn_call(&client, 2);
    let (header, _) = decode(&expect_frame(&mut socket).await);
    assert!(matches!(header, Header::Request { id: 2, .. }), "{header:?}");
    socket.write_all(&message(&Header::Response { id: 2 }, &bincode(&20_u64))).await.unwrap();
    assert_eq!(within(second).await.unwrap().unwrap(), 20);
}

#[tokio::test]
async fn a_response_body_of_the_wrong_type_fails_that_call_only() {
    let (client, mut socket) = connected().await;
    let call = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    socket.write_all(&message(&Header::Response { id: 1 }, &bincode("text"))).await.unwrap();
    assert!(matches!(call_error(call).await, Error::Decode(_)));
    // Trailing bytes after a valid value are an error too.
    let call = spawn_call(&client, 2);
    expect_frame(&mut socket).await;
    socket.write_all(&message(&Header::Response { id: 2 }, &[7, 7])).await.unwrap();
    assert!(matches!(call_error(call).await, Error::Decode(_)));
    let call = spawn_call(&client, 3);
    expect_frame(&mut socket).await;
    socket.write_all(&message(&Header::Response { id: 3 }, &bincode(&3_u64))).await.unwrap();
    assert_eq!(within(call).await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn a_request_over_the_servers_announced_limit_is_refused_before_it_is_written() {
    let (listener, endpoint) = listen().await;
    let small = hello(2, 1024);
    let (client, mut socket) = within(async {
        tokio::join!(Client::connect(endpoint.as_str()), accept_with(&listener, &small))
    })
    .await;
    let client = client.unwrap();
    let err = client.call::<_, String>(ECHO, &("x".repeat(2000),)).await.unwrap_err();
    match err {
        Error::FrameTooLarge { size, limit: 1024 } => assert!(size > 2000, "{size}"),
        other => panic!("expected FrameTooLarge with limit 1024, got {other:?}"),
    }
    // The next frame on the wire is the next call: the refused one was never written.
    let call = spawn_call(&client, 9);
    let (header, _) = decode(&expect_frame(&mut socket).await);
    assert!(matches!(header, Header::Request { id: 2, method: BLOCK, .. }), "{header:?}");
    socket.write_all(&message(&Header::Response { id: 2 }, &bincode(&9_u64))).await.unwrap();
    assert_eq!(within(call).await.unwrap().unwrap(), 9);
}

#[tokio::test]
async fn a_server_announcing_a_max_frame_below_the_minimum_is_refused() {
    let (listener, endpoint) = listen().await;
    let tiny = hello(2, 32);
    let (client, _socket) = within(async {
        tokio::join!(Client::connect(endpoint.as_str()), accept_with(&listener, &tiny))
    })
    .await;
    match client {
        Err(Error::Protocol(message)) => assert!(message.contains("1024"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_goaway_makes_new_calls_fail_with_shutting_down_and_pending_ones_finish() {
    let (client, mut socket) = connected().await;
    let pending = spawn_call(&client, 1);
    expect_frame(&mut socket).await;
    socket.write_all(&message(&Header::GoAway { last_id: 1 }, &[])).await.unwrap();
    // The GoAway is read before the Response behind it, so once call 1 has its answer, new
    // calls are refused without being sent.
    socket.write_all(&message(&Header::Response { id: 1 }, &bincode(&1_u64))).await.unwrap();
    assert_eq!(within(pending).await.unwrap().unwrap(), 1);
    let err = within(client.call::<_, u64>(BLOCK, &(2_u64,))).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ShuttingDown), "{err:?}");
    drop(socket);
}

#[tokio::test]
async fn dropping_the_last_client_clone_closes_the_connection() {
    let (client, mut socket) = connected().await;
    let clone = client.with_timeout(Duration::from_secs(1));
    drop(client);
    // A clone keeps the connection: a call through it still arrives.
    let call = spawn_call(&clone, 4);
    let (header, _) = decode(&expect_frame(&mut socket).await);
    assert!(matches!(header, Header::Request { id: 1, .. }), "{header:?}");
    socket.write_all(&message(&Header::Response { id: 1 }, &bincode(&4_u64))).await.unwrap();
    assert_eq!(within(call).await.unwrap().unwrap(), 4);
    drop(clone);
    expect_closed(&mut socket).await;
}
