//! The client: one connection, many concurrent calls matched to responses by request id.

use std::borrow::Cow;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::calls::{Calls, Registered};
use crate::conn::{self, Outbox};
use crate::net::Stream;
use crate::proto::client::{self as proto, Event};
use crate::proto::inbound::FrameReader;
use crate::proto::server::NO_DEADLINE;
use crate::service::ONEWAY_ID;
use crate::task::spawn_logged;
use crate::wire::{self, Header};
use crate::{Code, Endpoint, Error, Keepalive, Metadata, ToEndpoint, TraceContext, frame};

/// How a [`Client`] connects and calls. Every field has a safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Time allowed to connect and exchange hellos. Default: 10 s.
    pub connect_timeout: Duration,
    /// Deadline of each call unless overridden with [`Client::with_timeout`]; a timeout too
    /// large to be a point in time (such as `Duration::MAX`) means no deadline. Default: 30 s.
    pub call_timeout: Duration,
    /// The largest response frame accepted, in bytes. Default: [`frame::DEFAULT_MAX_FRAME`] (4 MiB).
    pub max_frame: usize,
    /// Calls in flight at once on the connection; further callers wait for a slot (they do
    /// not fail), which bounds the memory a slow server can make us hold. Default: 1,024.
    pub max_in_flight: usize,
    /// TCP keepalive on the connection, so a server that vanished without closing it is
    /// noticed and the pending calls end; `None` turns it off. Default:
    /// [`Keepalive::default()`] (a dead peer is noticed within 90 s).
    pub tcp_keepalive: Option<Keepalive>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_in_flight: 1024,
            tcp_keepalive: Some(Keepalive::default()),
        }
    }
}

/// A connection to a server. Cheap to clone; all clones share the connection, and any number
/// of tasks may call through it at once. The connection closes when the last clone is dropped.
///
/// Usually wrapped by a generated `FooClient`; [`Client::call`] is the untyped entry point.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
    timeout: Duration,
    /// Sent with every call of this handle; `None` (the default) sends plain requests.
    metadata: Option<Arc<Metadata>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.handle.shared.endpoint.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Owned by the clones of one `Client`; dropping the last one ends the connection.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.user_gone.notify_one();
    }
}

/// State shared by the callers and the connection's reader task.
struct Shared {
    outbox: Arc<Outbox>,
    calls: Calls,
    endpoint: Endpoint,
    user_gone: Notify,
}

