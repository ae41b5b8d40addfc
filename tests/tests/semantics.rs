//! Call semantics over real sockets: deadlines, cancellation, the call context, authorization
//! and limits. Services are written by hand so these tests pin the runtime, not the macro.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{
    Client, ClientConfig, Code, Context, DispatchError, Error, HandlerFuture, Peer, Responder,
    Server, ServerConfig, Service,
};
use tokio::sync::mpsc;

/// Method 1 `echo(u64) -> u64` answers at once. Method 2 `hang(u64) -> u64` reports its context
/// on `started`, then waits until its call is abandoned and reports that on `abandoned`.
/// Method 3 `gate(u64) -> u64` reports on `started` and answers when `release` is notified.
#[derive(Clone)]
struct Probe {
    started: mpsc::UnboundedSender<Context>,
    abandoned: mpsc::UnboundedSender<u64>,
    release: Arc<tokio::sync::Semaphore>,
}

struct ProbeEvents {
    started: mpsc::UnboundedReceiver<Context>,
    abandoned: mpsc::UnboundedReceiver<u64>,
    release: Arc<tokio::sync::Semaphore>,
}

fn probe() -> (Probe, ProbeEvents) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (abandoned_tx, abandoned) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let probe = Probe { started: started_tx, abandoned: abandoned_tx, release: release.clone() };
    (probe, ProbeEvents { started, abandoned, release })
}

impl Service for Probe {
    fn name(&self) -> &'static str {
        "Probe"
    }

    fn method_name(&self, method: u32) -> Option<&'static str> {
        ["echo", "hang", "gate"].get((method as usize).wrapping_sub(1)).copied()
    }

    fn call(
        &self,
        method: u32,
        body: &[u8],
        mut reply: Responder,
    ) -> Result<HandlerFuture, DispatchError> {
        let (n,): (u64,) = rpc_core::decode_args(body)?;
        let ctx = reply.context();
        let probe = self.clone();
        match method {
            1 => Ok(Box::pin(async move { reply.send(&n) })),
            2 => Ok(Box::pin(async move {
                probe.started.send(ctx.clone()).unwrap();
                // Whatever ends the call, a task spawned with the token sees it.
                let token = ctx.cancellation_token().clone();
                let abandoned = probe.abandoned.clone();
                tokio::spawn(async move {
                    token.cancelled().await;
                    let _ = abandoned.send(n);
                });
                std::future::pending::<()>().await;
                reply.send(&n)
            })),
            3 => Ok(Box::pin(async move {
                probe.started.send(ctx).unwrap();
                probe.release.acquire().await.unwrap().forget();
                reply.send(&n)
            })),
            _ => Err(DispatchError::UnknownMethod),
        }
    }
}

const ECHO: u32 = 1;
const HANG: u32 = 2;
const GATE: u32 = 3;

/// An upper bound for things that should happen promptly; only reached if the code is broken.
const PROMPTLY: Duration = Duration::from_secs(10);

/// True if nothing arrives on `rx` within 200 ms: long against the microseconds a broken
/// limit would take to let a call through, short enough to keep the suite fast.
async fn not_within<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> bool {
    tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPTLY, fut).await.unwrap_or_else(|_| panic!("{what} did not happen"))
}

struct Running {
    endpoint: rpc_core::Endpoint,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within("shutdown", self.task).await.unwrap().unwrap();
    }
}

async fn start(
    transport: &str,
    config: ServerConfig,
    service: Probe,
    configure: impl FnOnce(Server) -> Server,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = match transport {
        "tcp" => "tcp://127.0.0.1:0".to_owned(),
        _ => format!("unix:{}/probe.sock", dir.path().display()),
    };
    let server = configure(Server::bind_with(endpoint.as_str(), config).await.unwrap());
    let endpoint = server.local_endpoint().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(service, async {
        let _ = stopped.await;
    }));
    Running { endpoint, stop: Some(stop), task, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_returns_deadline_exceeded_at_its_own_deadline_and_the_server_drops_the_handler() {
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let short = client.with_timeout(Duration::from_millis(200));
    let err = within("deadline", short.call::<_, u64>(HANG, &(7u64,))).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(d) if d == Duration::from_millis(200)), "{err}");
    assert_eq!(within("handler dropped", events.abandoned.recv()).await, Some(7));
    // The connection is still good.
    assert_eq!(client.call::<_, u64>(ECHO, &(1u64,)).await.unwrap(), 1);
}

