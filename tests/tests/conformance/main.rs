//! Runs the language-neutral conformance vectors of `conformance/*.json` (see the README
//! there): every server-role vector against the real calculator server over TCP and over a
//! Unix socket, and every client-role vector against the real generated `CalculatorClient`
//! facing a scripted fake server.
//!
//! Vectors marked `requires` describe behaviour the code does not have yet: they are skipped,
//! and their names printed. `RPC_CONFORMANCE_REQUIRES=1` runs them too, to check an
//! implementation of one before its marker is removed. `RPC_CONFORMANCE_SERVER=ENDPOINT` runs
//! the server-role vectors against a server running elsewhere instead.
#![allow(clippy::unwrap_used)]
// The modules are this test's own: `pub` marks what they offer each other.
#![allow(unreachable_pub)]

mod client_role;
mod hex;
mod server_role;
mod socket;
mod vectors;

use std::collections::HashSet;
use std::time::Duration;

use server_role::{Calculator, Transport};
use vectors::{ServerSettings, Vector};

/// How long a peer under test may take to send what a vector expects.
const WAIT: Duration = Duration::from_secs(5);

/// Whether the vectors marked `requires` run too.
fn run_required() -> bool {
    std::env::var_os("RPC_CONFORMANCE_REQUIRES").is_some()
}

/// The vectors of one role to run now; prints those skipped.
fn selected(role_server: bool) -> Vec<Vector> {
    let (run, skipped): (Vec<Vector>, Vec<Vector>) = vectors::load()
        .into_iter()
        .filter(|v| matches!(v, Vector::Server(_)) == role_server)
        .partition(|v| v.requires().is_none() || run_required());
    for v in &skipped {
        println!("skipped {} (requires {})", v.name(), v.requires().unwrap_or_default());
    }
    run
}

/// Panics with every failure, so one run shows them all.
fn report(failures: Vec<String>, ran: usize) {
    println!("{} of {ran} vectors passed", ran - failures.len());
    assert!(failures.is_empty(), "{} vectors failed:\n{}", failures.len(), failures.join("\n"));
}

/// `RPC_CONFORMANCE_SERVER`: the endpoint of a server under test running elsewhere (see
/// conformance/README.md), instead of the calculator served in this process.
fn external() -> Option<String> {
    std::env::var("RPC_CONFORMANCE_SERVER").ok()
}

