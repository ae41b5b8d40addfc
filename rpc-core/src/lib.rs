//! The runtime of the RPC framework: endpoints, framing, the wire format, a multiplexed
//! client and a concurrent server.
//!
//! Most users write a trait annotated with [`service`] and use the generated `FooClient` and
//! `FooServer`; this crate is what those stand on. See the repository's README for a complete
//! example and WIRE.md for the protocol.
//!
//! A [`Client`] reconnects on its own and hands calls over to a new connection when its server
//! sends GoAway ([`Reconnect`]); it is a `tower::Service` of [`Call`]s, [`Client::from_service`]
//! puts tower layers under a generated client, and [`Client::balanced`] spreads calls over
//! several servers.
//!
//! # Layout
//! Sockets:
//! - `endpoint`: `tcp://…` / `unix:…` addresses, parsed and displayed ([`Endpoint`]).
//! - `net`: one listener and stream type over TCP and Unix sockets, peer identity ([`Peer`]).
//! - `sockfile`: Unix socket files put in place safely, and removed when the server stops.
//!
//! The protocol, apart from I/O:
//! - `frame`: length-prefixed frames and the frame size limit.
//! - `codec`: the only module that calls bincode.
//! - `wire`: the messages inside frames; mirrors WIRE.md.
//! - `proto`: each side of a connection as state machines without I/O: bytes and frames in,
//!   what to send and what happened out (`inbound`, `outbound`, `server`, `client`).
//!
//! The I/O around it:
//! - `conn`: a connection's writing: the outbound state machine driven by senders and a writer task.
//! - `client`: one connection of a client: the call path and the connection's reader task.
//! - `handle`: [`Client`], the handle users call through, and which failed calls go again.
//! - `reconnect`: the connection manager: reconnect, GoAway handoff, [`ConnectionState`].
//! - `backoff`: delays between connection attempts ([`Backoff`]), without clocks.
//! - `layer`: tower glue: [`Client`] as a `tower::Service` of [`Call`]s, clients over stacks.
//! - `balance`: a client over several endpoints with `tower::balance::p2c`.
//! - `calls`: the client's calls in flight: ids, results, the in-flight limit, deadlines.
//! - `config`: [`ServerConfig`].
//! - `server`: [`Server`]: listeners, accept loops, graceful shutdown.
//! - `builder`: [`ServerBuilder`] (several services, listeners, interceptors) and
//!   [`ShutdownHandle`].
//! - `router`: which of a server's services has a method id.
//! - `intercept`: [`Interceptor`]s, which see every call before dispatch and its outcome after.
//! - `accept`: accepting for a server: accept failures, refusals, the spare descriptor.
//! - `budget`: the process-wide budget for bytes buffered on behalf of peers.
//! - `fdlimit`: the open-file limit, raised once, and connections counted against it.
//! - `driver`: one server connection: hello, request loop, cancel, backpressure; its
//!   `dispatch` starts each call (route, one-way check, interceptors, inline run).
//! - `sink`: where a server connection's calls send their outcomes and stream frames.
//! - `task`: tasks whose panics are reported.
//! - `stream_slot`: one call's streams shared by the reader and the task that takes or sends
//!   items: credit, items not yet taken, wakers.
//! - `stream_send`: a stream's items sent in batches: encoded and queued together.
//! - `stream_items`: a received stream's items in batches: delivered together by the reader,
//!   moved out together by the consumer, small ones copied into one buffer.
//! - `streaming`: [`Streaming`], a stream of items within a call, on either side.
//! - `client_streams`: the client's streaming calls: items out under credit, items in.
//!
//! The contract with generated code:
//! - `context`: [`Context`], what a handler knows about its call.
//! - `metadata`: [`Metadata`], the key → value entries a request may carry.
//! - `trace`: W3C trace context ([`TraceContext`]) carried in metadata.
//! - `service`: [`Service`], the contract generated code implements.
//! - `error`: [`Error`] and the wire error [`Code`]s.
//! - `ratelimit`: one log line per period for warnings that repeat.
//! - `__fuzz` and `wire` (feature `internals`, hidden): the decoders, for fuzz targets and
//!   tests; not a public API.

mod accept;
mod backoff;
mod balance;
mod budget;
mod builder;
mod calls;
mod client;
mod client_streams;
mod codec;
mod config;
mod conn;
mod context;
mod driver;
mod endpoint;
mod error;
mod fdlimit;
mod frame;
mod handle;
mod intercept;
mod layer;
pub mod metadata;
mod net;
mod proto;
mod ratelimit;
mod reconnect;
mod router;
mod server;
mod service;
mod sink;
mod sockfile;
mod stream_items;
mod stream_send;
mod stream_slot;
mod streaming;
mod task;
pub mod trace;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod wire;
#[cfg(not(feature = "internals"))]
mod wire;

pub use backoff::Backoff;
pub use budget::DEFAULT_BUFFER_BUDGET;
pub use builder::{ServerBuilder, ShutdownHandle};
pub use client::ClientConfig;
pub use config::ServerConfig;
pub use context::Context;
pub use endpoint::{Endpoint, ToEndpoint};
pub use error::{Code, Error};
pub use frame::DEFAULT_MAX_FRAME;
pub use handle::Client;
pub use intercept::{CallInfo, Interceptor, Outcome, Rejection};
pub use layer::Call;
pub use metadata::Metadata;
pub use net::{Keepalive, Peer};
pub use proto::stream::StreamWindow;
pub use reconnect::{ConnectionState, Reconnect};
pub use rpc_macros::service;
pub use server::Server;
pub use service::{DispatchError, HandlerFuture, Responder, Service, decode_args};
pub use streaming::{StreamSender, Streaming};
pub use tower;
pub use trace::TraceContext;
pub use wire::MIN_MAX_FRAME;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod __fuzz;

/// What `#[service]`-generated code refers to. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::service::{DispatchError, HandlerFuture, Responder, Service, decode_args};
    pub use futures_core::Stream;
    pub use std::boxed::Box;
    pub use std::sync::Arc;
    pub use std::vec::Vec;
}
