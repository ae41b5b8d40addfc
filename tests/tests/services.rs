//! One server hosting several services on several listeners: routing, build-time clashes,
//! per-call metadata, interceptors, one-way calls, trace context and the shutdown handle.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HELLO_4MIB, bincode, decode, decode_close, expect_frame, message, within};
use rpc_core::wire::Header;
use rpc_core::{
    CallInfo, Code, Context, Error, Interceptor, Metadata, Outcome, Rejection, Server, TraceContext,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Greets, in the language the `lang` metadata names.
#[rpc_core::service]
pub trait Greeter {
    /// A greeting.
    async fn greet(&self, ctx: &Context, name: String) -> String;
    /// Never returns.
    async fn wait(&self);
    /// The trace id the server saw, as hex; empty when the call carried none.
    async fn trace_id(&self, ctx: &Context) -> String;
}

/// Keeps lines sent one-way.
#[rpc_core::service]
pub trait Journal {
    /// Appends a line; one-way.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Every line so far, in order.
    async fn lines(&self) -> Vec<String>;
}

/// Another service named `Greeter`, for the clash test.
mod other {
    #[rpc_core::service]
    pub(crate) trait Greeter {
        async fn wave(&self) -> u8;
    }
    pub(crate) struct Waver;
    impl Greeter for Waver {
        async fn wave(&self) -> u8 {
            1
        }
    }
}

/// A service the server does not host.
#[rpc_core::service]
pub trait Absent {
    /// Not served anywhere.
    async fn missing(&self) -> u8;
}

struct Greet;

impl Greeter for Greet {
    async fn greet(&self, ctx: &Context, name: String) -> String {
        match ctx.metadata().get_str("lang") {
            Some("fr") => format!("bonjour {name}"),
            _ => format!("hello {name}"),
        }
    }
    async fn wait(&self) {
        std::future::pending::<()>().await;
    }
    async fn trace_id(&self, ctx: &Context) -> String {
        ctx.trace().map(|t| t.trace_id_hex()).unwrap_or_default()
    }
}

#[derive(Default, Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Journal for Lines {
    async fn log(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    async fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn two_services_are_served_on_a_tcp_and_a_unix_listener_at_once() {
    let unix = common::unique_abstract("two-services");
    let server = Server::builder()
        .service(GreeterServer::new(Greet))
        .service(JournalServer::new(Lines::default()))
        .listen("tcp://127.0.0.1:0")
        .listen(unix.as_str())
        .bind()
        .await
        .expect("binds both");
    let endpoints: Vec<_> = server.local_endpoints().into_iter().cloned().collect();
    assert_eq!(endpoints.len(), 2);
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    for endpoint in &endpoints {
        let client = rpc_core::Client::connect(endpoint).await.expect("connects");
        let greeter = GreeterClient::new(client.clone());
        let journal = JournalClient::new(client);
        assert_eq!(greeter.greet("ann".into()).await.unwrap(), "hello ann");
        journal.log(format!("via {endpoint}")).await.unwrap();
        let lines = journal.lines().await.unwrap();
        assert!(lines.contains(&format!("via {endpoint}")), "{lines:?}");
    }
    within(shutdown.shutdown()).await;
    within(task).await.unwrap().expect("stops cleanly");
}

#[tokio::test]
async fn two_services_of_one_name_are_refused_at_build_naming_both() {
    let err = Server::builder()
        .service(GreeterServer::new(Greet))
        .service(other::GreeterServer::new(other::Waver))
        .listen("tcp://127.0.0.1:0")
        .bind()
        .await
        .expect_err("a clash");
    let message = err.to_string();
    assert!(message.contains("two services are named \"Greeter\""), "{message}");
    assert!(message.contains("GreeterServer<services::Greet>"), "{message}");
    assert!(message.contains("GreeterServer<services::other::Waver>"), "{message}");
}

/// A hand-written service claiming one of `Greeter`'s method ids.
struct Impostor;

impl rpc_core::Service for Impostor {
    fn name(&self) -> &'static str {
        "Impostor"
    }
    fn method_name(&self, _: u32) -> Option<&'static str> {
        Some("steal")
    }
    fn methods(&self) -> Vec<(u32, &'static str)> {
        vec![(GreeterClient::GREET_ID, "steal")]
    }
    fn call(
        &self,
        _: u32,
        _: &[u8],
        reply: rpc_core::Responder,
    ) -> Result<rpc_core::HandlerFuture, rpc_core::DispatchError> {
        Ok(Box::pin(async move { reply.send(&0_u8) }))
    }
}

