//! Unit tests of the server side of the protocol, with scripted frames.

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
    let expected = Step::Call { id: 1, method: 9, budget: None, body, metadata: Some(metadata) };
    assert_eq!(step, expected);
    let bad = Metadata::from_wire(vec![("Upper".into(), b"x".to_vec())]);
    let payload = with_metadata(2, bad);
    let step = conn.on_frame(&payload).expect("the frame is intact");
    assert!(matches!(step, Step::Refuse { id: 2, code: Code::BadMetadata, .. }), "{step:?}");
    let many = (0..17).map(|i| (format!("k{i}"), vec![])).collect();
    let err = conn.on_frame(&with_metadata(3, Metadata::from_wire(many))).expect_err("too many");
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
