//! Hostile clients against a real server, over TCP and a Unix socket: bytes from other
//! protocols, empty and endless frames, peers that never read, drip bytes or stay silent, and
//! all of them at once. After each, the server still answers a well-behaved client promptly,
//! and the memory of this process (which runs the server) stays bounded.
//!
//! The attacks `core_raw_server.rs` already pins over TCP are reused here in the battery.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, Endpoint, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A raw byte stream to the server, TCP or Unix.
trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}
type Raw = Box<dyn RawIo>;

/// The endpoints every test here runs on.
fn transports() -> [String; 2] {
    ["tcp://127.0.0.1:0".to_owned(), unique_abstract("hostile")]
}

/// Opens a raw connection to `endpoint`.
async fn raw(endpoint: &Endpoint) -> Raw {
    match endpoint {
        Endpoint::Tcp { .. } => {
            let socket = tokio::net::TcpStream::connect(tcp_addr(endpoint)).await.unwrap();
            socket.set_nodelay(true).unwrap();
            Box::new(socket)
        }
        Endpoint::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            let socket = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
            socket.set_nonblocking(true).unwrap();
            Box::new(tokio::net::UnixStream::from_std(socket).unwrap())
        }
        other => panic!("no raw connection to {other}"),
    }
}

/// A raw connection that has read the server's hello.
async fn opened(endpoint: &Endpoint) -> Raw {
    let mut socket = raw(endpoint).await;
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket
}

/// A raw connection past both hellos.
async fn handshaken(endpoint: &Endpoint) -> Raw {
    let mut socket = opened(endpoint).await;
    socket.write_all(&HELLO_4MIB).await.unwrap();
    socket
}

/// Reads what the server says until it closes: nothing, or one Close frame; returns its code.
async fn closed_by_server(socket: &mut Raw) -> Option<u32> {
    let code = read_frame(socket).await.map(|payload| decode_close(&payload).0);
    if code.is_some() {
        // The server lingers after a Close until the peer hangs up.
        let _ = socket.shutdown().await;
        expect_closed(socket).await;
    }
    code
}

/// A well-behaved client gets a prompt answer, on a connection made before and after.
async fn serves_promptly(endpoint: &Endpoint, earlier: &Client) {
    for client in [earlier.clone(), within(Client::connect(endpoint)).await.unwrap()] {
        let started = Instant::now();
        let sum: i64 = within(client.call(ADD, &(40_i64, 2_i64))).await.unwrap();
        assert_eq!(sum, 42);
        assert!(started.elapsed() < Duration::from_secs(2), "slow: {:?}", started.elapsed());
    }
}

/// This process's resident memory, in KiB. The server runs in-process, so what it holds shows.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Asserts the process grew by less than `mib` MiB since `before` (from [`rss_kib`]).
fn assert_grew_less_than(before: u64, mib: u64, what: &str) {
    let grown = rss_kib().saturating_sub(before) / 1024;
    println!("{what}: resident memory grew by {grown} MiB");
    assert!(grown < mib, "{what}: resident memory grew by {grown} MiB (bound {mib} MiB)");
}

/// The first bytes a web browser or curl sends.
const HTTP_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.0\r\n\r\n";

