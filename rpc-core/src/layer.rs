//! tower glue: [`Client`] as a `tower::Service` of encoded [`Call`]s, and a client over any
//! tower stack of them, so tower's layers (timeout, retry, limits, load shedding) apply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};

use crate::{Client, Error};

/// One call with its arguments already encoded, as it travels through a tower stack: the
/// request type of [`Client`]'s `tower::Service` implementation. Its response is the
/// encoded result; the typed methods of a [`Client`] made with [`Client::from_service`]
/// encode and decode around it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call {
    /// The method's wire id (the generated `FooClient::ADD_ID` constants).
    pub method: u32,
    /// The argument tuple, encoded.
    pub args: Bytes,
    /// The call's deadline, counted from when a `Client` sends it.
    pub timeout: Duration,
    /// Whether the method may run twice without harm (`#[rpc(idempotent)]`), so a call
    /// lost with its connection may be sent again.
    pub idempotent: bool,
}

impl Call {
    /// A call of `method` with the encoded arguments `args`.
    pub fn new(method: u32, args: Bytes, timeout: Duration, idempotent: bool) -> Call {
        Call { method, args, timeout, idempotent }
    }
}

/// A tower stack behind a [`Client`], boxed so the handle has one type.
pub(crate) type BoxedService = BoxCloneSyncService<Call, Bytes, BoxError>;

pub(crate) fn boxed<S>(service: S) -> BoxedService
where
    S: tower::Service<Call, Response = Bytes> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service.map_err(Into::into))
}

/// Sends `call` through `service` and waits for it, never past `deadline`.
pub(crate) async fn call(
    service: &BoxedService,
    call: Call,
    deadline: Option<Instant>,
) -> Result<Bytes, Error> {
    let sent = service.clone().oneshot(call);
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| Error::DeadlineExceeded(Duration::ZERO))?,
        None => sent.await,
    };
    result.map_err(from_box)
}

/// The framework error a tower layer's error stands for: ours unwrapped, tower's timeout as
/// a deadline, anything else (load shed, rate limit, a user's layer) as [`Error::Layer`].
pub(crate) fn from_box(error: BoxError) -> Error {
    let error = match error.downcast::<Error>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    let error = match error.downcast::<crate::balance::Failed>() {
        Ok(failed) => return failed.0.error,
        Err(error) => error,
    };
    if error.is::<tower::timeout::error::Elapsed>() {
        return Error::DeadlineExceeded(Duration::ZERO);
    }
    Error::Layer(error)
}

/// A client is a `tower::Service` of encoded calls, always ready: a call waits for a
/// connection (within its deadline) inside its future, not in `poll_ready`.
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// # async fn demo(client: rpc_core::Client) {
/// // Limits and timeouts from tower around a reconnecting client; `Client::from_service`
/// // makes the stack a client again, for a generated `FooClient::new`.
/// let stack = ServiceBuilder::new()
///     .concurrency_limit(64)
///     .timeout(Duration::from_secs(2))
///     .service(client);
/// let limited = rpc_core::Client::from_service(stack);
/// # let _ = limited;
/// # }
/// ```
impl tower::Service<Call> for Client {
    type Response = Bytes;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.call_encoded(call).await })
    }
}
