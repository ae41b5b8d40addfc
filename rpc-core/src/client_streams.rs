//! The client's streaming calls: a call's items out under the server's credit, and its items
//! in, taken by the caller; the call itself (id, deadline, result) is an ordinary call.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::calls::Registered;
use crate::client::{Connection, Handle, Shared};
use crate::proto::server::NO_DEADLINE;
use crate::proto::stream::Grant;
use crate::stream_items::Intake;
use crate::stream_send::{self, Sent};
use crate::stream_slot::Slot;
use crate::streaming::{Source, Streaming};
use crate::task::spawn_logged;
use crate::wire::{self, Header};
use crate::{Client, Code, Error};

impl Client {
    /// Calls a method that returns a stream (`-> Streaming<T>`) with the encoded argument tuple
    /// `args`. A failure of the call (unknown method, deadline, connection lost) is the
    /// stream's last item, an `Err`. The call's deadline covers the whole stream; dropping the
    /// stream before its end cancels the call.
    pub async fn server_stream<A, T>(&self, method: u32, args: &A) -> Result<Streaming<T>, Error>
    where
        A: Serialize + ?Sized,
    {
        let call = self.open_stream(method, args, true, false).await?;
        Ok(Streaming::remote(Box::new(call)))
    }

    /// Calls a method that takes a stream (a `Streaming<I>` parameter, sent as `items`, the
    /// other arguments as the tuple `args`) and returns one value. Items are sent as the
    /// server's credit allows; the call ends with the server's answer, which may come before
    /// every item was sent.
    pub async fn client_stream<A, I, R>(
        &self,
        method: u32,
        args: &A,
        items: impl Stream<Item = I> + Send + 'static,
    ) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        let mut call = self.open_stream(method, args, false, true).await?;
        call.pump(items);
        let body = poll_fn(|cx| call.poll_result(cx)).await?;
        wire::decode_body(&body).map_err(Error::Decode)
    }

    /// Calls a method that takes a stream and returns one (bidirectional): `items` are sent
    /// as the server's credit allows while the returned stream yields the server's.
    pub async fn bidi_stream<A, I, T>(
        &self,
        method: u32,
        args: &A,
        items: impl Stream<Item = I> + Send + 'static,
    ) -> Result<Streaming<T>, Error>
    where
        A: Serialize + ?Sized,
        I: Serialize + Send + 'static,
    {
        let call = self.open_stream(method, args, true, true).await?;
        call.pump(items);
        Ok(Streaming::remote(Box::new(call)))
    }

    /// Opens a streaming call on the current connection (waiting for one within the call's
    /// deadline). A streaming call is never sent again on another connection: its items may
    /// have been taken already.
    async fn open_stream<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
        receive: bool,
        send: bool,
    ) -> Result<StreamCall, Error> {
        let Some(manager) = self.manager() else {
            return Err(Error::Layer(
                "streaming calls need a client connected to an endpoint, not a tower stack".into(),
            ));
        };
        let deadline = Instant::now().checked_add(self.timeout());
        let connection = manager.connection(deadline).await?;
        connection.open_stream(method, args, receive, send, self.timeout()).await
    }
}

impl Connection {
    /// Registers a streaming call, opens its streams and sends its request, with the first
    /// credit for the stream it receives in the same write.
    async fn open_stream<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
        receive: bool,
        send: bool,
        timeout: Duration,
    ) -> Result<StreamCall, Error> {
        let shared = &self.handle.shared;
        let deadline = Instant::now().checked_add(timeout);
        let mut budget = timeout;
        let Registered { id, .. } = loop {
            let register =
                |cx: &mut Context<'_>| Poll::Ready(shared.calls.register(deadline, cx.waker()));
            if let Some(registered) = poll_fn(register).await? {
                break registered;
            }
            if !shared.calls.wait_for_slot(deadline).await {
                return Err(Error::DeadlineExceeded(timeout));
            }
            budget = deadline.map_or(budget, |d| d.saturating_duration_since(Instant::now()));
        };
        let (slot, grant) = Slot::new(receive.then_some(shared.window), send);
        shared.slots.insert(id, slot.clone());
        // From here on, dropping the call removes it and cancels it on the server.
        let intake = Intake::new(slot.clone());
        let call = StreamCall { handle: self.handle.clone(), id, slot, intake, timeout, end: None };
        let budget_us = match deadline {
            Some(_) => u64::try_from(budget.as_micros()).unwrap_or(NO_DEADLINE),
            None => NO_DEADLINE,
        };
        let outbox = &shared.outbox;
        outbox.cork();
        let sent = outbox.send(&Header::Request { id, method, budget_us }, wire::body(args));
        let sent = sent.and_then(|()| match grant {
            Some(Grant { items, bytes }) => {
                outbox.send(&Header::Credit { id, items, bytes }, wire::no_body)
            }
            None => Ok(()),
        });
        outbox.uncork();
        sent.map(|()| call)
    }
}

