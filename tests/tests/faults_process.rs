//! Processes that die: a server killed with calls in flight, a client killed mid-call, a
//! server restarted on the same address. The other process is this test binary run again,
//! with an environment variable that makes one of the ignored tests below act as a server or
//! a client; it is killed with SIGKILL, so it closes nothing itself: the kernel does.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rpc_core::{Client, Code, Error, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// Tells a child which endpoint to serve or call.
const CHILD_ENDPOINT: &str = "RPC_FAULTS_CHILD_ENDPOINT";

/// Lines a child prints on stdout: where it serves, and each event.
const READY: &str = "rpc-child ready ";
const ENTERED: &str = "rpc-child entered ";
const CALLING: &str = "rpc-child calling";

/// A child process running one of the ignored tests below, killed when dropped.
struct ChildProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ChildProcess {
    /// Runs the ignored test `name` of this binary with `endpoint` in its environment.
    fn spawn(name: &str, endpoint: &str) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENDPOINT, endpoint)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ChildProcess { child, lines }
    }

    /// The rest of the next line of the child's output that starts with `prefix`.
    async fn line(&mut self, prefix: &str) -> String {
        loop {
            let line = within(self.lines.next_line()).await.unwrap().expect("the child is alive");
            // The test harness may have printed the test's name on the same line first.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].to_owned();
            }
        }
    }

    /// Sends SIGKILL and reaps the process.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Serves a `TestService` on the endpoint in the environment, reporting each `block` call
/// that starts; those calls never finish. Does nothing outside a faults test's child.
#[test]
#[ignore = "the server process of the faults tests, started by them"]
fn child_server() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = rpc_core::Server::bind(&endpoint).await.unwrap();
        println!("{READY}{}", server.local_endpoint());
        let (service, mut gate) = TestService::new();
        tokio::spawn(async move {
            loop {
                println!("{ENTERED}{}", gate.entered().await);
            }
        });
        server.serve(service).await.unwrap();
    });
}

/// Connects to the endpoint in the environment and starts three `block` calls that never
/// finish. Does nothing outside a faults test's child.
#[test]
#[ignore = "the client process of the faults tests, started by them"]
fn child_client() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::connect(&endpoint).await.unwrap();
        let calls: Vec<_> = (1..=3_u64)
            .map(|v| {
                let client = client.clone();
                tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
            })
            .collect();
        println!("{CALLING}");
        for call in calls {
            let _ = call.await;
        }
    });
}

/// Starts a server process on `endpoint` and a client with 100 `block` calls running on it.
async fn server_with_100_calls(
    endpoint: &str,
) -> (ChildProcess, Client, Vec<tokio::task::JoinHandle<Result<u64, Error>>>) {
    let mut server = ChildProcess::spawn("child_server", endpoint);
    let endpoint = server.line(READY).await;
    let client = Client::connect(&endpoint).await.unwrap();
    let calls = (0..100_u64)
        .map(|v| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
        })
        .collect();
    for _ in 0..100 {
        server.line(ENTERED).await;
    }
    (server, client, calls)
}

/// Kills the server process under 100 running calls: each ends with an error within a
/// second; then a server started on the same address serves the same client again.
async fn kill_and_restart(endpoint: &str) {
    let (server, client, calls) = server_with_100_calls(endpoint).await;
    let served_on = client.endpoint().expect("made from an endpoint").to_string();
    let killed = Instant::now();
    server.kill().await;
    for call in calls {
        let err = within(call).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed | Error::Io(_)), "{err:?}");
    }
    let ended = killed.elapsed();
    println!("{served_on}: 100 calls ended {ended:?} after the kill");
    assert!(ended < Duration::from_secs(1), "the calls took {ended:?} to end");

    // The same address again: the TCP port, or the Unix socket file the dead server left;
    // the client connects to it on its own.
    let mut restarted = ChildProcess::spawn("child_server", &served_on);
    assert_eq!(restarted.line(READY).await, served_on);
    let sum: i64 = within(client.call(ADD, &(2_i64, 3_i64))).await.unwrap();
    assert_eq!(sum, 5);
    restarted.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_100_calls_ends_them_all_within_a_second_then_restarts_over_tcp() {
    kill_and_restart("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_100_calls_ends_them_all_within_a_second_then_restarts_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    kill_and_restart(&format!("unix:{}", dir.path().join("faults.sock").display())).await;
}

/// Kills a client process whose calls are running: the server drops their handlers (which
/// fires their cancellation) and frees the connection for another client.
async fn client_killed_mid_call(endpoint: &str) {
    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let mut server = start_with(endpoint, config).await;
    let mut client = ChildProcess::spawn("child_client", &server.endpoint.to_string());
    client.line(CALLING).await;
    let mut entered: Vec<u64> = Vec::new();
    for _ in 0..3 {
        entered.push(server.gate.entered().await);
    }
    client.kill().await;
    let mut gone: Vec<u64> = Vec::new();
    for _ in 0..3 {
        gone.push(server.gate.gone().await);
    }
    entered.sort_unstable();
    gone.sort_unstable();
    assert_eq!(gone, entered, "every handler of the dead client was dropped");
    // The one connection the server allows is free again. The server reaps a finished
    // connection a moment after its handlers go, so a connect can still find it held.
    let fresh = within(async {
        loop {
            match Client::connect(&server.endpoint).await {
                Ok(client) => break client,
                Err(e) if e.code() == Some(Code::Overloaded) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    let sum: i64 = within(fresh.call(ADD, &(1_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 3);
    drop(fresh);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_call_has_its_handlers_dropped_and_its_connection_freed_over_tcp() {
    client_killed_mid_call("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_call_has_its_handlers_dropped_and_its_connection_freed_over_unix() {
    client_killed_mid_call(&unique_abstract("faults")).await;
}
