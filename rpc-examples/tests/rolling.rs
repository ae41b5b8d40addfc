//! Three `calculator-server` processes behind one balanced client under load: a rolling
//! restart fails no call, and a killed server fails only the calls it had in flight.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::{Client, ClientConfig};
use rpc_examples::CalculatorClient;

/// Generous: the machine is shared and slow.
const PATIENCE: Duration = Duration::from_secs(60);

/// Tasks calling at once, as in the README's measurement.
const TASKS: usize = 16;

/// A `calculator-server` process, killed if the test ends first.
struct ServerProcess {
    child: Child,
    endpoint: String,
    /// Kept open: a server whose stdout is closed would fail to print.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts a server on `listen` and waits for its `listening on` line.
    fn start(listen: &str) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calculator-server"))
            .arg("--listen")
            .arg(listen)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn calculator-server");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let endpoint = line.trim().strip_prefix("listening on ").expect("a `listening on` line");
        ServerProcess { endpoint: endpoint.to_owned(), child, _stdout: stdout }
    }

    /// SIGTERM, and waits for the graceful exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").arg("-TERM").arg(&pid).status().unwrap().success());
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the calling tasks saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// When each failure happened, and what it was.
    failures: Mutex<Vec<(Instant, String)>>,
    /// The slowest call, in microseconds.
    slowest_us: AtomicU64,
}

/// `TASKS` tasks calling `add(2, 3)` through `calc` until `stop` is set.
fn load(
    calc: &CalculatorClient,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..TASKS)
        .map(|_| {
            let (calc, tally, stop) = (calc.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = calc.add(2, 3).await;
                    let us = started.elapsed().as_micros() as u64;
                    tally.slowest_us.fetch_max(us, Ordering::Relaxed);
                    match result {
                        Ok(Ok(5)) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            tally
                                .failures
                                .lock()
                                .unwrap()
                                .push((Instant::now(), format!("{other:?}")));
                            tally.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect()
}

/// Waits until `n` more calls than now have succeeded.
async fn more_calls(tally: &Tally, n: u64) {
    let target = tally.ok.load(Ordering::SeqCst) + n;
    let deadline = Instant::now() + PATIENCE;
    while tally.ok.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < deadline, "calls stopped succeeding");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn three_servers() -> (Vec<ServerProcess>, CalculatorClient) {
    let servers: Vec<ServerProcess> =
        (0..3).map(|_| ServerProcess::start("tcp://127.0.0.1:0")).collect();
    let endpoints: Vec<String> = servers.iter().map(|s| s.endpoint.clone()).collect();
    let client = Client::balanced(endpoints, ClientConfig::default()).unwrap();
    (servers, CalculatorClient::new(client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_servers_under_load_fails_no_call() {
    let (mut servers, calc) = three_servers().await;
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let tasks = load(&calc, &tally, &stop);
    more_calls(&tally, 500).await;
    for k in 0..servers.len() {
        let address = servers[k].endpoint.clone();
        let old = servers.remove(k);
        tokio::task::spawn_blocking(move || old.terminate()).await.unwrap();
        let new =
            tokio::task::spawn_blocking(move || ServerProcess::start(&address)).await.unwrap();
        servers.insert(k, new);
        more_calls(&tally, 500).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, failed) = (tally.ok.load(Ordering::SeqCst), tally.failed.load(Ordering::SeqCst));
    let slowest = Duration::from_micros(tally.slowest_us.load(Ordering::SeqCst));
    println!("rolling restart: {ok} calls ok, {failed} failed, slowest {slowest:?}");
    assert_eq!(failed, 0, "{:?}", tally.failures.lock().unwrap().first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_only_its_calls_in_flight_and_is_left_out_within_a_second() {
    let (mut servers, calc) = three_servers().await;
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let tasks = load(&calc, &tally, &stop);
    more_calls(&tally, 500).await;
    let killed_at = Instant::now();
    drop(servers.pop());
    more_calls(&tally, 2000).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap();
    println!("kill: {} calls ok, {} failed", tally.ok.load(Ordering::SeqCst), failures.len());
    // Each task has one call in flight at a time: at most that many were on the dead server.
    assert!(failures.len() <= TASKS, "{} failures: {:?}", failures.len(), failures.first());
    for (at, failure) in failures.iter() {
        let after = at.saturating_duration_since(killed_at);
        assert!(
            after < Duration::from_secs(1),
            "a call failed {after:?} after the kill: {failure}"
        );
    }
}

/// Runs `calculator-client` with `args` to completion: its status and stdout.
fn client(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_calculator-client"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run calculator-client");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn the_client_repeats_a_call_over_several_servers_and_prints_one_summary_line() {
    let (a, b) =
        (ServerProcess::start("tcp://127.0.0.1:0"), ServerProcess::start("tcp://127.0.0.1:0"));
    let connect = ["--connect", &a.endpoint, "--connect", &b.endpoint];
    let (status, out) = client(
        &[&connect[..], &["--repeat", "300", "--concurrency", "4", "add", "2", "3"]].concat(),
    );
    assert_eq!(status, Some(0), "{out}");
    let line = out.trim();
    assert!(line.starts_with("300 calls: 300 ok, 0 failed, p50 "), "{line}");
    assert!(line.ends_with(" ms") && line.contains(" ms, p99 ") && !line.contains('\n'), "{line}");
    // A call the calculator refuses counts as failed, and the exit status says so.
    let (status, out) = client(
        &[&connect[..], &["--repeat", "20", "--concurrency", "2", "div", "1", "0"]].concat(),
    );
    assert_eq!(status, Some(1), "{out}");
    assert!(out.starts_with("20 calls: 0 ok, 20 failed, p50 "), "{out}");
}
