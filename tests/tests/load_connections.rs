//! Load: many connections with many calls each, every response matched to its request; and
//! many idle connections held with bounded memory.
//!
//! Scaled down by default so `cargo test --workspace` stays quick (100 connections × 100
//! calls, 1,000 idle connections). The full scale (1,000 × 1,000, and 10,000 idle):
//!
//! ```sh
//! RPC_LOAD_SCALE=full cargo test -p rpc-tests --test load_connections -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rpc_core::{Client, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The scale of a run: connections, calls on each, and idle connections.
struct Scale {
    connections: u64,
    calls: u64,
    idle: usize,
    /// Hang guard for a whole test at this scale.
    limit: Duration,
}

fn scale() -> Scale {
    match std::env::var("RPC_LOAD_SCALE").as_deref() {
        Ok("full") => Scale {
            connections: 1_000,
            calls: 1_000,
            idle: 10_000,
            limit: Duration::from_secs(600),
        },
        _ => Scale { connections: 100, calls: 100, idle: 1_000, limit: Duration::from_secs(60) },
    }
}

/// Both ends of every connection live in this process (or the child): make room for them.
fn raise_open_file_limit() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    println!("open file limit: {limit}");
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Calls in flight at once on each connection.
const WINDOW: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_reaches_its_own_caller_across_many_connections() {
    let Scale { connections, calls, limit, .. } = scale();
    raise_open_file_limit();
    let server = start("tcp://127.0.0.1:0").await;
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..connections {
        let endpoint = server.endpoint.clone();
        clients.spawn(async move {
            let client = Client::connect(&endpoint).await.unwrap();
            let mut windows = JoinSet::new();
            for w in 0..WINDOW {
                let client = client.clone();
                windows.spawn(async move {
                    let mut answered = 0;
                    for i in (w..calls).step_by(WINDOW as usize) {
                        // Unique per call: a response crossed to another caller shows.
                        let asked = format!("{c}/{i}");
                        let echoed: String = client.call(ECHO, &(&asked,)).await.unwrap();
                        assert_eq!(echoed, asked);
                        answered += 1;
                    }
                    answered
                });
            }
            let mut answered = 0;
            while let Some(n) = windows.join_next().await {
                answered += n.unwrap();
            }
            answered
        });
    }
    let total = tokio::time::timeout(limit, async {
        let mut total = 0_u64;
        while let Some(n) = clients.join_next().await {
            total += n.unwrap();
        }
        total
    })
    .await
    .expect("hang guard");
    let elapsed = started.elapsed();
    assert_eq!(total, connections * calls, "every call answered exactly once");
    println!(
        "{connections} connections x {calls} calls: {total} calls in {elapsed:.2?} ({:.0} calls/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    server.stop().await.unwrap();
}

/// Tells the child how many idle connections to open, and where.
const CHILD_ENDPOINT: &str = "RPC_LOAD_CHILD_ENDPOINT";
const CHILD_COUNT: &str = "RPC_LOAD_CHILD_COUNT";
const HELD: &str = "rpc-child held ";

/// Opens the number of connections in the environment to the endpoint there, makes one call
/// on each, prints how many it holds, and holds them, idle, until killed. Does nothing
/// outside the idle-connection test's child.
#[test]
#[ignore = "the peer process of the idle-connection test, started by it"]
fn child_idle_peers() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else { return };
    let count: usize = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let endpoint: rpc_core::Endpoint = endpoint.parse().unwrap();
        let addr = tcp_addr(&endpoint);
        let mut held = Vec::with_capacity(count);
        // In batches, to stay within the listen backlog.
        for batch in 0..count.div_ceil(100) {
            let mut opening = JoinSet::new();
            for i in batch * 100..count.min((batch + 1) * 100) {
                let addr = addr.clone();
                opening.spawn(async move {
                    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let mut hello = [0; HELLO_4MIB.len()];
                    socket.read_exact(&mut hello).await.unwrap();
                    socket.write_all(&HELLO_4MIB).await.unwrap();
                    socket.write_all(&request(1, ADD, &(i as i64, 1_i64))).await.unwrap();
                    let (header, _) = decode(&expect_frame(&mut socket).await);
                    assert_eq!(header, rpc_core::wire::Header::Response { id: 1 });
                    socket
                });
            }
            while let Some(socket) = opening.join_next().await {
                held.push(socket.unwrap());
            }
        }
        println!("{HELD}{}", held.len());
        std::future::pending::<()>().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_are_held_with_bounded_memory_each() {
    let Scale { idle, limit, .. } = scale();
    raise_open_file_limit();
    let mut config = ServerConfig::default();
    config.max_connections = idle + 10;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let good = Client::connect(&server.endpoint).await.unwrap();
    let before = rss_kib();
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_idle_peers", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENDPOINT, server.endpoint.to_string())
        .env(CHILD_COUNT, idle.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held: usize = tokio::time::timeout(limit, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the child is alive");
            if let Some(at) = line.find(HELD) {
                break line[at + HELD.len()..].parse().unwrap();
            }
        }
    })
    .await
    .expect("hang guard");
    assert_eq!(held, idle);
    let opened = started.elapsed();
    let grown = rss_kib().saturating_sub(before);
    let per_connection = grown * 1024 / idle as u64;
    println!(
        "{idle} idle connections opened in {opened:.2?}; the server grew by {} MiB, \
         {per_connection} bytes per connection",
        grown / 1024
    );
    assert!(per_connection < 64 * 1024, "{per_connection} bytes per idle connection");
    let sum: i64 = within(good.call(ADD, &(1_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 3);
    child.kill().await.unwrap();
    let sum: i64 = within(good.call(ADD, &(2_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 4);
    server.stop().await.unwrap();
}