/// The start of a TLS 1.2/1.3 ClientHello record: handshake (0x16), version 3.1, length 512,
/// ClientHello (1), length, version 3.3, random... The first 4 bytes read as a length of
/// 0x16030102 = 369,295,618.
fn tls_client_hello() -> Vec<u8> {
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.extend((0..32).map(|i| i * 7));
    hello.extend([0x20; 33]);
    hello.extend([0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    hello
}

#[tokio::test]
async fn an_http_request_on_the_port_is_refused_with_close_9_before_anything_is_allocated() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let mut socket = opened(&server.endpoint).await;
        socket.write_all(HTTP_GET).await.unwrap();
        let close = decode_close(&expect_frame(&mut socket).await);
        // "GET " read as a big-endian length.
        assert_eq!(close.0, 9, "{close:?}");
        assert!(close.1.contains(&0x4745_5420_u32.to_string()), "{close:?}");
        socket.shutdown().await.unwrap();
        expect_closed(&mut socket).await;
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_tls_client_hello_on_the_port_is_refused_with_close_9_before_anything_is_allocated() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let mut socket = opened(&server.endpoint).await;
        socket.write_all(&tls_client_hello()).await.unwrap();
        let close = decode_close(&expect_frame(&mut socket).await);
        assert_eq!(close.0, 9, "{close:?}");
        assert!(close.1.contains("369295618"), "{close:?}");
        socket.shutdown().await.unwrap();
        expect_closed(&mut socket).await;
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_zero_length_frame_is_a_protocol_violation_in_place_of_the_hello_and_after_it() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        for mut socket in [opened(&server.endpoint).await, handshaken(&server.endpoint).await] {
            socket.write_all(&[0, 0, 0, 0]).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(11), "{endpoint}");
        }
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

/// A peer that asks for 2 GiB of responses and reads none: the server stops reading its
/// requests once about a MiB of responses waits for it, so memory stays bounded, and other
/// clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_responses_holds_bounded_memory_and_delays_nobody() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let before = rss_kib();
        let mut greedy = handshaken(&server.endpoint).await;
        let requests: Vec<u8> =
            (1..=2048_u64).flat_map(|id| request(id, BIG, &(1_u32 << 20,))).collect();
        // The requests fit in the socket buffers; the server must not act on all of them.
        within(greedy.write_all(&requests)).await.unwrap();
        serves_promptly(&server.endpoint, &earlier).await;
        assert_grew_less_than(before, 96, "2 GiB of unread responses");
        drop(greedy);
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

/// The other side of the bound above: a peer that pipelines requests for responses larger
/// than the server's high-water mark, and reads them, gets every one, though the server
/// pauses after each until the socket takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_pipelines_requests_for_large_responses_gets_every_one() {
    const SIZE: usize = (1 << 20) - 64;
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let mut socket = handshaken(&server.endpoint).await;
        let requests: Vec<u8> =
            (1..=3_u64).flat_map(|id| request(id, BIG, &(SIZE as u32,))).collect();
        socket.write_all(&requests).await.unwrap();
        for id in 1..=3 {
            let (header, body) = decode(&expect_frame(&mut socket).await);
            assert_eq!(header, Header::Response { id });
            assert_eq!(decode_value::<Vec<u8>>(&body).len(), SIZE);
        }
        drop(socket);
        server.stop().await.unwrap();
    }
}

