//! What the frames a server sends mean to a client. No I/O in here: the client's reader task
//! (`client.rs`) feeds frames in and routes the events to the calls (`calls.rs`).

use crate::proto::stream::Grant;
use crate::wire::{self, Header};
use crate::{Code, Error};

/// What one frame from the server means.
#[derive(Debug)]
pub(crate) enum Event {
    /// Call `id` returned; its value is the frame from `body_at` on.
    Response { id: u64, body_at: usize },
    /// Call `id` failed in the framework.
    Failure { id: u64, error: Error },
    /// The server takes no new calls; those in flight up to `last_id` finish.
    GoAway { last_id: u64 },
    /// An item of call `id`'s stream; its body is the frame from `body_at` on.
    Item { id: u64, body_at: usize },
    /// More credit for the stream the client sends in call `id`.
    Credit { id: u64, grant: Grant },
}

/// Decodes one frame after the hellos. An error ends the connection: the server closed it
/// (`Remote`, with the server's code), or broke the protocol (an error with a Close code,
/// which the client sends before closing).
pub(crate) fn on_frame(payload: &[u8]) -> Result<Event, Error> {
    let (header, body_at) = wire::decode_header(payload)?;
    match header {
        Header::Response { id } => Ok(Event::Response { id, body_at }),
        Header::Failure { id, code, message } => {
            let error = Error::Remote { code: Code::from_u32(code), message: message.to_owned() };
            Ok(Event::Failure { id, error })
        }
        Header::GoAway { last_id } => Ok(Event::GoAway { last_id }),
        Header::Close { code, message } => {
            Err(Error::Remote { code: Code::from_u32(code), message: message.to_owned() })
        }
        Header::Item { id } => Ok(Event::Item { id, body_at }),
        Header::Credit { id, items, bytes } => {
            Ok(Event::Credit { id, grant: Grant { items, bytes } })
        }
        Header::Request { .. }
        | Header::RequestMeta { .. }
        | Header::Cancel { .. }
        | Header::End { .. } => {
            Err(Error::Protocol("the server sent a client-only message".to_owned()))
        }
    }
}

/// The message type of `Item`, the first byte of its frames.
const ITEM: u8 = 7;

/// The call id and where the body starts, if `payload` is an Item frame whose body is at
/// most `small` bytes: the commonest frame of a busy stream, which the reader handles where
/// it lies. Anything else, a broken Item frame included, is for [`on_frame`] to judge.
#[inline]
pub(crate) fn small_item(payload: &[u8], small: usize) -> Option<(u64, usize)> {
    if payload.first() != Some(&ITEM) {
        return None;
    }
    match wire::decode_header(payload) {
        Ok((Header::Item { id }, body_at)) if payload.len() - body_at <= small => {
            Some((id, body_at))
        }
        _ => None,
    }
}

/// Decodes the server's first frame: its hello (the largest frame it accepts), or a Close in
/// its place when it refuses the connection.
pub(crate) fn on_server_hello(payload: &[u8]) -> Result<usize, Error> {
    // A Close decodes as a header; a hello never does, as its first byte, the magic's 'R', is
    // no message tag.
    if let Ok((Header::Close { code, message }, _)) = wire::decode_header(payload) {
        return Err(Error::Remote { code: Code::from_u32(code), message: message.to_owned() });
    }
    wire::decode_hello(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn payload(header: &Header<'_>) -> Vec<u8> {
        let mut buf = BytesMut::new();
        wire::encode(&mut buf, header, wire::no_body, usize::MAX).expect("encodes");
        buf[4..].to_vec()
    }

    #[test]
    fn small_items_are_told_apart_by_their_first_byte_and_anything_else_goes_the_long_way() {
        let mut item = BytesMut::new();
        wire::encode(
            &mut item,
            &Header::Item { id: 300 },
            |b| {
                b.extend_from_slice(&[1, 2, 3]);
                Ok(())
            },
            usize::MAX,
        )
        .expect("encodes");
        assert_eq!(small_item(&item[4..], 3), Some((300, 4)));
        assert_eq!(small_item(&item[4..], 2), None, "larger than small");
        assert!(matches!(on_frame(&item[4..]), Ok(Event::Item { id: 300, body_at: 4 })));
        // An id not in its shortest form is left to on_frame, which refuses it.
        let wide = [ITEM, 0xfb, 5, 0, 9];
        assert_eq!(small_item(&wide, 16), None);
        assert!(on_frame(&wide).is_err());
        assert_eq!(small_item(&payload(&Header::Response { id: 7 }), 16), None);
    }

    #[test]
    fn a_refusal_in_place_of_the_hello_is_the_servers_error() {
        let refusal = payload(&Header::close(Code::Overloaded, "full"));
        let err = on_server_hello(&refusal).expect_err("refused");
        assert_eq!(err.code(), Some(Code::Overloaded));
        let mut hello = BytesMut::new();
        wire::encode_hello(&mut hello, 4096);
        assert_eq!(on_server_hello(&hello[4..]).expect("a hello"), 4096);
    }

    #[test]
    fn close_ends_the_connection_with_the_servers_code_and_requests_break_the_protocol() {
        let close = payload(&Header::close(Code::ShuttingDown, "bye"));
        assert_eq!(on_frame(&close).expect_err("closed").code(), Some(Code::ShuttingDown));
        let request = payload(&Header::Cancel { id: 1 });
        let err = on_frame(&request).expect_err("a violation");
        assert_eq!(err.close_code(), Some(Code::ProtocolViolation));
        let failure = payload(&Header::failure(3, Code::UnknownMethod, "no such method"));
        assert!(matches!(on_frame(&failure), Ok(Event::Failure { id: 3, .. })));
    }
}
