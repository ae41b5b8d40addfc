//! Scripted transitions of the write-side state machine.

use super::*;

fn request(id: u64) -> Header<'static> {
    Header::Request { id, method: 7, budget_us: 1_000 }
}

fn open() -> Outbound {
    Outbound::new(64 * 1024 * 1024)
}

fn frame_of(id: u64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    wire::encode(&mut buf, &request(id), wire::no_body, usize::MAX).expect("encodes");
    buf.to_vec()
}

fn take(turn: Turn) -> BytesMut {
    match turn {
        Turn::Write(bytes) => bytes,
        other => panic!("expected bytes to write, got {other:?}"),
    }
}

#[test]
fn a_lone_frame_is_taken_by_its_sender_and_the_state_returns_to_idle() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let bytes = take(out.start());
    assert_eq!(bytes.to_vec(), frame_of(1));
    assert_eq!(out.state(), State::Open(Io::Writing));
    assert_eq!(out.start(), Turn::Rest, "a second writer is refused while one writes");
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);
    assert_eq!(out.state(), State::Open(Io::Idle));
}

#[test]
fn a_short_write_blocks_then_the_task_writes_the_rest_before_later_frames() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let mut bytes = take(out.start());
    let rest = bytes.split_off(2);
    assert_eq!(out.wrote(rest, Ok(Written::WouldBlock)), Turn::Wait);
    assert_eq!(out.state(), State::Open(Io::Blocked));
    assert!(out.needs_task());
    // A sender meanwhile only queues.
    out.push(&request(2), wire::no_body).expect("queued");
    assert_eq!(out.start(), Turn::Rest);
    let first = take(out.resume());
    assert_eq!(first.to_vec(), frame_of(1)[2..].to_vec(), "the rest of frame 1 goes first");
    let second = take(out.wrote(BytesMut::new(), Ok(Written::All)));
    assert_eq!(second.to_vec(), frame_of(2));
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);
    assert_eq!(out.state(), State::Open(Io::Idle));
    assert!(!out.needs_task());
}

#[test]
fn a_write_error_drops_everything_refuses_new_frames_and_is_signalled() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let bytes = take(out.start());
    out.push(&request(2), wire::no_body).expect("queued");
    let before = out.signal();
    let broken = io::Error::from(io::ErrorKind::BrokenPipe);
    assert_eq!(out.wrote(bytes, Err(broken)), Turn::Stop);
    assert_eq!(out.state(), State::Failed);
    assert_eq!(out.queued(), 0);
    assert_ne!(out.signal(), before);
    assert!(matches!(out.push(&request(3), wire::no_body), Err(Error::ConnectionClosed)));
    assert_eq!(out.resume(), Turn::Stop);
}

#[test]
fn held_frames_wait_for_the_release_unless_the_batch_grows_past_flush_at() {
    let mut out = open();
    out.hold();
    out.push(&request(1), wire::no_body).expect("queued");
    assert_eq!(out.start(), Turn::Rest, "held");
    out.release();
    assert_eq!(take(out.start()).to_vec(), frame_of(1));
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);

    out.hold();
    let mut id = 0;
    while out.queued() < FLUSH_AT {
        id += 1;
        out.push(&request(id), wire::no_body).expect("queued");
    }
    let batch = take(out.start());
    assert_eq!(batch.len(), (1..=id).map(|i| frame_of(i).len()).sum::<usize>());
}

#[test]
fn a_writer_stops_at_held_frames_queued_while_it_wrote() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let _written = take(out.start());
    out.hold();
    out.push(&request(2), wire::no_body).expect("queued");
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);
    assert_eq!(out.queued(), frame_of(2).len());
    out.release();
    assert_eq!(take(out.start()).to_vec(), frame_of(2));
}

