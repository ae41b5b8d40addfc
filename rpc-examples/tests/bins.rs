//! The example binaries driven as processes: the demo, and the server with the client.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the machine is shared and slow, and nothing here should take more than a second.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `calculator-server`, killed if the test ends before it stops.
struct ServerProcess {
    child: Child,
    /// The lines of its stdout, read by a thread so a silent server cannot hang the test.
    stdout: mpsc::Receiver<String>,
    /// The endpoints from its `listening on` lines, in `--listen` order.
    endpoints: Vec<String>,
}

impl ServerProcess {
    /// Starts the server on `listen` and waits for its `listening on` line for each.
    fn start(listen: &[&str], rust_log: Option<&str>) -> ServerProcess {
        ServerProcess::spawn(listen, &[], rust_log)
    }

    /// Starts the server on `listen` with more flags, `args`; no logs.
    fn start_with(listen: &[&str], args: &[&str]) -> ServerProcess {
        ServerProcess::spawn(listen, args, None)
    }

    fn spawn(listen: &[&str], args: &[&str], rust_log: Option<&str>) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_calculator-server"));
        for endpoint in listen {
            command.arg("--listen").arg(endpoint);
        }
        command.args(args);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn server");
        let (tx, stdout) = mpsc::channel();
        let pipe = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess { child, stdout, endpoints: Vec::new() };
        for _ in listen {
            let line = server.next_line();
            let endpoint = line.strip_prefix("listening on ").unwrap_or_else(|| {
                panic!("expected a `listening on` line, got {line:?}");
            });
            server.endpoints.push(endpoint.to_owned());
        }
        server
    }

    fn next_line(&self) -> String {
        self.stdout.recv_timeout(PATIENCE).expect("a line from the server's stdout")
    }

    /// Sends `signal` (e.g. "-TERM") and waits for the server to exit.
    fn stop_with(mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").arg(signal).arg(&pid).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid} failed");
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {PATIENCE:?}");
            thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `calculator-client --connect ENDPOINT ARGS…` to completion.
fn client(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calculator-client"))
        .arg("--connect")
        .arg(endpoint)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run calculator-client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn socket_in(dir: &Path) -> String {
    format!("unix:{}", dir.join("calc.sock").display())
}

#[test]
fn demo_calls_every_method_over_both_transports_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_calculator"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run calculator");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "status {}; stderr: {}", out.status, text(&out.stderr));
    for transport in ["[tcp://127.0.0.1:", "[unix:/"] {
        for call in [
            "] add(2, 3) = 5",
            "] sub(2, 5) = -3",
            "] mul(6, 7) = 42",
            "] div(7, 2) = 3",
            "] sum([1, 2, 3, 4]) = 10",
            "] div(7, 0) = error: division by zero",
            "] mul(9223372036854775807, 2) = error: overflow",
            "] primes(30) = 2, 3, 5, 7, 11, 13, 17, 19, 23, 29",
            "] sum_stream(stream [1, 2, 3]) = 6",
            "] running_total(stream [1, 2, 3]) = 1, 3, 6",
            "] running_total(stream [9223372036854775807, 1, 2]) = 9223372036854775807, error: overflow",
        ] {
            let found = stdout.lines().any(|l| l.starts_with(transport) && l.contains(call));
            assert!(found, "no line {transport}…{call} in:\n{stdout}");
        }
    }
    assert!(stdout.contains("the socket file was removed"), "{stdout}");
}

#[test]
fn client_prints_the_result_alone_and_exits_0_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&["tcp://127.0.0.1:0", &socket_in(dir.path())], None);
    assert!(server.endpoints[0].starts_with("tcp://127.0.0.1:"), "{:?}", server.endpoints);
    assert!(!server.endpoints[0].ends_with(":0"), "the real port is reported");
    assert_eq!(server.endpoints[1], socket_in(dir.path()));
    for endpoint in &server.endpoints {
        for (args, expected) in [
            (&["add", "2", "3"][..], "5\n"),
            (&["sub", "-2", "3"], "-5\n"),
            (&["mul", "6", "-7"], "-42\n"),
            (&["div", "7", "2"], "3\n"),
            (&["sum", "1", "2", "3", "4"], "10\n"),
            (&["sum"], "0\n"),
            (
                &["primes", "100"],
                "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n31\n37\n41\n43\n47\n53\n59\n61\n67\n71\n73\n79\n83\n89\n97\n",
            ),
            (&["primes", "1"], ""),
            (&["sum-stream", "1", "2", "3"], "6\n"),
            (&["sum-stream"], "0\n"),
            (&["running-total", "1", "2", "3"], "1\n3\n6\n"),
        ] {
            let out = client(endpoint, args);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
            assert_eq!(text(&out.stdout), expected, "{endpoint} {args:?}");
        }
    }
}

