//! Idle connections and slow frames are closed with a reason; a connection with calls running
//! is never idle; a client treats the idle close like a GoAway. Paused time throughout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, Code, Error, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.idle_timeout = Duration::from_secs(5);
    config.frame_timeout = Duration::from_secs(3);
    config
}

async fn handshaken(server: &Running) -> TcpStream {
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    // Without it, Nagle holds small writes back for real milliseconds, while paused time runs
    // ahead past the timeouts.
    socket.set_nodelay(true).unwrap();
    socket.write_all(&HELLO_4MIB).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket
}

/// The next frames: GoAway with `last_id`, then Close 16, then the end of the stream.
async fn expect_idle_close(socket: &mut TcpStream, last_id: u64) {
    let (header, _) = decode(&expect_frame(socket).await);
    assert_eq!(header, Header::GoAway { last_id });
    let (code, message) = decode_close(&expect_frame(socket).await);
    assert_eq!(code, Code::IdleTimeout.to_u32());
    assert!(message.contains("5s") && message.contains("idle"), "{message}");
    expect_closed(socket).await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_calls_for_the_idle_timeout_gets_goaway_then_close_16() {
    let server = start_with("tcp://127.0.0.1:0", config()).await;
    let mut socket = handshaken(&server).await;
    socket.write_all(&request(1, ADD, &(2_i64, 3_i64))).await.unwrap();
    let (header, _) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 1 });
    let quiet = Instant::now();
    expect_idle_close(&mut socket, 1).await;
    let idle = quiet.elapsed();
    assert!(idle >= Duration::from_secs(5) && idle < Duration::from_secs(6), "{idle:?}");
    // A silent peer that never made a call goes the same way.
    let mut silent = handshaken(&server).await;
    expect_idle_close(&mut silent, 0).await;
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_connection_with_a_call_running_is_not_idle() {
    let mut server = start_with("tcp://127.0.0.1:0", config()).await;
    let mut socket = handshaken(&server).await;
    socket.write_all(&request(7, BLOCK, &(7_u64,))).await.unwrap();
    assert_eq!(server.gate.entered().await, 7);
    // Longer than the idle timeout passes while the call runs (within `read_frame`'s own
    // 10 s guard): nothing is sent.
    let waited = tokio::time::timeout(Duration::from_secs(9), read_frame(&mut socket)).await;
    assert!(waited.is_err(), "the server sent {waited:?} while a call ran");
    server.gate.release(1);
    let (header, _) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 7 });
    // Idle from the answer on.
    let quiet = Instant::now();
    expect_idle_close(&mut socket, 7).await;
    assert!(quiet.elapsed() >= Duration::from_secs(5));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_treats_the_idle_close_like_a_goaway() {
    let server = start_with("tcp://127.0.0.1:0", config()).await;
    let once = connect_once(&server.endpoint).await.unwrap();
    let client = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(once.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap(), 2);
    assert_eq!(client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let err = once.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap_err();
    assert!(matches!(err, Error::Remote { code: Code::ShuttingDown, .. }), "{err:?}");
    // A reconnecting client makes a new connection for the call instead.
    assert_eq!(client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap(), 2);
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_frame_not_complete_within_the_frame_timeout_is_closed_with_11() {
    let server = start_with("tcp://127.0.0.1:0", config()).await;
    let mut socket = handshaken(&server).await;
    // The head of a 20-byte frame and one byte of it, then nothing.
    socket.write_all(&[0, 0, 0, 20, 0]).await.unwrap();
    let started = Instant::now();
    let (code, message) = decode_close(&expect_frame(&mut socket).await);
    assert_eq!(code, 11);
    assert!(message.contains("frame timeout"), "{message}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(4), "{took:?}");
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_frame_dripped_within_the_frame_timeout_is_answered() {
    let server = start_with("tcp://127.0.0.1:0", config()).await;
    let mut socket = handshaken(&server).await;
    // Each frame takes about 2 s to arrive, and calls keep the connection from idling.
    for id in 1..=3 {
        for byte in request(id, ADD, &(20_i64, 22_i64)) {
            socket.write_all(&[byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (header, body) = decode(&expect_frame(&mut socket).await);
        assert_eq!(header, Header::Response { id });
        assert_eq!(decode_value::<i64>(&body), 42);
    }
    server.stop().await.unwrap();
}
