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
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn frame(header: &Header<'_>, body: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        wire::encode(
            &mut buf,
            header,
            |b: &mut BytesMut| {
                b.extend_from_slice(body);
                Ok(())
            },
            usize::MAX,
        )
        .expect("encodes");
        buf[4..].to_vec()
    }

    fn request(id: u64, budget_us: u64) -> Vec<u8> {
        frame(&Header::Request { id, method: 9, budget_us }, b"args")
    }

    #[test]
    fn a_request_becomes_a_call_with_its_budget_and_body() {
        let mut conn = ServerConn::<u64>::new(4);
        let payload = request(1, 2_000_000);
        let step = conn.on_frame(&payload).expect("valid");
        let budget = Some(Duration::from_secs(2));
        assert_eq!(step, Step::Call { id: 1, method: 9, budget, body: b"args", metadata: None });
        let payload = request(2, NO_DEADLINE);
        let step = conn.on_frame(&payload).expect("valid");
        let metadata = None;
        assert_eq!(step, Step::Call { id: 2, method: 9, budget: None, body: b"args", metadata });
    }

    #[test]
    fn refusals_come_in_the_documented_order() {
        let mut conn = ServerConn::new(4);
        conn.spawned(5, 0);
        let refused = |step: Step<'_, u64>| match step {
            Step::Refuse { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        };
        // A reused id wins over a zero budget.
        assert_eq!(refused(conn.on_frame(&request(5, 0)).expect("valid")), Code::BadRequest);
        assert_eq!(refused(conn.on_frame(&request(6, 0)).expect("valid")), Code::DeadlineExceeded);
        // Going away wins over everything.
        assert!(conn.go_away().is_some());
        assert!(conn.go_away().is_none(), "GoAway is sent once");
        assert_eq!(refused(conn.on_frame(&request(5, 0)).expect("valid")), Code::ShuttingDown);
    }

    #[test]
    fn a_reused_id_cannot_let_calls_escape_the_limit_or_cancel() {
        let mut conn = ServerConn::new(2);
        let first = 1;
        conn.spawned(7, first);
        let cancel = frame(&Header::Cancel { id: 7 }, b"");
        assert_eq!(conn.on_frame(&cancel).expect("valid"), Step::Abort(first));
        // The client reuses id 7 while the first task is still winding down.
        let second = 2;
        conn.spawned(7, second);
        assert_eq!(conn.running(), 2);
        assert!(!conn.wants_read(), "both tasks count against the limit");
        let payload = request(8, 1_000);
        assert_eq!(conn.on_frame(&payload).expect("valid"), Step::Wait);
        // The first task ends: the second keeps its place and stays cancellable.
        conn.reaped(first);
        assert_eq!(conn.running(), 1);
        assert_eq!(conn.on_frame(&cancel).expect("valid"), Step::Abort(second));
        assert_eq!(conn.on_frame(&cancel).expect("valid"), Step::Nothing);
        conn.reaped(second);
        assert_eq!(conn.running(), 0);
        assert!(conn.wants_read());
    }

    #[test]
    fn go_away_names_the_last_request_taken_and_later_ones_are_refused() {
        let mut conn = ServerConn::<u64>::new(1);
        conn.spawned(3, 0);
        // Waiting behind the limit is not taken.
        assert_eq!(conn.on_frame(&request(9, 1_000)).expect("valid"), Step::Wait);
        assert_eq!(conn.go_away(), Some(Header::GoAway { last_id: 0 }));
        let mut conn = ServerConn::<u64>::new(4);
        for id in [4, 2, 7] {
            assert!(matches!(conn.on_frame(&request(id, 1_000)), Ok(Step::Call { .. })));
        }
        assert!(matches!(conn.on_frame(&request(8, 0)), Ok(Step::Refuse { .. })));
        assert_eq!(conn.go_away(), Some(Header::GoAway { last_id: 8 }));
        let after = request(12, 1_000);
        let step = conn.on_frame(&after).expect("valid");
        assert!(matches!(step, Step::Refuse { code: Code::ShuttingDown, .. }));
        assert_eq!(conn.go_away(), None);
    }

    #[test]
    fn going_away_is_done_when_the_last_call_ends() {
        let mut conn = ServerConn::new(4);
        let ticket = 10;
        conn.spawned(1, ticket);
        conn.go_away();
        assert!(!conn.is_done());
        assert_eq!(conn.owed().collect::<Vec<_>>(), vec![1]);
        conn.reaped(ticket);
        assert!(conn.is_done());
    }

    #[test]
    fn server_only_messages_and_garbage_break_the_protocol_and_close_ends_it() {
        let mut conn = ServerConn::<u64>::new(4);
        for bad in [
            frame(&Header::GoAway { last_id: 0 }, b""),
            frame(&Header::Response { id: 1 }, b""),
            vec![99],
        ] {
            let err = conn.on_frame(&bad).expect_err("a violation");
            assert_eq!(err.close_code(), Some(Code::ProtocolViolation));
        }
        let close = frame(&Header::close(Code::FrameTooLarge, "too big"), b"");
        let step = conn.on_frame(&close).expect("valid");
        assert_eq!(step, Step::PeerClosed { code: Code::FrameTooLarge, message: "too big".into() });
        assert!(conn.is_done());
        assert!(!conn.wants_read());
    }

    fn with_metadata(id: u64, metadata: Metadata) -> Vec<u8> {
        let header = Header::RequestMeta {
            id,
            method: 9,
            budget_us: NO_DEADLINE,
            metadata: wire::MetadataRef::Of(&metadata),
        };
        frame(&header, b"args")
    }

    #[test]
    fn metadata_within_its_limits_reaches_the_call_and_a_broken_limit_fails_that_call() {
        let mut conn = ServerConn::<u64>::new(4);
        let mut metadata = Metadata::new();
        metadata.insert("token", "abc").expect("fits");
        let payload = with_metadata(1, metadata.clone());
        let step = conn.on_frame(&payload).expect("valid");
        let body = b"args";
        let expected =
            Step::Call { id: 1, method: 9, budget: None, body, metadata: Some(metadata) };
        assert_eq!(step, expected);
        let bad = Metadata::from_wire(vec![("Upper".into(), b"x".to_vec())]);
        let payload = with_metadata(2, bad);
        let step = conn.on_frame(&payload).expect("the frame is intact");
        assert!(matches!(step, Step::Refuse { id: 2, code: Code::BadMetadata, .. }), "{step:?}");
        let many = (0..17).map(|i| (format!("k{i}"), vec![])).collect();
        let err =
            conn.on_frame(&with_metadata(3, Metadata::from_wire(many))).expect_err("too many");
        assert!(err.to_string().contains("17 entries exceeds the limit of 16"), "{err}");
    }

    #[test]
    fn one_way_requests_share_id_0_are_never_refused_aloud_and_cannot_be_cancelled() {
        let mut conn = ServerConn::<u64>::new(4);
        assert!(matches!(conn.on_frame(&request(0, NO_DEADLINE)), Ok(Step::Call { id: 0, .. })));
        conn.spawned(0, 1);
        // A second one-way call while the first runs is no reused id.
        assert!(matches!(conn.on_frame(&request(0, NO_DEADLINE)), Ok(Step::Call { id: 0, .. })));
        conn.spawned(0, 2);
        assert_eq!(conn.running(), 2);
        assert_eq!(
            conn.on_frame(&frame(&Header::Cancel { id: 0 }, b"")).expect("valid"),
            Step::Nothing
        );
        assert!(matches!(
            conn.on_frame(&request(0, 0)),
            Ok(Step::Dropped { code: Code::DeadlineExceeded, .. })
        ));
        assert_eq!(conn.owed().count(), 0, "no answer is owed for a one-way call");
        conn.reaped(1);
        conn.reaped(2);
        assert_eq!(conn.running(), 0);
    }

    #[test]
    fn id_0_for_a_replying_method_or_another_id_for_a_one_way_one_breaks_the_protocol() {
        assert!(check_oneway(0, true, "S", "log").is_ok());
        assert!(check_oneway(5, false, "S", "add").is_ok());
        let err = check_oneway(0, false, "S", "add").expect_err("a violation");
        assert_eq!(err.close_code(), Some(Code::ProtocolViolation));
        assert!(err.to_string().contains("S.add returns a reply"), "{err}");
        let err = check_oneway(7, true, "S", "log").expect_err("a violation");
        assert!(err.to_string().contains("S.log is one-way"), "{err}");
    }

    #[test]
    fn stream_frames_are_routed_and_unknown_ids_are_judged_by_the_requests_read() {
        let mut conn = ServerConn::<u64>::new(4);
        let item = frame(&Header::Item { id: 2 }, b"x");
        assert_eq!(
            conn.on_frame(&item).expect("valid"),
            Step::Stream { id: 2, frame: StreamFrame::Item(b"x") }
        );
        let credit = frame(&Header::Credit { id: 2, items: 3, bytes: 9 }, b"");
        let grant = StreamFrame::Credit(Grant { items: 3, bytes: 9 });
        assert_eq!(conn.on_frame(&credit).expect("valid"), Step::Stream { id: 2, frame: grant });
        assert!(conn.unknown_stream(2).is_err(), "no request had id 2");
        assert!(matches!(conn.on_frame(&request(2, 1_000)), Ok(Step::Call { .. })));
        assert!(conn.unknown_stream(2).is_ok(), "call 2 was read: a late frame is dropped");
        assert!(conn.unknown_stream(3).is_err());
    }

    #[test]
    fn an_unsendable_value_gets_its_own_code() {
        let too_big = Error::FrameTooLarge { size: 10, limit: 5 };
        assert_eq!(unsendable(&too_big, false).0, Code::FrameTooLarge);
        let failed = Error::Encode("no".into());
        assert_eq!(unsendable(&failed, false).0, Code::EncodeFailed);
        assert_eq!(unsendable(&failed, true).0, Code::HandlerPanicked);
    }
}
