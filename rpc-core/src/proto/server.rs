//! A server connection after the hellos, as a state machine: what each frame from the client
//! means, which calls are running, and when the connection is done. No I/O, clock or task in
//! here; the driver (`driver.rs`) runs the calls and moves the bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::metadata::Metadata;
use crate::proto::stream::{self, Grant};
use crate::service::ONEWAY_ID;
use crate::wire::{self, Header};
use crate::{Code, Error};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking requests.
    Serving,
    /// GoAway was sent: later requests are refused; done once the running calls end.
    GoingAway,
    /// The client closed the connection: nothing more is read or started.
    Closed,
}

/// What the driver does about one frame. `T` is the driver's name for a call running on a
/// task (a ticket: its task id).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a, T> {
    /// Start call `id`: decode `body` as the arguments of `method` and run it within `budget`
    /// (`None`: no deadline). If it does not finish at once, register it with
    /// [`ServerConn::spawned`].
    /// `metadata` is what a RequestMeta carried, within its limits.
    Call {
        id: u64,
        method: u32,
        budget: Option<Duration>,
        body: &'a [u8],
        metadata: Option<Metadata>,
    },
    /// The request waits: as many calls run as may. Leave the frame where it is and look again
    /// when one ends; frames before it (a Cancel) were handled, so a Cancel is never stuck
    /// behind the limit it would relieve.
    Wait,
    /// Answer request `id` with a Failure at once.
    Refuse { id: u64, code: Code, message: String },
    /// Stop the running call with this ticket; nothing is sent for it.
    Abort(T),
    /// Nothing to do.
    Nothing,
    /// A one-way request refused: nothing is sent (nobody waits); log it.
    Dropped { code: Code, message: String },
    /// The client sent Close: the connection ends.
    PeerClosed { code: Code, message: String },
    /// A frame of call `id`'s streams: route it to the stream, or if the call has none, see
    /// [`ServerConn::unknown_stream`].
    Stream { id: u64, frame: StreamFrame<'a> },
}

/// A frame of a stream within a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamFrame<'a> {
    /// One item; its body.
    Item(&'a [u8]),
    /// The client's stream is over.
    End,
    /// More credit for the server's stream.
    Credit(Grant),
}

/// The protocol state of one server connection. Calls running on tasks are known by a ticket
/// `T` the driver gives them, and reaped by it, never by the request id, which the client
/// chooses and may reuse once a call is cancelled.
#[derive(Debug)]
pub(crate) struct ServerConn<T> {
    phase: Phase,
    /// Calls running on their own task, by ticket, with their request id.
    running: HashMap<T, u64>,
    /// The running calls a Cancel can still reach, by request id.
    by_id: HashMap<u64, T>,
    /// The highest request id taken (answered or started), for GoAway.
    last_id: u64,
    /// The highest request id read, taken or not: stream frames for ids above it are for no
    /// call at all.
    highest_id: u64,
    /// Calls that may run at once; past it the driver stops reading.
    max_in_flight: usize,
}

/// The budget that means "no deadline" (WIRE.md).
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

impl<T: Copy + Eq + Hash> ServerConn<T> {
    pub(crate) fn new(max_in_flight: usize) -> ServerConn<T> {
        ServerConn {
            phase: Phase::Serving,
            running: HashMap::new(),
            by_id: HashMap::new(),
            last_id: 0,
            highest_id: 0,
            max_in_flight: max_in_flight.max(1),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// What one frame from the client means. An error breaks the protocol: the connection
    /// closes with the error's Close code.
    #[inline]
    pub(crate) fn on_frame<'a>(&mut self, payload: &'a [u8]) -> Result<Step<'a, T>, Error> {
        if self.phase == Phase::Closed {
            return Err(Error::Protocol("a frame after the connection closed".to_owned()));
        }
        let (header, body_at) = wire::decode_header(payload)?;
        let step = match header {
            Header::Request { id, method, budget_us } => {
                self.taken(id, self.request(id, method, budget_us, &payload[body_at..], None))
            }
            Header::RequestMeta { id, method, budget_us, metadata } => {
                let metadata = metadata.to_metadata();
                let step = match metadata.check() {
                    Err(why) => Step::Refuse { id, code: Code::BadMetadata, message: why },
                    Ok(()) => {
                        self.request(id, method, budget_us, &payload[body_at..], Some(metadata))
                    }
                };
                self.taken(id, step)
            }
            Header::Cancel { id } => self.by_id.remove(&id).map_or(Step::Nothing, Step::Abort),
            Header::Close { code, message } => {
                self.phase = Phase::Closed;
                Step::PeerClosed { code: Code::from_u32(code), message: message.to_owned() }
            }
            Header::Item { id } => {
                Step::Stream { id, frame: StreamFrame::Item(&payload[body_at..]) }
            }
            Header::End { id } => Step::Stream { id, frame: StreamFrame::End },
            Header::Credit { id, items, bytes } => {
                Step::Stream { id, frame: StreamFrame::Credit(Grant { items, bytes }) }
            }
            Header::Response { .. } | Header::Failure { .. } | Header::GoAway { .. } => {
                return Err(Error::Protocol("the client sent a server-only message".to_owned()));
            }
        };
        Ok(step)
    }