#[test]
fn closing_writes_what_is_queued_held_or_blocked_then_stops() {
    // Held bytes at close: the task writes them.
    let mut out = open();
    out.hold();
    out.push(&request(1), wire::no_body).expect("queued");
    out.close();
    assert_eq!(out.state(), State::Closing(Io::Idle));
    assert!(out.needs_task());
    assert!(matches!(out.push(&request(2), wire::no_body), Err(Error::ConnectionClosed)));
    assert_eq!(take(out.resume()).to_vec(), frame_of(1));
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Stop);
    assert_eq!(out.state(), State::Closed);

    // Blocked at close: the task finishes once writable.
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let mut bytes = take(out.start());
    let rest = bytes.split_off(1);
    assert_eq!(out.wrote(rest, Ok(Written::WouldBlock)), Turn::Wait);
    out.close();
    assert_eq!(out.state(), State::Closing(Io::Blocked));
    assert_eq!(take(out.resume()).len(), frame_of(1).len() - 1);
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Stop);

    // Nothing queued: closed at once.
    let mut out = open();
    out.close();
    assert_eq!(out.state(), State::Closed);
    assert!(!out.needs_task());
}

#[test]
fn a_failure_while_a_write_runs_ends_that_writer_too() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let bytes = take(out.start());
    out.fail();
    assert_eq!(out.wrote(bytes, Ok(Written::WouldBlock)), Turn::Stop);
    assert_eq!(out.state(), State::Failed);
    assert_eq!(out.queued(), 0);
}

#[test]
fn close_with_keeps_the_frame_being_written_and_drops_the_queued_ones() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let mut bytes = take(out.start());
    out.push(&request(2), wire::no_body).expect("queued");
    let rest = bytes.split_off(3);
    out.close_with(&Header::close(crate::Code::FrameTooLarge, "too big"));
    assert_eq!(out.wrote(rest, Ok(Written::WouldBlock)), Turn::Wait);
    let mut close = BytesMut::new();
    let header = Header::close(crate::Code::FrameTooLarge, "too big");
    wire::encode(&mut close, &header, wire::no_body, usize::MAX).expect("encodes");
    assert_eq!(take(out.resume()).to_vec(), frame_of(1)[3..].to_vec());
    assert_eq!(take(out.wrote(BytesMut::new(), Ok(Written::All))).to_vec(), close.to_vec());
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Stop);
}

#[test]
fn a_body_that_fails_or_panics_leaves_the_queue_whole_and_the_connection_usable() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let failing = |buf: &mut BytesMut| {
        buf.extend_from_slice(b"partial");
        Err(CodecError { message: "no".to_owned(), panicked: false })
    };
    assert!(matches!(out.push(&request(2), failing), Err(Error::Encode(_))));
    let panicking = std::panic::AssertUnwindSafe(|| {
        out.push(&request(3), |buf: &mut BytesMut| {
            buf.extend_from_slice(b"partial");
            panic!("a Serialize that panics");
        })
    });
    assert!(std::panic::catch_unwind(panicking).is_err());
    out.push(&request(4), wire::no_body).expect("queued");
    let mut expected = frame_of(1);
    expected.extend(frame_of(4));
    assert_eq!(take(out.start()).to_vec(), expected);
}

#[test]
fn a_frame_over_the_peers_limit_is_refused_and_the_next_one_is_sent() {
    let mut out = Outbound::new(16);
    let big = vec![7u8; 64];
    let err = out.push(&request(1), wire::body(&big)).expect_err("too large");
    assert!(matches!(err, Error::FrameTooLarge { limit: 16, .. }));
    assert_eq!(out.queued(), 0);
    out.push(&request(2), wire::no_body).expect("queued");
    assert_eq!(take(out.start()).to_vec(), frame_of(2));
}

#[test]
fn pushing_back_and_draining_wake_waiters_but_taking_turns_and_flooding_do_not() {
    let mut out = open();
    let idle = out.signal();
    out.push(&request(1), wire::no_body).expect("queued");
    let bytes = take(out.start());
    assert_eq!(out.signal(), idle, "a sender writing is not a change anyone waits for");
    assert!(!out.signal().wakes_from(idle));
    assert_eq!(out.wrote(bytes, Ok(Written::WouldBlock)), Turn::Wait);
    let blocked = out.signal();
    assert!(blocked.wakes_from(idle), "the writer task must take over");
    let big = vec![1u8; HIGH_WATER];
    out.push(&request(2), wire::body(&big)).expect("queued");
    let flooded = out.signal();
    assert_ne!(flooded, blocked);
    assert!(!flooded.wakes_from(blocked), "nobody waits for the queue to rise");
    let _rest_of_first = take(out.resume());
    let _second = take(out.wrote(BytesMut::new(), Ok(Written::All)));
    assert_eq!(out.signal(), idle, "drained below the mark while writing");
    assert!(out.signal().wakes_from(flooded), "a server waiting for its peer to read goes on");
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);
    assert_eq!(out.signal(), idle);
}

