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
use crate::proto::stream::{Grant, StreamWindow};
use crate::stream_items::Intake;
use crate::stream_send::{self, Frames, Sent};
use crate::stream_slot::{Slot, Slots};
use crate::streaming::{Source, Streaming};
use crate::wire::Header;
use crate::{Code, Context, Error, Metadata, Peer};

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
    /// The call's streams, once [`Responder::open_streams`] opened them.
    slot: Option<Arc<Slot>>,
}

/// Where a [`Responder`] delivers its call's outcome: the server connection the request came
/// on. A trait, so that this contract does not depend on how connections are built.
pub(crate) trait Sink: Frames + Send + Sync + std::fmt::Debug {
    /// Who made the calls.
    fn peer(&self) -> &Arc<Peer>;

    /// Sends call `id`'s return value, which `body` encodes; a value that cannot be sent is
    /// answered with a framework error instead.
    fn respond(&self, id: u64, body: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>);

    /// The connection's open streams.
    fn slots(&self) -> &Slots;

    /// The window the server grants each stream it receives.
    fn window(&self) -> StreamWindow;

    /// Sends one frame of call `id`'s streams; the body's size, if it was sent.
    fn send_stream_frame(
        &self,
        header: &Header<'_>,
        body: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<usize, Error>;

    /// Answers call `id` with a framework error.
    fn fail(&self, id: u64, code: Code, message: &str);
}

impl Responder {
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        id: u64,
        deadline: Instant,
        metadata: Option<Arc<Metadata>>,
    ) -> Self {
        Responder { sink, id, deadline, metadata, token: None, slot: None }
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
        self.close_streams();
        if self.id == ONEWAY_ID {
            // A one-way call is answered by nobody.
            return;
        }
        self.sink.respond(self.id, &mut |buf| codec::encode_into(value, buf));
    }

    /// Opens the call's streams before it starts, so that the client's frames for them find
    /// them: `receive` for a method that takes a [`Streaming`] argument (the client's items
    /// are let in at once, within the server's window), `send` for one that returns a
    /// [`Streaming`]. Generated code calls it in [`Service::call`].
    pub fn open_streams(&mut self, receive: bool, send: bool) {
        let window = receive.then(|| self.sink.window());
        let (slot, grant) = Slot::new(window, send);
        self.sink.slots().insert(self.id, slot.clone());
        self.slot = Some(slot);
        if let Some(Grant { items, bytes }) = grant {
            let credit = Header::Credit { id: self.id, items, bytes };
            let _ = self.sink.send_stream_frame(&credit, &mut |_| Ok(()));
        }
    }

    /// The client's stream of items, for a call whose streams were opened with `receive`
    /// (otherwise a stream without items).
    pub fn input<T>(&mut self) -> Streaming<T> {
        match &self.slot {
            Some(slot) => Streaming::remote(Box::new(Input {
                intake: Intake::new(slot.clone()),
                sink: self.sink.clone(),
                id: self.id,
            })),
            None => Streaming::done(),
        }
    }

    /// Sends `items` as the call's stream of results, each as soon as the client's credit
    /// lets it, then ends the call. An item that cannot be sent (too large for the client, or
    /// its `Serialize` fails) or an error item of a received stream being passed on fails the
    /// call with that error instead. Call [`Responder::open_streams`] with `send` first.
    pub async fn send_stream<T: Serialize + DeserializeOwned>(self, mut items: Streaming<T>) {
        use futures_core::Stream;
        let Some(slot) = self.slot.clone() else {
            return self.fail(Code::BadRequest, "the call's stream was not opened");
        };
        let next = |cx: &mut std::task::Context<'_>| Pin::new(&mut items).poll_next(cx);
        match stream_send::send_items(self.id, &slot, &*self.sink, next).await {
            Sent::Ended => self.send(&()),
            // The call or the connection is gone.
            Sent::Closed => {}
            Sent::Unsendable { error, panicked } => {
                let (code, message) = crate::proto::server::unsendable(&error, panicked);
                self.fail(code, &format!("a stream item: {message}"));
            }
            Sent::Failed(e) => {
                let code = e.code().unwrap_or(Code::Other(0));
                self.fail(code, &e.to_string());
            }
        }
    }

    /// Ends the call with a framework error.
    fn fail(mut self, code: Code, message: &str) {
        self.token = None;
        self.close_streams();
        self.sink.fail(self.id, code, message);
    }

    #[inline]
    fn close_streams(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.sink.slots().remove(self.id, &slot);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.cancel();
        }
        self.close_streams();
    }
}

/// The client's items of one call, as a handler takes them.
struct Input {
    intake: Intake,
    sink: Arc<dyn Sink>,
    id: u64,
}

impl Source for Input {
    fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<&[u8], Error>>> {
        let (grant, ready) = self.intake.poll_ready(cx);
        if let Some(Grant { items, bytes }) = grant {
            let credit = Header::Credit { id: self.id, items, bytes };
            let _ = self.sink.send_stream_frame(&credit, &mut |_| Ok(()));
        }
        ready.map(|more| if more { self.intake.take().map(Ok) } else { None })
    }
}