impl Client {
    /// Connects to `endpoint` with the default [`ClientConfig`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rpc_core::Error> {
    /// let client = rpc_core::Client::connect("tcp://127.0.0.1:7878").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(endpoint: impl ToEndpoint) -> Result<Client, Error> {
        Client::connect_with(endpoint, ClientConfig::default()).await
    }

    /// Connects to `endpoint`: opens the socket and exchanges hellos within
    /// `config.connect_timeout`.
    pub async fn connect_with(
        endpoint: impl ToEndpoint,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let endpoint = endpoint.to_endpoint()?;
        let handshake = handshake(&endpoint, &config);
        let (stream, reader, peer_max) = tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| Error::ConnectTimeout {
                endpoint: endpoint.to_string(),
                timeout: config.connect_timeout,
            })??;
        let stream = Arc::new(stream);
        let outbox = Outbox::new(stream.clone(), peer_max);
        let shared = Arc::new(Shared {
            outbox: outbox.clone(),
            calls: Calls::new(config.max_in_flight),
            endpoint,
            user_gone: Notify::new(),
        });
        spawn_logged("client writer", outbox.run_writer());
        let watched = shared.clone();
        spawn_logged("client deadline watchdog", async move {
            watched.calls.watchdog(|id| watched.cancel(id)).await;
        });
        spawn_logged("client reader", read_loop(shared.clone(), stream, reader));
        let handle = Arc::new(Handle { shared });
        Ok(Client { handle, timeout: config.call_timeout, metadata: None })
    }

    /// A handle on the same connection whose calls have deadline `timeout`; one too large to
    /// be a point in time (such as `Duration::MAX`) means no deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { timeout, ..self.clone() }
    }

    /// A handle on the same connection whose calls carry `metadata` (replacing this
    /// handle's), such as an authentication token; see [`Metadata`] for its limits.
    pub fn with_metadata(&self, metadata: Metadata) -> Client {
        let metadata = (!metadata.is_empty()).then(|| Arc::new(metadata));
        Client { metadata, ..self.clone() }
    }

    /// The metadata this handle sends with each call.
    pub fn metadata(&self) -> &Metadata {
        self.metadata.as_deref().unwrap_or(Metadata::empty())
    }

    /// Sends a one-way call of `method` with the encoded argument tuple `args`: returns once
    /// the request is handed to the connection (written, or queued behind other writes), and
    /// no reply ever comes. The handle's timeout goes along as the call's budget, after which
    /// the server stops the call; whether the call ran, and how it ended, the caller never
    /// learns. Errors are local only: the connection is closed, or the arguments or metadata
    /// could not be encoded.
    pub async fn call_oneway<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<(), Error> {
        let shared = &self.handle.shared;
        let deadline = Instant::now().checked_add(self.timeout);
        let budget_us = budget_us(deadline, self.timeout);
        let metadata = self.call_metadata()?;
        let span =
            tracing::debug_span!("rpc.oneway", method = method, trace_id = tracing::field::Empty);
        record_trace(&span, metadata.as_deref());
        let _entered = span.enter();
        if shared.calls.is_closed() {
            return Err(Error::ConnectionClosed);
        }
        let header = request_header(ONEWAY_ID, method, budget_us, metadata.as_deref());
        shared.outbox.send(&header, wire::body(args))
    }

    /// The metadata of one call: this handle's, plus a child `traceparent` when the task is
    /// in a trace ([`trace::in_trace`](crate::trace::in_trace)). `None` when there is none.
    fn call_metadata(&self) -> Result<Option<Cow<'_, Metadata>>, Error> {
        let Some(parent) = crate::trace::current() else {
            return Ok(self.metadata.as_deref().map(Cow::Borrowed));
        };
        let mut metadata = self.metadata.as_deref().cloned().unwrap_or_default();
        metadata.insert(crate::trace::TRACEPARENT, parent.child().to_string())?;
        Ok(Some(Cow::Owned(metadata)))
    }

    /// The deadline this handle gives each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint this client connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.handle.shared.endpoint
    }

    /// Calls `method` with the encoded argument tuple `args` and decodes the result as `R`.
    ///
    /// Ends with [`Error::DeadlineExceeded`] when the deadline passes first. Dropping the
    /// returned future cancels the call on the server.
    pub async fn call<A, R>(&self, method: u32, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let deadline = Instant::now().checked_add(self.timeout);
        let metadata = self.call_metadata()?;
        let span =
            tracing::debug_span!("rpc.call", method = method, trace_id = tracing::field::Empty);
        record_trace(&span, metadata.as_deref());
        let call = self.call_raw(method, args, deadline, metadata.as_deref());
        // Without a subscriber that wants it, the span is not entered on every poll.
        let result = if span.is_disabled() {
            call.await
        } else {
            tracing::Instrument::instrument(call, span).await
        };
        match result {
            Ok(body) => wire::decode_body(&body).map_err(Error::Decode),
            // The server may notice the deadline a moment before we do; it is the same event.
            Err(
                Error::Remote { code: Code::DeadlineExceeded, .. } | Error::DeadlineExceeded(_),
            ) => Err(Error::DeadlineExceeded(self.timeout)),
            Err(e) => Err(e),
        }
    }

    async fn call_raw<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
        deadline: Option<Instant>,
        metadata: Option<&Metadata>,
    ) -> Result<Bytes, Error> {
        let shared = &self.handle.shared;
        // The budget sent is the time left: the whole timeout, less any wait for a slot.
        let mut budget = self.timeout;
        let Registered { id, concurrent } = loop {
            // Registered with the waker of the poll running now (the call waits for it).
            let register = |cx: &mut std::task::Context<'_>| {
                Poll::Ready(shared.calls.register(deadline, cx.waker()))
            };
            if let Some(registered) = poll_fn(register).await? {
                break registered;
            }
            // Only a caller that waits for a slot needs a timer of its own; a registered
            // call's deadline is kept by the connection's watchdog.
            if !shared.calls.wait_for_slot(deadline).await {
                return Err(Error::DeadlineExceeded(self.timeout));
            }
            budget = deadline.map_or(budget, |d| d.saturating_duration_since(Instant::now()));
        };
        // From here on, dropping this future removes the call and, once sent, cancels it.
        let mut guard = CallGuard { shared, id, sent: false, removed: false };
        let request = request_header(id, method, budget_us(deadline, budget), metadata);
        // Whether this is still the poll that registered the call. The wake for the result
        // is then still to come, to the waker the call was registered with, which is this
        // poll's: the first wait needs no lookup.
        let mut unpolled = true;
        if concurrent {
            // Other calls are in flight, so more callers are likely runnable right now: let
            // them queue their requests too, and write them all with one syscall.
            let flush = shared.outbox.send_deferred(&request, wire::body(args))?;
            guard.sent = true;
            if let Some(flush) = flush {
                // The request may leave with another task's write and be answered meanwhile;
                // the poll that ends this yield then uses up the result's wake.
                unpolled = false;
                tokio::task::yield_now().await;
                drop(flush);
            }
        } else {
            // A lone call goes out at once: nothing to wait for but latency.
            shared.outbox.send(&request, wire::body(args))?;
            guard.sent = true;
        }
        poll_fn(|cx| {
            // A result that came already woke the registered waker, so this poll is repeated.
            if std::mem::take(&mut unpolled) {
                return Poll::Pending;
            }
            let result = shared.calls.poll_result(id, cx.waker());
            guard.removed = result.is_ready();
            result
        })
        .await
    }
}

