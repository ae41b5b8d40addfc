//! A raw connection to the peer under test, read frame by frame with a time limit.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::hex::{Reader, show};

/// A TCP or Unix stream.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// What the peer sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame, its 4-byte length included.
    Frame(Vec<u8>),
    /// The end of the stream: a clean close or a reset (WIRE.md: a close may be abortive).
    End,
}

/// Frames larger than this are not read: no vector expects one.
const MAX_READ: usize = 64 << 20;

/// Reads the next frame, or the end of the stream, waiting at most `wait`.
pub async fn next(socket: &mut dyn Socket, wait: Duration) -> Result<Next, String> {
    match tokio::time::timeout(wait, read(socket)).await {
        Ok(next) => next,
        Err(_) => Err(format!("nothing more from the peer within {wait:?}")),
    }
}

async fn read(socket: &mut dyn Socket) -> Result<Next, String> {
    let mut head = [0; 4];
    let mut got = 0;
    while got < 4 {
        match socket.read(&mut head[got..]).await {
            Ok(0) if got == 0 => return Ok(Next::End),
            Ok(0) => return Err(format!("the stream ended inside a frame's length ({got} bytes)")),
            Ok(n) => got += n,
            Err(e) if got == 0 && is_reset(&e) => return Ok(Next::End),
            Err(e) => return Err(format!("reading a frame's length: {e}")),
        }
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > MAX_READ {
        return Err(format!("the peer sent a frame declaring {len} bytes"));
    }
    let mut frame = vec![0; 4 + len];
    frame[..4].copy_from_slice(&head);
    socket
        .read_exact(&mut frame[4..])
        .await
        .map_err(|e| format!("reading a frame of {len} bytes: {e}"))?;
    Ok(Next::Frame(frame))
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
}

/// Writes `bytes`; a peer that hung up first is an error.
pub async fn send(socket: &mut dyn Socket, bytes: &[u8]) -> Result<(), String> {
    socket.write_all(bytes).await.map_err(|e| format!("writing {} bytes: {e}", bytes.len()))
}

/// Ends our sending side (a half-close); the peer may be gone already, which is fine.
pub async fn half_close(socket: &mut dyn Socket) {
    let _ = socket.shutdown().await;
}

/// Reads the end of the stream, failing on any frame.
pub async fn expect_end(socket: &mut dyn Socket, wait: Duration) -> Result<(), String> {
    match next(socket, wait).await? {
        Next::End => Ok(()),
        Next::Frame(frame) => {
            Err(format!("expected the end of the stream, got the frame {}", show(&frame)))
        }
    }
}

/// Reads a frame, failing on the end of the stream.
pub async fn expect_frame(socket: &mut dyn Socket, wait: Duration) -> Result<Vec<u8>, String> {
    match next(socket, wait).await? {
        Next::Frame(frame) => Ok(frame),
        Next::End => Err("expected a frame, got the end of the stream".to_owned()),
    }
}

/// A Failure's or Close's fields, read from a whole frame.
#[derive(Debug)]
pub struct ErrorFrame {
    /// The request id; `None` for a Close.
    pub id: Option<u64>,
    pub code: u32,
    pub message: String,
}

/// Reads `frame` as a Failure (message type 2) or a Close (5), whichever `tag` says.
pub fn error_frame(frame: &[u8], tag: u64) -> Result<ErrorFrame, String> {
    let not_it = |why: String| {
        let kind = if tag == 2 { "Failure" } else { "Close" };
        format!("expected a {kind}, got {} ({why})", show(frame))
    };
    let mut r = Reader::new(&frame[4..]);
    let found = r.varint().map_err(not_it)?;
    if found != tag {
        return Err(not_it(format!("message type {found}")));
    }
    let id = if tag == 2 { Some(r.varint().map_err(not_it)?) } else { None };
    let code = r.varint().map_err(not_it)?;
    let code = u32::try_from(code).map_err(|_| not_it(format!("code {code}")))?;
    let message = r.text().map_err(not_it)?;
    if !r.rest().is_empty() {
        return Err(not_it(format!("{} bytes after the message", r.rest().len())));
    }
    Ok(ErrorFrame { id, code, message })
}

/// The rules every Failure and Close message follows (WIRE.md, "Error messages"), and the
/// substrings a vector excludes.
pub fn check_message(message: &str, excludes: &[String]) -> Result<(), String> {
    if message.len() > 512 {
        return Err(format!("a message of {} bytes, over 512: {message:?}", message.len()));
    }
    if let Some(bad) = excludes.iter().find(|x| message.contains(x.as_str())) {
        return Err(format!("the message {message:?} contains {bad:?}"));
    }
    Ok(())
}