/// A server that completes the hello and then reads requests without ever answering, so a
/// call can only end by the client's own deadline.
async fn silent_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let hello = rpc_core::wire::Hello {
            magic: rpc_core::wire::MAGIC,
            version: rpc_core::wire::VERSION,
            max_frame: 1 << 20,
        };
        let payload = bincode::serde::encode_to_vec(&hello, bincode::config::standard()).unwrap();
        socket.write_all(&(payload.len() as u32).to_be_bytes()).await.unwrap();
        socket.write_all(&payload).await.unwrap();
        let mut sink = [0; 4096];
        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_behind_a_long_one_fires_on_time_with_a_silent_server() {
    // One watchdog keeps every deadline of a connection; a call with an earlier deadline than
    // those already waiting must move its alarm forward, or it would wait 30 s.
    let client = Client::connect(silent_server().await).await.unwrap();
    let long = client.with_timeout(Duration::from_secs(30));
    let long_call = tokio::spawn(async move { long.call::<_, u64>(ECHO, &(1u64,)).await });
    tokio::task::yield_now().await;
    let short = client.with_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let err = within("short deadline", short.call::<_, u64>(ECHO, &(2u64,))).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(d) if d == Duration::from_millis(100)), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(100), "ended before its deadline");
    assert!(!long_call.is_finished(), "the long call must still be waiting");
    // Later calls on the same connection still get their deadlines.
    let err = within("second deadline", short.call::<_, u64>(ECHO, &(3u64,))).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
    long_call.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_for_a_slot_still_gets_its_deadline() {
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let mut config = ClientConfig::default();
    config.max_in_flight = 1;
    let client = Client::connect_with(&server.endpoint, config).await.unwrap();
    let first = client.clone();
    let first = tokio::spawn(async move { first.call::<_, u64>(GATE, &(1u64,)).await });
    within("first start", events.started.recv()).await.unwrap();
    let short = client.with_timeout(Duration::from_millis(100));
    let err = within("deadline while queued", short.call::<_, u64>(ECHO, &(2u64,))).await;
    assert!(matches!(err, Err(Error::DeadlineExceeded(_))), "{err:?}");
    events.release.add_permits(1);
    assert_eq!(within("first end", first).await.unwrap().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_travels_with_the_request_and_the_handler_sees_it() {
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let client =
        Client::connect(&server.endpoint).await.unwrap().with_timeout(Duration::from_secs(5));
    let call = tokio::spawn(async move { client.call::<_, u64>(HANG, &(1u64,)).await });
    let ctx = within("handler start", events.started.recv()).await.unwrap();
    let remaining = ctx.remaining();
    assert!(
        remaining <= Duration::from_secs(5) && remaining > Duration::from_secs(3),
        "{remaining:?}"
    );
    assert!(ctx.request_id() >= 1);
    call.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_enforces_the_budget_it_receives_on_the_wire() {
    // A raw peer sends a 100 ms budget and would wait forever: the server answers with
    // Failure code 3 (deadline exceeded) and drops the handler.
    use rpc_core::wire::Header;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let rpc_core::Endpoint::Tcp { host, port } = &server.endpoint else { unreachable!() };
    let mut raw = tokio::net::TcpStream::connect((host.as_str(), *port)).await.unwrap();
    let config = bincode::config::standard();
    let frame =
        |payload: Vec<u8>| [(payload.len() as u32).to_be_bytes().to_vec(), payload].concat();
    let hello =
        rpc_core::wire::Hello { magic: rpc_core::wire::MAGIC, version: 2, max_frame: 1 << 20 };
    raw.write_all(&frame(bincode::serde::encode_to_vec(&hello, config).unwrap())).await.unwrap();
    let request = Header::Request { id: 1, method: HANG, budget_us: 100_000 };
    let mut payload = bincode::serde::encode_to_vec(request, config).unwrap();
    payload.extend(bincode::serde::encode_to_vec((3u64,), config).unwrap());
    raw.write_all(&frame(payload)).await.unwrap();
    let mut read_frame = async || {
        let len = raw.read_u32().await.unwrap() as usize;
        let mut payload = vec![0; len];
        raw.read_exact(&mut payload).await.unwrap();
        payload
    };
    let _server_hello = within("hello", read_frame()).await;
    let answer = within("failure", read_frame()).await;
    let (header, _) = rpc_core::__fuzz::decode_header(&answer).unwrap();
    assert!(matches!(header, Header::Failure { id: 1, code: 3, .. }), "{header:?}");
    assert_eq!(within("handler dropped", events.abandoned.recv()).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_future_cancels_the_handler_on_the_server() {
    for transport in ["tcp", "unix"] {
        let (service, mut events) = probe();
        let server = start(transport, ServerConfig::default(), service, |s| s).await;
        let client = Client::connect(&server.endpoint).await.unwrap();
        let call = client.call::<_, u64>(HANG, &(9u64,));
        tokio::select! {
            _ = call => panic!("hang answered"),
            started = events.started.recv() => assert!(started.is_some()),
        }
        // The select dropped the call future: Cancel went out, the handler was dropped.
        assert_eq!(within("cancel reached the handler", events.abandoned.recv()).await, Some(9));
        assert_eq!(client.call::<_, u64>(ECHO, &(4u64,)).await.unwrap(), 4);
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_connection_fires_the_handlers_token() {
    let (service, mut events) = probe();
    let server = start("unix", ServerConfig::default(), service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.call::<_, u64>(HANG, &(5u64,)).await });
    within("handler start", events.started.recv()).await.unwrap();
    call.abort();
    drop(client);
    assert_eq!(
        within("connection loss reached the handler", events.abandoned.recv()).await,
        Some(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_expiry_fires_the_token_and_answers_shutting_down() {
    let (service, mut events) = probe();
    let mut config = ServerConfig::default();
    config.shutdown_grace = Duration::from_millis(200);
    let server = start("tcp", config, service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.call::<_, u64>(HANG, &(6u64,)).await });
    within("handler start", events.started.recv()).await.unwrap();
    server.shutdown().await;
    let err = within("call end", call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(Code::ShuttingDown), "{err}");
    assert_eq!(within("shutdown reached the handler", events.abandoned.recv()).await, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_names_the_tcp_peer() {
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.call::<_, u64>(GATE, &(1u64,)).await });
    let ctx = within("handler start", events.started.recv()).await.unwrap();
    match ctx.peer() {
        Peer::Tcp(addr) => assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}"),
        other => panic!("expected a TCP peer, got {other:?}"),
    }
    events.release.add_permits(1);
    assert_eq!(call.await.unwrap().unwrap(), 1);
}

fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_names_the_unix_peer_by_credentials() {
    let (service, mut events) = probe();
    let server = start("unix", ServerConfig::default(), service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.call::<_, u64>(GATE, &(1u64,)).await });
    let ctx = within("handler start", events.started.recv()).await.unwrap();
    match ctx.peer() {
        Peer::Unix { pid, uid, .. } => {
            assert_eq!(*pid, Some(std::process::id() as i32));
            assert_eq!(*uid, my_uid());
        }
        other => panic!("expected a Unix peer, got {other:?}"),
    }
    events.release.add_permits(1);
    assert_eq!(call.await.unwrap().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_hook_refuses_a_peer_with_unauthorized() {
    let (service, _events) = probe();
    let server = start("unix", ServerConfig::default(), service, |s| {
        s.authorize(|peer| match peer {
            Peer::Unix { uid, .. } if *uid == u32::MAX => Ok(()),
            other => Err(format!("{other} is not allowed")),
        })
    })
    .await;
    let err = Client::connect(&server.endpoint).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthorized), "{err}");
    assert!(err.to_string().contains("is not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_hook_admits_the_servers_own_uid() {
    let (service, _events) = probe();
    let me = my_uid();
    let server = start("unix", ServerConfig::default(), service, move |s| {
        s.authorize(move |peer| match peer {
            Peer::Unix { uid, .. } if *uid == me => Ok(()),
            other => Err(format!("{other} is not uid {me}")),
        })
    })
    .await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(client.call::<_, u64>(ECHO, &(8u64,)).await.unwrap(), 8);
}

#[tokio::test]
async fn unix_socket_file_gets_the_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (mode, expected) in [(None, None), (Some(0o660), Some(0o660)), (Some(0o600), Some(0o600))] {
        let path = dir.path().join("mode.sock");
        let mut config = ServerConfig::default();
        if let Some(mode) = mode {
            config.unix_mode = Some(mode);
        }
        let server = Server::bind_with(format!("unix:{}", path.display()), config).await.unwrap();
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, expected.unwrap_or(0o600), "mode {mode:?}");
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_overloaded_and_existing_ones_keep_working() {
    let (service, _events) = probe();
    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let server = start("tcp", config, service, |s| s).await;
    let first = Client::connect(&server.endpoint).await.unwrap();
    let err = Client::connect(&server.endpoint).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Overloaded), "{err}");
    assert_eq!(first.call::<_, u64>(ECHO, &(3u64,)).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_sends_hello_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let (service, _events) = probe();
    let mut config = ServerConfig::default();
    config.handshake_timeout = Duration::from_millis(200);
    let server = start("tcp", config, service, |s| s).await;
    let rpc_core::Endpoint::Tcp { host, port } = &server.endpoint else { unreachable!() };
    let mut silent = tokio::net::TcpStream::connect((host.as_str(), *port)).await.unwrap();
    let mut seen = Vec::new();
    // The server's hello arrives, then end of stream once the timeout passes.
    within("drop", silent.read_to_end(&mut seen)).await.unwrap();
    assert_eq!(&seen[4..8], b"RPC\0");
    let client = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(client.call::<_, u64>(ECHO, &(1u64,)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_reading_past_max_in_flight_and_resumes_when_a_call_ends() {
    let (service, mut events) = probe();
    let mut config = ServerConfig::default();
    config.max_in_flight = 2;
    let server = start("tcp", config, service, |s| s).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let calls: Vec<_> = (0..3u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(GATE, &(n,)).await })
        })
        .collect();
    within("first start", events.started.recv()).await.unwrap();
    within("second start", events.started.recv()).await.unwrap();
    // The third request waits unread while two run. A broken limit starts it within
    // microseconds; give it a generous 200 ms to (wrongly) start.
    assert!(not_within(&mut events.started).await, "a third call started past the limit");
    events.release.add_permits(1);
    within("third start", events.started.recv()).await.unwrap();
    events.release.add_permits(2);
    for call in calls {
        within("call end", call).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_callers_past_max_in_flight_wait_instead_of_failing() {
    let (service, mut events) = probe();
    let server = start("tcp", ServerConfig::default(), service, |s| s).await;
    let mut config = ClientConfig::default();
    config.max_in_flight = 1;
    let client = Client::connect_with(&server.endpoint, config).await.unwrap();
    let calls: Vec<_> = (0..2u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(GATE, &(n,)).await })
        })
        .collect();
    within("first start", events.started.recv()).await.unwrap();
    assert!(not_within(&mut events.started).await, "the second call was sent past the limit");
    events.release.add_permits(1);
    within("second start", events.started.recv()).await.unwrap();
    events.release.add_permits(1);
    for call in calls {
        within("call end", call).await.unwrap().unwrap();
    }
}
