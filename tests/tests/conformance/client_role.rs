//! Client-role vectors: a scripted fake server plays the vector's bytes to the real generated
//! `CalculatorClient`, and the call's outcome and what the client sends are checked.

use std::time::Duration;

use rpc_examples::CalculatorClient;
use tokio::net::TcpListener;

use super::hex::{self, HELLO, Reader, Tokens, show};
use super::socket::{self, Socket};
use super::vectors::{CallResult, ClientVector, ErrorKind};

/// How a call ended, in the vectors' terms.
#[derive(Debug)]
enum Outcome {
    /// The return value, encoded again (so the shortest form of each integer).
    Ok(Vec<u8>),
    Failed {
        kind: Option<ErrorKind>,
        code: Option<u32>,
        message: String,
    },
}

/// Runs `vector`: the fake server and the client under test, at once.
pub async fn run(vector: &ClientVector, wait: Duration) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let endpoint = format!("tcp://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let both =
        async { tokio::join!(call(&endpoint, vector), fake_server(&listener, vector, wait)) };
    let (outcome, server) = tokio::time::timeout(wait * 2, both).await.map_err(|_| {
        format!("the call and the fake server did not finish within {:?}", wait * 2)
    })?;
    // The client is held until the fake server is done, so what it sends after its call
    // (a Cancel, a Close) is sent by a live client, as in a program that goes on using it.
    let (outcome, _client) = outcome?;
    // The socket is held until the call has ended, so that nothing but the bytes decide it.
    let _socket = server?;
    check_outcome(&outcome, &vector.expect.call_result)
}

/// Connects with the generated client and makes the vector's call; returns how it ended, and
/// the client if it connected.
async fn call(
    endpoint: &str,
    vector: &ClientVector,
) -> Result<(Outcome, Option<CalculatorClient>), String> {
    let client = match CalculatorClient::connect(endpoint).await {
        Ok(client) => client,
        Err(e) => return Ok((failed(e), None)),
    };
    let client = match vector.call.timeout_ms {
        Some(ms) => client.with_timeout(Duration::from_millis(ms)),
        None => client,
    };
    let args = hex::expand(&vector.call.args, Tokens { hello: &HELLO, id: None })?;
    let result = match vector.call.method.as_str() {
        "add" | "sub" | "mul" | "div" => {
            let (a, b): (i64, i64) = decode(&args)?;
            match vector.call.method.as_str() {
                "add" => client.add(a, b).await,
                "sub" => client.sub(a, b).await,
                "mul" => client.mul(a, b).await,
                _ => client.div(a, b).await,
            }
        }
        "sum" => {
            let (numbers,): (Vec<i64>,) = decode(&args)?;
            client.sum(numbers).await
        }
        other => return Err(format!("the calculator has no method {other:?}")),
    };
    let outcome = match result {
        Ok(value) => Outcome::Ok(
            bincode::serde::encode_to_vec(value, bincode::config::standard())
                .map_err(|e| e.to_string())?,
        ),
        Err(e) => failed(e),
    };
    Ok((outcome, Some(client)))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| format!("the vector's args do not decode: {e}"))?;
    if used != bytes.len() {
        return Err("bytes after the vector's args".to_owned());
    }
    Ok(value)
}

/// An error of the client under test, in the vectors' terms.
fn failed(error: rpc_core::Error) -> Outcome {
    use rpc_core::Error;
    let message = error.to_string();
    let (kind, code) = match &error {
        Error::Remote { code, message: _ } => (Some(ErrorKind::Remote), Some(code.to_u32())),
        Error::DeadlineExceeded(_) => (Some(ErrorKind::Deadline), None),
        Error::Protocol(_) => (Some(ErrorKind::Protocol), None),
        Error::VersionMismatch { .. } => (Some(ErrorKind::VersionMismatch), None),
        Error::FrameTooLarge { .. } => (Some(ErrorKind::FrameTooLarge), None),
        Error::ConnectionClosed | Error::Io(_) => (Some(ErrorKind::Closed), None),
        Error::Decode(_) => (Some(ErrorKind::Decode), None),
        // Connect and encode errors, and anything newer: no vector expects them.
        _ => (None, None),
    };
    let message = match error {
        Error::Remote { message, .. } => message,
        _ => message,
    };
    Outcome::Failed { kind, code, message }
}

