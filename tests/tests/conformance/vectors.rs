//! The vectors as conformance/README.md defines them, read from `conformance/*.json`.
//! Unknown fields are errors, so a misspelt expectation cannot silently check nothing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One `conformance/*.json` file of vectors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[allow(dead_code)]
    pub description: String,
    pub vectors: Vec<Vector>,
}

/// A vector of either role.
#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Vector {
    Server(ServerVector),
    Client(ClientVector),
}

impl Vector {
    pub fn name(&self) -> &str {
        match self {
            Vector::Server(v) => &v.name,
            Vector::Client(v) => &v.name,
        }
    }

    pub fn requires(&self) -> Option<&str> {
        match self {
            Vector::Server(v) => v.requires.as_deref(),
            Vector::Client(v) => v.requires.as_deref(),
        }
    }
}

/// Bytes a client sends and what the server under test must answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerVector {
    pub name: String,
    #[allow(dead_code)]
    pub description: String,
    #[serde(default)]
    pub requires: Option<String>,
    /// Settings the server must run with for this vector; present means a server of its own.
    #[serde(default)]
    pub server_config: Option<ServerSettings>,
    /// Connections opened (hellos exchanged) and held before this vector's own.
    #[serde(default)]
    pub other_connections: usize,
    /// The first step, written at the top level (without an action).
    #[serde(default)]
    pub send: String,
    #[serde(default)]
    pub half_close: bool,
    pub expect: ServerExpect,
    /// Further steps, in order.
    #[serde(default)]
    pub then: Vec<Step>,
}

impl ServerVector {
    /// The steps in order, the top-level one first.
    pub fn steps(&self) -> Vec<Step> {
        let first = Step {
            action: None,
            send: self.send.clone(),
            half_close: self.half_close,
            expect: self.expect.clone(),
        };
        std::iter::once(first).chain(self.then.iter().cloned()).collect()
    }

    /// Whether the vector needs a server of its own (settings, other connections, actions).
    pub fn own_server(&self) -> bool {
        self.server_config.is_some()
            || self.other_connections > 0
            || self.then.iter().any(|s| s.action.is_some())
    }
}

/// Settings of the server under test; absent ones keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(default)]
    pub max_frame: Option<u32>,
    #[serde(default)]
    pub handshake_timeout_ms: Option<u64>,
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub frame_timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub refuse_peers: bool,
}

/// One step of a server-role vector: an action, bytes to send, what must come back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub send: String,
    #[serde(default)]
    pub half_close: bool,
    pub expect: ServerExpect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start the server's graceful shutdown.
    Shutdown,
}

/// What the server under test must send in one step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerExpect {
    #[serde(default)]
    pub frames: Vec<Expected>,
    #[serde(default)]
    pub any_order: bool,
    #[serde(default)]
    pub close: Option<u32>,
    #[serde(default)]
    pub eof: bool,
    #[serde(default)]
    pub message_excludes: Vec<String>,
}

/// One frame the peer must send: exact bytes, or a Failure with an id and a code.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    Exact(String),
    Failure { failure: FailureExpect },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureExpect {
    pub id: u64,
    pub code: u32,
}

/// Bytes a server sends and what the client under test must do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientVector {
    pub name: String,
    #[allow(dead_code)]
    pub description: String,
    #[serde(default)]
    pub requires: Option<String>,
    pub call: Call,
    /// The fake server's first frame; `HELLO` when absent.
    #[serde(default)]
    pub hello: Option<String>,
    /// Sent once the client's request is read; absent: no request is awaited.
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub hang_up: bool,
    pub expect: ClientExpect,
}

/// The call the client under test makes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub method: String,
    pub args: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientExpect {
    pub call_result: CallResult,
    #[serde(default)]
    pub client_sends: Option<ClientSends>,
}

/// How the call must end: `ok` with the value's bytes, or an `error` of a kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallResult {
    #[serde(default)]
    pub ok: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorKind>,
    #[serde(default)]
    pub code: Option<u32>,
    #[serde(default)]
    pub message_bytes: Option<usize>,
}

/// The kinds of failed call a client reports, in any language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Remote,
    Deadline,
    Protocol,
    VersionMismatch,
    FrameTooLarge,
    Closed,
    Decode,
}

/// What the client under test must send after the vector's `send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSends {
    #[serde(default)]
    pub frames: Vec<String>,
    #[serde(default)]
    pub close: Option<u32>,
}

/// The directory of the vectors.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance")
}

/// Every vector of every vector file, in file-name order; checked for consistency.
pub fn load() -> Vec<Vector> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("the conformance directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "calculator.json"))
        .collect();
    paths.sort();
    let mut vectors = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("a readable vector file");
        let file: File =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        vectors.extend(file.vectors);
    }
    for vector in &vectors {
        if let Err(e) = check(vector) {
            panic!("vector {}: {e}", vector.name());
        }
    }
    vectors
}

/// The rules of README.md a vector file cannot express in its shape.
fn check(vector: &Vector) -> Result<(), String> {
    match vector {
        Vector::Server(v) => {
            let steps = v.steps();
            for (i, step) in steps.iter().enumerate() {
                let ends = step.expect.close.is_some() || step.expect.eof;
                if ends && i + 1 < steps.len() {
                    return Err("only the last step may end the connection".to_owned());
                }
                if step.expect.close.is_some() && step.expect.eof {
                    return Err("`close` and `eof` together".to_owned());
                }
                if step.expect.any_order && step.expect.frames.len() < 2 {
                    return Err("`any_order` with fewer than two frames".to_owned());
                }
            }
            Ok(())
        }
        Vector::Client(v) => {
            let result = &v.expect.call_result;
            match (&result.ok, result.error) {
                (Some(_), None) if result.code.is_none() && result.message_bytes.is_none() => {}
                (None, Some(ErrorKind::Remote)) if result.code.is_some() => {}
                (None, Some(_)) if result.code.is_none() && result.message_bytes.is_none() => {}
                _ => {
                    return Err(
                        "call_result needs `ok`, or `error` (with `code` for remote)".to_owned()
                    );
                }
            }
            if v.hang_up && v.expect.client_sends.is_some() {
                return Err("`hang_up` with `client_sends`".to_owned());
            }
            if v.send.is_none() && (v.hang_up || v.expect.client_sends.is_some()) {
                return Err("`hang_up` or `client_sends` without `send`".to_owned());
            }
            Ok(())
        }
    }
}
