//! The client: one connection, many concurrent calls matched to responses by request id.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::conn::{self, FrameReader, Outbox};
use crate::net::Stream;
use crate::wire::{self, Header};
use crate::{Code, Endpoint, Error, Keepalive, ToEndpoint, frame};

/// How a [`Client`] connects and calls. Every field has a safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Time allowed to connect and exchange hellos. Default: 10 s.
    pub connect_timeout: Duration,
    /// Deadline of each call unless overridden with [`Client::with_timeout`]. Default: 30 s.
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
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
    timeout: Duration,
}

/// Owned by the clones of one `Client`; dropping the last one ends the connection.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.user_gone.notify_one();
    }
}

/// State shared by the callers and the connection's reader task.
#[derive(Debug)]
struct Shared {
    outbox: Arc<Outbox>,
    calls: Mutex<Calls>,
    endpoint: Endpoint,
    user_gone: Notify,
    /// [`ClientConfig::max_in_flight`].
    max_in_flight: usize,
    /// Wakes a caller queued for a slot: a call ended while the table was full.
    slot_freed: Notify,
    /// Wakes the deadline watchdog: its alarm moved earlier, or the connection closed.
    alarm_moved: Notify,
}

#[derive(Debug)]
struct Calls {
    next_id: u64,
    pending: HashMap<u64, Slot, BuildHasherDefault<IdHash>>,
    /// Callers waiting because `pending` holds `max_in_flight` calls.
    queued: usize,
    /// Why no new call may start, once that is so.
    refused: Option<Refusal>,
    /// When the deadline watchdog wakes next: no later than the earliest deadline of a
    /// waiting call (it may be earlier, for a call that has since finished).
    alarm: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server sent GoAway.
    GoingAway,
    /// The connection is gone.
    Closed,
}

