//! One server connection from hello to close: the I/O around the `ServerConn` state machine.
//! It reads frames, runs the calls the state machine starts (inline first, then on a task),
//! stops reading while the peer does not read its answers, and goes away on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::Authorizer;
use crate::conn::{self, Outbox};
use crate::intercept::Chain;
use crate::net::Stream;
use crate::proto::inbound::FrameReader;
use crate::proto::server::{self, ServerConn, Step, StreamFrame};
use crate::ratelimit::RateLimit;
use crate::router::Router;
use crate::sink::ConnSink;
use crate::stream_slot::Slots;
use crate::task::Gated;
use crate::wire::{self, Header};
use crate::{Code, Error, ServerConfig};

/// Warnings about peers that broke the protocol: at most one line every few seconds, across
/// every connection of the process, saying how many were held back.
/// How long a connection that sent GoAway (or its last answers) waits for the client to hang
/// up, reading and dropping what it still sends (WIRE.md, GoAway).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// The same for a connection that ends during its handshake (a `Close`, or GoAway before the
/// client's hello): shorter, as a peer still in its handshake has no answers to wait for, and
/// one that never says hello must not hold up a shutdown long.
const HANDSHAKE_DRAIN: Duration = Duration::from_secs(1);

static BROKEN_PEERS: std::sync::Mutex<RateLimit> =
    std::sync::Mutex::new(RateLimit::new(Duration::from_secs(5)));

/// Answers a connection over the limit with an `Overloaded` Close frame.
pub(crate) async fn refuse(stream: Stream, limit: usize) {
    let message = format!("the server is at its limit of {limit} connections");
    send_close(&stream, Code::Overloaded, &message).await;
}

/// Writes a Close frame on a connection that has no writer task (before or instead of the
/// hello), then waits for the peer to hang up (see [`discard_until_closed`]).
async fn send_close(stream: &Stream, code: Code, message: &str) {
    send_last(stream, &Header::close(code, message), HANDSHAKE_DRAIN).await;
}

/// Writes `header`, the connection's last frame, and closes our side; then lets the peer
/// hang up for at most `linger` (see [`discard_until_closed`]).
async fn send_last(stream: &Stream, header: &Header<'_>, linger: Duration) {
    let mut buf = BytesMut::new();
    let _ = wire::encode(&mut buf, header, wire::no_body, usize::MAX);
    if conn::write_all(stream, buf).await.is_ok() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        discard_until_closed(stream, linger).await;
    }
}

