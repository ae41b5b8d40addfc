//! [`Client`]: the handle users call through, over a managed connection or a tower stack,
//! and which failed calls it sends again.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::{ClientConfig, Failed};
use crate::codec::CodecError;
use crate::layer::{self, BoxedService};
use crate::reconnect::{ConnectionState, Manager};
use crate::{Code, Endpoint, Error, Metadata, ToEndpoint, TraceContext, wire};

/// A client of one server (or, through [`Client::from_service`], of whatever a tower stack
/// sends calls to). Cheap to clone; all clones share the connection, and any number of tasks
/// may call through it at once.
///
/// A client made with [`Client::connect`] outlives its connections: when one is lost, or the
/// server sends GoAway, it connects again (see [`Reconnect`](crate::Reconnect)), and calls
/// made meanwhile wait for the new connection within their deadline. A call the server
/// certainly never started (refused by GoAway) is sent again on the new connection; one that
/// may have started is sent again only if it is idempotent ([`Client::call_idempotent`],
/// `#[rpc(idempotent)]`). [`Client::state`] tells where it stands.
///
/// Usually wrapped by a generated `FooClient`; [`Client::call`] is the untyped entry point.
#[derive(Clone)]
pub struct Client {
    inner: Inner,
    timeout: Duration,
    /// Sent with every call of this handle; `None` (the default) sends plain requests.
    metadata: Option<Arc<Metadata>>,
}

#[derive(Clone)]
enum Inner {
    Managed(Arc<Owner>),
    Service(BoxedService),
}