#[test]
fn client_stats_counts_calls_per_method_on_every_listener_and_log_is_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&["tcp://127.0.0.1:0", &socket_in(dir.path())], None);
    for endpoint in &server.endpoints {
        assert_eq!(client(endpoint, &["add", "2", "3"]).status.code(), Some(0));
    }
    let out = client(&server.endpoints[0], &["log", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "a one-way call prints nothing");
    let out = client(&server.endpoints[1], &["stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // One server serves both listeners, so both adds count; the log line may still be on its
    // way on its own connection, so it is not counted on here.
    assert!(stdout.contains("Calculator.add: 2"), "{stdout}");
    assert!(stdout.starts_with("uptime: "), "{stdout}");
}

#[test]
fn client_exits_1_with_the_message_when_the_calculator_refuses() {
    let server = ServerProcess::start(&["tcp://127.0.0.1:0"], None);
    let endpoint = &server.endpoints[0];

    let out = client(endpoint, &["div", "1", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("division by zero"), "{}", text(&out.stderr));

    let out = client(endpoint, &["add", &i64::MAX.to_string(), "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("overflow"), "{}", text(&out.stderr));
}

#[test]
fn client_exits_2_when_it_cannot_connect() {
    let out = client("unix:/nonexistent/calc.sock", &["add", "2", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("could not connect to unix:/nonexistent/calc.sock"), "{stderr}");
}

#[test]
fn client_exits_2_on_bad_arguments() {
    for args in [
        &["add", "1"][..],
        &["add", "1", "2", "3"],
        &["add", "one", "2"],
        &["pow", "2", "3"],
        &["add", &format!("{}0", i64::MAX), "1"],
    ] {
        let out = client("tcp://127.0.0.1:1", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}: {}", text(&out.stderr));
    }
    let out = client("http://localhost", &["add", "1", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid endpoint"), "{}", text(&out.stderr));
}

#[test]
fn client_help_lists_the_methods() {
    let out = Command::new(env!("CARGO_BIN_EXE_calculator-client")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for method in ["add", "sub", "mul", "div", "sum", "--connect"] {
        assert!(help.contains(method), "{method} missing from:\n{help}");
    }
}

#[test]
fn server_stops_cleanly_on_sigterm_and_removes_its_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("calc.sock");
    let server = ServerProcess::start(&["tcp://127.0.0.1:0", &socket_in(dir.path())], None);
    assert!(socket.exists());
    let out = client(&server.endpoints[1], &["add", "2", "3"]);
    assert_eq!(text(&out.stdout), "5\n");

    let (status, stderr) = server.stop_with("-TERM");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(!socket.exists(), "the socket file is left behind");
}

#[test]
fn server_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("calc.sock");
    let server = ServerProcess::start(&[&socket_in(dir.path())], None);
    let (status, stderr) = server.stop_with("-INT");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(!socket.exists(), "the socket file is left behind");
}

#[test]
fn server_logs_framework_events_to_stderr_with_rust_log_debug() {
    let server = ServerProcess::start(&["tcp://127.0.0.1:0"], Some("debug"));
    let out = client(&server.endpoints[0], &["mul", "6", "7"]);
    assert_eq!(text(&out.stdout), "42\n");
    let (status, stderr) = server.stop_with("-TERM");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("DEBUG"), "no debug events in:\n{stderr}");
    assert!(stderr.contains("rpc_core"), "no framework events in:\n{stderr}");
}

#[test]
fn server_exits_nonzero_when_it_cannot_bind() {
    let out = Command::new(env!("CARGO_BIN_EXE_calculator-server"))
        .args(["--listen", "unix:/nonexistent/dir/calc.sock"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("could not bind"), "{}", text(&out.stderr));
}

#[test]
fn server_help_shows_the_limit_flags_with_their_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_calculator-server")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for (flag, default) in [
        ("--idle-timeout <DURATION>", "[default: 1m]"),
        ("--handshake-timeout <DURATION>", "[default: 10s]"),
        ("--shutdown-grace <DURATION>", "[default: 30s]"),
        ("--max-connections <N>", "[default: 10000]"),
        ("--max-frame <SIZE>", "[default: 4MiB]"),
        ("--frame-timeout <DURATION>", "[default: 30s]"),
        ("--buffer-budget <SIZE>", "[default: 256MiB]"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let entry = &help[at..];
        let next = entry[flag.len()..].find("\n      --").map_or(entry.len(), |n| n + flag.len());
        assert!(entry[..next].contains(default), "{flag} shows no {default} in:\n{help}");
    }
}

#[test]
fn server_refuses_a_bad_flag_value_with_a_clear_error() {
    for (flag, value, says) in [
        ("--max-frame", "4XB", "unknown unit \"XB\""),
        ("--max-frame", "100", "must be at least 1KiB"),
        ("--idle-timeout", "30", "no unit"),
        ("--handshake-timeout", "0s", "must be more than 0s"),
        ("--max-connections", "0", "must be at least 1"),
        ("--shutdown-grace", "soon", "does not start with a number"),
        ("--buffer-budget", "64KiB", "must be at least 1MiB"),
        ("--frame-timeout", "0s", "must be more than 0s"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_calculator-server"))
            .args(["--listen", "tcp://127.0.0.1:0", flag, value])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{flag} {value}: it must not start");
        let names = format!("error: invalid value '{value}' for '{flag} ");
        assert!(stderr.starts_with(&names), "{flag} {value}: {stderr}");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}

#[test]
fn server_serves_with_the_limits_its_flags_set() {
    let server = ServerProcess::start_with(
        &["tcp://127.0.0.1:0"],
        &["--max-connections", "1", "--max-frame", "64KiB", "--idle-timeout", "2s"],
    );
    let endpoint = &server.endpoints[0];
    // A request over 64 KiB: the client learns the limit from the server's hello.
    let numbers: Vec<String> = (0..20_000).map(|n| (1_000_000 + n).to_string()).collect();
    let mut args = vec!["sum"];
    args.extend(numbers.iter().map(String::as_str));
    let out = client(endpoint, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the limit of 65536 bytes"), "{}", text(&out.stderr));

    // One connection held: the next is refused. The first client's connection may still be
    // counted for a moment after it exits, and then ours is refused too: try again.
    let addr = endpoint.strip_prefix("tcp://").unwrap();
    let started = Instant::now();
    let _held = loop {
        let mut held = std::net::TcpStream::connect(addr).unwrap();
        held.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut first = [0; 8];
        std::io::Read::read_exact(&mut held, &mut first).expect("the server's first frame");
        if first[4..] == *b"RPC\0" {
            break held;
        }
        assert!(started.elapsed() < PATIENCE, "the server never served a second connection");
        thread::sleep(Duration::from_millis(20));
    };
    let out = client(endpoint, &["add", "2", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("overloaded") && stderr.contains("limit of 1 connections"), "{stderr}");
}

/// Escape codes would litter a log file or a pipe; they are for terminals only.
#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let server = ServerProcess::start(&["tcp://127.0.0.1:0"], Some("debug"));
    let out = client(&server.endpoints[0], &["add", "2", "3"]);
    assert_eq!(text(&out.stdout), "5\n");
    let (status, stderr) = server.stop_with("-TERM");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("DEBUG"), "no logs to check in:\n{stderr}");
    assert!(!stderr.contains('\x1b'), "escape codes in:\n{stderr:?}");

    let demo = Command::new(env!("CARGO_BIN_EXE_calculator"))
        .env("RUST_LOG", "debug")
        .output()
        .expect("run calculator");
    let stderr = text(&demo.stderr);
    assert!(demo.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("DEBUG"), "no logs to check in:\n{stderr}");
    assert!(!stderr.contains('\x1b'), "escape codes in:\n{stderr:?}");
}

/// SIGTERM while 8 clients pipeline calls: every call a client made ends with its answer or
/// with `ShuttingDown` (sent by the server, or known from GoAway's last id to have never
/// started); none is lost to a reset or a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_pipelined_load_answers_every_call_or_says_shutting_down() {
    use rpc_core::{Code, Error};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let server = ServerProcess::start(&["tcp://127.0.0.1:0"], None);
    let endpoint = server.endpoints[0].clone();
    let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        // One connection each, never replaced: the test counts what the server says to them.
        let mut config = rpc_core::ClientConfig::default();
        config.reconnect = rpc_core::Reconnect::disabled();
        let client = rpc_core::Client::connect_with(&endpoint, config).await.unwrap();
        let calc = rpc_examples::CalculatorClient::new(client);
        // 16 calls in flight per client, each caller looping until the server has gone.
        for task in 0..16_i64 {
            let (calc, answered, refused, stop) =
                (calc.clone(), answered.clone(), refused.clone(), stop.clone());
            callers.spawn(async move {
                let mut n = 0_i64;
                loop {
                    n += 1;
                    match calc.add(task, n).await {
                        Ok(sum) => {
                            assert_eq!(sum, Ok(task + n));
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Remote { code: Code::ShuttingDown, .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                        }
                        Err(other) => panic!("call {n} of task {task} was lost: {other}"),
                    }
                }
            });
        }
    }
    // Let the load build up, then stop the server under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = answered.load(Ordering::Relaxed);
    assert!(before > 0, "no call was answered before the shutdown");
    stop.store(true, Ordering::Relaxed);
    let (status, stderr) =
        tokio::task::spawn_blocking(move || server.stop_with("-TERM")).await.unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let drained = tokio::time::timeout(PATIENCE, async {
        while let Some(done) = callers.join_next().await {
            done.unwrap();
        }
    });
    drained.await.expect("every caller heard of the shutdown");
    let (answered, refused) = (answered.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!("{answered} calls answered, {refused} refused with ShuttingDown, none lost");
    assert!(refused >= 128, "each of the 128 callers ends on a ShuttingDown: {refused}");
}
