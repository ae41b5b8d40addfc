//! What the `core_*` tests share: a hand-written service, a server running it, raw frames.
//!
//! Each test binary uses part of this module, so unused items are expected.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::wire::Header;
use rpc_core::{
    Client, ClientConfig, DispatchError, Endpoint, Error, HandlerFuture, Reconnect, Responder,
    Server, ServerConfig, Service, ToEndpoint,
};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// `echo(String) -> String`, answered at once.
pub const ECHO: u32 = 1;
/// `add(i64, i64) -> i64`; the method id of the request in WIRE.md's example.
pub const ADD: u32 = 0xDEAD_BEEF;
/// `panic(String)`: panics with that message when first polled.
pub const PANIC: u32 = 3;
/// `panic_later(String)`: panics with that message after its first wait.
pub const PANIC_LATER: u32 = 4;
/// `block(u64) -> u64`: reports its argument on [`Gate::entered`], then answers it once
/// [`Gate::release`] gives it a permit. Reports on [`Gate::gone`] when its future is dropped.
pub const BLOCK: u32 = 5;
/// `big(u32) -> Vec<u8>`: that many bytes.
pub const BIG: u32 = 6;
/// `peer() -> String`: the caller as [`rpc_core::Context::peer`] shows it.
pub const PEER: u32 = 7;
/// No method has this id.
pub const UNKNOWN: u32 = 0x0BAD;

/// The service every `core_*` test serves; the test controls its `block` calls with a [`Gate`].
pub struct TestService {
    entered: mpsc::UnboundedSender<u64>,
    gone: mpsc::UnboundedSender<u64>,
    release: Arc<Semaphore>,
}

/// The test's side of a [`TestService`]'s `block` calls.
pub struct Gate {
    entered: mpsc::UnboundedReceiver<u64>,
    gone: mpsc::UnboundedReceiver<u64>,
    release: Arc<Semaphore>,
}

impl Gate {
    /// Waits until a `block` handler is running; returns its argument.
    pub async fn entered(&mut self) -> u64 {
        within(self.entered.recv()).await.expect("the service is alive")
    }

    /// Waits until a `block` handler's future is dropped (answered or abandoned).
    pub async fn gone(&mut self) -> u64 {
        within(self.gone.recv()).await.expect("the service is alive")
    }

    /// Lets `n` waiting (or future) `block` handlers answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

impl TestService {
    pub fn new() -> (TestService, Gate) {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let (gone_tx, gone) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let service = TestService { entered: entered_tx, gone: gone_tx, release: release.clone() };
        (service, Gate { entered, gone, release })
    }
}

/// Sends its value on the channel when dropped.
struct OnDrop(mpsc::UnboundedSender<u64>, u64);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

impl Service for TestService {
    fn name(&self) -> &'static str {
        "TestService"
    }

    fn method_name(&self, method: u32) -> Option<&'static str> {
        Some(match method {
            ECHO => "echo",
            ADD => "add",
            PANIC => "panic",
            PANIC_LATER => "panic_later",
            BLOCK => "block",
            BIG => "big",
            PEER => "peer",
            _ => return None,
        })
    }

    fn call(
        &self,
        method: u32,
        body: &[u8],
        mut reply: Responder,
    ) -> Result<HandlerFuture, DispatchError> {
        Ok(match method {
            ECHO => {
                let (s,): (String,) = rpc_core::decode_args(body)?;
                Box::pin(async move { reply.send(&s) })
            }
            ADD => {
                let (a, b): (i64, i64) = rpc_core::decode_args(body)?;
                Box::pin(async move { reply.send(&a.wrapping_add(b)) })
            }
            PANIC => {
                let (message,): (String,) = rpc_core::decode_args(body)?;
                Box::pin(async move {
                    let _reply = reply;
                    panic!("{message}");
                })
            }
            PANIC_LATER => {
                let (message,): (String,) = rpc_core::decode_args(body)?;
                Box::pin(async move {
                    let _reply = reply;
                    tokio::task::yield_now().await;
                    panic!("{message}");
                })
            }
            BLOCK => {
                let (v,): (u64,) = rpc_core::decode_args(body)?;
                let (entered, gone) = (self.entered.clone(), OnDrop(self.gone.clone(), v));
                let release = self.release.clone();
                Box::pin(async move {
                    let _gone = gone;
                    let _ = entered.send(v);
                    release.acquire().await.expect("never closed").forget();
                    reply.send(&v);
                })
            }
            BIG => {
                let (n,): (u32,) = rpc_core::decode_args(body)?;
                Box::pin(async move { reply.send(&vec![0xAB_u8; n as usize]) })
            }
            PEER => {
                let (): () = rpc_core::decode_args(body)?;
                let peer = reply.context().peer().to_string();
                Box::pin(async move { reply.send(&peer) })
            }
            _ => return Err(DispatchError::UnknownMethod),
        })
    }
}

/// A [`TestService`] being served on its own task.
pub struct Running {
    /// Where it listens (the real port for port 0).
    pub endpoint: Endpoint,
    pub gate: Gate,
    /// The `serve_with_shutdown` task.
    pub task: JoinHandle<Result<(), Error>>,
    /// Fires the shutdown signal when sent to or dropped.
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Fires the shutdown signal.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Fires the shutdown signal and waits for `serve_with_shutdown` to return.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shutdown();
        within(self.task).await.expect("the serve task did not panic")
    }
}