/// The budget to send for a call with `deadline`, `budget` from now.
fn budget_us(deadline: Option<Instant>, budget: Duration) -> u64 {
    match deadline {
        // The largest budget means none at all; a smaller one that large would not end.
        Some(_) => u64::try_from(budget.as_micros()).unwrap_or(NO_DEADLINE),
        None => NO_DEADLINE,
    }
}

/// A plain Request, or a RequestMeta when there is metadata to send.
fn request_header<'a>(
    id: u64,
    method: u32,
    budget_us: u64,
    metadata: Option<&'a Metadata>,
) -> Header<'a> {
    match metadata {
        None => Header::Request { id, method, budget_us },
        Some(metadata) => {
            Header::RequestMeta { id, method, budget_us, metadata: Cow::Borrowed(metadata) }
        }
    }
}

/// Records the trace id of the call's `traceparent`, if any, on its span.
fn record_trace(span: &tracing::Span, metadata: Option<&Metadata>) {
    if span.is_disabled() {
        return;
    }
    let trace = metadata.and_then(|m| m.get_str(crate::trace::TRACEPARENT));
    if let Some(trace) = trace.and_then(TraceContext::parse) {
        span.record("trace_id", trace.trace_id_hex());
    }
}

/// Removes a call that ends early (error, deadline or drop) and tells the server to stop.
struct CallGuard<'a> {
    shared: &'a Shared,
    id: u64,
    sent: bool,
    /// The call took its result and left the table already.
    removed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.removed && self.shared.calls.abandon(self.id) && self.sent {
            self.shared.cancel(self.id);
        }
    }
}

impl Shared {
    /// Tells the server that call `id` was abandoned.
    fn cancel(&self, id: u64) {
        let _ = self.outbox.send(&Header::Cancel { id }, wire::no_body);
    }

    /// Ends every pending call with an error made by `error` and refuses new ones.
    fn close(&self, error: impl Fn() -> Error) {
        self.calls.close(error);
        // Every call has ended: nothing queued is still wanted, and a server that stopped
        // reading must not keep the writer task (and the socket) alive.
        self.outbox.close(false);
    }

    /// Handles one frame from the server.
    fn on_frame(&self, frame: Bytes) -> Result<(), Error> {
        match proto::on_frame(&frame)? {
            Event::Response { id, body_at } => self.calls.complete(id, Ok(frame.slice(body_at..))),
            Event::Failure { id, error } => self.calls.complete(id, Err(error)),
            Event::GoAway { last_id } => {
                self.calls.go_away(last_id);
                Ok(())
            }
        }
    }
}

/// Connects and exchanges hellos; returns the stream, the reader holding any bytes that
/// followed the server's hello, and the largest frame the server accepts.
async fn handshake(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(Stream, FrameReader, usize), Error> {
    let max_frame = config.max_frame;
    let stream = Stream::connect(endpoint, config.tcp_keepalive)
        .await
        .map_err(|source| Error::Connect { endpoint: endpoint.to_string(), source })?;
    let mut hello = bytes::BytesMut::new();
    wire::encode_hello(&mut hello, max_frame);
    // A server that refuses us may close before our hello is written; its Close frame can
    // still be waiting to be read, and says more than the write error.
    let written = conn::write_all(&stream, hello).await;
    let mut reader = FrameReader::new(wire::MAX_HELLO);
    let first = match conn::next_frame(&stream, &mut reader).await {
        Ok(Some(first)) => first,
        Ok(None) => return Err(written.err().map_or(Error::ConnectionClosed, Error::Io)),
        Err(e) => return Err(written.err().map_or(e, Error::Io)),
    };
    // A refusal (a Close in place of the hello) says more than the write error.
    let peer_max = proto::on_server_hello(&first)?;
    written?;
    reader.set_max_frame(max_frame);
    Ok((stream, reader, peer_max))
}

/// The connection's reader task: routes responses to their calls until the connection ends,
/// then ends every call still pending.
async fn read_loop(shared: Arc<Shared>, stream: Arc<Stream>, mut reader: FrameReader) {
    let mut user_gone = std::pin::pin!(shared.user_gone.notified());
    let result = loop {
        // Handle every frame already buffered before waiting on the socket again.
        let handled = loop {
            match reader.next_buffered() {
                Ok(Some(frame)) => {
                    if let Err(e) = shared.on_frame(frame) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = handled {
            break Err(e);
        }
        tokio::select! {
            ready = stream.readable() => match ready.map_err(Error::Io).and_then(|()| reader.fill(|buf| stream.try_read_buf(buf))) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            },
            () = &mut user_gone => break Ok(()),
        }
    };
    match result {
        Ok(()) => shared.close(|| Error::ConnectionClosed),
        Err(e) => {
            tracing::debug!(endpoint = %shared.endpoint, error = %e, "connection failed");
            shared.calls.close(|| e.duplicate());
            match e.close_code() {
                // The server broke the protocol (or sent too large a frame): say so, as it would.
                Some(code) => shared.outbox.close_with(&Header::close(code, &e.to_string())),
                None => shared.outbox.close(false),
            }
        }
    }
}
