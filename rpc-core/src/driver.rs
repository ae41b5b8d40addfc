//! One connection of a server, from hello to close: authorization, the request loop,
//! dispatch (inline first, then on a task), cancellation, backpressure and going away.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::conn::{self, FrameReader, Outbox};
use crate::net::Stream;
use crate::server::Authorizer;
use crate::service::{Conn, DispatchError, HandlerFuture, Responder, Service};
use crate::wire::{self, Header};
use crate::{Code, Error, ServerConfig};

/// Answers a connection over the limit with an `Overloaded` Close frame.
pub(crate) async fn refuse(stream: Stream, limit: usize) {
    let message = format!("the server is at its limit of {limit} connections");
    send_close(&stream, Code::Overloaded, &message).await;
}

/// Writes a Close frame on a connection that has no writer task (before or instead of the
/// hello), then reads and discards until the peer hangs up. Closing a TCP socket with unread
/// bytes (the peer's hello) sends a reset, which can destroy the Close frame before the peer
/// reads it. Gives up after a second so a peer cannot hold us.
async fn send_close(stream: &Stream, code: Code, message: &str) {
    let mut buf = BytesMut::new();
    let _ = wire::encode::<()>(&mut buf, &Header::close(code, message), None, usize::MAX);
    let linger = async {
        conn::write_all(stream, buf).await?;
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
    let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
}

/// Serves one connection from hello to close.
pub(crate) async fn serve_conn<S: Service>(
    service: Arc<S>,
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
    let mut reader = FrameReader::new(config.max_frame);
    let handshake = async {
        let mut hello = BytesMut::new();
        wire::encode_hello(&mut hello, config.max_frame);
        conn::write_all(&stream, hello).await?;
        let first = reader.next(&stream).await?.ok_or(Error::ConnectionClosed)?;
        wire::decode_hello(&first)
    };
    let handshake = tokio::time::timeout(config.handshake_timeout, handshake);
    let handshake = tokio::select! {
        finished = handshake => finished,
        // A peer still in its handshake has no calls to finish: shutdown does not wait for it.
        () = go_away.cancelled() => return,
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
            tracing::debug!(%peer, "no hello within the handshake timeout; dropping");
            return;
        }
    };
    tracing::debug!(%peer, "connection open");
    let outbox = Outbox::new(stream.clone(), peer_max);
    // Aborted when this task ends without it: when the server task is aborted (no one else
    // would close the outbox, so the writer would hold the socket open forever) or when the
    // peer does not read what is left within the timeout below.
    let writer = AbortOnDropHandle::new(tokio::spawn(outbox.clone().run_writer()));
    let mut driver = Driver {
        service,
        conn: Arc::new(Conn { outbox: outbox.clone(), peer: peer.clone() }),
        in_flight: HashMap::new(),
        handlers: JoinSet::new(),
        going_away: false,
        max_in_flight: config.max_in_flight.max(1),
    };
    let result = driver.run(&stream, &mut reader, &go_away, &hard_stop).await;
    match &result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            if let Some(code) = e.close_code() {
                let _ = outbox.send::<()>(&Header::close(code, &e.to_string()), None);
            }
        }
    }
    // Handlers still running are dropped with the driver: nobody is left to answer.
    drop(driver);
    outbox.close(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// The per-connection state of a running server.
struct Driver<S> {
    service: Arc<S>,
    conn: Arc<Conn>,
    /// Calls running on their own task, by request id, so Cancel can stop them.
    in_flight: HashMap<u64, AbortHandle>,
    handlers: JoinSet<u64>,
    going_away: bool,
    max_in_flight: usize,
}

impl<S: Service> Driver<S> {
    async fn run(
        &mut self,
        stream: &Stream,
        reader: &mut FrameReader,
        go_away: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Result<(), Error> {
        // Made once: a fresh one per loop would register and deregister a waiter every time.
        let mut go_away = std::pin::pin!(go_away.cancelled());
        let mut hard_stop = std::pin::pin!(hard_stop.cancelled());
        loop {
            // Frames already buffered are one batch; responses of calls that finish at once
            // are written together when it ends.
            self.conn.outbox.cork();
            let batch = self.handle_buffered(reader);
            // Complete frames may be left unhandled behind a full outbox (see below).
            let held_back = self.conn.outbox.over_high_water();
            self.conn.outbox.uncork();
            if batch? {
                return Ok(());
            }
            if self.going_away && self.in_flight.is_empty() {
                return Ok(());
            }
            // A peer that does not read its responses is not read from either.
            let mut drained = std::pin::pin!(self.conn.outbox.drained());
            let flooded = self.conn.outbox.flooded(drained.as_mut());
            if held_back && !flooded {
                // It drained meanwhile: handle the frames left in the read buffer first.
                continue;
            }
            let can_read = !flooded && self.in_flight.len() < self.max_in_flight;
            tokio::select! {
                () = &mut drained, if flooded => {}
                ready = stream.readable(), if can_read => {
                    ready?;
                    if !reader.fill(stream)? {
                        return Ok(());
                    }
                }
                Some(done) = self.handlers.join_next(), if !self.handlers.is_empty() => {
                    if let Ok(id) = done {
                        self.in_flight.remove(&id);
                    }
                }
                () = &mut go_away, if !self.going_away => {
                    self.going_away = true;
                    let _ = self.conn.outbox.send::<()>(&Header::GoAway, None);
                }
                () = &mut hard_stop => {
                    for &id in self.in_flight.keys() {
                        self.conn.outbox.fail_call(id, Code::ShuttingDown, "the server shut down before the call finished");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Handles the complete frames in the read buffer; `Ok(true)` when the peer closed.
    fn handle_buffered(&mut self, reader: &mut FrameReader) -> Result<bool, Error> {
        // Read once per batch: its requests arrived with the same read, and their deadlines
        // count from then.
        let mut arrived = None;
        // Checked per frame, not per batch: one read can hold hundreds of small requests for
        // large responses, and a peer that reads none of them must not make us queue them all.
        while self.in_flight.len() < self.max_in_flight && !self.conn.outbox.over_high_water() {
            match reader.with_next(|frame| self.handle(frame, &mut arrived))? {
                None => return Ok(false),
                Some(Ok(false)) => {}
                Some(Ok(true)) => return Ok(true),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Handles one frame where it lies in the read buffer; `Ok(true)` when the peer closed.
    fn handle(&mut self, frame: &[u8], arrived: &mut Option<Instant>) -> Result<bool, Error> {
        let (header, body_at) = wire::decode_header(frame)?;
        match header {
            Header::Request { id, method, budget_us } => {
                let arrived = *arrived.get_or_insert_with(Instant::now);
                self.start(id, method, budget_us, &frame[body_at..], arrived);
            }
            Header::Cancel { id } => {
                if let Some(handle) = self.in_flight.remove(&id) {
                    handle.abort();
                }
            }
            Header::Close { code, message } => {
                tracing::debug!(code = %Code::from_u32(code), %message, "peer closed the connection");
                return Ok(true);
            }
            Header::Response { .. } | Header::Failure { .. } | Header::GoAway => {
                return Err(Error::Protocol("the client sent a server-only message".to_owned()));
            }
        }
        Ok(false)
    }

    /// Starts one call: decode, run it inline until it first waits, then on its own task.
    fn start(&mut self, id: u64, method: u32, budget_us: u64, body: &[u8], arrived: Instant) {
        if self.going_away {
            return self.conn.outbox.fail_call(
                id,
                Code::ShuttingDown,
                "the server is shutting down",
            );
        }
        if !self.in_flight.is_empty() && self.in_flight.contains_key(&id) {
            let message = format!("request id {id} is already in flight on this connection");
            return self.conn.outbox.fail_call(id, Code::BadRequest, &message);
        }
        let budget = Duration::from_micros(budget_us);
        if budget.is_zero() {
            return self.conn.outbox.fail_call(
                id,
                Code::DeadlineExceeded,
                "the call arrived with no time left",
            );
        }
        let deadline = arrived.checked_add(budget).unwrap_or_else(far_future);
        let service = self.service.name();
        let name = self.service.method_name(method).unwrap_or("?");
        let span = tracing::debug_span!("call", service, method = name, id, peer = %self.conn.peer);
        let _entered = span.enter();
        let reply = Responder::new(self.conn.clone(), id, deadline);
        let future = match self.service.call(method, body, reply) {
            Ok(future) => future,
            Err(DispatchError::UnknownMethod) => {
                let message = format!("{service} has no method with id {method:#010x}");
                return self.conn.outbox.fail_call(id, Code::UnknownMethod, &message);
            }
            Err(DispatchError::BadRequest(why)) => {
                let message = format!("bad arguments for {service}.{name}: {why}");
                return self.conn.outbox.fail_call(id, Code::BadRequest, &message);
            }
        };
        let mut call = CatchUnwind(future);
        // Most handlers finish without waiting: run them here and skip the spawn. One that
        // waits re-registers its waker when the spawned task polls it again.
        match Pin::new(&mut call).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => return,
            Poll::Ready(Err(panic)) => {
                return panicked(&self.conn.outbox, id, service, name, &panic);
            }
            Poll::Pending => {}
        }
        let outbox = self.conn.outbox.clone();
        let call = tracing::Instrument::instrument(call, span.clone());
        let handle = self.handlers.spawn(async move {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(())) => {}
                Ok(Err(panic)) => panicked(&outbox, id, service, name, &panic),
                Err(_) => {
                    let message = format!(
                        "{service}.{name} did not finish within its deadline of {budget:?}"
                    );
                    outbox.fail_call(id, Code::DeadlineExceeded, &message);
                }
            }
            id
        });
        self.in_flight.insert(id, handle);
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

fn panicked(outbox: &Outbox, id: u64, service: &str, method: &str, panic: &str) {
    tracing::error!(service, method, id, panic, "handler panicked");
    let message = format!("handler {service}.{method} panicked: {panic}");
    outbox.fail_call(id, Code::HandlerPanicked, &message);
}

/// Turns a panic inside a handler into an error carrying the panic message.
struct CatchUnwind(HandlerFuture);

impl Future for CatchUnwind {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