/// A streaming call in flight. Dropping it before the call ended cancels the call.
struct StreamCall {
    /// Keeps the connection open while the call's stream is read.
    handle: Arc<Handle>,
    id: u64,
    slot: Arc<Slot>,
    /// The items received, as the caller takes them.
    intake: Intake,
    timeout: Duration,
    /// The call's end, once it came: `Some(None)` a clean end (or the end already reported),
    /// `Some(Some(e))` a failure still to report after the items that came before it.
    end: Option<Option<Error>>,
}

impl StreamCall {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The call's result, once the server answered (or the call failed here).
    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Error>> {
        let result = std::task::ready!(self.shared().calls.poll_result(self.id, cx.waker()));
        // The call is over: a stream still being sent stops.
        self.shared().slots.remove(self.id, &self.slot);
        Poll::Ready(result.map_err(|e| match e {
            // The server may notice the deadline a moment before we do; it is the same event.
            Error::Remote { code: Code::DeadlineExceeded, .. } | Error::DeadlineExceeded(_) => {
                Error::DeadlineExceeded(self.timeout)
            }
            e => e,
        }))
    }

    /// Whether a delivered item is there to take (`Ready(false)`: the items are over),
    /// granting credit back when it is time.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let (grant, ready) = self.intake.poll_ready(cx);
        if let Some(Grant { items, bytes }) = grant {
            let credit = Header::Credit { id: self.id, items, bytes };
            let _ = self.shared().outbox.send(&credit, wire::no_body);
        }
        ready
    }

    /// Sends `items` on a task of their own, as credit allows, then the stream's end.
    fn pump<I: Serialize + Send + 'static>(&self, items: impl Stream<Item = I> + Send + 'static) {
        let (shared, slot, id) = (self.handle.shared.clone(), self.slot.clone(), self.id);
        spawn_logged("client stream", async move {
            let mut items = std::pin::pin!(items);
            let next = |cx: &mut Context<'_>| items.as_mut().poll_next(cx).map(|item| item.map(Ok));
            match stream_send::send_items(id, &slot, &*shared.outbox, next).await {
                Sent::Ended => {
                    let _ = shared.outbox.send(&Header::End { id }, wire::no_body);
                }
                Sent::Closed | Sent::Failed(_) => {}
                Sent::Unsendable { error, .. } => {
                    // An item that cannot be sent fails the call; the server stops too.
                    let e = Error::Encode(format!("a stream item: {error}"));
                    let _ = shared.calls.complete(id, Err(e));
                    shared.cancel(id);
                }
            }
        });
    }
}

impl Source for StreamCall {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<&[u8], Error>>> {
        let mut ready = self.poll_ready(cx);
        if ready != Poll::Ready(true) && self.end.is_none() {
            let result = std::task::ready!(self.poll_result(cx));
            self.end = Some(result.err());
            // Items delivered before the result are still to be taken, in order, first.
            ready = self.poll_ready(cx);
        }
        if ready == Poll::Ready(true) {
            return Poll::Ready(self.intake.take().map(Ok));
        }
        Poll::Ready(self.end.as_mut().and_then(Option::take).map(Err))
    }
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        shared.slots.remove(self.id, &self.slot);
        if shared.calls.abandon(self.id) {
            shared.cancel(self.id);
        }
    }
}
