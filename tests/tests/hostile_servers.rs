//! Hostile servers against the real client, over TCP and a Unix socket, filling the gaps of
//! `core_hostile_server.rs` (which scripts one or two calls over TCP): whatever the server
//! sends, every one of many pending calls ends with an error, and nothing panics or hangs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, ClientConfig, Error};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A raw byte stream to the client, TCP or Unix.
trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}
type Raw = Box<dyn RawIo>;

/// A scripted server's listening socket.
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> Raw {
        match self {
            Listener::Tcp(l) => Box::new(l.accept().await.unwrap().0),
            Listener::Unix(l) => Box::new(l.accept().await.unwrap().0),
        }
    }
}

/// A listener on TCP (`unix == false`) or an abstract Unix socket, and its endpoint.
async fn listen(unix: bool) -> (Listener, String) {
    if unix {
        use std::os::linux::net::SocketAddrExt;
        let endpoint = unique_abstract("hostile-server");
        let name = endpoint.strip_prefix("unix:@").unwrap();
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        (Listener::Unix(tokio::net::UnixListener::from_std(listener).unwrap()), endpoint)
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        (Listener::Tcp(listener), endpoint)
    }
}

/// A client connected to a scripted server that answered with `hello`, and the server's end.
async fn connected_with(
    unix: bool,
    hello: &[u8],
    config: ClientConfig,
) -> (Result<Client, Error>, Raw) {
    let (listener, endpoint) = listen(unix).await;
    let server = async {
        let mut socket = listener.accept().await;
        assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
        socket.write_all(hello).await.unwrap();
        socket
    };
    within(async { tokio::join!(Client::connect_with(endpoint.as_str(), config), server) }).await
}

/// A client past both hellos with 50 `block` calls pending, all of them read by the server.
async fn fifty_pending(unix: bool) -> (Client, Raw, Vec<JoinHandle<Result<u64, Error>>>) {
    let (client, mut socket) = connected_with(unix, &HELLO_4MIB, one_connection()).await;
    let client = client.unwrap();
    let calls = (1..=50_u64)
        .map(|v| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
        })
        .collect();
    for _ in 0..50 {
        let (header, _) = decode(&expect_frame(&mut socket).await);
        assert!(matches!(header, Header::Request { method: BLOCK, .. }), "{header:?}");
    }
    (client, socket, calls)
}

/// Every call ends with an error that `expected` accepts, and new calls fail at once.
async fn all_fail(
    client: &Client,
    calls: Vec<JoinHandle<Result<u64, Error>>>,
    expected: fn(&Error) -> bool,
) {
    for call in calls {
        let err = within(call).await.expect("the call did not panic").unwrap_err();
        assert!(expected(&err), "{err:?}");
    }
    let err = within(client.call::<_, u64>(BLOCK, &(0_u64,))).await.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed), "{err:?}");
}

#[tokio::test]
async fn random_bytes_after_the_hello_end_every_pending_call_with_an_error() {
    for unix in [false, true] {
        for seed in 1..=8 {
            let (client, mut socket, calls) = fifty_pending(unix).await;
            socket.write_all(&garbage(seed, 4096)).await.unwrap();
            // Whether the bytes read as a corrupt frame or as part of a long one that never
            // ends, the calls end: on the error, or when the server hangs up.
            drop(socket);
            all_fail(&client, calls, |e| {
                matches!(
                    e,
                    Error::Protocol(_)
                        | Error::FrameTooLarge { .. }
                        | Error::Remote { .. }
                        | Error::Io(_)
                        | Error::ConnectionClosed
                )
            })
            .await;
        }
    }
}

#[tokio::test]
async fn random_bytes_in_place_of_the_hello_fail_connect() {
    for unix in [false, true] {
        for seed in 1..=8 {
            let (client, socket) = connected_with(unix, &garbage(seed, 64), one_connection()).await;
            drop(socket);
            let err = client.unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Protocol(_)
                        | Error::FrameTooLarge { .. }
                        | Error::Remote { .. }
                        | Error::Io(_)
                        | Error::ConnectionClosed
                ),
                "{err:?}"
            );
        }
    }
}