/// Reads and drops what the peer still sends until it hangs up, for at most `limit`. Closing a
/// socket with unread bytes makes the kernel send a reset, which can destroy our last frames
/// (a Close, the answers before a GoAway's end) before the peer has read them.
async fn discard_until_closed(stream: &Stream, limit: Duration) {
    let drain = async {
        let mut sink = BytesMut::with_capacity(1024);
        loop {
            stream.readable().await?;
            sink.clear();
            match stream.try_read_buf(&mut sink) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(0) | Err(_) => return Ok::<(), std::io::Error>(()),
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(limit, drain).await;
}

/// Serves one connection from hello to close.
pub(crate) async fn serve_conn(
    router: Arc<Router>,
    chain: Option<Chain>,
    stream: Stream,
    config: Arc<ServerConfig>,
    authorize: Option<Authorizer>,
    (go_away, hard_stop): (CancellationToken, CancellationToken),
) {
    let peer = match stream.peer() {
        Ok(peer) => Arc::new(peer),
        Err(e) => return tracing::debug!(error = %e, "peer went away before it was identified"),
    };
    if let Some(Err(reason)) = authorize.map(|authorize| authorize(&peer)) {
        tracing::warn!(%peer, %reason, "peer refused by the authorization hook");
        let message = format!("connection refused: {reason}");
        return send_close(&stream, Code::Unauthorized, &message).await;
    }
    let stream = Arc::new(stream);
    // The hello is small: a longer first frame (an HTTP request, a TLS hello, junk) is refused
    // from its length, before its bytes are buffered.
    let mut reader = FrameReader::new(wire::MAX_HELLO);
    let hello_sent = AtomicBool::new(false);
    let handshake = async {
        let mut hello = BytesMut::new();
        wire::encode_hello(&mut hello, config.max_frame);
        conn::write_all(&stream, hello).await?;
        hello_sent.store(true, Ordering::Relaxed);
        let first = conn::next_frame(&stream, &mut reader).await?.ok_or(Error::ConnectionClosed)?;
        wire::decode_hello(&first)
    };
    let handshake = tokio::time::timeout(config.handshake_timeout, handshake);
    let handshake = tokio::select! {
        finished = handshake => finished,
        () = go_away.cancelled() => {
            // A client may send requests as soon as it has read our hello, before we read
            // its own: GoAway with last id 0 tells it that none of them started.
            if hello_sent.load(Ordering::Relaxed) {
                send_last(&stream, &Header::GoAway { last_id: 0 }, HANDSHAKE_DRAIN).await;
            }
            return;
        }
    };
    let peer_max = match handshake {
        Ok(Ok(peer_max)) => peer_max,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            if let Some(code) = e.close_code() {
                send_close(&stream, code, &e.to_string()).await;
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no hello within the handshake timeout; closing");
            let timeout = config.handshake_timeout;
            let message = format!("no hello within the handshake timeout of {timeout:?}");
            return send_close(&stream, Code::ProtocolViolation, &message).await;
        }
    };
    reader.set_max_frame(config.max_frame);
    tracing::debug!(%peer, "connection open");
    let outbox = Outbox::new(stream.clone(), peer_max);
    // Aborted when this task ends without it: when the server task is aborted (no one else
    // would close the outbox, so the writer would hold the socket open forever).
    let writer = AbortOnDropHandle::new(tokio::spawn(outbox.clone().run_writer()));
    let mut driver = Driver {
        router,
        chain,
        sink: Arc::new(ConnSink {
            outbox: outbox.clone(),
            peer: peer.clone(),
            slots: Slots::default(),
            window: config.stream_window,
        }),
        proto: ServerConn::new(config.max_in_flight),
        handlers: JoinSet::new(),
        tasks: HashMap::new(),
    };
    let timeouts = Timeouts { idle: config.idle_timeout, frame: config.frame_timeout };
    let result = driver.run(&stream, &mut reader, &go_away, &hard_stop, timeouts).await;
    match &result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        // A peer that resets is its own business; one that breaks the protocol is worth a
        // warning, but not one per peer when thousands do it.
        Err(e @ Error::Io(_)) => tracing::debug!(%peer, error = %e, "connection failed"),
        Err(e) => {
            let now = Instant::now();
            let warn = BROKEN_PEERS.lock().unwrap_or_else(|e| e.into_inner()).check(now);
            if let Some(suppressed) = warn {
                tracing::warn!(%peer, error = %e, suppressed, "closing connection");
            }
            if let Some(code) = e.close_code() {
                outbox.close_with(&Header::close(code, &e.to_string()));
            }
        }
    }
    // Handlers still running are dropped with the driver: nobody is left to answer.
    driver.sink.slots.close_all();
    drop(driver);
    outbox.close(true);
    // The writer shuts our side down once everything queued is written.
    let _ = writer.await;
    // Requests the client wrote before it read our GoAway (or Close) may still come: they
    // are dropped unanswered, and the client, having read our end of stream, knows from
    // GoAway's last id that they never started.
    discard_until_closed(&stream, SHUTDOWN_DRAIN).await;
}

#[path = "dispatch.rs"]
mod dispatch;
/// How long a connection may sit without a call, and a frame take to arrive.
#[derive(Clone, Copy)]
struct Timeouts {
    idle: Duration,
    frame: Duration,
}

/// The I/O state of a running server connection; the protocol state is in `proto`.
struct Driver {
    router: Arc<Router>,
    /// The interceptors; `None` when there are none, so calls then pay nothing for them.
    chain: Option<Chain>,
    sink: Arc<ConnSink>,
    proto: ServerConn<Id>,
    /// Calls running on their own task; each returns nothing, and is known by its task id.
    handlers: JoinSet<()>,
    tasks: HashMap<Id, AbortHandle>,
}

impl Driver {
    async fn run(
        &mut self,
        stream: &Stream,
        reader: &mut FrameReader,
        go_away: &CancellationToken,
        hard_stop: &CancellationToken,
        timeouts: Timeouts,
    ) -> Result<(), Error> {
        // Made once: a fresh one per loop would register and deregister a waiter every time;
        // and gated, so the turns of the loop that they did not wake do not poll them.
        let mut go_away = Gated::new(go_away.cancelled());
        let mut hard_stop = Gated::new(hard_stop.cancelled());
        let outbox = self.sink.outbox.clone();
        // One timer for both timeouts, moved only when it fires or a frame starts to arrive:
        // activity just records the time, so the path of a call touches no timer.
        let mut last_activity = Instant::now();
        let mut partial_since: Option<Instant> = None;
        let mut timer = Gated::new(tokio::time::sleep_until(last_activity + timeouts.idle));
        loop {
            // Frames already buffered are one batch; responses of calls that finish at once
            // are written together when it ends.
            outbox.cork();
            let batch = self.handle_buffered(reader);
            // Complete frames may be left unhandled behind a full outbox (see below).
            let held_back = outbox.over_high_water();
            outbox.uncork();
            if let Some(at) = batch? {
                last_activity = at;
            }
            if self.proto.is_done() {
                return Ok(());
            }
            match (reader.has_partial(), partial_since) {
                (true, None) => {
                    let now = Instant::now();
                    partial_since = Some(now);
                    if now + timeouts.frame < timer.inner().deadline() {
                        timer.inner_mut().reset(now + timeouts.frame);
                    }
                }
                (false, Some(_)) => partial_since = None,
                _ => {}
            }
            // Waiting on the outbox is for a connection that may not read: registered only
            // then (a waiter costs a lock to add and remove), and before looking again, so a
            // change in between is not missed.
            let mut changed = std::pin::pin!(outbox.changed());
            let mut flooded = outbox.over_high_water();
            if flooded || !self.proto.wants_read() {
                changed.as_mut().enable();
                flooded = outbox.over_high_water();
            }
            if held_back && !flooded {
                // It drained meanwhile: handle the frames left in the read buffer first.
                continue;
            }
            let can_read = !flooded && self.proto.wants_read();
            if !can_read && outbox.is_failed() {
                // The peer is gone (a write failed): its calls have nobody to answer. (While
                // reading, the read finds that out.)
                return Ok(());
            }
            tokio::select! {
                () = &mut timer => {
                    let now = Instant::now();

                    if partial_since.is_some_and(|since| now >= since + timeouts.frame) {
                        return Err(Error::Protocol(format!(
                            "a frame was not complete within the frame timeout of {:?}",
                            timeouts.frame
                        )));
                    }
                    if self.proto.is_idle() && now >= last_activity + timeouts.idle {
                        return self.close_idle(timeouts.idle);
                    }
                    let mut next = last_activity.max(now) + timeouts.idle;
                    if let Some(since) = partial_since {
                        next = next.min(since + timeouts.frame);
                    }
                    timer.inner_mut().reset(next);
                }
                () = &mut changed, if !can_read => {}
                ready = std::future::poll_fn(|cx| stream.poll_readable(cx)), if can_read => {
                    ready?;

                    if !reader.fill(|buf| stream.try_read_buf(buf))? {
                        self.proto.peer_closed();
                        return Ok(());
                    }
                }
                Some(done) = self.handlers.join_next_with_id(), if !self.handlers.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            if e.is_panic() {
                                tracing::error!(peer = %self.sink.peer, "a handler task panicked");
                            }
                            e.id()
                        }
                    };
                    self.tasks.remove(&id);
                    self.proto.reaped(id);
                    last_activity = Instant::now();

                }
                () = &mut go_away, if self.proto.phase() == server::Phase::Serving => {
                    if let Some(go_away) = self.proto.go_away() {
                        let _ = outbox.send(&go_away, wire::no_body);
                    }
                }
                () = &mut hard_stop => {
                    for id in self.proto.owed() {
                        let message = "the server shut down before the call finished";
                        outbox.fail_call(id, Code::ShuttingDown, message);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Handles the complete frames in the read buffer, up to a request that must wait;
    /// returns when the first of them was handled, if any was.
    fn handle_buffered(&mut self, reader: &mut FrameReader) -> Result<Option<Instant>, Error> {
        // Read once per batch: its requests arrived with the same read, and their deadlines
        // count from then.
        let mut arrived = None;
        // Checked per frame, not per batch: one read can hold hundreds of small requests for
        // large responses, and a peer that reads none of them must not make us queue them all.
        while self.proto.phase() != server::Phase::Closed && !self.sink.outbox.over_high_water() {
            match reader.with_next(|frame| self.handle(frame, &mut arrived).transpose())? {
                None => break,
                Some(handled) => handled?,
            }
        }
        Ok(arrived)
    }

    /// Closes a connection that was idle for `idle`: GoAway first, so the client knows that
    /// nothing it sent since started, then a Close saying why.
    fn close_idle(&mut self, idle: Duration) -> Result<(), Error> {
        let outbox = &self.sink.outbox;
        if let Some(go_away) = self.proto.go_away() {
            let _ = outbox.send(&go_away, wire::no_body);
        }
        let message = format!("closing the connection: no call for {idle:?} (idle timeout)");
        let _ = outbox.send(&Header::close(Code::IdleTimeout, &message), wire::no_body);
        tracing::debug!(peer = %self.sink.peer, "closing an idle connection");
        Ok(())
    }

    /// Handles one frame where it lies in the read buffer; `Ok(None)` leaves it there.
    fn handle(&mut self, frame: &[u8], arrived: &mut Option<Instant>) -> Result<Option<()>, Error> {
        let step = self.proto.on_frame(frame)?;
        if !matches!(step, Step::Wait) {
            arrived.get_or_insert_with(Instant::now);
        }
        match step {
            Step::Wait => return Ok(None),
            Step::Call { id, method, budget, body, metadata } => {
                let deadline = budget.and_then(|b| arrived.and_then(|at| at.checked_add(b)));
                self.start(id, method, deadline, body, metadata.map(Arc::new))?;
            }
            Step::Refuse { id, code, message } => self.sink.outbox.fail_call(id, code, &message),
            Step::Dropped { code, message } => {
                tracing::debug!(%code, %message, "one-way request dropped");
            }
            Step::Abort(task) => {
                if let Some(handle) = self.tasks.remove(&task) {
                    handle.abort();
                }
            }
            Step::Nothing => {}
            Step::PeerClosed { code, message } => {
                tracing::debug!(%code, %message, "peer closed the connection");
            }
            Step::Stream { id, frame } => match self.sink.slots.get(id) {
                // Items are copied out of the read buffer: the handler takes them later.
                Some(slot) => match frame {
                    StreamFrame::Item(body) => slot.on_item(id, body)?,
                    StreamFrame::End => slot.on_end(id)?,
                    StreamFrame::Credit(grant) => slot.on_credit(id, grant)?,
                },
                None => self.proto.unknown_stream(id)?,
            },
        }
        Ok(Some(()))
    }
}