fn check_outcome(outcome: &Outcome, expected: &CallResult) -> Result<(), String> {
    let wrong = || format!("expected the call to end with {expected:?}, it ended with {outcome:?}");
    match (outcome, &expected.ok, expected.error) {
        (Outcome::Ok(value), Some(ok), None) => {
            let ok = hex::expand(ok, Tokens { hello: &HELLO, id: None })?;
            if *value == ok { Ok(()) } else { Err(wrong()) }
        }
        (Outcome::Failed { kind, code, message }, None, Some(error)) => {
            if *kind != Some(error) || *code != expected.code {
                return Err(wrong());
            }
            match expected.message_bytes {
                Some(n) if message.len() != n => Err(format!(
                    "expected a message of {n} bytes, got {} bytes: {message:?}",
                    message.len()
                )),
                _ => Ok(()),
            }
        }
        _ => Err(wrong()),
    }
}

/// Plays the vector's bytes; returns the socket, to be held until the call has ended.
async fn fake_server(
    listener: &TcpListener,
    vector: &ClientVector,
    wait: Duration,
) -> Result<Option<Box<dyn Socket>>, String> {
    let accepted = tokio::time::timeout(wait, listener.accept())
        .await
        .map_err(|_| "the client did not connect".to_owned())?;
    let (socket, _) = accepted.map_err(|e| e.to_string())?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut socket: Box<dyn Socket> = Box::new(socket);
    let hello = socket::expect_frame(&mut *socket, wait).await?;
    if hello != HELLO {
        return Err(format!("the client's hello is {}, not the 4 MiB hello", show(&hello)));
    }
    let plain = Tokens { hello: &HELLO, id: None };
    let first = hex::expand(vector.hello.as_deref().unwrap_or("HELLO"), plain)?;
    socket::send(&mut *socket, &first).await?;
    let Some(send) = &vector.send else { return Ok(Some(socket)) };
    let id = read_request(&mut *socket, vector, wait).await?;
    let with_id = Tokens { hello: &HELLO, id: Some(id) };
    let bytes = hex::expand(send, with_id)?;
    if !bytes.is_empty() {
        socket::send(&mut *socket, &bytes).await?;
    }
    if vector.hang_up {
        return Ok(None);
    }
    if let Some(sends) = &vector.expect.client_sends {
        for expected in &sends.frames {
            let expected = hex::expand(expected, with_id)?;
            let frame = socket::expect_frame(&mut *socket, wait).await?;
            if frame != expected {
                return Err(format!(
                    "expected the client to send {}, got {}",
                    show(&expected),
                    show(&frame)
                ));
            }
        }
        if let Some(code) = sends.close {
            let frame = socket::expect_frame(&mut *socket, wait)
                .await
                .map_err(|e| format!("{e} (expected the client's Close {code})"))?;
            let close = socket::error_frame(&frame, 5)?;
            if close.code != code {
                return Err(format!(
                    "expected the client's Close {code}, got Close {}",
                    close.code
                ));
            }
            socket::check_message(&close.message, &[])?;
            // The client closes right after its Close, without waiting for us.
            socket::expect_end(&mut *socket, wait).await?;
        }
    }
    Ok(Some(socket))
}

/// Reads the client's request, checks it is the vector's call, and returns its id.
async fn read_request(
    socket: &mut dyn Socket,
    vector: &ClientVector,
    wait: Duration,
) -> Result<u64, String> {
    let frame = socket::expect_frame(socket, wait)
        .await
        .map_err(|e| format!("{e} (expected the request)"))?;
    let not_it = |why: String| format!("expected the call's request, got {} ({why})", show(&frame));
    let mut r = Reader::new(&frame[4..]);
    if r.varint().map_err(not_it)? != 0 {
        return Err(not_it("not a Request".to_owned()));
    }
    let id = r.varint().map_err(not_it)?;
    let method = r.varint().map_err(not_it)?;
    let budget = r.varint().map_err(not_it)?;
    let expected = method_id(&vector.call.method)?;
    if method != u64::from(expected) {
        return Err(not_it(format!("method {method:#x}, not {expected:#x}")));
    }
    let args = hex::expand(&vector.call.args, Tokens { hello: &HELLO, id: None })?;
    if r.rest() != args {
        return Err(not_it(format!("arguments {}, not {}", show(r.rest()), show(&args))));
    }
    // The whole timeout at most: the client sends its remaining time, never more.
    let timeout_us = vector.call.timeout_ms.unwrap_or(30_000) * 1000;
    if budget == 0 || budget > timeout_us {
        return Err(not_it(format!("a budget of {budget} µs for a {timeout_us} µs timeout")));
    }
    Ok(id)
}

/// The calculator's method ids, as the generated client has them.
pub fn method_id(method: &str) -> Result<u32, String> {
    Ok(match method {
        "add" => CalculatorClient::ADD_ID,
        "sub" => CalculatorClient::SUB_ID,
        "mul" => CalculatorClient::MUL_ID,
        "div" => CalculatorClient::DIV_ID,
        "sum" => CalculatorClient::SUM_ID,
        other => return Err(format!("the calculator has no method {other:?}")),
    })
}