/// A message whose length field claims a terabyte: the client refuses it as a bad header
/// rather than allocating it (which aborted the process before the codec had a limit).
#[tokio::test]
async fn a_failure_whose_message_claims_a_terabyte_is_a_protocol_error_not_an_allocation() {
    for unix in [false, true] {
        // Failure (2), id 1, code 1, message length 2^40 as a u64 varint (0xFD + 8 bytes).
        let failure = [2, 1, 1, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
        // Close (5), code 11, then the same length.
        let close = [5, 11, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
        for payload in [&failure[..], &close[..]] {
            let (client, mut socket, calls) = fifty_pending(unix).await;
            socket.write_all(&frame(payload)).await.unwrap();
            all_fail(&client, calls, |e| matches!(e, Error::Protocol(m) if m.contains("header")))
                .await;
        }
    }
}

#[tokio::test]
async fn a_server_that_closes_in_the_middle_of_a_frame_ends_every_pending_call() {
    for unix in [false, true] {
        let (client, mut socket, calls) = fifty_pending(unix).await;
        let response = message(&Header::Response { id: 1 }, &bincode(&1_u64));
        socket.write_all(&response[..response.len() - 1]).await.unwrap();
        drop(socket);
        all_fail(
            &client,
            calls,
            |e| matches!(e, Error::Protocol(m) if m.contains("middle of a frame")),
        )
        .await;
    }
}

#[tokio::test]
async fn an_oversized_frame_ends_every_pending_call_with_frame_too_large() {
    for unix in [false, true] {
        let (client, mut socket, calls) = fifty_pending(unix).await;
        socket.write_all(&(4_194_305_u32).to_be_bytes()).await.unwrap();
        all_fail(&client, calls, |e| {
            matches!(e, Error::FrameTooLarge { size: 4_194_305, limit: 4_194_304 })
        })
        .await;
    }
}

#[tokio::test]
async fn a_response_for_an_id_never_sent_ends_every_pending_call() {
    for unix in [false, true] {
        let (client, mut socket, calls) = fifty_pending(unix).await;
        socket.write_all(&message(&Header::Response { id: 51 }, &bincode(&1_u64))).await.unwrap();
        all_fail(&client, calls, |e| matches!(e, Error::Protocol(m) if m.contains("51"))).await;
    }
}

/// Duplicates are dropped: each of the 50 calls gets its own first answer, whatever follows.
#[tokio::test]
async fn duplicated_responses_among_many_pending_calls_are_dropped() {
    for unix in [false, true] {
        let (client, mut socket, calls) = fifty_pending(unix).await;
        let mut answers = Vec::new();
        for id in 1..=50_u64 {
            let response = message(&Header::Response { id }, &bincode(&(id * 10)));
            answers.extend_from_slice(&response);
            answers.extend_from_slice(&response);
            answers.extend(message(&Header::Response { id }, &bincode(&0_u64)));
        }
        socket.write_all(&answers).await.unwrap();
        for (id, call) in (1..).zip(calls) {
            assert_eq!(within(call).await.unwrap().unwrap(), id * 10);
        }
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call::<_, u64>(BLOCK, &(51_u64,)).await }
        });
        let (header, _) = decode(&expect_frame(&mut socket).await);
        assert!(matches!(header, Header::Request { id: 51, .. }), "{header:?}");
        socket.write_all(&message(&Header::Response { id: 51 }, &bincode(&7_u64))).await.unwrap();
        assert_eq!(within(call).await.unwrap().unwrap(), 7);
    }
}

#[tokio::test]
async fn a_server_that_accepts_and_never_says_hello_fails_connect_within_the_timeout() {
    for unix in [false, true] {
        let (listener, endpoint) = listen(unix).await;
        let mut config = ClientConfig::default();
        config.connect_timeout = Duration::from_millis(100);
        let (client, _socket) = within(async {
            tokio::join!(Client::connect_with(endpoint.as_str(), config), listener.accept())
        })
        .await;
        assert!(matches!(client, Err(Error::ConnectTimeout { .. })), "{client:?}");
    }
}
