//! Descriptors: a server whose process has few of them refuses the peers it cannot serve at
//! once, with an `Overloaded` Close frame, rather than leaving them waiting in the backlog;
//! also when something else has used every descriptor up.
//!
//! The server runs in a child process, this test binary run again with its `#[ignore]`d
//! `child_serves_with_a_low_open_file_limit`, so its limit can be lowered (soft and hard:
//! the server raises the soft limit to the hard one) without touching other tests. The peers
//! live here, with this process's limit raised.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rpc_core::{Client, Code, Endpoint, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The child's open-file limit, soft and hard.
const CHILD_LIMIT: &str = "GOVERNANCE_CHILD_NOFILE";
/// Set to make the child use up every descriptor left once it serves.
const CHILD_HOG: &str = "GOVERNANCE_CHILD_HOG";
/// Prefixes the child's line naming its endpoint.
const ENDPOINT: &str = "SERVING ";
/// How fast a refusal must come. Generous for a shared machine: a refusal takes
/// milliseconds; a peer left in the backlog waits forever.
const FAST: Duration = Duration::from_secs(2);

/// Serves on TCP with the open-file limit in the environment, prints the endpoint and serves
/// until killed. With [`CHILD_HOG`], first opens files until none is left. Does nothing
/// outside the other tests' children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server process of the other tests, started by them"]
async fn child_serves_with_a_low_open_file_limit() {
    let Ok(limit) = std::env::var(CHILD_LIMIT) else { return };
    let limit: u64 = limit.parse().unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit).unwrap();
    let mut config = ServerConfig::default();
    // Silent peers stay for the whole test, holding their connections.
    config.handshake_timeout = Duration::from_secs(120);
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let mut hogs = Vec::new();
    let mut client = None;
    if std::env::var_os(CHILD_HOG).is_some() {
        // A served call shows the accept loop is running, with its spare descriptor open.
        let ready = Client::connect(&server.endpoint).await.unwrap();
        let echoed: String = ready.call(ECHO, &("ready".to_owned(),)).await.unwrap();
        assert_eq!(echoed, "ready");
        client = Some(ready); // held, so its descriptors stay taken
        while let Ok(file) = std::fs::File::open("/dev/null") {
            hogs.push(file);
        }
    }
    println!(
        "{ENDPOINT}{} (with {} files opened to use descriptors up)",
        server.endpoint,
        hogs.len()
    );
    std::future::pending::<()>().await;
    drop((server, client, hogs));
}

/// Starts the child server with `limit` descriptors; returns it and its endpoint.
async fn child_server(limit: u64, hog: bool) -> (Child, Endpoint) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_serves_with_a_low_open_file_limit", "--ignored", "--nocapture"])
        .env(CHILD_LIMIT, limit.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if hog {
        command.env(CHILD_HOG, "1");
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = within(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the child is alive");
            if let Some(rest) = line.strip_prefix(ENDPOINT) {
                println!("child: {line}");
                break rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
    })
    .await;
    (child, endpoint)
}

/// Connects and waits for the first frame, which must be an `Overloaded` Close; returns its
/// message and how long it took from the connect.
async fn refused(addr: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let frame = read_frame(&mut peer).await.expect("a Close frame, not a bare close");
    let elapsed = started.elapsed();
    let (code, message) = decode_close(&frame);
    assert_eq!(Code::from_u32(code), Code::Overloaded, "{message}");
    (message, elapsed)
}

/// A good client: connecting fails fast with `Overloaded`, not with a timeout.
async fn client_refused(endpoint: &Endpoint) -> Duration {
    let started = Instant::now();
    let error = within(Client::connect(endpoint)).await.expect_err("refused");
    let elapsed = started.elapsed();
    assert_eq!(error.code(), Some(Code::Overloaded), "{error}");
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_1024_descriptors_the_1100th_silent_peer_is_refused_at_once() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    if limit < 1_500 {
        println!("skipped: this process may open only {limit} files, 1,500 are needed");
        return;
    }
    let (_child, endpoint) = child_server(1_024, false).await;
    let addr = tcp_addr(&endpoint);
    let mut silent = Vec::new();
    for _ in 1..1_100 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let (message, elapsed) = refused(&addr).await;
    println!("the 1,100th peer was refused in {elapsed:.2?}: {message}");
    assert!(elapsed < FAST, "the 1,100th peer waited {elapsed:.2?} for its refusal");
    // Not the descriptors' own limit, which accept would have hit, but the budget below it.
    assert!(message.contains("limit of 960 connections"), "{message}");

    let elapsed = client_refused(&endpoint).await;
    println!("a good client was refused in {elapsed:.2?}");
    assert!(elapsed < FAST, "the good client waited {elapsed:.2?} for its refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_descriptor_used_up_a_waiting_peer_is_still_refused_at_once() {
    let (_child, endpoint) = child_server(256, true).await;
    let addr = tcp_addr(&endpoint);
    // Each refusal frees the spare descriptor and takes it back: again and again.
    let mut slowest = (Duration::ZERO, Duration::ZERO);
    for _ in 0..20 {
        let (message, elapsed) = refused(&addr).await;
        assert!(elapsed < FAST, "a peer waited {elapsed:.2?} for its refusal");
        assert!(message.contains("out of file descriptors"), "{message}");
        slowest.0 = slowest.0.max(elapsed);
        let elapsed = client_refused(&endpoint).await;
        assert!(elapsed < FAST, "a good client waited {elapsed:.2?} for its refusal");
        slowest.1 = slowest.1.max(elapsed);
    }
    let (peer, client) = slowest;
    println!(
        "out of descriptors, the slowest of 20 refusals: {peer:.2?} (silent peer), {client:.2?} (client)"
    );
}
