//! What a server is configured with: [`ServerConfig`] and the authorization hook.

use std::sync::Arc;
use std::time::Duration;

use crate::net::Peer;
use crate::{Keepalive, StreamWindow, frame};

/// Limits and timeouts of a [`Server`](crate::Server). Every field has a default that is safe for a server
/// reachable from the internet.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The largest request frame accepted, in bytes. Default: [`frame::DEFAULT_MAX_FRAME`] (4 MiB).
    pub max_frame: usize,
    /// Time a new connection has to send its hello. Default: 10 s.
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed: GoAway (so the client knows
    /// nothing it sent since has started), then a Close with code 16 (idle) naming the time.
    /// Default: 60 s.
    pub idle_timeout: Duration,
    /// Time a frame has, once its first bytes arrived, for the rest to arrive; a peer that
    /// takes longer gets a Close with code 11. Default: 30 s.
    pub frame_timeout: Duration,
    /// Bytes that read buffers and queued answers of all connections of the process may hold
    /// together; a connection that would need more is closed with an `Overloaded` Close.
    /// Process-wide: the last server bound sets it. Default:
    /// [`DEFAULT_BUFFER_BUDGET`](crate::DEFAULT_BUFFER_BUDGET) (256 MiB).
    pub buffer_budget: usize,
    /// Time in-flight calls get to finish after shutdown starts. Default: 30 s.
    pub shutdown_grace: Duration,
    /// Connections served at once; more are answered with an `Overloaded` Close frame.
    /// The process's open-file limit can lower it: see
    /// [`Server::bind_with`](crate::Server::bind_with). Default: 10,000.
    pub max_connections: usize,
    /// Calls running at once on one connection; past it the server stops reading that
    /// connection until one finishes (backpressure). Default: 256.
    pub max_in_flight: usize,
    /// Permission bits of a Unix socket file, set right after binding. Default: `0o600`
    /// (only the server's user may connect); `None` leaves what the umask gives.
    pub unix_mode: Option<u32>,
    /// TCP keepalive on accepted connections, so a client that vanished without closing is
    /// noticed and its connection freed; `None` turns it off. Default: [`Keepalive::default()`]
    /// (a dead peer is noticed within 90 s).
    pub tcp_keepalive: Option<Keepalive>,
    /// The most credit each stream a client sends (a `Streaming` argument) gets: items and
    /// bytes in flight, which bounds the memory it holds to `items` frames and `bytes` plus
    /// one frame. It starts at [`StreamWindow::START`] and grows to this while the consumer
    /// keeps up. Default: [`StreamWindow::DEFAULT`] (8,192 items, 8 MiB).
    pub stream_window: StreamWindow,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: frame::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(30),
            buffer_budget: crate::DEFAULT_BUFFER_BUDGET,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 10_000,
            max_in_flight: 256,
            unix_mode: Some(0o600),
            tcp_keepalive: Some(Keepalive::default()),
            stream_window: StreamWindow::DEFAULT,
        }
    }
}

/// Decides at connection time whether a peer may talk to the server; see [`Server::authorize`](crate::Server::authorize).
pub(crate) type Authorizer = Arc<dyn Fn(&Peer) -> Result<(), String> + Send + Sync>;