/// A peer that drips its hello one byte per second is dropped when the handshake timeout
/// (10 s) runs out, though it never stops sending: the timeout bounds the whole hello, not
/// the wait for each byte. Paused time: the ten seconds pass at once.
#[tokio::test(start_paused = true)]
async fn a_peer_dripping_its_hello_one_byte_per_second_is_dropped_at_the_handshake_timeout() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let mut socket = opened(&server.endpoint).await;
        let started = Instant::now();
        let mut sent = 0;
        let mut seen = Vec::new();
        let (mut read, mut write) = tokio::io::split(&mut socket);
        let drip = async {
            for &byte in &HELLO_4MIB {
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = drip => unreachable!(),
            _ = read.read_to_end(&mut seen) => {}
        }
        let elapsed = started.elapsed();
        assert_handshake_timeout_close(&seen);
        assert!(sent < HELLO_4MIB.len(), "the whole hello went out: {sent} bytes");
        assert!(elapsed >= Duration::from_secs(10), "dropped after {elapsed:?}");
        assert!(elapsed < Duration::from_secs(12), "dropped after {elapsed:?}");
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

/// After the hello there is no per-frame timeout: a request dripped one byte per second is
/// assembled and answered, while other clients are served as usual.
#[tokio::test(start_paused = true)]
async fn a_request_dripped_one_byte_per_second_is_answered_and_delays_nobody() {
    for endpoint in transports() {
        let server = start(&endpoint).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let mut socket = handshaken(&server.endpoint).await;
        for byte in request(7, ADD, &(20_i64, 22_i64)) {
            socket.write_all(&[byte]).await.unwrap();
            serves_promptly(&server.endpoint, &earlier).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (header, body) = decode(&expect_frame(&mut socket).await);
        assert_eq!(header, Header::Response { id: 7 });
        assert_eq!(decode_value::<i64>(&body), 42);
        drop(socket);
        server.stop().await.unwrap();
    }
}

/// Hundreds of peers connect and say nothing: each costs a little memory until the handshake
/// timeout drops it, and a well-behaved client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_silent_peers_are_dropped_at_the_handshake_timeout_and_delay_nobody() {
    for endpoint in transports() {
        let mut config = ServerConfig::default();
        config.handshake_timeout = Duration::from_millis(500);
        let server = start_with(&endpoint, config).await;
        let earlier = Client::connect(&server.endpoint).await.unwrap();
        let before = rss_kib();
        let mut silent = Vec::new();
        for _ in 0..300 {
            silent.push(raw(&server.endpoint).await);
        }
        serves_promptly(&server.endpoint, &earlier).await;
        assert_grew_less_than(before, 32, "300 silent peers");
        // Each gets the server's hello, a Close naming the timeout, then the end of the stream.
        for socket in &mut silent {
            let mut seen = Vec::new();
            within(socket.read_to_end(&mut seen)).await.unwrap();
            assert_eq!(seen[..HELLO_4MIB.len()], HELLO_4MIB);
            assert_handshake_timeout_close(&seen[HELLO_4MIB.len()..]);
        }
        serves_promptly(&server.endpoint, &earlier).await;
        server.stop().await.unwrap();
    }
}

/// `bytes` are exactly one Close frame, code 11, naming the handshake timeout.
fn assert_handshake_timeout_close(bytes: &[u8]) {
    assert!(bytes.len() > 4, "no Close frame: {bytes:02x?}");
    let (header, body) = decode(&bytes[4..]);
    match header {
        Header::Close { code: 11, message } => {
            assert!(message.contains("handshake timeout"), "{message}");
        }
        other => panic!("expected Close 11, got {other:?}"),
    }
    assert!(body.is_empty());
}

/// Expects a Failure for `id` with `code` as the next frame.
async fn expect_failure(socket: &mut Raw, id: u64, code: u32) {
    match decode(&expect_frame(socket).await) {
        (Header::Failure { id: got, code: c, .. }, _) if got == id && c == code => {}
        other => panic!("expected Failure {code} for {id}, got {other:?}"),
    }
}

/// Expects the Response to `ADD` call `id` as the next frame.
async fn expect_sum(socket: &mut Raw, id: u64, sum: i64) {
    let (header, body) = decode(&expect_frame(socket).await);
    assert_eq!(header, Header::Response { id });
    assert_eq!(decode_value::<i64>(&body), sum);
}

/// One of the short attacks of the battery, each with the answer it must get.
async fn attack(endpoint: Endpoint, kind: usize, seed: u64) {
    match kind {
        // A declared length of 0xFFFFFFFF, in place of the hello and after it.
        0 | 1 => {
            let mut socket =
                if kind == 0 { opened(&endpoint).await } else { handshaken(&endpoint).await };
            socket.write_all(&[0xff; 4]).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(9));
        }
        // A zero-length frame, in place of the hello and after it.
        2 | 3 => {
            let mut socket =
                if kind == 2 { opened(&endpoint).await } else { handshaken(&endpoint).await };
            socket.write_all(&[0; 4]).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(11));
        }
        // A frame cut short by the end of the stream.
        4 => {
            let mut socket = handshaken(&endpoint).await;
            let request = request(1, ADD, &(2_i64, 3_i64));
            socket.write_all(&request[..request.len() - 3]).await.unwrap();
            socket.shutdown().await.unwrap();
            assert!(matches!(closed_by_server(&mut socket).await, None | Some(11)));
        }
        // Random bytes, then the end of the stream.
        5 => {
            let mut socket = opened(&endpoint).await;
            socket.write_all(&garbage(seed, 1024)).await.unwrap();
            let _ = socket.shutdown().await;
            assert!(matches!(closed_by_server(&mut socket).await, None | Some(9..=11)));
        }
        // Other protocols.
        6 | 7 => {
            let mut socket = opened(&endpoint).await;
            let bytes = if kind == 6 { HTTP_GET.to_vec() } else { tls_client_hello() };
            socket.write_all(&bytes).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(9));
        }
        // A valid frame holding a garbage envelope.
        8 => {
            let mut socket = handshaken(&endpoint).await;
            socket.write_all(&frame(&[&[9][..], &garbage(seed, 20)].concat())).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(11));
        }
        // An unknown protocol version.
        9 => {
            let mut socket = opened(&endpoint).await;
            socket.write_all(&hello(7, 4096)).await.unwrap();
            assert_eq!(closed_by_server(&mut socket).await, Some(10));
        }
        // Arguments of the wrong types, and trailing bytes: bad requests on a live connection.
        10 => {
            let mut socket = handshaken(&endpoint).await;
            let add = |id| Header::Request { id, method: ADD, budget_us: 30_000_000 };
            socket.write_all(&message(&add(1), &bincode("text"))).await.unwrap();
            expect_failure(&mut socket, 1, 2).await;
            let trailing = [bincode(&(1_i64, 2_i64)), vec![0]].concat();
            socket.write_all(&message(&add(2), &trailing)).await.unwrap();
            expect_failure(&mut socket, 2, 2).await;
            socket.write_all(&request(3, ADD, &(1_i64, 2_i64))).await.unwrap();
            expect_sum(&mut socket, 3, 3).await;
        }
        // A request id reused while the first call with it runs.
        11 => {
            let mut socket = handshaken(&endpoint).await;
            socket.write_all(&request(5, BLOCK, &(seed,))).await.unwrap();
            socket.write_all(&request(5, ADD, &(1_i64, 1_i64))).await.unwrap();
            expect_failure(&mut socket, 5, 2).await;
        }
        // A Cancel for an id never sent.
        _ => {
            let mut socket = handshaken(&endpoint).await;
            socket.write_all(&message(&Header::Cancel { id: 77 }, &[])).await.unwrap();
            socket.write_all(&request(1, ADD, &(2_i64, 2_i64))).await.unwrap();
            expect_sum(&mut socket, 1, 4).await;
        }
    }
}

