//! The error type returned by every fallible operation of the crate.

use std::io;
use std::time::Duration;

/// Everything that can go wrong with a call, a connection or a server.
///
/// Framework failures live here; a service's own errors (the `E` of a `Result<T, E>` return
/// type) are not errors of this type: they arrive as `Ok(Err(e))`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint string is not one of the accepted forms.
    #[error(
        "invalid endpoint {input:?}: {reason}; expected tcp://HOST:PORT, tcp://[IPV6]:PORT, \
         unix:/PATH or unix:@NAME (abstract, Linux)"
    )]
    InvalidEndpoint {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting (or binding) failed at the socket level.
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint we tried.
        endpoint: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The connection and hello exchange did not finish within the connect timeout.
    #[error("connecting to {endpoint} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The endpoint we tried.
        endpoint: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// Binding a listening socket failed.
    #[error("could not bind {endpoint}: {source}")]
    Bind {
        /// The endpoint we tried.
        endpoint: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An I/O error on an established connection.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A frame is larger than the receiver accepts. Raised by the sender before writing (the
    /// connection stays usable) or by the receiver on a declared length (the connection closes).
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame's payload size in bytes.
        size: usize,
        /// The largest payload accepted.
        limit: usize,
    },
    /// The peer sent something that breaks the protocol; the connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer speaks another version of the protocol.
    #[error("protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}")]
    VersionMismatch {
        /// Our protocol version.
        ours: u16,
        /// The peer's protocol version.
        theirs: u16,
    },
    /// A limit of this process was reached (the budget for buffered bytes): the connection or
    /// frame that needed more is refused.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The connection is closed (or closing): no call can be sent on it.
    #[error("connection closed")]
    ConnectionClosed,
    /// The call's deadline passed before a response arrived.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(Duration),
    /// The arguments could not be encoded.
    #[error("could not encode the request: {0}")]
    Encode(String),
    /// The response body does not decode as the method's return type.
    #[error("could not decode the response: {0}")]
    Decode(String),
    /// A server or call was set up wrongly: two services of one name, a method id in two
    /// services, metadata over its limits; the message says which.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server refused or failed the call with a framework error. The message is the
    /// server's, shown with control characters escaped.
    #[error("server error ({code}): {}", Escaped(message))]
    Remote {
        /// What kind of failure.
        code: Code,
        /// The server's explanation.
        message: String,
    },
    /// A tower layer between the client and the connection refused or failed the call (a
    /// load shed, a rate limit, a layer of the user's). Only from a client made with
    /// [`Client::from_service`](crate::Client::from_service).
    #[error("{0}")]
    Layer(tower::BoxError),
}

impl Error {
    /// The remote error code, if this is a [`Error::Remote`].
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Framework error codes carried on the wire (see WIRE.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// No method with this id on the server (wrong service, or a changed signature).
    UnknownMethod,
    /// The request body does not decode as the method's arguments.
    BadRequest,
    /// The call's deadline passed on the server.
    DeadlineExceeded,
    /// The call was cancelled.
    Cancelled,
    /// The server is at a limit (connections, concurrent requests).
    Overloaded,
    /// The server's authorization hook refused the peer.
    Unauthorized,
    /// The handler panicked.
    HandlerPanicked,
    /// The server is shutting down and takes no new calls.
    ShuttingDown,
    /// A frame (request or response) exceeds a size limit.
    FrameTooLarge,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The peer broke the protocol.
    ProtocolViolation,
    /// The server could not encode the handler's return value (its `Serialize` failed).
    EncodeFailed,
    /// The request's metadata breaks a limit (entry count, key or value size, key
    /// characters); see [`Metadata`](crate::Metadata).
    BadMetadata,
    /// The server closed a connection that had no call in flight for its idle timeout.
    IdleTimeout,
    /// A code this version does not know.
    Other(u32),
}

impl Code {
    /// The number that stands for this code on the wire.
    pub fn to_u32(self) -> u32 {
        match self {
            Code::UnknownMethod => 1,
            Code::BadRequest => 2,
            Code::DeadlineExceeded => 3,
            Code::Cancelled => 4,
            Code::Overloaded => 5,
            Code::Unauthorized => 6,
            Code::HandlerPanicked => 7,
            Code::ShuttingDown => 8,
            Code::FrameTooLarge => 9,
            Code::VersionMismatch => 10,
            Code::ProtocolViolation => 11,
            Code::EncodeFailed => 12,
            Code::BadMetadata => 13,
            Code::IdleTimeout => 16,
            Code::Other(n) => n,
        }
    }

    /// The code for a number read from the wire; unknown numbers become [`Code::Other`].
    pub fn from_u32(n: u32) -> Code {
        match n {
            1 => Code::UnknownMethod,
            2 => Code::BadRequest,
            3 => Code::DeadlineExceeded,
            4 => Code::Cancelled,
            5 => Code::Overloaded,
            6 => Code::Unauthorized,
            7 => Code::HandlerPanicked,
            8 => Code::ShuttingDown,
            9 => Code::FrameTooLarge,
            10 => Code::VersionMismatch,
            11 => Code::ProtocolViolation,
            12 => Code::EncodeFailed,
            13 => Code::BadMetadata,
            16 => Code::IdleTimeout,
            n => Code::Other(n),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Code::UnknownMethod => "unknown method",
            Code::BadRequest => "bad request",
            Code::DeadlineExceeded => "deadline exceeded",
            Code::Cancelled => "cancelled",
            Code::Overloaded => "overloaded",
            Code::Unauthorized => "unauthorized",
            Code::HandlerPanicked => "handler panicked",
            Code::ShuttingDown => "shutting down",
            Code::FrameTooLarge => "frame too large",
            Code::VersionMismatch => "version mismatch",
            Code::ProtocolViolation => "protocol violation",
            Code::EncodeFailed => "encode failed",
            Code::BadMetadata => "bad metadata",
            Code::IdleTimeout => "idle timeout",
            Code::Other(n) => return write!(f, "code {n}"),
        };
        f.write_str(name)
    }
}

impl Error {
    /// A copy of an error: a connection-level one for each of the calls it ends, a failed
    /// connection attempt for each caller that asks.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            Error::Io(e) => Error::Io(io(e)),
            Error::InvalidEndpoint { input, reason } => {
                Error::InvalidEndpoint { input: input.clone(), reason: reason.clone() }
            }
            Error::Connect { endpoint, source } => {
                Error::Connect { endpoint: endpoint.clone(), source: io(source) }
            }
            Error::ConnectTimeout { endpoint, timeout } => {
                Error::ConnectTimeout { endpoint: endpoint.clone(), timeout: *timeout }
            }
            Error::Bind { endpoint, source } => {
                Error::Bind { endpoint: endpoint.clone(), source: io(source) }
            }
            Error::FrameTooLarge { size, limit } => {
                Error::FrameTooLarge { size: *size, limit: *limit }
            }
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Overloaded(m) => Error::Overloaded(m.clone()),
            Error::VersionMismatch { ours, theirs } => {
                Error::VersionMismatch { ours: *ours, theirs: *theirs }
            }
            Error::Remote { code, message } => {
                Error::Remote { code: *code, message: message.clone() }
            }
            Error::DeadlineExceeded(d) => Error::DeadlineExceeded(*d),
            Error::Encode(m) => Error::Encode(m.clone()),
            Error::Decode(m) => Error::Decode(m.clone()),
            Error::Layer(e) => Error::Layer(e.to_string().into()),
            _ => Error::ConnectionClosed,
        }
    }

    /// The code to put in a Close frame when this error ends a connection, if the peer
    /// should be told.
    pub(crate) fn close_code(&self) -> Option<Code> {
        match self {
            Error::FrameTooLarge { .. } => Some(Code::FrameTooLarge),
            Error::VersionMismatch { .. } => Some(Code::VersionMismatch),
            Error::Protocol(_) => Some(Code::ProtocolViolation),
            Error::Overloaded(_) => Some(Code::Overloaded),
            _ => None,
        }
    }
}

impl From<crate::codec::CodecError> for Error {
    fn from(e: crate::codec::CodecError) -> Error {
        Error::Encode(e.message)
    }
}

/// Text from a peer, displayed with control characters escaped, so that a hostile server
/// cannot move the cursor, recolour or clear the terminal of whoever prints the error.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                std::fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_message_is_displayed_with_control_characters_escaped() {
        let error = Error::Remote {
            code: Code::Other(99),
            message: "boom\u{1b}[2J\r\nfake prompt$ \u{7}é".to_owned(),
        };
        let shown = error.to_string();
        assert_eq!(shown, "server error (code 99): boom\\u{1b}[2J\\r\\nfake prompt$ \\u{7}é");
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn every_known_code_survives_the_wire_and_unknown_ones_stay_numbers() {
        for n in 0..=20 {
            assert_eq!(Code::from_u32(n).to_u32(), n);
        }
        assert_eq!(Code::from_u32(12), Code::EncodeFailed);
    }
}
