//! WIRE.md's rules that the conformance vectors cannot show with the calculator, checked
//! against rpc-core with services made for them: a long error message is cut at a character
//! boundary, a return value that cannot be encoded is answered with code 12, and a message from
//! the peer is displayed with its control characters escaped.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Code, DispatchError, Error, HandlerFuture, Responder, Server, Service};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A raw connection to `server`, past both hellos.
async fn handshaken(endpoint: &rpc_core::Endpoint) -> TcpStream {
    let mut socket = TcpStream::connect(tcp_addr(endpoint)).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket.write_all(&HELLO_4MIB).await.unwrap();
    socket
}

/// WIRE.md, "Error messages": a sender cuts a message over 512 bytes at a character boundary.
#[tokio::test]
async fn a_failure_message_over_512_bytes_is_cut_at_a_character_boundary() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = handshaken(&server.endpoint).await;
    // The handler panics with 400 three-byte characters; the message is longer still.
    socket.write_all(&request(1, PANIC, &("€".repeat(400),))).await.unwrap();
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert!(body.is_empty());
    let Header::Failure { id: 1, code: 7, message } = header else {
        panic!("expected Failure code 7 for id 1, got {header:?}")
    };
    // 512 bytes would split a "€": the cut goes back to the character's start.
    assert!(message.len() <= 512 && message.len() > 509, "{} bytes", message.len());
    assert!(message.ends_with('€'), "{message}");
    drop(socket);
    server.stop().await.unwrap();
}

/// A value whose `Serialize` fails.
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

/// One method, 1, whose return value cannot be encoded.
struct EncodeFails;

impl Service for EncodeFails {
    fn name(&self) -> &'static str {
        "EncodeFails"
    }

    fn method_name(&self, method: u32) -> Option<&'static str> {
        (method == 1).then_some("broken")
    }

    fn call(
        &self,
        method: u32,
        body: &[u8],
        reply: Responder,
    ) -> Result<HandlerFuture, DispatchError> {
        if method != 1 {
            return Err(DispatchError::UnknownMethod);
        }
        let (): () = rpc_core::decode_args(body)?;
        Ok(Box::pin(async move { reply.send(&Unencodable) }))
    }
}

/// WIRE.md, "Error codes": code 12 when the server cannot encode a handler's return value.
#[tokio::test]
async fn a_return_value_that_cannot_be_encoded_is_failure_12() {
    let server = Server::bind("tcp://127.0.0.1:0").await.unwrap();
    let endpoint = server.local_endpoint().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(EncodeFails, async {
        let _ = stopped.await;
    }));
    let mut socket = handshaken(&endpoint).await;
    socket.write_all(&request(1, 1, &())).await.unwrap();
    match decode(&expect_frame(&mut socket).await) {
        (Header::Failure { id: 1, code: 12, message }, body) if body.is_empty() => {
            assert!(message.contains("encode"), "{message}");
        }
        other => panic!("expected Failure code 12 for id 1, got {other:?}"),
    }
    assert_eq!(Code::from_u32(12).to_u32(), 12);
    drop(socket);
    let _ = stop.send(());
    within(serving).await.unwrap().unwrap();
}

/// WIRE.md, "Error messages": a message from the peer is shown with its control characters
/// escaped, so a server cannot move a terminal's cursor or forge log lines.
#[test]
fn a_remote_message_is_displayed_with_its_control_characters_escaped() {
    let error = Error::Remote {
        code: Code::BadRequest,
        message: "bad\u{1b}[2J request\nFAKE LOG LINE\u{7}".to_owned(),
    };
    let shown = error.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains("bad") && shown.contains("FAKE LOG LINE"), "{shown:?}");
}
