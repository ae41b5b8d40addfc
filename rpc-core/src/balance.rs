//! A client over several endpoints: tower's power-of-two-choices balancer by pending calls,
//! endpoints from a list or a stream of changes, and calls sent again where that is safe.

use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{BoxError, ServiceExt};

use crate::client::ClientConfig;
use crate::layer::Call;
use crate::reconnect::Manager;
use crate::{Client, Endpoint, Error, ToEndpoint};

/// Calls queued for the balancer's task before callers wait for room.
const QUEUE: usize = 1024;

/// A call one endpoint failed, and whether its server may have started it. Crate-private:
/// the balancer's resend decides with it, and [`crate::layer::from_box`] unwraps it.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) crate::client::Failed);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.error.fmt(f)
    }
}

impl std::error::Error for Failed {}

type Changes<K> = Pin<Box<dyn Stream<Item = Change<K, Endpoint>> + Send>>;

impl Client {
    /// A client that balances calls over `endpoints`, each with its own reconnecting
    /// connection made with `config`. Must be called inside a tokio runtime.
    ///
    /// Each call goes to the less loaded (fewer calls pending) of two endpoints picked at
    /// random among those connected (`tower::balance::p2c`). An endpoint whose connection is
    /// lost, or whose server sends GoAway, takes no calls until it is connected again; calls
    /// it never started, and idempotent ones lost with it, are sent to another endpoint
    /// within their deadline.
    pub fn balanced<E: ToEndpoint>(
        endpoints: impl IntoIterator<Item = E>,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let endpoints =
            endpoints.into_iter().map(|e| e.to_endpoint()).collect::<Result<Vec<_>, _>>()?;
        let inserts = endpoints.into_iter().enumerate().map(|(k, e)| Change::Insert(k, e));
        Ok(Client::discover(Listed(inserts), config))
    }

    /// Like [`Client::balanced`], with endpoints learned from `changes`: `Insert(key,
    /// endpoint)` adds one (or replaces the one with that key), `Remove(key)` drops it
    /// (calls in flight there finish). Must be called inside a tokio runtime.
    pub fn discover<K, S>(changes: S, config: ClientConfig) -> Client
    where
        K: Hash + Eq + Clone + Send + 'static,
        S: Stream<Item = Change<K, Endpoint>> + Send + 'static,
    {
        let timeout = config.call_timeout;
        let discover = Endpoints { changes: Box::pin(changes), config };
        let balance = Balance::new(PendingRequestsDiscover::new::<Call>(
            discover,
            CompleteOnResponse::default(),
        ));
        let buffer = Buffer::new(balance, QUEUE);
        Client::from_service(Resend { inner: buffer }).with_timeout(timeout)
    }
}

/// A list of changes as a stream that ends.
struct Listed<I>(I);

impl<I: Iterator + Unpin> Stream for Listed<I> {
    type Item = I::Item;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

/// The balancer's `Discover`: endpoint changes become changes of [`One`] services.
struct Endpoints<K> {
    changes: Changes<K>,
    config: ClientConfig,
}

impl<K> Stream for Endpoints<K> {
    type Item = Result<Change<K, One>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let change = match ready!(self.changes.as_mut().poll_next(cx)) {
            None => return Poll::Ready(None),
            Some(Change::Remove(key)) => Change::Remove(key),
            Some(Change::Insert(key, endpoint)) => {
                let client = Client::connect_lazy(endpoint, self.config.clone());
                match client.ok().and_then(|c| c.manager().cloned().map(|m| (c, m))) {
                    Some((client, manager)) => {
                        Change::Insert(key, One { _client: client, manager, waiting: None })
                    }
                    // An endpoint already parsed does not fail again; nothing to add if it did.
                    None => return self.poll_next(cx),
                }
            }
        };
        Poll::Ready(Some(Ok(change)))
    }
}

/// One endpoint as the balancer sees it: ready while its connection takes calls.
struct One {
    /// Keeps the endpoint's manager running while the balancer holds it.
    _client: Client,
    manager: Arc<Manager>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl tower::Service<Call> for One {
    type Response = Bytes;
    type Error = Failed;
    type Future = Pin<Box<dyn Future<Output = Result<Bytes, Failed>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        loop {
            if let Some(waiting) = &mut self.waiting {
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            if self.manager.usable().is_some() {
                return Poll::Ready(Ok(()));
            }
            // Subscribed before looking again, so a connection made meanwhile is not missed.
            let mut changes = self.manager.subscribe();
            self.manager.want();
            if self.manager.usable().is_some() {
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = self.manager.failed() {
                // Given up for good: the balancer drops the endpoint.
                return Poll::Ready(Err(Failed(crate::client::Failed { error, started: false })));
            }
            self.waiting = Some(Box::pin(async move {
                let _ = changes.changed().await;
            }));
        }
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let conn = self.manager.usable();
        Box::pin(async move {
            let Some(conn) = conn else {
                let error = Error::ConnectionClosed;
                return Err(Failed(crate::client::Failed { error, started: false }));
            };
            let deadline = Instant::now().checked_add(call.timeout);
            let args = call.args;
            let body = move |buf: &mut BytesMut| {
                buf.extend_from_slice(&args);
                Ok(())
            };
            conn.call_raw(call.method, body, deadline, call.timeout, None).await.map_err(Failed)
        })
    }
}

/// Above the balancer: a call an endpoint lost is sent again, to whichever endpoint the
/// balancer picks, when that is safe: it never started, or it is idempotent.
struct Resend<F> {
    inner: Buffer<Call, F>,
}

impl<F> Clone for Resend<F>
where
    F: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
{
    fn clone(&self) -> Self {
        Resend { inner: self.inner.clone() }
    }
}

impl<F> tower::Service<Call> for Resend<F>
where
    F: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
{
    type Response = Bytes;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is waited for per attempt, inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let deadline = Instant::now().checked_add(call.timeout);
            loop {
                let error = match inner.clone().oneshot(call.clone()).await {
                    Ok(body) => return Ok(body),
                    Err(error) => error,
                };
                let again = match error.downcast_ref::<Failed>() {
                    Some(Failed(failed)) => crate::handle::may_send_again(failed, call.idempotent),
                    None => false,
                };
                if !again {
                    return Err(error);
                }
                // Each attempt gets what is left of the call's time.
                call.timeout = match deadline {
                    Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                    None => call.timeout,
                };
                if call.timeout == Duration::ZERO {
                    return Err(Error::DeadlineExceeded(Duration::ZERO).into());
                }
            }
        })
    }
}
