//! A client outlives its connections: reconnect after a restart, GoAway handoff, calls sent
//! again only when safe, deadlines kept while reconnecting, and the backoff between attempts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rpc_core::wire::Header;
use rpc_core::{Client, ClientConfig, ConnectionState, Error, Reconnect};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Accepts one connection on a hand-driven server and exchanges hellos.
async fn accept_hello(listener: &TcpListener) -> TcpStream {
    let (mut socket, _) = within(listener.accept()).await.unwrap();
    socket.write_all(&HELLO_4MIB).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
    socket
}

/// Reads the next request: its id and encoded arguments.
async fn read_request(socket: &mut TcpStream) -> (u64, Vec<u8>) {
    match decode(&expect_frame(socket).await) {
        (Header::Request { id, .. }, body) => (id, body),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn response<T: Serialize>(id: u64, value: &T) -> Vec<u8> {
    message(&Header::Response { id }, &bincode(value))
}

async fn hand_driven() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

/// Waits (polling, bounded by the hang guard) until `client`'s state satisfies `want`.
async fn until_state(client: &Client, want: impl Fn(&ConnectionState) -> bool) {
    within(async {
        while !want(&client.state()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn add(client: &Client, a: i64, b: i64) -> tokio::task::JoinHandle<Result<i64, Error>> {
    let client = client.clone();
    tokio::spawn(async move { client.call::<_, i64>(ADD, &(a, b)).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_after_its_server_restarts_on_the_same_address() {
    let server = start("tcp://127.0.0.1:0").await;
    let endpoint = server.endpoint.to_string();
    let client = Client::connect(&endpoint).await.unwrap();
    assert_eq!(client.call::<_, i64>(ADD, &(1_i64, 2_i64)).await.unwrap(), 3);
    server.stop().await.unwrap();
    // Made while the server is down: it waits for the new connection.
    let waiting = add(&client, 2, 3);
    until_state(&client, |s| matches!(s, ConnectionState::Connecting { failures: 1.., .. })).await;
    let ConnectionState::Connecting { last_error: Some(error), .. } = client.state() else {
        panic!("connecting, with the last error");
    };
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let _server = start(&endpoint).await;
    assert_eq!(within(waiting).await.unwrap().unwrap(), 5);
    assert!(matches!(client.state(), ConnectionState::Connected));
    assert_eq!(client.call::<_, i64>(ADD, &(3_i64, 4_i64)).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_goaway_new_calls_use_a_new_connection_while_accepted_ones_finish_on_the_old() {
    let (listener, endpoint) = hand_driven().await;
    let (client, mut old) = tokio::join!(Client::connect(&endpoint), accept_hello(&listener));
    let client = client.unwrap();
    let accepted = add(&client, 1, 1);
    let (accepted_id, _) = read_request(&mut old).await;
    let refused = add(&client, 2, 2);
    let (refused_id, _) = read_request(&mut old).await;
    // The server takes the first call only, and refuses the second as rpc-core's server does.
    old.write_all(&message(&Header::GoAway { last_id: accepted_id }, &[])).await.unwrap();
    let failure = Header::Failure { id: refused_id, code: 8, message: "shutting down" };
    old.write_all(&message(&failure, &[])).await.unwrap();
    let mut new = accept_hello(&listener).await;
    // The call that never started is sent again on the new connection.
    let (id, body) = read_request(&mut new).await;
    assert_eq!(body, bincode(&(2_i64, 2_i64)));
    new.write_all(&response(id, &40_i64)).await.unwrap();
    assert_eq!(within(refused).await.unwrap().unwrap(), 40);
    // A new call goes to the new connection while the accepted one is still in flight.
    let fresh = add(&client, 3, 3);
    let (id, body) = read_request(&mut new).await;
    assert_eq!(body, bincode(&(3_i64, 3_i64)));
    new.write_all(&response(id, &60_i64)).await.unwrap();
    assert_eq!(within(fresh).await.unwrap().unwrap(), 60);
    // The accepted call finishes on the old connection, which nothing else was sent on.
    old.write_all(&response(accepted_id, &2_i64)).await.unwrap();
    assert_eq!(within(accepted).await.unwrap().unwrap(), 2);
    old.shutdown().await.unwrap();
    expect_closed(&mut old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_with_its_connection_is_sent_again_only_if_idempotent() {
    let (listener, endpoint) = hand_driven().await;
    let (client, mut first) = tokio::join!(Client::connect(&endpoint), accept_hello(&listener));
    let client = client.unwrap();
    let plain = add(&client, 1, 2);
    read_request(&mut first).await;
    let idempotent = tokio::spawn({
        let client = client.clone();
        async move { client.call_idempotent::<_, i64>(ADD, &(3_i64, 4_i64)).await }
    });
    read_request(&mut first).await;
    // Both calls reached the server, which vanishes without answering.
    drop(first);
    let lost = within(plain).await.unwrap().unwrap_err();
    assert!(matches!(lost, Error::ConnectionClosed | Error::Io(_)), "{lost:?}");
    let mut second = accept_hello(&listener).await;
    let (id, body) = read_request(&mut second).await;
    assert_eq!(body, bincode(&(3_i64, 4_i64)), "only the idempotent call is sent again");
    second.write_all(&response(id, &7_i64)).await.unwrap();
    assert_eq!(within(idempotent).await.unwrap().unwrap(), 7);
    // The next request on the new connection is a new call, not the plain one again.
    let probe = add(&client, 5, 5);
    let (id, body) = read_request(&mut second).await;
    assert_eq!(body, bincode(&(5_i64, 5_i64)));
    second.write_all(&response(id, &10_i64)).await.unwrap();
    assert_eq!(within(probe).await.unwrap().unwrap(), 10);
}

/// Methods the generated client sends again, or not.
#[rpc_core::service]
pub trait Store {
    /// Reads: harmless to repeat.
    #[rpc(idempotent)]
    async fn get(&self, key: u32) -> u32;
    /// Increments: not to be repeated.
    async fn bump(&self, key: u32) -> u32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_methods_marked_idempotent_are_sent_again_and_others_are_not() {
    let (listener, endpoint) = hand_driven().await;
    let (client, mut first) =
        tokio::join!(StoreClient::connect(&endpoint), accept_hello(&listener));
    let store = client.unwrap();
    let bump = tokio::spawn({
        let store = store.clone();
        async move { store.bump(1).await }
    });
    read_request(&mut first).await;
    let get = tokio::spawn({
        let store = store.clone();
        async move { store.get(2).await }
    });
    read_request(&mut first).await;
    drop(first);
    assert!(within(bump).await.unwrap().is_err(), "bump may have run: not sent again");
    let mut second = accept_hello(&listener).await;
    let (id, body) = read_request(&mut second).await;
    assert_eq!(body, bincode(&(2_u32,)));
    second.write_all(&response(id, &20_u32)).await.unwrap();
    assert_eq!(within(get).await.unwrap().unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_a_connection_ends_at_its_deadline() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    server.stop().await.unwrap();
    let started = Instant::now();
    let timeout = Duration::from_millis(300);
    let result = within(client.with_timeout(timeout).call::<_, i64>(ADD, &(1_i64, 1_i64))).await;
    assert!(matches!(result, Err(Error::DeadlineExceeded(t)) if t == timeout), "{result:?}");
    let waited = started.elapsed();
    assert!(waited >= timeout && waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_never_waits_past_its_deadline_for_a_connection_attempt_that_hangs() {
    // Accepts, and never says hello: a connection attempt that lasts its whole timeout.
    let (listener, endpoint) = hand_driven().await;
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = Client::connect_lazy(&endpoint, ClientConfig::default()).unwrap();
    let started = Instant::now();
    let result = within(
        client.with_timeout(Duration::from_millis(200)).call::<_, i64>(ADD, &(1_i64, 1_i64)),
    )
    .await;
    assert!(matches!(result, Err(Error::DeadlineExceeded(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(client.state(), ConnectionState::Connecting { failures: 0, .. }));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_calls_fail_at_once_with_the_last_connect_error_while_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix:{}", dir.path().join("nobody.sock").display());
    let mut config = ClientConfig::default();
    config.reconnect.fail_fast = true;
    let client = Client::connect_lazy(&endpoint, config).unwrap();
    until_state(&client, |s| matches!(s, ConnectionState::Connecting { failures: 1.., .. })).await;
    let started = Instant::now();
    let result = client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await;
    assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reconnect_off_a_lost_connection_stays_lost() {
    let server = start("tcp://127.0.0.1:0").await;
    let endpoint = server.endpoint.to_string();
    let mut config = ClientConfig::default();
    config.reconnect = Reconnect::disabled();
    let client = Client::connect_with(&endpoint, config).await.unwrap();
    server.stop().await.unwrap();
    until_state(&client, |s| matches!(s, ConnectionState::Failed { .. })).await;
    let _server = start(&endpoint).await;
    let result = within(client.call::<_, i64>(ADD, &(1_i64, 1_i64))).await;
    assert!(result.is_err(), "{result:?}");
    assert!(matches!(client.state(), ConnectionState::Failed { .. }));
}

#[tokio::test(start_paused = true)]
async fn attempts_back_off_exponentially_with_bounded_jitter() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: each attempt fails at once, so only the backoff spaces them.
    let endpoint = format!("unix:{}", dir.path().join("nobody.sock").display());
    let mut config = ClientConfig::default();
    config.reconnect.backoff.max = Duration::from_millis(1000);
    let client = Client::connect_lazy(&endpoint, config).unwrap();
    let mut seen = 0;
    let mut attempts = Vec::new();
    while attempts.len() < 8 {
        if let ConnectionState::Connecting { failures, .. } = client.state()
            && failures > seen
        {
            seen = failures;
            attempts.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let gaps: Vec<u64> = attempts.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect();
    // 100 ms doubling to the 1 s maximum, each within 20% either way (and never past 1 s);
    // a gap is measured in 1 ms steps, so it may read 1 ms long.
    let bounds =
        [(80, 121), (160, 241), (320, 481), (640, 961), (800, 1001), (800, 1001), (800, 1001)];
    for (gap, (low, high)) in gaps.iter().zip(bounds) {
        assert!((low..=high).contains(gap), "gaps {gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_closed_while_idle_is_replaced_only_when_a_call_needs_one() {
    let mut config = rpc_core::ServerConfig::default();
    config.idle_timeout = Duration::from_secs(5);
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(client.call::<_, i64>(ADD, &(1_i64, 1_i64)).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(6)).await;
    until_state(&client, |s| matches!(s, ConnectionState::Idle)).await;
    // Many idle timeouts later, still no new connection: nothing asked for one.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(matches!(client.state(), ConnectionState::Idle), "{:?}", client.state());
    assert_eq!(client.call::<_, i64>(ADD, &(2_i64, 2_i64)).await.unwrap(), 4);
    assert!(matches!(client.state(), ConnectionState::Connected));
    server.stop().await.unwrap();
}