/// Serves a fresh [`TestService`] on `endpoint` with the default config.
pub async fn start(endpoint: &str) -> Running {
    start_with(endpoint, ServerConfig::default()).await
}

/// Serves a fresh [`TestService`] on `endpoint` with `config`.
pub async fn start_with(endpoint: &str, config: ServerConfig) -> Running {
    let server = Server::bind_with(endpoint, config).await.expect("bind");
    let endpoint = server.local_endpoint().clone();
    let (service, gate) = TestService::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(server.serve_with_shutdown(service, signal));
    Running { endpoint, gate, task, stop: Some(stop) }
}

/// A client config with reconnecting off: one connection, whose own life the test studies.
pub fn one_connection() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.reconnect = Reconnect::disabled();
    config
}

/// Connects a client that never reconnects (see [`one_connection`]).
pub async fn connect_once(endpoint: impl ToEndpoint) -> Result<Client, Error> {
    Client::connect_with(endpoint, one_connection()).await
}

/// Hang guard: `fut`'s output, or a panic if it takes longer than 10 s. An upper bound for a
/// broken build, never a way to wait for something.
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("hang guard: over 10 s")
}

/// An abstract Unix socket name no other test (or test run) uses.
pub fn unique_abstract(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("unix:@rpc-core-tests-{}-{tag}-{n}", std::process::id())
}

/// `host:port` of a `tcp://` endpoint, for a plain `TcpStream::connect`.
pub fn tcp_addr(endpoint: &Endpoint) -> String {
    let s = endpoint.to_string();
    s.strip_prefix("tcp://").expect("a tcp endpoint").to_owned()
}

/// The bincode (standard config) of `value`.
pub fn bincode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

/// A frame: 4-byte big-endian length, then `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small payload");
    [&len.to_be_bytes()[..], payload].concat()
}

/// A frame holding `header` followed by the already-encoded `body`.
pub fn message(header: &Header<'_>, body: &[u8]) -> Vec<u8> {
    frame(&[bincode(header), body.to_vec()].concat())
}

/// A request frame for `method` with the arguments `args` and a 30 s budget.
pub fn request<A: Serialize>(id: u64, method: u32, args: &A) -> Vec<u8> {
    message(&Header::Request { id, method, budget_us: 30_000_000 }, &bincode(args))
}

/// A hello frame.
pub fn hello(version: u16, max_frame: u32) -> Vec<u8> {
    frame(&bincode(&rpc_core::wire::Hello { magic: rpc_core::wire::MAGIC, version, max_frame }))
}

/// The hello both sides send with the default 4 MiB limit.
pub const HELLO_4MIB: [u8; 14] =
    [0, 0, 0, 10, b'R', b'P', b'C', 0, 2, 0xFC, 0x00, 0x00, 0x40, 0x00];

/// Reads one frame's payload; `None` when the peer closed (cleanly or by reset) first.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut head = [0_u8; 4];
    match within(r.read_exact(&mut head)).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading a frame head: {e}"),
    }
    let len = u32::from_be_bytes(head) as usize;
    assert!(len <= 1 << 20, "the peer sent a frame head declaring {len} bytes");
    let mut payload = vec![0; len];
    within(r.read_exact(&mut payload)).await.expect("a whole payload after its head");
    Some(payload)
}

/// Reads one frame's payload; panics if the peer closed instead.
pub async fn expect_frame<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    read_frame(r).await.expect("a frame, not the end of the stream")
}

/// Asserts that the peer closes the stream without sending anything more.
pub async fn expect_closed<R: AsyncRead + Unpin>(r: &mut R) {
    if let Some(payload) = read_frame(r).await {
        panic!("expected the end of the stream, got a frame {payload:02x?}");
    }
}

/// Splits a payload into its header and the body bytes after it.
///
/// A header borrows its text from its frame; the frame is leaked, so that a test may keep
/// the header as long as it likes (a test reads a few frames, of a few bytes each).
pub fn decode(payload: &[u8]) -> (Header<'static>, Vec<u8>) {
    let payload: &'static [u8] = payload.to_vec().leak();
    let (header, used) = rpc_core::__fuzz::decode_header(payload).expect("a header");
    (header, payload[used..].to_vec())
}

/// The code and message of a Close payload; panics on any other message.
pub fn decode_close(payload: &[u8]) -> (u32, String) {
    match decode(payload) {
        (Header::Close { code, message }, body) if body.is_empty() => (code, message.to_owned()),
        other => panic!("expected a Close frame, got {other:?}"),
    }
}

/// Decodes a value that fills `bytes` exactly.
pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("a value");
    assert_eq!(used, bytes.len(), "trailing bytes after the value");
    value
}

/// Bytes no peer of ours would send, the same every run (xorshift64).
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A `tracing` writer that keeps what a subscriber writes, for tests of log lines.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a `tracing` subscriber at `level` wrote (without colours) while `test` ran on a
/// current-thread runtime, which keeps every task on this thread, under this subscriber.
pub fn log_of<F: Future<Output = ()>>(level: tracing::Level, test: impl FnOnce() -> F) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(test());
    });
    let bytes = captured.0.lock().expect("not poisoned").clone();
    String::from_utf8(bytes).expect("UTF-8 logs")
}
