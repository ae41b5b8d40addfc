//! Where a server connection's calls send their outcomes and their streams' frames.

use std::sync::Arc;

use bytes::BytesMut;

use crate::Code;
use crate::Error;
use crate::codec::CodecError;
use crate::conn::Outbox;
use crate::net::Peer;
use crate::proto::server;
use crate::proto::stream::StreamWindow;
use crate::service::Sink;
use crate::stream_send::{Frames, Room};
use crate::stream_slot::Slots;
use crate::wire::Header;

/// Where a connection's calls send their outcomes.
#[derive(Debug)]
pub(crate) struct ConnSink {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) peer: Arc<Peer>,
    /// The streams of the calls running, by request id.
    pub(crate) slots: Slots,
    pub(crate) window: StreamWindow,
}

impl Sink for ConnSink {
    fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    fn respond(&self, id: u64, body: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>) {
        let mut panicked = false;
        let encode = |buf: &mut BytesMut| body(buf).inspect_err(|e| panicked = e.panicked);
        let error = match self.outbox.send(&Header::Response { id }, encode) {
            Ok(()) | Err(Error::ConnectionClosed) => return,
            Err(e) => e,
        };
        let (code, message) = server::unsendable(&error, panicked);
        if panicked {
            tracing::error!(id, error = %message, "response not sent");
        } else {
            tracing::warn!(id, error = %message, "response not sent");
        }
        self.outbox.fail_call(id, code, &message);
    }

    fn slots(&self) -> &Slots {
        &self.slots
    }

    fn window(&self) -> StreamWindow {
        self.window
    }

    fn send_stream_frame(
        &self,
        header: &Header<'_>,
        body: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<usize, Error> {
        let mut len = 0;
        self.outbox.send(header, |buf| {
            let before = buf.len();
            body(buf)?;
            len = buf.len() - before;
            Ok(())
        })?;
        Ok(len)
    }

    fn fail(&self, id: u64, code: Code, message: &str) {
        self.outbox.fail_call(id, code, message);
    }
}

impl Frames for ConnSink {
    fn max_frame(&self) -> usize {
        self.outbox.peer_max()
    }

    fn send_frames(&self, frames: &mut BytesMut) -> Result<(), Error> {
        self.outbox.send_frames(frames)
    }

    fn room(&self) -> Option<Room<'_>> {
        self.outbox.room_if_pushed_back()
    }
}