/// Owned by the clones of one managed `Client`; the last one stops the manager.
struct Owner(Arc<Manager>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Client");
        if let Inner::Managed(owner) = &self.inner {
            f.field("endpoint", &owner.0.endpoint.to_string());
        }
        f.field("timeout", &self.timeout).finish_non_exhaustive()
    }
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
    /// `config.connect_timeout`. The first connection must succeed; later ones are made as
    /// `config.reconnect` says.
    pub async fn connect_with(
        endpoint: impl ToEndpoint,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let endpoint = endpoint.to_endpoint()?;
        let first = crate::client::Connection::open(&endpoint, &config).await?;
        Ok(Client::managed(Manager::start(endpoint, config, Some(first))))
    }

    /// A client of `endpoint` that connects in the background: it returns at once, and calls
    /// wait for the connection (or fail, as `config.reconnect` says) like after a loss.
    pub fn connect_lazy(endpoint: impl ToEndpoint, config: ClientConfig) -> Result<Client, Error> {
        let endpoint = endpoint.to_endpoint()?;
        Ok(Client::managed(Manager::start(endpoint, config, None)))
    }

    fn managed(manager: Arc<Manager>) -> Client {
        let timeout = manager.config().call_timeout;
        Client { inner: Inner::Managed(Arc::new(Owner(manager))), timeout, metadata: None }
    }

    /// A client whose calls go through `service`, such as a tower stack of layers over
    /// [`Client`]s or a [`balanced`](Client::balanced) one; see the `tower` notes in the
    /// crate docs. Calls get the default timeout of [`ClientConfig`].
    pub fn from_service<S>(service: S) -> Client
    where
        S: tower::Service<layer::Call, Response = Bytes> + Clone + Send + Sync + 'static,
        S::Error: Into<tower::BoxError>,
        S::Future: Send + 'static,
    {
        let timeout = ClientConfig::default().call_timeout;
        Client { inner: Inner::Service(layer::boxed(service)), timeout, metadata: None }
    }

    /// A handle on the same connection whose calls have deadline `timeout`; one too large to
    /// be a point in time (such as `Duration::MAX`) means no deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { timeout, ..self.clone() }
    }

    /// A handle on the same connection whose calls carry `metadata` (replacing this
    /// handle's), such as an authentication token; see [`Metadata`] for its limits. A client
    /// made with [`Client::from_service`] sends no metadata.
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
    /// learns, and it is never sent again. Errors are local only: no connection, or the
    /// arguments could not be encoded. A client made with [`Client::from_service`] refuses.
    pub async fn call_oneway<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<(), Error> {
        let Inner::Managed(owner) = &self.inner else {
            return Err(Error::Config("one-way calls need a client with a connection".into()));
        };
        let deadline = Instant::now().checked_add(self.timeout);
        let metadata = self.call_metadata()?;
        let span =
            tracing::debug_span!("rpc.oneway", method = method, trace_id = tracing::field::Empty);
        record_trace(&span, metadata.as_deref());
        let _entered = span.enter();
        let conn = owner.0.connection(deadline).await?;
        conn.send_oneway(method, wire::body(args), deadline, self.timeout, metadata.as_deref())
    }

    /// The metadata of one call: this handle's, plus a child `traceparent` when the task is
    /// in a trace ([`trace::in_trace`](crate::trace::in_trace)). `None` when there is none.
    #[inline]
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

    /// The endpoint this client connects to; `None` for one made with [`Client::from_service`].
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match &self.inner {
            Inner::Managed(owner) => Some(&owner.0.endpoint),
            Inner::Service(_) => None,
        }
    }

    /// Where the client stands: connected, connecting (with the last error), or failed for
    /// good. A client made with [`Client::from_service`] always says `Connected`.
    pub fn state(&self) -> ConnectionState {
        match &self.inner {
            Inner::Managed(owner) => owner.0.state(),
            Inner::Service(_) => ConnectionState::Connected,
        }
    }

    /// Calls `method` with the encoded argument tuple `args` and decodes the result as `R`.
    /// If the call may have started on the server, it is never sent twice.
    ///
    /// Ends with [`Error::DeadlineExceeded`] when the deadline passes first. Dropping the
    /// returned future cancels the call on the server.
    // Not an `async fn`: the future is `call_with`'s own, without a layer around it.
    pub fn call<'a, A, R>(
        &'a self,
        method: u32,
        args: &'a A,
    ) -> impl Future<Output = Result<R, Error>> + 'a
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + 'a,
    {
        self.call_with(method, args, false)
    }

    /// Like [`Client::call`], for a method that may run twice without harm: if its
    /// connection is lost (or its server stops) before the result comes, it is sent again,
    /// on the next connection, while its deadline allows.
    pub fn call_idempotent<'a, A, R>(
        &'a self,
        method: u32,
        args: &'a A,
    ) -> impl Future<Output = Result<R, Error>> + 'a
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + 'a,
    {
        self.call_with(method, args, true)
    }

    async fn call_with<A, R>(&self, method: u32, args: &A, idempotent: bool) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let deadline = Instant::now().checked_add(self.timeout);
        let result = match &self.inner {
            Inner::Managed(owner) => {
                let metadata = self.call_metadata()?;
                let span = tracing::debug_span!(
                    "rpc.call",
                    method = method,
                    trace_id = tracing::field::Empty
                );
                let body = |buf: &mut BytesMut| wire::body(args)(buf);
                let metadata = metadata.as_deref();
                // Without a subscriber that wants it, the span is not entered on every poll;
                // the call is awaited where it is made, so its future is not moved first.
                if span.is_disabled() {
                    self.managed_call(&owner.0, method, body, deadline, idempotent, metadata).await
                } else {
                    record_trace(&span, metadata);
                    let call =
                        self.managed_call(&owner.0, method, body, deadline, idempotent, metadata);
                    Box::pin(tracing::Instrument::instrument(call, span)).await
                }
            }
            Inner::Service(service) => {
                let mut buf = BytesMut::new();
                wire::body(args)(&mut buf)?;
                let request = layer::Call::new(method, buf.freeze(), self.timeout, idempotent);
                layer::call(service, request, deadline).await
            }
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

    /// A call over the managed connection, sent again on the next one while that is safe.
    async fn managed_call(
        &self,
        manager: &Manager,
        method: u32,
        body: impl Fn(&mut BytesMut) -> Result<(), CodecError>,
        deadline: Option<Instant>,
        idempotent: bool,
        metadata: Option<&Metadata>,
    ) -> Result<Bytes, Error> {
        // The first attempt sends the whole timeout, as a client without retries would.
        let mut budget = self.timeout;
        loop {
            // The usual case without a future to make, poll and drop.
            let conn = match manager.usable() {
                Some(conn) => conn,
                None => manager.connection(deadline).await?,
            };
            let Failed { error, started } =
                match conn.call_raw(method, &body, deadline, budget, metadata).await {
                    Ok(body) => return Ok(body),
                    Err(failed) => failed,
                };
            let failed = Failed { error, started };
            if !may_send_again(&failed, idempotent) || !manager.config().reconnect.enabled {
                return Err(failed.error);
            }
            let Failed { error, started } = failed;
            tracing::debug!(method, started, error = %error, "sending the call again");
            budget = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Err(Error::DeadlineExceeded(self.timeout)),
                },
                None => budget,
            };
        }
    }

    /// The managed connection's manager, for the tower glue.
    pub(crate) fn manager(&self) -> Option<&Arc<Manager>> {
        match &self.inner {
            Inner::Managed(owner) => Some(&owner.0),
            Inner::Service(_) => None,
        }
    }

    /// Sends an already encoded call, for the tower glue: `Client` as a `tower::Service`.
    pub(crate) async fn call_encoded(&self, request: layer::Call) -> Result<Bytes, Error> {
        let deadline = Instant::now().checked_add(request.timeout);
        match &self.inner {
            Inner::Managed(owner) => {
                let args = request.args.clone();
                let body = move |buf: &mut BytesMut| {
                    buf.extend_from_slice(&args);
                    Ok(())
                };
                let client = self.with_timeout(request.timeout);
                client
                    .managed_call(
                        &owner.0,
                        request.method,
                        body,
                        deadline,
                        request.idempotent,
                        None,
                    )
                    .await
            }
            Inner::Service(service) => layer::call(service, request, deadline).await,
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

/// Whether a failed call may be sent again: it never started, or it may run twice, and it
/// failed because its connection (or server) went away.
pub(crate) fn may_send_again(failed: &Failed, idempotent: bool) -> bool {
    (!failed.started || idempotent) && lost(&failed.error)
}

/// Whether `error` means the connection (or its server) went away, rather than that the
/// call itself failed: such a call may be sent again elsewhere.
fn lost(error: &Error) -> bool {
    matches!(
        error,
        Error::ConnectionClosed | Error::Io(_) | Error::Remote { code: Code::ShuttingDown, .. }
    )
}