/// Every attack at once, several times over, against one server, with peers that never
/// read, drip their hello and stay silent holding connections all along, while a good client
/// keeps calling: each of its calls is answered promptly, and memory stays bounded.
async fn battery(endpoint: &str) {
    let mut config = ServerConfig::default();
    config.handshake_timeout = Duration::from_secs(1);
    let server = start_with(endpoint, config).await;
    let endpoint = server.endpoint.clone();
    let good = Client::connect(&endpoint).await.unwrap();
    let before = rss_kib();

    let mut greedy = handshaken(&endpoint).await;
    let requests: Vec<u8> =
        (1..=4096_u64).flat_map(|id| request(id, BIG, &(256_u32 << 10,))).collect();
    within(greedy.write_all(&requests)).await.unwrap();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(raw(&endpoint).await);
    }
    let mut attacks = tokio::task::JoinSet::new();
    for round in 0..4 {
        for kind in 0..13 {
            attacks.spawn(attack(endpoint.clone(), kind, round * 100 + kind as u64 + 1));
        }
    }
    let drip_endpoint = endpoint.clone();
    attacks.spawn(async move {
        let mut socket = opened(&drip_endpoint).await;
        let (mut read, mut write) = tokio::io::split(&mut socket);
        let drip = async {
            for &byte in &HELLO_4MIB {
                let _ = write.write_all(&[byte]).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            panic!("the server waited for the whole dripped hello");
        };
        let mut seen = Vec::new();
        tokio::select! {
            () = drip => {}
            _ = read.read_to_end(&mut seen) => assert_handshake_timeout_close(&seen),
        }
    });
    attacks.spawn(async move {
        for mut socket in silent {
            let mut seen = Vec::new();
            socket.read_to_end(&mut seen).await.unwrap();
            assert_eq!(seen[..HELLO_4MIB.len()], HELLO_4MIB);
            assert_handshake_timeout_close(&seen[HELLO_4MIB.len()..]);
        }
    });

    let (mut calls, mut slowest) = (0, Duration::ZERO);
    let attacked = async {
        while let Some(done) = attacks.join_next().await {
            done.unwrap();
        }
    };
    let calling = async {
        loop {
            let started = Instant::now();
            let sum: i64 = good.call(ADD, &(calls, 1_i64)).await.unwrap();
            assert_eq!(sum, calls + 1);
            slowest = slowest.max(started.elapsed());
            calls += 1;
        }
    };
    within(async {
        tokio::select! {
            () = attacked => {}
            () = calling => unreachable!(),
        }
    })
    .await;
    println!("{endpoint}: {calls} good calls during the battery, the slowest took {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "a good call took {slowest:?}");
    assert_grew_less_than(before, 64, "the battery");
    drop(greedy);
    serves_promptly(&endpoint, &good).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_battery_at_once_over_tcp_disturbs_no_good_client() {
    battery("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_battery_at_once_over_unix_disturbs_no_good_client() {
    battery(&unique_abstract("battery")).await;
}
