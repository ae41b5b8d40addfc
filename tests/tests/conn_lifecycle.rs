//! A connection's life under hostile peers and misbehaving user types: what frees a slot, what a
//! panicking `Serialize` or `Deserialize` breaks (only its own call), reused request ids, calls
//! without a deadline, what a client says before it closes, and what it shows of a server's text.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{
    Client, ClientConfig, Code, DispatchError, Error, HandlerFuture, Responder, Server,
    ServerConfig, Service,
};
use serde::de::Error as _;
use serde::ser::{Error as _, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A value whose `Serialize` writes one field, then panics.
#[derive(Debug)]
pub struct Explosive;

impl Serialize for Explosive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&0xABCD_u64)?;
        panic!("explosive value went off while being encoded");
    }
}

impl<'de> Deserialize<'de> for Explosive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <(u64, u64)>::deserialize(deserializer).map(|_| Explosive)
    }
}

/// A value whose `Serialize` fails with an error.
#[derive(Debug)]
pub struct Refusing;

impl Serialize for Refusing {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("this value refuses to be encoded"))
    }
}

impl<'de> Deserialize<'de> for Refusing {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("never sent"))
    }
}

/// A number whose `Deserialize` panics on 13, which the peer chooses.
#[derive(Debug, Serialize)]
pub struct Picky(u64);

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        assert!(n != 13, "Picky refuses 13");
        Ok(Picky(n))
    }
}

