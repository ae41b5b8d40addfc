//! The contract between `#[service]`-generated code and the server: [`Service`] and [`Responder`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::{self, CodecError};
use crate::{Context, Metadata, Peer};

/// The request id of one-way requests: never answered (WIRE.md).
pub(crate) const ONEWAY_ID: u64 = 0;

/// A running call: the future a [`Service`] returns for one request. It must end by calling
/// [`Responder::send`] exactly once.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Maps a method id and an encoded argument tuple to a running call.
///
/// `#[service]` implements this for the generated `FooServer` type; implement it by hand only
/// to serve something the macro cannot express.
pub trait Service: Send + Sync + 'static {
    /// The service's name, for logs and error messages.
    fn name(&self) -> &'static str;

    /// The name of the method with this id, or `None` if there is no such method.
    fn method_name(&self, method: u32) -> Option<&'static str>;

    /// Every method's id and name, so that a server hosting several services can route by
    /// id and refuse an id two services share. The default, none, suits a server hosting
    /// this service alone.
    fn methods(&self) -> Vec<(u32, &'static str)> {
        Vec::new()
    }

    /// Whether `method` is one-way: its caller wants no reply, so its requests carry id 0
    /// and nothing is sent back. Default: no method is.
    fn is_oneway(&self, method: u32) -> bool {
        let _ = method;
        false
    }

    /// The implementing type's name, to tell apart two services that share a name.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Decodes `body` as the arguments of `method` and starts the call, which answers through
    /// `reply`. Decoding happens here, before anything is spawned, so a bad request costs
    /// nothing but its error response.
    fn call(
        &self,
        method: u32,
        body: &[u8],
        reply: Responder,
    ) -> Result<HandlerFuture, DispatchError>;
}

/// Why a request could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchError {
    /// No method has this id.
    UnknownMethod,
    /// The body does not decode as the method's arguments; the message says why.
    BadRequest(String),
}

/// Decodes a request body as the argument tuple `T`; used by generated code. A panic in a
/// `Deserialize` implementation is caught, logged, and fails this call only.
pub fn decode_args<T: DeserializeOwned>(body: &[u8]) -> Result<T, DispatchError> {
    codec::decode_exact(body).map_err(|e| {
        if e.panicked {
            tracing::error!(error = %e, "decoding a request's arguments panicked");
        }
        DispatchError::BadRequest(e.message)
    })
}

/// Where the result of one request goes, and what the handler may know about it.
///
/// Dropping a `Responder` without [`Responder::send`] means the call was abandoned (the server
/// drops a handler on cancel, deadline, connection loss and hard shutdown); that fires the
/// [`Context`]'s cancellation token, if a context was taken.
#[derive(Debug)]
pub struct Responder {
    sink: Arc<dyn Sink>,
    id: u64,
    deadline: Instant,
    /// The request's metadata; `None` for a request without any, which costs nothing.
    metadata: Option<Arc<Metadata>>,
    /// Made on the first [`Responder::context`] call, so calls that never ask pay nothing.
    token: Option<CancellationToken>,
}

/// Where a [`Responder`] delivers its call's outcome: the server connection the request came
/// on. A trait, so that this contract does not depend on how connections are built.
pub(crate) trait Sink: Send + Sync + std::fmt::Debug {
    /// Who made the calls.
    fn peer(&self) -> &Arc<Peer>;

    /// Sends call `id`'s return value, which `body` encodes; a value that cannot be sent is
    /// answered with a framework error instead.
    fn respond(&self, id: u64, body: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>);
}

impl Responder {
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        id: u64,
        deadline: Instant,
        metadata: Option<Arc<Metadata>>,
    ) -> Self {
        Responder { sink, id, deadline, metadata, token: None }
    }

    /// The request's metadata (empty if it carried none).
    pub fn metadata(&self) -> &Metadata {
        self.metadata.as_deref().unwrap_or(Metadata::empty())
    }

    /// The id of the request being answered.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The call's [`Context`].
    pub fn context(&mut self) -> Context {
        let token = self.token.get_or_insert_with(CancellationToken::new).clone();
        let metadata = self.metadata.clone();
        Context::new(self.id, self.deadline, self.sink.peer().clone(), token, metadata)
    }

    /// Sends `value` as the call's return value.
    ///
    /// A value that cannot be encoded (its `Serialize` fails: code `EncodeFailed`, or panics:
    /// `HandlerPanicked`), or that is larger than the client accepts (`FrameTooLarge`), is
    /// answered with that framework error instead, so the caller always learns the outcome.
    pub fn send<T: Serialize + ?Sized>(mut self, value: &T) {
        // The call completed: it was not abandoned, so the token must not fire.
        self.token = None;
        if self.id == ONEWAY_ID {
            // A one-way call is answered by nobody.
            return;
        }
        self.sink.respond(self.id, &mut |buf| codec::encode_into(value, buf));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.cancel();
        }
    }
}
