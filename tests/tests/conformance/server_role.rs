//! Server-role vectors against the real calculator server, over TCP or a Unix socket.

use std::time::Duration;

use rpc_core::{Server, ServerConfig};
use rpc_examples::{Calc, CalculatorServer, StatsServer};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::hex::{self, HELLO, Tokens, show};
use super::socket::{self, Socket};
use super::vectors::{Action, Expected, ServerExpect, ServerSettings, ServerVector};

/// The kinds of socket the server-role vectors run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
}

/// The calculator, served on its own task with the settings of a vector, or a server
/// running elsewhere.
pub struct Calculator {
    endpoint: String,
    max_frame: u32,
    stop: Option<oneshot::Sender<()>>,
    /// `None` for a server running elsewhere.
    task: Option<JoinHandle<Result<(), rpc_core::Error>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Calculator {
    /// Serves the calculator on a fresh TCP port or Unix socket, with `settings`.
    pub async fn start(transport: Transport, settings: &ServerSettings) -> Calculator {
        let (endpoint, dir) = match transport {
            Transport::Tcp => ("tcp://127.0.0.1:0".to_owned(), None),
            Transport::Unix => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("calculator.sock");
                (format!("unix:{}", path.display()), Some(dir))
            }
        };
        let mut config = ServerConfig::default();
        if let Some(max_frame) = settings.max_frame {
            config.max_frame = max_frame as usize;
        }
        if let Some(ms) = settings.handshake_timeout_ms {
            config.handshake_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = settings.idle_timeout_ms {
            config.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = settings.frame_timeout_ms {
            config.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = settings.max_connections {
            config.max_connections = n;
        }
        let max_frame = u32::try_from(config.max_frame).expect("a frame limit under 4 GiB");
        // What calculator-server hosts: the Calculator, and the Stats service whose one-way
        // `log` the vectors of services.json call.
        let (stats, _counter) = rpc_examples::stats();
        let mut builder = Server::builder()
            .config(config)
            .service(CalculatorServer::new(Calc))
            .service(StatsServer::new(stats))
            .listen(endpoint.as_str());
        if settings.refuse_peers {
            builder =
                builder.authorize(|_| Err("the conformance runner refuses everyone".to_owned()));
        }
        let server = builder.bind().await.expect("bind");
        let endpoint = server.local_endpoint().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(server.run_with_shutdown(signal));
        Calculator { endpoint, max_frame, stop: Some(stop), task: Some(task), _dir: dir }
    }

    /// A server under test running elsewhere (another implementation, or the
    /// `calculator-server` binary) at `endpoint`, with the default 4 MiB frame limit.
    pub fn external(endpoint: &str) -> Calculator {
        let max_frame = rpc_core::DEFAULT_MAX_FRAME as u32;
        Calculator { endpoint: endpoint.to_owned(), max_frame, stop: None, task: None, _dir: None }
    }

    /// Starts the graceful shutdown.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for the server to return.
    pub async fn stop(mut self) {
        self.shut_down();
        let Some(task) = self.task.take() else { return };
        let served = tokio::time::timeout(Duration::from_secs(10), task).await;
        served.expect("the server stops").expect("the server task").expect("the server");
    }

    /// A raw connection to it.
    async fn connect(&self) -> Result<Box<dyn Socket>, String> {
        let failed = |e: std::io::Error| format!("connecting to {}: {e}", self.endpoint);
        if let Some(addr) = self.endpoint.strip_prefix("tcp://") {
            let socket = TcpStream::connect(addr).await.map_err(failed)?;
            socket.set_nodelay(true).map_err(failed)?;
            Ok(Box::new(socket))
        } else {
            let path = self.endpoint.strip_prefix("unix:").expect("a unix endpoint");
            Ok(Box::new(UnixStream::connect(path).await.map_err(failed)?))
        }
    }

    /// The hello it sends: its frame limit is the one thing that varies.
    fn hello(&self) -> Vec<u8> {
        let payload = [&b"RPC\0\x02"[..], &hex::varint(u64::from(self.max_frame))].concat();
        [&(payload.len() as u32).to_be_bytes()[..], &payload].concat()
    }
}

/// Runs `vector` against `shared` (a calculator with the default settings), or against a
/// server of its own when the vector needs one (settings, other connections, an action).
pub async fn run(
    vector: &ServerVector,
    shared: &mut Calculator,
    transport: Transport,
    wait: Duration,
) -> Result<(), String> {
    if !vector.own_server() {
        return exchange(vector, shared, wait).await;
    }
    let settings = vector.server_config.clone().unwrap_or_default();
    let mut own = Calculator::start(transport, &settings).await;
    let result = exchange(vector, &mut own, wait).await;
    own.stop().await;
    result
}

/// Holds the vector's other connections, then plays its steps on one connection.
async fn exchange(
    vector: &ServerVector,
    server: &mut Calculator,
    wait: Duration,
) -> Result<(), String> {
    let mut others = Vec::new();
    for _ in 0..vector.other_connections {
        let mut other = server.connect().await?;
        socket::send(&mut *other, &HELLO).await?;
        let hello = socket::expect_frame(&mut *other, wait).await?;
        if hello != server.hello() {
            return Err(format!("another connection got {} instead of a hello", show(&hello)));
        }
        others.push(other);
    }
    let mut socket = server.connect().await?;
    let steps = vector.steps();
    let mut half_closed = false;
    for (i, step) in steps.iter().enumerate() {
        if step.action == Some(Action::Shutdown) {
            server.shut_down();
        }
        let bytes = hex::expand(&step.send, Tokens { hello: &HELLO, id: None })?;
        if !bytes.is_empty() {
            socket::send(&mut *socket, &bytes).await?;
        }
        if step.half_close {
            socket::half_close(&mut *socket).await;
            half_closed = true;
        }
        let failed = |e: String| format!("step {}: {e}", i + 1);
        expect(&mut *socket, &step.expect, &server.hello(), wait).await.map_err(failed)?;
        let last = i + 1 == steps.len();
        if last && step.expect.close.is_none() && !step.expect.eof {
            // Nothing more may come: hang up and read the end of the stream.
            if !half_closed {
                socket::half_close(&mut *socket).await;
            }
            let failed = |e: String| format!("after the last step: {e}");
            socket::expect_end(&mut *socket, wait).await.map_err(failed)?;
        }
    }
    Ok(())
}

/// Reads what one step expects: its frames, then a Close and the end, or the end.
async fn expect(
    socket: &mut dyn Socket,
    expect: &ServerExpect,
    server_hello: &[u8],
    wait: Duration,
) -> Result<(), String> {
    let tokens = Tokens { hello: server_hello, id: None };
    let mut pending: Vec<(usize, &Expected)> = expect.frames.iter().enumerate().collect();
    while !pending.is_empty() {
        let frame = socket::expect_frame(socket, wait)
            .await
            .map_err(|e| format!("{e} (still expected: {})", describe(&pending)))?;
        // In order, only the first pending frame may match; in any order, any of them.
        let candidates = if expect.any_order { pending.len() } else { 1 };
        let mut matched = None;
        let mut why = Vec::new();
        for (k, (_, expected)) in pending.iter().enumerate().take(candidates) {
            match matches(&frame, expected, tokens, &expect.message_excludes) {
                Ok(()) => {
                    matched = Some(k);
                    break;
                }
                Err(e) => why.push(e),
            }
        }
        match matched {
            Some(k) => {
                pending.remove(k);
            }
            None if expect.any_order => {
                return Err(format!(
                    "the frame {} is none of {}",
                    show(&frame),
                    describe(&pending)
                ));
            }
            None => return Err(why.join("; ")),
        }
    }
    if let Some(code) = expect.close {
        let frame = socket::expect_frame(socket, wait)
            .await
            .map_err(|e| format!("{e} (expected Close {code})"))?;
        let close = socket::error_frame(&frame, 5)?;
        if close.code != code {
            return Err(format!(
                "expected Close {code}, got Close {} ({:?})",
                close.code, close.message
            ));
        }
        socket::check_message(&close.message, &expect.message_excludes)?;
        // The server closes after its Close; hanging up lets a server that waits for it go.
        socket::half_close(socket).await;
        socket::expect_end(socket, wait).await.map_err(|e| format!("after Close {code}: {e}"))?;
    } else if expect.eof {
        socket::expect_end(socket, wait).await?;
    }
    Ok(())
}

/// Whether `frame` is the one `expected` describes.
fn matches(
    frame: &[u8],
    expected: &Expected,
    tokens: Tokens<'_>,
    excludes: &[String],
) -> Result<(), String> {
    match expected {
        Expected::Exact(text) => {
            let bytes = hex::expand(text, tokens)?;
            if frame == bytes {
                return Ok(());
            }
            // A Failure or Close in place of the frame says why in words: show them.
            let words = [2, 5]
                .iter()
                .find_map(|&tag| socket::error_frame(frame, tag).ok())
                .map(|e| format!(" (code {}: {:?})", e.code, e.message))
                .unwrap_or_default();
            Err(format!("expected the frame {}, got {}{words}", show(&bytes), show(frame)))
        }
        Expected::Failure { failure } => {
            let got = socket::error_frame(frame, 2)?;
            if (got.id, got.code) != (Some(failure.id), failure.code) {
                return Err(format!(
                    "expected Failure {{ id: {}, code: {} }}, got id {:?} code {} ({:?})",
                    failure.id, failure.code, got.id, got.code, got.message
                ));
            }
            socket::check_message(&got.message, excludes)
        }
    }
}

fn describe(pending: &[(usize, &Expected)]) -> String {
    let items: Vec<String> = pending
        .iter()
        .map(|(i, e)| match e {
            Expected::Exact(text) => format!("#{} {text}", i + 1),
            Expected::Failure { failure } => {
                format!("#{} Failure id {} code {}", i + 1, failure.id, failure.code)
            }
        })
        .collect();
    items.join(", ")
}