/// Methods whose values misbehave, and ordinary ones.
#[rpc_core::service]
pub trait Fragile {
    /// Returns a value whose `Serialize` panics.
    async fn explode(&self) -> Explosive;
    /// Returns a value whose `Serialize` fails.
    async fn refuse(&self) -> Refusing;
    /// Takes a value whose `Serialize` panics (on the client).
    async fn take(&self, value: Explosive) -> u64;
    /// Takes a value whose `Deserialize` panics on 13 (on the server).
    async fn picky(&self, value: Picky) -> u64;
    /// Sums a large argument.
    async fn sum(&self, values: Vec<i64>) -> i64;
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Impl;

impl Fragile for Impl {
    async fn explode(&self) -> Explosive {
        Explosive
    }
    async fn refuse(&self) -> Refusing {
        Refusing
    }
    async fn take(&self, _: Explosive) -> u64 {
        1
    }
    async fn picky(&self, value: Picky) -> u64 {
        value.0
    }
    async fn sum(&self, values: Vec<i64>) -> i64 {
        values.iter().sum()
    }
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

async fn serve_fragile(config: ServerConfig) -> rpc_core::Endpoint {
    let server = Server::bind_with("tcp://127.0.0.1:0", config).await.unwrap();
    let endpoint = server.local_endpoint().clone();
    tokio::spawn(server.serve(FragileServer::new(Impl)));
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialize_that_panics_fails_only_its_own_call_on_either_side() {
    let endpoint = serve_fragile(ServerConfig::default()).await;
    let client = FragileClient::connect(&endpoint).await.unwrap();
    for _ in 0..3 {
        // The server's return value.
        let err = within(client.explode()).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::HandlerPanicked), "{err}");
        assert!(err.to_string().contains("explosive value went off"), "{err}");
        assert_eq!(within(client.add(2, 3)).await.unwrap(), 5);
        // The client's argument.
        let err = within(client.take(Explosive)).await.unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{err:?}");
        assert!(err.to_string().contains("explosive value went off"), "{err}");
        assert_eq!(within(client.add(2, 3)).await.unwrap(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_serialize_fails_is_reported_with_its_own_code() {
    let endpoint = serve_fragile(ServerConfig::default()).await;
    let client = FragileClient::connect(&endpoint).await.unwrap();
    let err = within(client.refuse()).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::EncodeFailed), "{err}");
    assert!(err.to_string().contains("refuses to be encoded"), "{err}");
    assert_eq!(within(client.add(1, 1)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deserialize_that_panics_on_peer_bytes_fails_that_call_while_others_go_on() {
    let endpoint = serve_fragile(ServerConfig::default()).await;
    let client = FragileClient::connect(&endpoint).await.unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..64_u64 {
        let client = client.clone();
        calls.spawn(async move { (n, client.picky(Picky(if n % 8 == 5 { 13 } else { n })).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (n, result) = done.unwrap();
        if n % 8 == 5 {
            let err = result.unwrap_err();
            assert_eq!(err.code(), Some(Code::BadRequest), "{err}");
            assert!(err.to_string().contains("panicked"), "{err}");
        } else {
            assert_eq!(result.unwrap(), n);
        }
    }
    assert_eq!(within(client.add(20, 22)).await.unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_large_arguments_are_accepted_under_the_defaults_and_a_raised_limit() {
    let endpoint = serve_fragile(ServerConfig::default()).await;
    let client = FragileClient::connect(&endpoint).await.unwrap();
    // 1,048,576 small numbers: a 1 MiB frame, 8 MiB in memory.
    let values = vec![1_i64; 1 << 20];
    assert_eq!(within(client.sum(values)).await.unwrap(), 1 << 20);

    let mut config = ServerConfig::default();
    config.max_frame = 16 << 20;
    let endpoint = serve_fragile(config).await;
    let mut client_config = ClientConfig::default();
    client_config.max_frame = 16 << 20;
    let raw = Client::connect_with(&endpoint, client_config).await.unwrap();
    let client = FragileClient::new(raw);
    // 3 M numbers of 3 bytes each: a 9 MiB frame, 24 MiB in memory.
    let values = vec![-1000_i64; 3 << 20];
    assert_eq!(within(client.sum(values)).await.unwrap(), -1000 * (3 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_large_for_a_deadline_means_no_deadline() {
    let endpoint = serve_fragile(ServerConfig::default()).await;
    let client = FragileClient::connect(&endpoint).await.unwrap();
    let unbounded = client.with_timeout(Duration::MAX);
    assert_eq!(within(unbounded.add(1, 2)).await.unwrap(), 3);
    let mut config = ClientConfig::default();
    config.call_timeout = Duration::MAX;
    let raw = Client::connect_with(&endpoint, config).await.unwrap();
    assert_eq!(within(FragileClient::new(raw).add(3, 4)).await.unwrap(), 7);
}

/// Method 1 runs `v` on a task: for `v == 1` it then blocks its thread for a while (work that
/// cannot be interrupted), otherwise it waits until dropped. It counts how many run at once.
struct Blocking {
    entered: mpsc::UnboundedSender<u64>,
    gone: mpsc::UnboundedSender<u64>,
    active: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct Active(Arc<AtomicUsize>, mpsc::UnboundedSender<u64>, u64);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        let _ = self.1.send(self.2);
    }
}

impl Service for Blocking {
    fn name(&self) -> &'static str {
        "Blocking"
    }

    fn method_name(&self, _: u32) -> Option<&'static str> {
        Some("work")
    }

    fn call(&self, _: u32, body: &[u8], reply: Responder) -> Result<HandlerFuture, DispatchError> {
        let (v,): (u64,) = rpc_core::decode_args(body)?;
        let (entered, gone) = (self.entered.clone(), self.gone.clone());
        let (active, most) = (self.active.clone(), self.most.clone());
        Ok(Box::pin(async move {
            tokio::task::yield_now().await;
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let _active = Active(active, gone, v);
            let _ = entered.send(v);
            if v == 1 {
                std::thread::sleep(Duration::from_millis(600));
            } else {
                std::future::pending::<()>().await;
            }
            reply.send(&v);
        }))
    }
}

/// A peer cancels calls whose handlers cannot stop at once (they block their thread) and
/// reuses their id each time: with a limit of two calls, a third does not start until one of
/// the first two has ended, and a Cancel of the reused id reaches the call that has it now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_request_id_escapes_neither_the_in_flight_limit_nor_cancel() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (gone_tx, mut gone) = mpsc::unbounded_channel();
    let most = Arc::new(AtomicUsize::new(0));
    let service = Blocking {
        entered: entered_tx,
        gone: gone_tx,
        active: Arc::new(AtomicUsize::new(0)),
        most: most.clone(),
    };
    let mut config = ServerConfig::default();
    config.max_in_flight = 2;
    let server = Server::bind_with("tcp://127.0.0.1:0", config).await.unwrap();
    let addr = tcp_addr(server.local_endpoint());
    tokio::spawn(server.serve(service));

    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(&HELLO_4MIB).await.unwrap();
    let _hello = expect_frame(&mut socket).await;
    let cancel = message(&Header::Cancel { id: 1 }, &[]);
    socket.write_all(&request(1, 1, &(1_u64,))).await.unwrap();
    assert_eq!(within(entered.recv()).await, Some(1));
    socket.write_all(&[cancel.clone(), request(1, 1, &(1_u64,))].concat()).await.unwrap();
    assert_eq!(within(entered.recv()).await, Some(1));
    // Two blocked handlers, both cancelled; a third call on the same id must wait for one.
    socket.write_all(&[cancel.clone(), request(1, 1, &(2_u64,))].concat()).await.unwrap();
    assert_eq!(within(entered.recv()).await, Some(2));
    assert_eq!(most.load(Ordering::SeqCst), 2, "more calls ran at once than max_in_flight = 2");
    // The Cancel for the reused id reaches the third call, although the first two, which had
    // the same id, ended after it started.
    tokio::time::sleep(Duration::from_millis(700)).await;
    socket.write_all(&cancel).await.unwrap();
    let mut ended = Vec::new();
    while ended.len() < 3 {
        ended.push(within(gone.recv()).await.unwrap());
    }
    ended.sort_unstable();
    assert_eq!(ended, [1, 1, 2]);
}

/// A peer pipelines requests for large answers, reads none, then resets: with room for one
/// connection, the next client gets in at once instead of being refused until shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_that_resets_frees_its_connection_slot_at_once() {
    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let mut socket = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    socket.write_all(&HELLO_4MIB).await.unwrap();
    let requests: Vec<u8> =
        (1..=64_u64).flat_map(|id| request(id, BIG, &(256_u32 << 10,))).collect();
    socket.write_all(&requests).await.unwrap();
    // Let the server fill the socket and its queue past the high-water mark; our receive
    // queue then holds unread data, so the close below is a reset.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Closing with unread data makes the kernel send a reset.
    drop(socket);
    let started = tokio::time::Instant::now();
    loop {
        let attempt = async {
            let client = Client::connect(&server.endpoint).await?;
            client.call::<_, i64>(ADD, &(1_i64, 2_i64)).await
        };
        match within(attempt).await {
            Ok(sum) => break assert_eq!(sum, 3),
            Err(e) if e.code() == Some(Code::Overloaded) => {
                assert!(started.elapsed() < Duration::from_secs(5), "still refused: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    server.stop().await.unwrap();
}

/// A fake server: accepts one client, swaps hellos, reads one request, then sends `answer`.
/// Returns its address and what the client sent after its request.
async fn fake_server(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let _hello = expect_frame(&mut socket).await;
        socket.write_all(&HELLO_4MIB).await.unwrap();
        let _request = expect_frame(&mut socket).await;
        socket.write_all(&answer).await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
        rest
    });
    (format!("tcp://{addr}"), task)
}

#[tokio::test]
async fn the_client_sends_close_9_before_closing_on_an_oversized_frame() {
    // A declared length one over the client's 4 MiB limit.
    let (endpoint, server) = fake_server(((4 << 20) + 1_u32).to_be_bytes().to_vec()).await;
    let client = Client::connect(&endpoint).await.unwrap();
    let err = within(client.call::<_, i64>(ADD, &(1_i64, 2_i64))).await.unwrap_err();
    assert!(matches!(err, Error::FrameTooLarge { size: 4_194_305, limit: 4_194_304 }), "{err:?}");
    let rest = within(server).await.unwrap();
    assert!(rest.len() > 4, "no Close from the client: {rest:02x?}");
    let (code, message) = decode_close(&rest[4..]);
    assert_eq!(code, 9);
    assert!(message.contains("4194305"), "{message}");
}

#[tokio::test]
async fn a_servers_long_message_with_control_characters_is_cut_and_escaped() {
    let text = format!("\u{1b}[2J\u{1b}]0;owned\u{7}{}", "x\r\n".repeat(300_000));
    let failure = message(&Header::Failure { id: 1, code: 5, message: &text }, &[]);
    let (endpoint, _server) = fake_server(failure).await;
    let client = Client::connect(&endpoint).await.unwrap();
    let err = within(client.call::<_, i64>(ADD, &(1_i64, 2_i64))).await.unwrap_err();
    let Error::Remote { message, .. } = &err else { panic!("{err:?}") };
    assert!(message.len() <= 512, "{} bytes kept", message.len());
    let shown = err.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
}

/// Method 1 of this service has a name whose lookup panics, which takes down the task serving
/// that connection.
struct BadName;

impl Service for BadName {
    fn name(&self) -> &'static str {
        "BadName"
    }

    fn method_name(&self, method: u32) -> Option<&'static str> {
        assert!(method != 1, "no name for method 1");
        Some("fine")
    }

    fn call(&self, _: u32, body: &[u8], reply: Responder) -> Result<HandlerFuture, DispatchError> {
        let (v,): (u64,) = rpc_core::decode_args(body)?;
        Ok(Box::pin(async move { reply.send(&v) }))
    }
}

#[test]
fn a_connection_task_that_panics_is_logged_and_the_server_goes_on() {
    let log = log_of(tracing::Level::INFO, || async {
        let server = Server::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.local_endpoint().clone();
        tokio::spawn(server.serve(BadName));
        let doomed = Client::connect(&endpoint).await.unwrap();
        let err = within(doomed.call::<_, u64>(1, &(1_u64,))).await.unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed | Error::Io(_)), "{err:?}");
        let fine = Client::connect(&endpoint).await.unwrap();
        assert_eq!(within(fine.call::<_, u64>(2, &(7_u64,))).await.unwrap(), 7);
    });
    let line = log.lines().find(|l| l.contains("connection task panicked")).expect(&log);
    assert!(line.contains("ERROR") && line.contains("no name for method 1"), "{line}");
    std::io::stderr().write_all(log.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_clients_debug_output_is_short_and_shows_no_buffers() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let _: i64 = client.call(ADD, &(1_i64, 2_i64)).await.unwrap();
    let shown = format!("{client:?}");
    assert!(shown.len() < 120, "{shown}");
    assert!(shown.contains(&server.endpoint.to_string()), "{shown}");
    assert!(!shown.contains("buf"), "{shown}");
    server.stop().await.unwrap();
}