async fn server_vectors_hold_over(transport: Transport) {
    let mut vectors = selected(true);
    let mut shared = match external() {
        Some(endpoint) => {
            let scheme = if transport == Transport::Tcp { "tcp://" } else { "unix:" };
            if !endpoint.starts_with(scheme) {
                return println!("skipped: RPC_CONFORMANCE_SERVER={endpoint} is not {scheme}");
            }
            // A server elsewhere runs with its defaults, and is not shut down by the runner.
            let (own, shared): (Vec<Vector>, Vec<Vector>) =
                vectors.into_iter().partition(|v| matches!(v, Vector::Server(s) if s.own_server()));
            for v in own {
                println!("skipped {} (needs a server of its own)", v.name());
            }
            vectors = shared;
            Calculator::external(&endpoint)
        }
        None => Calculator::start(transport, &ServerSettings::default()).await,
    };
    let mut failures = Vec::new();
    for vector in &vectors {
        let Vector::Server(v) = vector else { continue };
        match server_role::run(v, &mut shared, transport, WAIT).await {
            Ok(()) => println!("ok {}", v.name),
            Err(e) => failures.push(format!("{}: {e}", v.name)),
        }
    }
    shared.stop().await;
    report(failures, vectors.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vectors_hold_over_tcp() {
    server_vectors_hold_over(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vectors_hold_over_a_unix_socket() {
    server_vectors_hold_over(Transport::Unix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vectors_hold_against_the_generated_client() {
    let vectors = selected(false);
    let mut failures = Vec::new();
    for vector in &vectors {
        let Vector::Client(v) = vector else { continue };
        match client_role::run(v, WAIT).await {
            Ok(()) => println!("ok {}", v.name),
            Err(e) => failures.push(format!("{}: {e}", v.name)),
        }
    }
    report(failures, vectors.len());
}

#[test]
fn vector_files_are_well_formed_with_unique_names_and_valid_bytes() {
    let vectors = vectors::load();
    let mut names = HashSet::new();
    for vector in &vectors {
        let name = vector.name();
        assert!(names.insert(name.to_owned()), "two vectors named {name}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}: names are snake_case"
        );
    }
    // Every byte string expands (ID stands for some id where it may appear).
    let tokens = hex::Tokens { hello: &hex::HELLO, id: Some(1) };
    let files = std::fs::read_dir(vectors::dir()).unwrap().map(|e| e.unwrap().path());
    for path in files.filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut strings = Vec::new();
        byte_strings(&json, "", &mut strings);
        for s in strings {
            if let Err(e) = hex::expand(&s, tokens) {
                panic!("{}: {s:?}: {e}", path.display());
            }
        }
    }
    // Both roles have vectors, and the suite has not lost a file.
    assert!(vectors.iter().any(|v| matches!(v, Vector::Server(_))));
    assert!(vectors.iter().any(|v| matches!(v, Vector::Client(_))));
    assert!(vectors.len() > 100, "{} vectors", vectors.len());
}

/// The strings of `json` that hold bytes: `send`, `hello`, `args`, `ok` and frames.
fn byte_strings(json: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match json {
        serde_json::Value::String(s)
            if ["send", "hello", "args", "ok", "frames"].contains(&key) =>
        {
            out.push(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| byte_strings(i, key, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| byte_strings(v, k, out)),
        _ => {}
    }
}

/// conformance/calculator.json names each method's signature and id; the ids are FNV-1a 32
/// of the signatures and are the generated client's.
#[test]
fn the_calculators_method_ids_are_fnv1a_of_their_signatures() {
    let text = std::fs::read_to_string(vectors::dir().join("calculator.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let methods = json["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 5);
    for method in methods {
        let name = method["name"].as_str().unwrap();
        let signature = method["signature"].as_str().unwrap();
        let id = u32::from_str_radix(method["id"].as_str().unwrap().trim_start_matches("0x"), 16)
            .unwrap();
        assert_eq!(fnv1a32(signature), id, "{signature}");
        assert_eq!(client_role::method_id(name).unwrap(), id, "{name}");
        let id_bytes = hex::expand(
            method["id_bytes"].as_str().unwrap(),
            hex::Tokens { hello: &hex::HELLO, id: None },
        )
        .unwrap();
        assert_eq!(id_bytes, hex::varint(u64::from(id)), "{name}");
    }
}

/// FNV-1a, 32 bits, from its definition (WIRE.md, "Method ids").
fn fnv1a32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A runner that passes everything proves nothing: vectors that do not hold must fail, each
/// for the reason expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_fails_vectors_that_do_not_hold() {
    let short = Duration::from_millis(500);
    let add = "HELLO [ 00 01 fc 7d e1 0e b2 fc 80 c3 c9 01 04 06 ]";
    let server_cases = [
        // A wrong byte in an exact frame: Ok(6) where the server answers Ok(5).
        (add, r#"{"frames": ["HELLO", "[ 01 01 00 0c ]"]}"#, "expected the frame"),
        // A missing frame: nothing but the end of the stream after the hello.
        (add, r#"{"frames": ["HELLO"]}"#, "expected the end of the stream"),
        // A Failure with the wrong code.
        (
            "HELLO [ 00 01 fb ad 0b fc 80 c3 c9 01 ]",
            r#"{"frames": ["HELLO", {"failure": {"id": 1, "code": 2}}]}"#,
            "expected Failure",
        ),
        // A Close with the wrong code.
        ("HELLO 00 00 00 00", r#"{"frames": ["HELLO"], "close": 9}"#, "expected Close 9"),
        // A Close where the connection goes on.
        ("HELLO 00 00 00 00", r#"{"frames": ["HELLO"]}"#, "expected the end of the stream"),
        // A message that must not contain what it does.
        (
            "HELLO 00 00 00 00",
            r#"{"frames": ["HELLO"], "close": 11, "message_excludes": ["header"]}"#,
            "contains",
        ),
        // The end of the stream where the server keeps the connection open.
        (add, r#"{"frames": ["HELLO", "[ 01 01 00 0a ]"], "eof": true}"#, "nothing more"),
    ];
    let mut shared = Calculator::start(Transport::Tcp, &ServerSettings::default()).await;
    for (send, expect, why) in server_cases {
        let json =
            format!(r#"{{"name": "x", "description": "x", "send": "{send}", "expect": {expect}}}"#);
        let vector: vectors::ServerVector = serde_json::from_str(&json).unwrap();
        let err = server_role::run(&vector, &mut shared, Transport::Tcp, short).await.unwrap_err();
        assert!(err.contains(why), "{expect}: {err}");
    }
    shared.stop().await;
    let call = r#"{"method": "add", "args": "04 06"}"#;
    let client_cases = [
        // The wrong value.
        ("[ 01 ID 00 0a ]", r#"{"call_result": {"ok": "00 0c"}}"#, "expected the call to end"),
        // An error where the call succeeds.
        (
            "[ 01 ID 00 0a ]",
            r#"{"call_result": {"error": "protocol"}}"#,
            "expected the call to end",
        ),
        // The wrong code.
        (
            "[ 02 ID 01 02 6e 6f ]",
            r#"{"call_result": {"error": "remote", "code": 2}}"#,
            "expected the call to end",
        ),
        // A frame the client does not send.
        (
            "[ 01 ID 00 0a ]",
            r#"{"call_result": {"ok": "00 0a"}, "client_sends": {"frames": ["[ 03 ID ]"]}}"#,
            "nothing more",
        ),
    ];
    for (send, expect, why) in client_cases {
        let json = format!(
            r#"{{"name": "x", "description": "x", "call": {call}, "send": "{send}", "expect": {expect}}}"#
        );
        let vector: vectors::ClientVector = serde_json::from_str(&json).unwrap();
        let err = client_role::run(&vector, short).await.unwrap_err();
        assert!(err.contains(why), "{expect}: {err}");
    }
    // A field the runner does not know is an error, not silently ignored.
    let json = r#"{"name": "x", "description": "x", "send": "", "expect": {"frame": []}}"#;
    assert!(serde_json::from_str::<vectors::ServerVector>(json).is_err());
    let json = r#"{"name": "x", "description": "x", "send": "", "expect": {}, "sned": ""}"#;
    assert!(serde_json::from_str::<vectors::ServerVector>(json).is_err());
}