    /// Notes request `id` as taken unless it waits; a refusal of a one-way request (id 0),
    /// which nobody would read, is dropped.
    #[inline]
    fn taken<'a>(&mut self, id: u64, step: Step<'a, T>) -> Step<'a, T> {
        if step != Step::Wait {
            // Stream frames may name any id taken so far (see `stream::unknown_stream`).
            self.highest_id = self.highest_id.max(id);
            if self.phase == Phase::Serving {
                self.last_id = self.last_id.max(id);
            }
        }
        match step {
            Step::Refuse { id: ONEWAY_ID, code, message } => Step::Dropped { code, message },
            step => step,
        }
    }

    /// The checks a request passes before its method is looked up, in the order WIRE.md gives.
    #[inline(always)]
    fn request<'a>(
        &self,
        id: u64,
        method: u32,
        budget_us: u64,
        body: &'a [u8],
        metadata: Option<Metadata>,
    ) -> Step<'a, T> {
        let refuse = |code, message: &str| Step::Refuse { id, code, message: message.to_owned() };
        if self.phase == Phase::GoingAway {
            return refuse(Code::ShuttingDown, "the server is shutting down");
        }
        if self.running.len() >= self.max_in_flight {
            return Step::Wait;
        }
        if id != ONEWAY_ID && self.by_id.contains_key(&id) {
            let message = format!("request id {id} is already in flight on this connection");
            return refuse(Code::BadRequest, &message);
        }
        let budget = match budget_us {
            0 => return refuse(Code::DeadlineExceeded, "the call arrived with no time left"),
            NO_DEADLINE => None,
            us => Some(Duration::from_micros(us)),
        };
        Step::Call { id, method, budget, body, metadata }
    }

    /// A stream frame for `id` found no open stream: dropped if call `id` was read (it ended,
    /// and the frame crossed its end), a protocol violation if no request had that id.
    pub(crate) fn unknown_stream(&self, id: u64) -> Result<(), Error> {
        stream::unknown_stream(id, self.highest_id)
    }

    /// Call `id` did not finish at once and now runs on a task known as `ticket`.
    pub(crate) fn spawned(&mut self, id: u64, ticket: T) {
        self.running.insert(ticket, id);
        // One-way calls count against the limit but cannot be cancelled: they share id 0.
        if id != ONEWAY_ID {
            self.by_id.insert(id, ticket);
        }
    }

    /// The task of `ticket` ended, however it ended.
    pub(crate) fn reaped(&mut self, ticket: T) {
        if let Some(id) = self.running.remove(&ticket)
            && self.by_id.get(&id) == Some(&ticket)
        {
            self.by_id.remove(&id);
        }
    }

    /// Starts going away: the GoAway to send, the first time. Requests read after it are
    /// answered `ShuttingDown`; their ids are above its `last_id`.
    pub(crate) fn go_away(&mut self) -> Option<Header<'static>> {
        if self.phase != Phase::Serving {
            return None;
        }
        self.phase = Phase::GoingAway;
        Some(Header::GoAway { last_id: self.last_id })
    }

    /// The client closed its side (end of stream).
    pub(crate) fn peer_closed(&mut self) {
        self.phase = Phase::Closed;
    }

    /// Calls running on tasks (cancelled ones included until their task ends).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether no call is running and the connection is serving: its idle time counts.
    pub(crate) fn is_idle(&self) -> bool {
        self.phase == Phase::Serving && self.running.is_empty()
    }

    /// Whether to read more from the socket: below the in-flight limit and not closed.
    pub(crate) fn wants_read(&self) -> bool {
        self.phase != Phase::Closed && self.running.len() < self.max_in_flight
    }

    /// Whether the connection has nothing left to do: gone away with every call ended, or
    /// closed by the client.
    pub(crate) fn is_done(&self) -> bool {
        match self.phase {
            Phase::Serving => false,
            Phase::GoingAway => self.running.is_empty(),
            Phase::Closed => true,
        }
    }

    /// The request ids of the calls still owed an answer (not cancelled).
    pub(crate) fn owed(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_id.keys().copied()
    }
}

/// Whether request `id` may call a method whose one-way-ness is `oneway`: one-way methods
/// take id 0 and only they do. A mismatch breaks the protocol, as the client and server no
/// longer agree on whether an answer comes.
#[inline]
pub(crate) fn check_oneway(
    id: u64,
    oneway: bool,
    service: &str,
    method: &str,
) -> Result<(), Error> {
    match (id == ONEWAY_ID, oneway) {
        (true, false) => Err(Error::Protocol(format!(
            "request id 0 is for one-way calls, but {service}.{method} returns a reply"
        ))),
        (false, true) => Err(Error::Protocol(format!(
            "{service}.{method} is one-way: its requests must carry id 0, not {id}"
        ))),
        _ => Ok(()),
    }
}

/// The Failure to send, and whether to log it as a bug, when a call's return value could not
/// be sent: too large for the client, or its `Serialize` failed or panicked.
pub(crate) fn unsendable(error: &Error, panicked: bool) -> (Code, String) {
    match error {
        Error::FrameTooLarge { size, limit } => (
            Code::FrameTooLarge,
            format!("response of {size} bytes exceeds the client's limit of {limit} bytes"),
        ),
        Error::Overloaded(why) => (Code::Overloaded, format!("the response was not sent: {why}")),
        e if panicked => {
            (Code::HandlerPanicked, format!("the return value could not be encoded: {e}"))
        }
        e => (Code::EncodeFailed, format!("the return value could not be encoded: {e}")),
    }
}

#[cfg(test)]
mod tests;
