//! Raw bytes against a real server: its hello, its answers to bad frames (a Close naming the
//! problem, then the end of the connection), and an accept loop that outlives every attack.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, Code, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A raw connection that has read the server's hello (checked byte for byte).
async fn connect_raw(server: &Running) -> TcpStream {
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let hello = expect_frame(&mut socket).await;
    assert_eq!(frame(&hello), HELLO_4MIB);
    socket
}

/// A raw connection past both hellos.
async fn handshaken(server: &Running) -> TcpStream {
    let mut socket = connect_raw(server).await;
    socket.write_all(&HELLO_4MIB).await.unwrap();
    socket
}

/// Reads a Close frame, hangs up as a peer should, and checks that nothing follows but the end
/// of the stream; returns the Close's code and message.
async fn expect_close_then_eof(socket: &mut TcpStream) -> (u32, String) {
    let close = decode_close(&expect_frame(socket).await);
    // The server lingers after a Close until the peer hangs up (see the test below).
    socket.shutdown().await.unwrap();
    expect_closed(socket).await;
    close
}

/// A client connected before an attack still works, and so does a new one.
async fn others_unaffected(server: &Running, earlier: &Client) {
    let sum: i64 = within(earlier.call(ADD, &(1_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 3);
    let fresh = within(Client::connect(&server.endpoint)).await.unwrap();
    let sum: i64 = within(fresh.call(ADD, &(3_i64, 4_i64))).await.unwrap();
    assert_eq!(sum, 7);
}

#[tokio::test]
async fn the_server_sends_its_hello_first_without_waiting_for_the_clients() {
    let mut config = ServerConfig::default();
    config.max_frame = 1000;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    // magic, version 2, max_frame 1000 = 0xfb + u16 LE
    assert_eq!(
        frame(&expect_frame(&mut socket).await),
        [0, 0, 0, 8, b'R', b'P', b'C', 0, 2, 0xfb, 0xe8, 0x03]
    );
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_with_close_9_naming_size_and_limit() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    // As the first frame, in place of the hello, whose limit is 1,024 bytes.
    let mut socket = connect_raw(&server).await;
    socket.write_all(&[0xff; 4]).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, Code::FrameTooLarge.to_u32());
    assert_eq!(code, 9);
    assert!(message.contains("4294967295") && message.contains("1024"), "{message}");
    // A hello declaring 1,025 bytes is refused from its length, before its bytes come.
    let mut socket = connect_raw(&server).await;
    socket.write_all(&1025_u32.to_be_bytes()).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, 9);
    assert!(message.contains("1025") && message.contains("1024"), "{message}");
    // After the hello, as a message.
    let mut socket = handshaken(&server).await;
    socket.write_all(&[0xff; 4]).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, 9);
    assert!(message.contains("4294967295") && message.contains("4194304"), "{message}");
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_length_just_over_a_small_limit_is_refused_and_one_at_the_limit_is_read() {
    let mut config = ServerConfig::default();
    config.max_frame = 64;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    expect_frame(&mut socket).await;
    socket.write_all(&HELLO_4MIB).await.unwrap();
    // Exactly 64 bytes: an echo whose string fills the frame.
    let request = request(1, ECHO, &("z".repeat(55),));
    assert_eq!(request.len(), 4 + 64);
    socket.write_all(&request).await.unwrap();
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 1 });
    assert_eq!(decode_value::<String>(&body), "z".repeat(55));
    // 65 bytes is refused from the head alone: the body is never sent.
    socket.write_all(&65_u32.to_be_bytes()).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, 9);
    assert!(message.contains("65") && message.contains("64"), "{message}");
    server.stop().await.unwrap();
}

