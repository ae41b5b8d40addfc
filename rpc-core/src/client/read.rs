//! The reading side of a client connection: the handshake, and the reader task that routes
//! the server's frames to their calls and streams.

use std::sync::Arc;

use bytes::Bytes;

use super::{ClientConfig, Shared};
use crate::conn;
use crate::net::Stream;
use crate::proto::client::{self as proto, Event};
use crate::proto::inbound::{FrameReader, Next};
use crate::stream_items::{Delivery, SMALL_ITEM};
use crate::task::Gated;
use crate::wire::{self, Header};
use crate::{Endpoint, Error};

impl Shared {
    /// Ends every pending call with an error made by `error` and refuses new ones.
    fn close(&self, error: impl Fn() -> Error) {
        self.calls.close(error);
        self.slots.close_all();
        // Every call has ended: nothing queued is still wanted, and a server that stopped
        // reading must not keep the writer task (and the socket) alive.
        self.outbox.close(false);
    }

    /// A stream frame for a call with no open stream: dropped if the call ended (the frame
    /// crossed its end), a protocol violation if no call had that id.
    fn unknown_stream(&self, id: u64) -> Result<(), Error> {
        let used = if self.calls.was_used(id) { id } else { 0 };
        crate::proto::stream::unknown_stream(id, used)
    }

    /// Handles an Item frame with a small body where it lies in the read buffer; `None` for
    /// any other frame.
    #[inline]
    fn on_small_item(&self, payload: &[u8], delivery: &mut Delivery) -> Option<Result<(), Error>> {
        let (id, body_at) = proto::small_item(payload, SMALL_ITEM)?;
        Some(match delivery.add_slice(id, &payload[body_at..], |id| self.slots.get(id)) {
            Ok(true) => Ok(()),
            Ok(false) => self.unknown_stream(id),
            Err(e) => Err(e),
        })
    }

    /// Handles one frame from the server. Items are gathered in `delivery`, and delivered
    /// before any other frame is handled: a call's items come before its end.
    fn on_frame(&self, frame: Bytes, delivery: &mut Delivery) -> Result<(), Error> {
        let event = proto::on_frame(&frame)?;
        if !matches!(event, Event::Item { .. }) {
            delivery.flush()?;
        }
        match event {
            Event::Item { id, body_at } => {
                match delivery.add(id, frame.slice(body_at..), |id| self.slots.get(id))? {
                    true => Ok(()),
                    false => self.unknown_stream(id),
                }
            }
            Event::Response { id, body_at } => self.calls.complete(id, Ok(frame.slice(body_at..))),
            Event::Failure { id, error } => self.calls.complete(id, Err(error)),
            Event::GoAway { last_id } => {
                self.calls.go_away(last_id);
                Ok(())
            }
            Event::Credit { id, grant } => match self.slots.get(id) {
                Some(slot) => slot.on_credit(id, grant),
                None => self.unknown_stream(id),
            },
        }
    }
}

/// Connects and exchanges hellos; returns the stream, the reader holding any bytes that
/// followed the server's hello, and the largest frame the server accepts.
pub(super) async fn handshake(
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
    let mut reader = FrameReader::new(wire::MAX_HELLO);
    let first = match conn::next_frame(&stream, &mut reader).await {
        Ok(Some(first)) => first,
        Ok(None) => return Err(written.err().map_or(Error::ConnectionClosed, Error::Io)),
        Err(e) => return Err(written.err().map_or(e, Error::Io)),
    };
    // A refusal (a Close in place of the hello) says more than the write error.
    let peer_max = proto::on_server_hello(&first)?;
    written?;
    reader.set_max_frame(max_frame);
    Ok((stream, reader, peer_max))
}

/// The connection's reader task: routes responses to their calls until the connection ends,
/// then ends every call still pending.
pub(super) async fn read_loop(shared: Arc<Shared>, stream: Arc<Stream>, mut reader: FrameReader) {
    let mut user_gone = Gated::new(shared.user_gone.notified());
    let mut delivery = Delivery::default();
    let result = loop {
        // Handle every frame already buffered before waiting on the socket again.
        let handled = loop {
            // Small stream items are copied out where they lie; other frames are taken whole.
            match reader.next_with(|payload| shared.on_small_item(payload, &mut delivery)) {
                Ok(Some(Next::Handled(Ok(())))) => {}
                Ok(Some(Next::Frame(frame))) => {
                    if let Err(e) = shared.on_frame(frame, &mut delivery) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Ok(Some(Next::Handled(Err(e)))) | Err(e) => break Err(e),
            }
        };
        // Items read before an error still count: they are taken before the stream's end.
        let delivered = delivery.flush();
        if let Err(e) = handled.and(delivered) {
            break Err(e);
        }
        // Room kept to read large frames into has no use while nothing is in flight.
        if reader.keeps_room() && shared.calls.in_flight() == 0 && shared.slots.is_empty() {
            reader.release();
        }
        tokio::select! {
            ready = std::future::poll_fn(|cx| stream.poll_readable(cx)) => match ready.map_err(Error::Io).and_then(|()| reader.fill(|buf| stream.try_read_buf(buf))) {
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
            shared.calls.close(|| e.duplicate());
            shared.slots.close_all();
            match e.close_code() {
                // The server broke the protocol (or sent too large a frame): say so, as it would.
                Some(code) => shared.outbox.close_with(&Header::close(code, &e.to_string())),
                None => shared.outbox.close(false),
            }
        }
    }
}
