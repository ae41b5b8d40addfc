//! What a handler may know about the call it serves: [`Context`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Metadata, Peer, TraceContext};

/// The request a handler is serving: its id, deadline, peer and cancellation token.
///
/// A handler receives it by declaring `ctx: &rpc_core::Context` as its first parameter after
/// `&self`; the parameter is not part of the method's wire signature, and the client method
/// does not have it. Explicit, so that what a handler depends on is visible in its signature
/// and can be handed to tasks it spawns.
///
/// ```
/// #[rpc_core::service]
/// pub trait Frontend {
///     async fn lookup(&self, ctx: &rpc_core::Context, key: String) -> Option<String>;
/// }
///
/// #[rpc_core::service]
/// pub trait Store {
///     async fn get(&self, key: String) -> Option<String>;
/// }
///
/// struct Front {
///     store: StoreClient,
/// }
///
/// impl Frontend for Front {
///     async fn lookup(&self, ctx: &rpc_core::Context, key: String) -> Option<String> {
///         // Pass the caller's remaining budget on to the downstream call.
///         let store = self.store.with_timeout(ctx.remaining());
///         tokio::select! {
///             found = store.get(key) => found.ok().flatten(),
///             () = ctx.cancelled() => None,
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    id: u64,
    deadline: Instant,
    peer: Arc<Peer>,
    token: CancellationToken,
    metadata: Option<Arc<Metadata>>,
}

impl Context {
    pub(crate) fn new(
        id: u64,
        deadline: Instant,
        peer: Arc<Peer>,
        token: CancellationToken,
        metadata: Option<Arc<Metadata>>,
    ) -> Self {
        Context { id, deadline, peer, token, metadata }
    }

    /// The metadata the caller sent with the request (empty if none).
    pub fn metadata(&self) -> &Metadata {
        self.metadata.as_deref().unwrap_or(Metadata::empty())
    }

    /// The caller's W3C trace context, from the request's `traceparent` metadata, if it sent
    /// a valid one.
    pub fn trace(&self) -> Option<TraceContext> {
        self.metadata().get_str(crate::trace::TRACEPARENT).and_then(TraceContext::parse)
    }

    /// Whether the call is one-way: nobody waits for its outcome, which is dropped.
    pub fn is_oneway(&self) -> bool {
        self.id == crate::service::ONEWAY_ID
    }

    /// The request id, unique among the calls in flight on this connection.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// When the caller stops waiting; the server drops the handler at this instant.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left until [`Context::deadline`]; zero once it has passed. Give it to downstream
    /// calls with `client.with_timeout(ctx.remaining())`.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Who made the call: a TCP address, or a Unix peer's pid, uid and gid.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Fires when the call is abandoned: the client cancelled it, its deadline passed, the
    /// connection was lost, or the server's shutdown grace period ran out. Clone it into tasks
    /// the handler spawns so they stop too. It does not fire when the handler returns.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.token
    }

    /// Completes when [`Context::cancellation_token`] fires.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}