#[derive(Debug)]
enum Slot {
    Waiting { waker: Option<Waker>, deadline: Instant },
    Done(Result<Bytes, Error>),
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
            calls: Mutex::new(Calls {
                next_id: 1,
                pending: HashMap::default(),
                queued: 0,
                refused: None,
                alarm: None,
            }),
            endpoint,
            user_gone: Notify::new(),
            max_in_flight: config.max_in_flight.max(1),
            slot_freed: Notify::new(),
            alarm_moved: Notify::new(),
        });
        tokio::spawn(outbox.run_writer());
        tokio::spawn(watchdog(shared.clone()));
        tokio::spawn(read_loop(shared.clone(), stream, reader));
        Ok(Client { handle: Arc::new(Handle { shared }), timeout: config.call_timeout })
    }

    /// A handle on the same connection whose calls have deadline `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { handle: self.handle.clone(), timeout }
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
        let deadline = Instant::now() + self.timeout;
        match self.call_raw(method, args, deadline).await {
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
        deadline: Instant,
    ) -> Result<Bytes, Error> {
        let shared = &self.handle.shared;
        // The call is registered with this task's waker, so the first wait needs no lock.
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        // The budget sent is the time left: the whole timeout, less any wait for a slot.
        let mut budget = self.timeout;
        let (id, concurrent) = loop {
            let Some(registered) = shared.register(deadline, &waker)? else {
                // Counted as queued since `register`, so a slot freed from now on leaves a
                // permit in `slot_freed` even before this waits on it. Only a caller that
                // waits for a slot needs a timer of its own; a registered call's deadline is
                // kept by the connection's watchdog.
                let _queued = Queued(shared);
                let freed = shared.slot_freed.notified();
                if tokio::time::timeout_at(deadline, freed).await.is_err() {
                    return Err(Error::DeadlineExceeded(self.timeout));
                }
                budget = deadline.saturating_duration_since(Instant::now());
                continue;
            };
            break registered;
        };
        // From here on, dropping this future removes the call and, once sent, cancels it.
        let mut guard = CallGuard { shared, id, sent: false, removed: false };
        let budget_us = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
        let request = Header::Request { id, method, budget_us };
        if concurrent {
            // Other calls are in flight, so more callers are likely runnable right now: let
            // them queue their requests too, and write them all with one syscall.
            let flush = shared.outbox.send_deferred(&request, Some(args))?;
            guard.sent = true;
            if let Some(flush) = flush {
                tokio::task::yield_now().await;
                drop(flush);
            }
        } else {
            // A lone call goes out at once: nothing to wait for but latency.
            shared.outbox.send(&request, Some(args))?;
            guard.sent = true;
        }
        let mut first = true;
        poll_fn(|cx| {
            // A result that came already woke the registered waker, so this poll is repeated.
            if std::mem::take(&mut first) && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
            let mut calls = shared.lock();
            match calls.pending.get_mut(&id) {
                Some(Slot::Waiting { waker, .. }) => {
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                Some(Slot::Done(_)) => {
                    guard.removed = true;
                    match shared.remove(calls, id) {
                        Some(Slot::Done(result)) => Poll::Ready(result),
                        _ => Poll::Ready(Err(Error::ConnectionClosed)),
                    }
                }
                None => Poll::Ready(Err(Error::ConnectionClosed)),
            }
        })
        .await
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
        if self.removed {
            return;
        }
        let removed = self.shared.remove(self.shared.lock(), self.id);
        let waiting = matches!(removed, Some(Slot::Waiting { .. }));
        if waiting && self.sent {
            let _ = self.shared.outbox.send::<()>(&Header::Cancel { id: self.id }, None);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        // Every update of `Calls` is complete before any code that could panic runs.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes call `id` out of the table, and lets a queued caller in.
    fn remove(&self, mut calls: MutexGuard<'_, Calls>, id: u64) -> Option<Slot> {
        let slot = calls.pending.remove(&id);
        let wake_queued = slot.is_some() && calls.queued > 0;
        drop(calls);
        if wake_queued {
            self.slot_freed.notify_one();
        }
        slot
    }

    /// Allocates an id for a new call whose task `waker` waits for it; also tells whether
    /// other calls are in flight. `Ok(None)`: no slot is free; the caller is counted as
    /// queued and must wait for [`Shared::slot_freed`], holding a [`Queued`].
    fn register(&self, deadline: Instant, waker: &Waker) -> Result<Option<(u64, bool)>, Error> {
        let mut calls = self.lock();
        match calls.refused {
            Some(Refusal::Closed) => return Err(Error::ConnectionClosed),
            Some(Refusal::GoingAway) => {
                return Err(Error::Remote {
                    code: Code::ShuttingDown,
                    message: "the server is shutting down (it sent GoAway)".to_owned(),
                });
            }
            None => {}
        }
        if calls.pending.len() >= self.max_in_flight {
            calls.queued += 1;
            return Ok(None);
        }
        let id = calls.next_id;
        calls.next_id += 1;
        calls.pending.insert(id, Slot::Waiting { waker: Some(waker.clone()), deadline });
        let concurrent = calls.pending.len() > 1;
        // Deadlines mostly grow with each call, so the watchdog is rarely woken for this.
        let earlier = calls.alarm.is_none_or(|alarm| deadline < alarm);
        if earlier {
            calls.alarm = Some(deadline);
        }
        drop(calls);
        if earlier {
            self.alarm_moved.notify_one();
        }
        Ok(Some((id, concurrent)))
    }

    /// Hands a call its result. A response for an id that was never sent is a protocol
    /// violation; one for a call that already ended (cancelled, timed out) is dropped.
    fn complete(&self, id: u64, result: Result<Bytes, Error>) -> Result<(), Error> {
        let mut calls = self.lock();
        // Ids count up from 1, so 0 was never sent either.
        if id == 0 || id >= calls.next_id {
            return Err(Error::Protocol(format!(
                "response for request id {id}, which was never sent"
            )));
        }
        let waker = match calls.pending.get_mut(&id) {
            Some(slot @ Slot::Waiting { .. }) => {
                match std::mem::replace(slot, Slot::Done(result)) {
                    Slot::Waiting { waker, .. } => waker,
                    Slot::Done(_) => None,
                }
            }
            Some(Slot::Done(_)) => {
                tracing::debug!(id, "duplicate response dropped");
                None
            }
            None => None,
        };
        drop(calls);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ends every pending call with an error made by `error` and refuses new ones.
    fn close(&self, error: impl Fn() -> Error) {
        let mut calls = self.lock();
        calls.refused = Some(Refusal::Closed);
        let mut wakers = Vec::new();
        for slot in calls.pending.values_mut() {
            if let Slot::Waiting { waker, .. } = slot {
                wakers.extend(waker.take());
                *slot = Slot::Done(Err(error()));
            }
        }
        drop(calls);
        self.alarm_moved.notify_one();
        // Queued callers look again and find the connection closed.
        self.slot_freed.notify_waiters();
        // Every call has ended: nothing queued is still wanted, and a server that stopped
        // reading must not keep the writer task (and the socket) alive.
        self.outbox.close(false);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Ends the waiting calls whose deadline is not after `now` with `DeadlineExceeded`,
    /// tells the server to stop them, and sets the next alarm.
    fn expire(&self, now: Instant) {
        let mut calls = self.lock();
        let (mut expired, mut wakers, mut next) = (Vec::new(), Vec::new(), None::<Instant>);
        for (&id, slot) in calls.pending.iter_mut() {
            let Slot::Waiting { waker, deadline } = slot else { continue };
            if *deadline > now {
                next = Some(next.map_or(*deadline, |next| next.min(*deadline)));
                continue;
            }
            expired.push(id);
            wakers.extend(waker.take());
            // The caller replaces the zero with its own timeout.
            *slot = Slot::Done(Err(Error::DeadlineExceeded(Duration::ZERO)));
        }
        calls.alarm = next;
        drop(calls);
        for id in expired {
            let _ = self.outbox.send::<()>(&Header::Cancel { id }, None);
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Handles one frame from the server.
    fn on_frame(&self, frame: Bytes) -> Result<(), Error> {
        let (header, body_at) = wire::decode_header(&frame)?;
        match header {
            Header::Response { id } => self.complete(id, Ok(frame.slice(body_at..))),
            Header::Failure { id, code, message } => {
                let error =
                    Error::Remote { code: Code::from_u32(code), message: message.into_owned() };
                self.complete(id, Err(error))
            }
            Header::GoAway => {
                let mut calls = self.lock();
                calls.refused.get_or_insert(Refusal::GoingAway);
                Ok(())
            }
            Header::Close { code, message } => {
                Err(Error::Remote { code: Code::from_u32(code), message: message.into_owned() })
            }
            Header::Request { .. } | Header::Cancel { .. } => {
                Err(Error::Protocol("the server sent a client-only message".to_owned()))
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
    let mut reader = FrameReader::new(max_frame);
    let first = match reader.next(&stream).await {
        Ok(Some(first)) => first,
        Ok(None) => return Err(written.err().map_or(Error::ConnectionClosed, Error::Io)),
        Err(e) => return Err(written.err().map_or(e, Error::Io)),
    };
    // A server that refuses the connection answers with Close instead of Hello.
    if let Ok((Header::Close { code, message }, _)) = wire::decode_header(&first) {
        return Err(Error::Remote { code: Code::from_u32(code), message: message.into_owned() });
    }
    written?;
    let peer_max = wire::decode_hello(&first)?;
    Ok((stream, reader, peer_max))
}

/// A caller counted in [`Calls::queued`] while it waits for a slot.
struct Queued<'a>(&'a Shared);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.lock().queued -= 1;
    }
}

/// Hashes request ids, which count up from 1: a multiply spreads them over the table without
/// SipHash's cost; ids come from us, not from the peer, so there is nothing to defend.
#[derive(Debug, Default, Clone, Copy)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The connection's deadline watchdog: one timer for all the calls on a connection, instead
/// of one per call, armed for the earliest deadline. Ends when the connection closes.
async fn watchdog(shared: Arc<Shared>) {
    loop {
        let alarm = {
            let calls = shared.lock();
            if calls.refused == Some(Refusal::Closed) {
                return;
            }
            calls.alarm
        };
        // A move of the alarm since the look above is kept as a permit, so none is missed.
        let moved = shared.alarm_moved.notified();
        match alarm {
            None => moved.await,
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => shared.expire(Instant::now()),
                () = moved => {}
            },
        }
    }
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
            ready = stream.readable() => match ready.map_err(Error::Io).and_then(|()| reader.fill(&stream)) {
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
            shared.close(|| e.duplicate());
        }
    }
}