#[test]
fn frames_encoded_elsewhere_queue_after_those_before_and_not_once_closed() {
    let mut out = open();
    let mut batch = BytesMut::from(&frame_of(2)[..]);
    out.append(&mut batch).expect("queued");
    assert!(batch.is_empty(), "taken whole");
    out.push(&request(3), wire::no_body).expect("queued");
    let mut batch = BytesMut::from(&frame_of(4)[..]);
    out.append(&mut batch).expect("queued after the others");
    assert!(batch.is_empty());
    let bytes = take(out.start());
    assert_eq!(bytes.to_vec(), [frame_of(2), frame_of(3), frame_of(4)].concat());
    out.close();
    let mut batch = BytesMut::from(&frame_of(5)[..]);
    assert!(matches!(out.append(&mut batch), Err(Error::ConnectionClosed)));
    assert_eq!(batch.to_vec(), frame_of(5), "a refused batch stays with its sender");
}

#[test]
fn a_large_batch_appended_behind_others_is_written_whole_and_in_order() {
    let mut out = open();
    out.push(&request(1), wire::no_body).expect("queued");
    let first = take(out.start());
    // While the first write runs, a frame is queued, then a large batch, then another frame.
    out.push(&request(2), wire::no_body).expect("queued");
    let large: Vec<u8> = (0..APPEND_WHOLE_AT as u64).flat_map(|i| frame_of(1000 + i)).collect();
    let mut batch = BytesMut::from(&large[..]);
    let at = batch.as_ptr();
    out.append(&mut batch).expect("queued");
    assert!(batch.is_empty());
    out.push(&request(3), wire::no_body).expect("queued");
    assert_eq!(out.queued(), frame_of(2).len() + large.len() + frame_of(3).len());
    assert_eq!(first.to_vec(), frame_of(1));
    let second = take(out.wrote(BytesMut::new(), Ok(Written::All)));
    assert_eq!(second.to_vec(), frame_of(2), "what was queued before the batch goes first");
    let third = take(out.wrote(BytesMut::new(), Ok(Written::All)));
    assert_eq!(third.to_vec(), large);
    assert_eq!(third.as_ptr(), at, "the batch is written where it was encoded, not copied");
    let fourth = take(out.wrote(BytesMut::new(), Ok(Written::All)));
    assert_eq!(fourth.to_vec(), frame_of(3));
    assert_eq!(out.wrote(BytesMut::new(), Ok(Written::All)), Turn::Rest);
    assert_eq!(out.queued(), 0);
}

#[test]
fn a_written_batchs_buffer_goes_back_to_the_next_batch_unless_it_is_large() {
    for (size, kept) in [(64 * 1024, true), (SPARE_AT_MOST + 1, false)] {
        let mut out = open();
        out.push(&request(1), wire::no_body).expect("queued");
        let _writing = take(out.start());
        let mut first = BytesMut::from(&vec![0_u8; size][..]);
        let first_at = first.as_ptr();
        out.append(&mut first).expect("queued whole");
        out.append(&mut BytesMut::from(&vec![1_u8; APPEND_WHOLE_AT][..])).expect("queued whole");
        assert_eq!(take(out.wrote(BytesMut::new(), Ok(Written::All))).as_ptr(), first_at);
        let mut written = BytesMut::from(&vec![0_u8; size][..]);
        written.clear();
        let next = out.wrote(written, Ok(Written::All));
        assert_eq!(take(next).len(), APPEND_WHOLE_AT);
        out.push(&request(2), wire::no_body).expect("queued");
        let mut third = BytesMut::from(&vec![2_u8; APPEND_WHOLE_AT][..]);
        out.append(&mut third).expect("queued whole");
        assert!(third.is_empty());
        assert_eq!(third.capacity() >= size, kept, "{size} bytes");
    }
}