/// Takes the server's linger time (a second): the only slow test here.
#[tokio::test]
async fn after_a_close_the_server_hangs_up_even_if_the_peer_does_not() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = connect_raw(&server).await;
    socket.write_all(&hello(1, 1024)).await.unwrap();
    assert_eq!(decode_close(&expect_frame(&mut socket).await).0, 10);
    expect_closed(&mut socket).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_hello_with_bad_magic_is_answered_with_close_11() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    let mut socket = connect_raw(&server).await;
    socket.write_all(&frame(b"HTTP\x01\xfc\x00\x00\x40\x00")).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, Code::ProtocolViolation.to_u32());
    assert_eq!(code, 11);
    assert!(message.contains("magic"), "{message}");
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_hello_too_short_to_decode_is_answered_with_close_11() {
    let server = start("tcp://127.0.0.1:0").await;
    for garbage in [&b""[..], b"RP", b"RPC\0", b"\x00\x01\x02"] {
        let mut socket = connect_raw(&server).await;
        socket.write_all(&frame(garbage)).await.unwrap();
        let (code, message) = expect_close_then_eof(&mut socket).await;
        assert_eq!(code, 11, "{garbage:?}: {message}");
    }
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_hello_with_another_version_is_answered_with_close_10_naming_both() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    let mut socket = connect_raw(&server).await;
    socket.write_all(&hello(1, 4_194_304)).await.unwrap();
    let (code, message) = expect_close_then_eof(&mut socket).await;
    assert_eq!(code, Code::VersionMismatch.to_u32());
    assert_eq!(code, 10);
    assert!(message.contains("version 1") && message.contains("version 2"), "{message}");
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_hello_with_extra_fields_from_a_later_version_is_accepted() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = connect_raw(&server).await;
    let mut longer = HELLO_4MIB[4..].to_vec();
    longer.extend_from_slice(b"future fields");
    socket.write_all(&frame(&longer)).await.unwrap();
    socket.write_all(&request(1, ADD, &(2_i64, 3_i64))).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), [0, 0, 0, 3, 1, 1, 0x0a]);
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_garbage_header_after_the_hello_is_answered_with_close_11() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    // An unknown variant, a truncated Request, and an empty payload.
    for garbage in [&b"\x09"[..], b"\x00\x01", b""] {
        let mut socket = handshaken(&server).await;
        socket.write_all(&frame(garbage)).await.unwrap();
        let (code, message) = expect_close_then_eof(&mut socket).await;
        assert_eq!(code, 11, "{garbage:?}: {message}");
        assert!(message.contains("header"), "{message}");
    }
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_only_message_from_a_client_is_answered_with_close_11() {
    let server = start("tcp://127.0.0.1:0").await;
    let server_only = [
        message(&Header::GoAway { last_id: 0 }, &[]),
        message(&Header::Response { id: 1 }, &bincode(&5_i64)),
        message(&Header::Failure { id: 1, code: 1, message: "no" }, &[]),
    ];
    for bytes in server_only {
        let mut socket = handshaken(&server).await;
        socket.write_all(&bytes).await.unwrap();
        let (code, message) = expect_close_then_eof(&mut socket).await;
        assert_eq!(code, 11, "{bytes:02x?}: {message}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_frame_cut_short_by_the_end_of_the_stream_drops_only_that_connection() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    let mut socket = handshaken(&server).await;
    let request = request(1, ADD, &(2_i64, 3_i64));
    socket.write_all(&request[..request.len() - 3]).await.unwrap();
    socket.shutdown().await.unwrap();
    // The server may say why before it closes, but it never answers the call.
    if let Some(payload) = read_frame(&mut socket).await {
        assert_eq!(decode_close(&payload).0, 11);
        expect_closed(&mut socket).await;
    }
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_hello_cut_short_by_the_end_of_the_stream_drops_only_that_connection() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = connect_raw(&server).await;
    socket.write_all(&HELLO_4MIB[..7]).await.unwrap();
    socket.shutdown().await.unwrap();
    if let Some(payload) = read_frame(&mut socket).await {
        assert_eq!(decode_close(&payload).0, 11);
        expect_closed(&mut socket).await;
    }
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn frames_written_one_byte_at_a_time_are_reassembled() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = connect_raw(&server).await;
    let bytes = [HELLO_4MIB.to_vec(), request(1, ADD, &(20_i64, 22_i64))].concat();
    for byte in bytes {
        socket.write_all(&[byte]).await.unwrap();
        socket.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 1 });
    assert_eq!(decode_value::<i64>(&body), 42);
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn many_frames_in_one_write_are_all_answered() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = connect_raw(&server).await;
    let mut bytes = HELLO_4MIB.to_vec();
    for id in 1..=100_u64 {
        bytes.extend(request(id, ADD, &(id as i64, 1_i64)));
    }
    socket.write_all(&bytes).await.unwrap();
    let mut answered = Vec::new();
    for _ in 1..=100 {
        let (header, body) = decode(&expect_frame(&mut socket).await);
        let Header::Response { id } = header else { panic!("a response: {header:?}") };
        assert_eq!(decode_value::<i64>(&body), id as i64 + 1);
        answered.push(id);
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=100).collect::<Vec<_>>());
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_with_no_budget_left_is_answered_with_deadline_exceeded() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = handshaken(&server).await;
    let header = Header::Request { id: 9, method: ADD, budget_us: 0 };
    socket.write_all(&message(&header, &bincode(&(1_i64, 2_i64)))).await.unwrap();
    match decode(&expect_frame(&mut socket).await) {
        (Header::Failure { id: 9, code: 3, .. }, body) if body.is_empty() => {}
        other => panic!("expected Failure code 3 for id 9, got {other:?}"),
    }
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_already_in_flight_is_a_bad_request_and_the_first_call_goes_on() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let mut socket = handshaken(&server).await;
    socket.write_all(&request(5, BLOCK, &(55_u64,))).await.unwrap();
    assert_eq!(server.gate.entered().await, 55);
    socket.write_all(&request(5, ADD, &(1_i64, 1_i64))).await.unwrap();
    match decode(&expect_frame(&mut socket).await) {
        (Header::Failure { id: 5, code: 2, .. }, _) => {}
        other => panic!("expected Failure code 2 for id 5, got {other:?}"),
    }
    server.gate.release(1);
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 5 });
    assert_eq!(decode_value::<u64>(&body), 55);
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_handler_and_nothing_is_sent_for_it() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let mut socket = handshaken(&server).await;
    socket.write_all(&request(1, BLOCK, &(1_u64,))).await.unwrap();
    assert_eq!(server.gate.entered().await, 1);
    // A Cancel for an id that is not in flight is ignored.
    socket.write_all(&message(&Header::Cancel { id: 77 }, &[])).await.unwrap();
    socket.write_all(&message(&Header::Cancel { id: 1 }, &[])).await.unwrap();
    assert_eq!(server.gate.gone().await, 1);
    // The next frame is the answer to a later call: nothing came for the cancelled one.
    socket.write_all(&request(2, ADD, &(1_i64, 1_i64))).await.unwrap();
    assert_eq!(decode(&expect_frame(&mut socket).await).0, Header::Response { id: 2 });
    drop(socket);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_close_from_the_client_ends_the_connection_quietly() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut socket = handshaken(&server).await;
    let close = Header::Close { code: 11, message: "bye" };
    socket.write_all(&message(&close, &[])).await.unwrap();
    expect_closed(&mut socket).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_accept_loop_survives_every_kind_of_bad_peer() {
    let server = start("tcp://127.0.0.1:0").await;
    let earlier = Client::connect(&server.endpoint).await.unwrap();
    let attacks: [&[u8]; 6] = [
        &[0xff, 0xff, 0xff, 0xff],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0, 0, 0, 4, b'R', b'P', b'C', 0],
        &[0, 0, 0, 10, b'R', b'P', b'C', 0, 2, 0xfc, 0, 0, 0x40, 0],
        &[0, 0, 0, 10, b'R', b'P', b'C'],
        &[],
    ];
    for attack in attacks {
        let mut socket = connect_raw(&server).await;
        socket.write_all(attack).await.unwrap();
        socket.shutdown().await.unwrap();
        // Whatever the server says, it then closes; it never answers with anything but Close.
        while let Some(payload) = read_frame(&mut socket).await {
            let (code, message) = decode_close(&payload);
            assert!(matches!(code, 9..=11), "{attack:02x?}: {code} {message}");
        }
    }
    // Connections that closed before the server even wrote its hello.
    for _ in 0..5 {
        drop(TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap());
    }
    others_unaffected(&server, &earlier).await;
    server.stop().await.unwrap();
}
