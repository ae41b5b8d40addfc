//! What the server tells `tracing`: a span per request naming service, method, id and peer;
//! connection events with the peer; handler panics with the method.
#![allow(clippy::unwrap_used)]

mod common;

use rpc_core::{Client, Code, DispatchError, HandlerFuture, Responder, Server, Service};

/// Method 1 logs an event from inside its handler and answers; method 2 panics.
struct Chatty;

impl Service for Chatty {
    fn name(&self) -> &'static str {
        "Chatty"
    }

    fn method_name(&self, method: u32) -> Option<&'static str> {
        match method {
            1 => Some("talk"),
            2 => Some("explode"),
            _ => None,
        }
    }

    fn call(
        &self,
        method: u32,
        body: &[u8],
        reply: Responder,
    ) -> Result<HandlerFuture, DispatchError> {
        let (n,): (u64,) = rpc_core::decode_args(body)?;
        match method {
            1 => Ok(Box::pin(async move {
                tracing::info!(n, "inside the handler");
                reply.send(&n)
            })),
            2 => Ok(Box::pin(async move {
                if n > 0 {
                    panic!("boom {n}");
                }
                reply.send(&n)
            })),
            _ => Err(DispatchError::UnknownMethod),
        }
    }
}

#[test]
fn requests_run_in_a_span_naming_service_method_id_and_peer_and_panics_name_the_method() {
    let log = common::log_of(tracing::Level::DEBUG, || async {
        let server = Server::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.local_endpoint().clone();
        tokio::spawn(server.serve(Chatty));
        let client = Client::connect(&endpoint).await.unwrap();
        assert_eq!(client.call::<_, u64>(1, &(7u64,)).await.unwrap(), 7);
        let err = client.call::<_, u64>(2, &(1u64,)).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::HandlerPanicked));
        assert!(err.to_string().contains("Chatty.explode"), "{err}");
    });
    let inside = log.lines().find(|l| l.contains("inside the handler")).expect(&log);
    for field in ["call{", "service=\"Chatty\"", "method=\"talk\"", "id=1", "peer=127.0.0.1:"] {
        assert!(inside.contains(field), "{field} missing from {inside:?}");
    }
    let open = log.lines().find(|l| l.contains("connection open")).expect(&log);
    assert!(open.contains("peer=127.0.0.1:"), "{open}");
    let panic = log.lines().find(|l| l.contains("handler panicked")).expect(&log);
    for field in ["method=\"explode\"", "boom 1"] {
        assert!(panic.contains(field), "{field} missing from {panic:?}");
    }
}

/// 50 peers that break the protocol, and 50 that reset: a WARN line or two, not a hundred,
/// and none for the resets.
#[test]
fn broken_and_reset_peers_do_not_flood_the_log() {
    use tokio::io::AsyncWriteExt;
    let log = common::log_of(tracing::Level::WARN, || async {
        let server = Server::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.local_endpoint().clone();
        let addr = common::tcp_addr(&endpoint);
        tokio::spawn(server.serve(Chatty));
        for _ in 0..50 {
            let mut broken = tokio::net::TcpStream::connect(&addr).await.unwrap();
            broken.write_all(&common::HELLO_4MIB).await.unwrap();
            // An unknown message type: Close 11.
            broken.write_all(&[0, 0, 0, 1, 0x63]).await.unwrap();
            let _ = common::read_frame(&mut broken).await;
            let _ = common::read_frame(&mut broken).await;
            // Closed with the server's hello unread, and after our own: a reset.
            let mut reset = tokio::net::TcpStream::connect(&addr).await.unwrap();
            reset.write_all(&common::HELLO_4MIB).await.unwrap();
            reset.readable().await.unwrap();
            drop(reset);
        }
        // The server still serves.
        let client = Client::connect(&endpoint).await.unwrap();
        assert_eq!(client.call::<_, u64>(1, &(7u64,)).await.unwrap(), 7);
    });
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
    assert!(!log.contains("connection reset"), "{log}");
}
