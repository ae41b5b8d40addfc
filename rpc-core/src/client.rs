//! One client connection: many concurrent calls matched to responses by request id.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::calls::{Calls, Registered};
use crate::conn::Outbox;
use crate::proto::server::NO_DEADLINE;
use crate::proto::stream::StreamWindow;
use crate::reconnect::Reconnect;
use crate::service::ONEWAY_ID;
use crate::stream_slot::Slots;
use crate::task::spawn_logged;
use crate::wire::{self, Header};
use crate::{Endpoint, Error, Keepalive, Metadata, frame};
use read::{handshake, read_loop};

mod read;

/// How a [`Client`](crate::Client) connects and calls. Every field has a safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Time allowed to connect and exchange hellos. Default: 10 s.
    pub connect_timeout: Duration,
    /// Deadline of each call unless overridden with [`Client::with_timeout`](crate::Client::with_timeout); a timeout too
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
    /// What to do when the connection is lost or the server sends GoAway: reconnect with
    /// backoff, and whether calls wait meanwhile. Default: [`Reconnect::default()`].
    pub reconnect: Reconnect,
    /// The most credit each stream the server sends (a `Streaming` result) gets: items and
    /// bytes in flight, which bounds the memory it holds to `items` frames and `bytes` plus
    /// one frame. It starts at [`StreamWindow::START`] and grows to this while the consumer
    /// keeps up. Default: [`StreamWindow::DEFAULT`] (8,192 items, 8 MiB).
    pub stream_window: StreamWindow,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_in_flight: 1024,
            tcp_keepalive: Some(Keepalive::default()),
            reconnect: Reconnect::default(),
            stream_window: StreamWindow::DEFAULT,
        }
    }
}

/// One connection to a server; the [`Client`](crate::Client) handle manages these (see
/// `reconnect`). Cheap to clone; the connection closes when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) handle: Arc<Handle>,
}

/// A call that failed, and whether the server may have started it.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// `false` when the call certainly never ran: never sent, or above the GoAway's `last_id`.
    pub(crate) started: bool,
}

impl Failed {
    fn unsent(error: Error) -> Failed {
        Failed { error, started: false }
    }
}

/// Owned by the clones of one `Connection`; dropping the last one ends the connection.
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.user_gone.notify_one();
    }
}

/// State shared by the callers and the connection's reader task.
pub(crate) struct Shared {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) calls: Calls,
    endpoint: Endpoint,
    user_gone: Notify,
    /// The streams of calls in flight, by request id.
    pub(crate) slots: Slots,
    pub(crate) window: StreamWindow,
}

impl Connection {
    /// Connects to `endpoint`: opens the socket and exchanges hellos within
    /// `config.connect_timeout`.
    pub(crate) async fn open(
        endpoint: &Endpoint,
        config: &ClientConfig,
    ) -> Result<Connection, Error> {
        let endpoint = endpoint.clone();
        let handshake = handshake(&endpoint, config);
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
            slots: Slots::default(),
            window: config.stream_window,
        });
        spawn_logged("client writer", outbox.run_writer());
        let watched = shared.clone();
        spawn_logged("client deadline watchdog", async move {
            watched.calls.watchdog(|id| watched.cancel(id)).await;
        });
        spawn_logged("client reader", read_loop(shared.clone(), stream, reader));
        Ok(Connection { handle: Arc::new(Handle { shared }) })
    }

    /// Whether new calls may start on this connection (no GoAway, not closed).
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        self.handle.shared.calls.usable()
    }

    /// Sends a one-way request (id 0): nothing is registered, and nothing comes back.
    pub(crate) fn send_oneway(
        &self,
        method: u32,
        body: impl FnOnce(&mut bytes::BytesMut) -> Result<(), crate::codec::CodecError>,
        deadline: Option<Instant>,
        budget: Duration,
        metadata: Option<&Metadata>,
    ) -> Result<(), Error> {
        let shared = &self.handle.shared;
        if !shared.calls.usable() {
            return Err(Error::ConnectionClosed);
        }
        let header = request_header(ONEWAY_ID, method, budget_us(deadline, budget), metadata);
        shared.outbox.send(&header, body)
    }

    /// Whether calls are in flight here.
    pub(crate) fn busy(&self) -> bool {
        self.handle.shared.calls.in_flight() > 0
    }

    /// Waits until new calls may no longer start here: GoAway came, or the connection ended.
    pub(crate) async fn unusable(&self) {
        self.handle.shared.calls.unusable().await;
    }

    /// Sends `method` with the argument tuple that `body` encodes and waits for its encoded
    /// result. `budget` is the time left to `deadline`, sent to the server.
    ///
    /// Ends with `DeadlineExceeded` when the deadline passes first. Dropping the returned
    /// future cancels the call on the server.
    pub(crate) async fn call_raw(
        &self,
        method: u32,
        body: impl FnOnce(&mut bytes::BytesMut) -> Result<(), crate::codec::CodecError>,
        deadline: Option<Instant>,
        mut budget: Duration,
        metadata: Option<&Metadata>,
    ) -> Result<Bytes, Failed> {
        let shared = &self.handle.shared;
        let Registered { id, concurrent } = loop {
            // Registered with the waker of the poll running now (the call waits for it).
            let register = |cx: &mut std::task::Context<'_>| {
                Poll::Ready(shared.calls.register(deadline, cx.waker()))
            };
            // A refusal (GoAway, closed) means the call was never sent.
            if let Some(registered) = poll_fn(register).await.map_err(Failed::unsent)? {
                break registered;
            }
            // Only a caller that waits for a slot needs a timer of its own; a registered
            // call's deadline is kept by the connection's watchdog.
            // Boxed: a rare wait, kept out of every call future's size.
            if !Box::pin(shared.calls.wait_for_slot(deadline)).await {
                return Err(Failed::unsent(Error::DeadlineExceeded(budget)));
            }
            budget = deadline.map_or(budget, |d| d.saturating_duration_since(Instant::now()));
        };
        // From here on, dropping this future removes the call and, once sent, cancels it.
        let mut guard = CallGuard { shared, id, sent: false, removed: false };
        // Whether this is still the poll that registered the call. The wake for the result
        // is then still to come, to the waker the call was registered with, which is this
        // poll's: the first wait needs no lookup.
        let mut unpolled = true;
        let request = || request_header(id, method, budget_us(deadline, budget), metadata);
        if concurrent {
            // Other calls are in flight, so more callers are likely runnable right now: let
            // them queue their requests too, and write them all with one syscall.
            let flush = shared.outbox.send_deferred(&request(), body).map_err(Failed::unsent)?;
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
            shared.outbox.send(&request(), body).map_err(Failed::unsent)?;
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
        .map_err(|error| Failed { error, started: !shared.calls.never_started(id) })
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
            Header::RequestMeta { id, method, budget_us, metadata: wire::MetadataRef::Of(metadata) }
        }
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
    pub(crate) fn cancel(&self, id: u64) {
        let _ = self.outbox.send(&Header::Cancel { id }, wire::no_body);
    }
}