#[tokio::test]
async fn a_method_id_in_two_services_is_refused_at_build_naming_both() {
    let err = Server::builder()
        .service(GreeterServer::new(Greet))
        .service(Impostor)
        .listen("tcp://127.0.0.1:0")
        .bind()
        .await
        .expect_err("a clash");
    let message = err.to_string();
    assert!(message.contains("is both Greeter.greet and Impostor.steal"), "{message}");
}

/// Serves Greeter and Journal (and `interceptors`) on a loopback port.
async fn serve_both(
    interceptors: Vec<Box<dyn FnOnce(rpc_core::ServerBuilder) -> rpc_core::ServerBuilder>>,
) -> rpc_core::Endpoint {
    let mut builder = Server::builder()
        .service(GreeterServer::new(Greet))
        .service(JournalServer::new(Lines::default()))
        .listen("tcp://127.0.0.1:0");
    for add in interceptors {
        builder = add(builder);
    }
    let server = builder.bind().await.expect("binds");
    let endpoint = server.local_endpoint().clone();
    drop(tokio::spawn(server.run()));
    endpoint
}

#[tokio::test]
async fn a_call_to_a_service_the_server_does_not_host_fails_naming_the_id() {
    let endpoint = serve_both(Vec::new()).await;
    let absent = AbsentClient::connect(&endpoint).await.unwrap();
    let err = absent.missing().await.expect_err("not hosted");
    assert_eq!(err.code(), Some(Code::UnknownMethod));
    let id = format!("{:#010x}", AbsentClient::MISSING_ID);
    let message = err.to_string();
    assert!(message.contains(&id) && message.contains("Greeter, Journal"), "{message}");
}

#[tokio::test]
async fn metadata_set_on_a_client_handle_reaches_the_handler_and_others_send_none() {
    let endpoint = serve_both(Vec::new()).await;
    let greeter = GreeterClient::connect(&endpoint).await.unwrap();
    let mut metadata = Metadata::new();
    metadata.insert("lang", "fr").unwrap();
    let french = greeter.with_metadata(metadata);
    assert_eq!(french.greet("ann".into()).await.unwrap(), "bonjour ann");
    assert_eq!(greeter.greet("ann".into()).await.unwrap(), "hello ann");
}

/// Connects a raw socket and exchanges hellos.
async fn raw(endpoint: &rpc_core::Endpoint) -> TcpStream {
    let mut socket = TcpStream::connect(common::tcp_addr(endpoint)).await.unwrap();
    socket.write_all(&HELLO_4MIB).await.unwrap();
    let _hello = expect_frame(&mut socket).await;
    socket
}

fn with_metadata(id: u64, method: u32, entries: Vec<(String, Vec<u8>)>, args: &[u8]) -> Vec<u8> {
    // Built through bincode of the raw entries, so limits are not checked on the way out.
    let head = (6_u8, id, method, u64::MAX, entries);
    let mut payload = bincode(&head);
    payload.extend_from_slice(args);
    common::frame(&payload)
}

#[tokio::test]
async fn metadata_over_a_limit_fails_that_call_and_too_many_entries_close_the_connection() {
    let endpoint = serve_both(Vec::new()).await;
    let mut socket = raw(&endpoint).await;
    let args = bincode(&("ann".to_owned(),));
    let bad_key = vec![("Lang".to_owned(), b"fr".to_vec())];
    socket.write_all(&with_metadata(1, GreeterClient::GREET_ID, bad_key, &args)).await.unwrap();
    let big = vec![("lang".to_owned(), vec![b'x'; 1025])];
    socket.write_all(&with_metadata(2, GreeterClient::GREET_ID, big, &args)).await.unwrap();
    for id in [1, 2] {
        match decode(&expect_frame(&mut socket).await).0 {
            Header::Failure { id: got, code, message } => {
                assert_eq!((got, code), (id, Code::BadMetadata.to_u32()), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    // The connection still serves.
    let good = vec![("lang".to_owned(), b"fr".to_vec())];
    socket.write_all(&with_metadata(3, GreeterClient::GREET_ID, good, &args)).await.unwrap();
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 3 });
    assert_eq!(common::decode_value::<String>(&body), "bonjour ann");
    let many = (0..17).map(|i| (format!("k{i}"), Vec::new())).collect();
    socket.write_all(&with_metadata(4, GreeterClient::GREET_ID, many, &args)).await.unwrap();
    let (code, message) = decode_close(&expect_frame(&mut socket).await);
    assert_eq!(code, Code::ProtocolViolation.to_u32());
    assert!(message.contains("17 entries exceeds the limit of 16"), "{message}");
}

#[test]
fn metadata_a_client_could_not_send_is_refused_before_sending() {
    let mut metadata = Metadata::new();
    let err = metadata.insert("token", vec![0_u8; 2000]).expect_err("too big");
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(metadata.is_empty());
}

/// Lets through only calls carrying `authorization: letmein`; counts what it rejects and how
/// the calls it passed ended (a rejected call is not seen after).
#[derive(Default)]
struct Counts {
    returned: AtomicUsize,
    abandoned: AtomicUsize,
    failed: AtomicUsize,
    rejected: AtomicUsize,
}

struct Token(Arc<Counts>);

impl Interceptor for Token {
    fn before(&self, call: &CallInfo<'_>) -> Result<(), Rejection> {
        match call.metadata.get_str("authorization") {
            Some("letmein") => Ok(()),
            _ => Err(self.reject(call)),
        }
    }

    fn after(&self, _: &'static str, _: &'static str, outcome: Outcome, _: Duration) {
        match outcome {
            Outcome::Returned => self.0.returned.fetch_add(1, Ordering::SeqCst),
            Outcome::Abandoned => self.0.abandoned.fetch_add(1, Ordering::SeqCst),
            _ => self.0.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

impl Token {
    fn reject(&self, call: &CallInfo<'_>) -> Rejection {
        self.0.rejected.fetch_add(1, Ordering::SeqCst);
        Rejection::new(
            Code::Unauthorized,
            format!("{}.{} needs a token", call.service, call.method),
        )
    }
}

#[tokio::test]
async fn an_interceptor_rejects_calls_without_the_token_and_sees_the_others_end() {
    let token = Arc::new(Counts::default());
    let installed = Token(token.clone());
    let endpoint = serve_both(vec![Box::new(move |b| b.intercept(installed))]).await;
    let greeter = GreeterClient::connect(&endpoint).await.unwrap();
    let err = greeter.greet("ann".into()).await.expect_err("no token");
    assert_eq!(err.code(), Some(Code::Unauthorized));
    assert!(err.to_string().contains("Greeter.greet needs a token"), "{err}");
    let mut metadata = Metadata::new();
    metadata.insert("authorization", "letmein").unwrap();
    let authorized = greeter.with_metadata(metadata);
    assert_eq!(authorized.greet("ann".into()).await.unwrap(), "hello ann");
    assert_eq!(token.returned.load(Ordering::SeqCst), 1);
    assert_eq!(token.rejected.load(Ordering::SeqCst), 1);
    assert_eq!(token.failed.load(Ordering::SeqCst), 0);
    // A call its caller gives up on (a Cancel reaches the server) ends as abandoned.
    let waiting = authorized.with_timeout(Duration::MAX);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), waiting.wait()).await;
    assert!(gave_up.is_err(), "wait never returns");
    within(async {
        while token.abandoned.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(token.failed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_call_made_in_a_trace_carries_it_to_the_server() {
    let endpoint = serve_both(Vec::new()).await;
    let greeter = GreeterClient::connect(&endpoint).await.unwrap();
    assert_eq!(greeter.trace_id().await.unwrap(), "", "no trace, no traceparent");
    let root = TraceContext::new_root();
    let seen = rpc_core::trace::in_trace(root, greeter.trace_id()).await.unwrap();
    assert_eq!(seen, root.trace_id_hex());
}

#[tokio::test]
async fn one_way_calls_arrive_in_order_of_sending_and_are_not_answered() {
    let endpoint = serve_both(Vec::new()).await;
    let journal = JournalClient::connect(&endpoint).await.unwrap();
    for i in 0..200 {
        journal.log(format!("line {i}")).await.unwrap();
    }
    let lines = journal.lines().await.unwrap();
    let expected: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    // On a raw socket: a one-way request gets nothing; the request after it, its answer.
    let mut socket = raw(&endpoint).await;
    let log = Header::Request { id: 0, method: JournalClient::LOG_ID, budget_us: u64::MAX };
    socket.write_all(&message(&log, &bincode(&("raw".to_owned(),)))).await.unwrap();
    socket.write_all(&common::request(9, JournalClient::LINES_ID, &())).await.unwrap();
    let (header, body) = decode(&expect_frame(&mut socket).await);
    assert_eq!(header, Header::Response { id: 9 }, "the first frame answers the second request");
    assert_eq!(common::decode_value::<Vec<String>>(&body).last().map(String::as_str), Some("raw"));
}

#[tokio::test]
async fn id_0_for_a_replying_method_or_a_one_way_method_with_an_id_closes_the_connection() {
    let endpoint = serve_both(Vec::new()).await;
    let cases = [
        (common::request(0, JournalClient::LINES_ID, &()), "Journal.lines returns a reply"),
        (common::request(4, JournalClient::LOG_ID, &("x".to_owned(),)), "Journal.log is one-way"),
    ];
    for (request, expected) in cases {
        let mut socket = raw(&endpoint).await;
        socket.write_all(&request).await.unwrap();
        let (code, message) = decode_close(&expect_frame(&mut socket).await);
        assert_eq!(code, Code::ProtocolViolation.to_u32());
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn the_shutdown_handle_stops_the_server_from_another_task() {
    let server = Server::builder()
        .service(GreeterServer::new(Greet))
        .listen("tcp://127.0.0.1:0")
        .bind()
        .await
        .unwrap();
    let endpoint = server.local_endpoint().clone();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    let greeter = GreeterClient::connect(&endpoint).await.unwrap();
    assert_eq!(greeter.greet("ann".into()).await.unwrap(), "hello ann");
    let other = handle.clone();
    let stopper = tokio::spawn(async move { other.shutdown().await });
    within(handle.stopped()).await;
    within(stopper).await.unwrap();
    within(task).await.unwrap().expect("stopped cleanly");
    assert!(GreeterClient::connect(&endpoint).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn a_request_meta_cut_short_or_with_a_key_that_is_not_utf8_closes_the_connection() {
    let endpoint = serve_both(Vec::new()).await;
    let method = GreeterClient::GREET_ID.to_le_bytes();
    // Tag 6, id 1, method (u32 form), no deadline, then one entry whose key says 5 bytes.
    let head = [&[6_u8, 1, 0xfc][..], &method, &[0xfd], &[0xff; 8], &[1, 5]].concat();
    let cases = [
        ([&head[..], b"tok"].concat(), "5 bytes with only 3 left"),
        ([&head[..], &[b't', 0xff, b'k', b'e', b'n', 0]].concat(), "not UTF-8"),
    ];
    for (payload, expected) in cases {
        let mut socket = raw(&endpoint).await;
        socket.write_all(&common::frame(&payload)).await.unwrap();
        let (code, message) = decode_close(&expect_frame(&mut socket).await);
        assert_eq!(code, Code::ProtocolViolation.to_u32(), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}
