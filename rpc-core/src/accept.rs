//! The accept side of a server: accept failures handled without spinning, without leaving a
//! waiting peer hanging and without flooding the log; peers over a limit refused without
//! running the process out of descriptors.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rustix::io::Errno;
use tokio::time::Instant;

use crate::Code;
use crate::driver::refuse;
use crate::fdlimit::RESERVE;
use crate::net::{AcceptError, Listener, Stream};
use crate::ratelimit::RateLimit;
use crate::wire::{self, Header};

/// Pause after an accept failure that trying again at once would not cure: no memory, or no
/// descriptor and no spare one to make room with.
const BACKOFF: Duration = Duration::from_millis(100);
/// Repeated warnings: at most one line per period, with the count of those held back.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// How long making room with the spare descriptor waits for the peer to accept. One waiting in
/// the backlog is accepted at once; this only bounds the case where none is.
const SHED_WAIT: Duration = Duration::from_millis(10);
/// Refusals waiting for their peer to hang up, across the process. Each holds a descriptor
/// for up to a second; past this many, peers are refused at once, so a flood of refusals
/// cannot eat the descriptors [`RESERVE`] keeps for everything else.
const LINGERING_MAX: usize = RESERVE / 2;

static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Accepts connections for one server and refuses the ones it cannot serve.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// A descriptor held for when the process has no other. Accept fails with EMFILE when the
    /// process is out of descriptors, and a peer waiting in the backlog would wait until one
    /// is free, maybe forever; closing the spare makes room to accept it and tell it to go
    /// away. `None` while it could not be reopened.
    spare: Option<File>,
    /// When to try again after a failure. Kept here rather than slept on in one go, as the
    /// future of [`Acceptor::accept`] is dropped whenever another branch of the server's loop
    /// wins; the pause is then resumed, not restarted or skipped.
    retry_at: Option<Instant>,
    /// Warnings about accept failing.
    failures: RateLimit,
    /// Warnings about connections reset or broken as they were accepted.
    resets: RateLimit,
    /// Warnings about peers refused.
    refusals: RateLimit,
}

impl Acceptor {
    pub(crate) fn new() -> Acceptor {
        Acceptor {
            spare: open_spare(),
            retry_at: None,
            failures: RateLimit::new(WARN_EVERY),
            resets: RateLimit::new(WARN_EVERY),
            refusals: RateLimit::new(WARN_EVERY),
        }
    }

    /// The next connection. Failures are dealt with here, never returned: a connection that
    /// broke as it was accepted is skipped, running out of descriptors refuses the waiting
    /// peer with the spare descriptor, anything else pauses before trying again. Cancel-safe.
    pub(crate) async fn accept(&mut self, listener: &Listener) -> Stream {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            if self.spare.is_none() {
                self.spare = open_spare();
            }
            let error = match listener.accept().await {
                Ok(stream) => return stream,
                Err(AcceptError::Setup(e)) => {
                    self.peer_failed(&e);
                    continue;
                }
                Err(AcceptError::Accept(e)) => e,
            };
            match Errno::from_io_error(&error) {
                Some(errno) if is_out_of_descriptors(errno) && self.spare.is_some() => {
                    self.shed(listener).await;
                }
                Some(errno) if is_peer_failure(errno) => self.peer_failed(&error),
                _ => self.failed(&error),
            }
        }
    }

    /// Answers a peer over `limit` with an `Overloaded` Close frame. The refusal waits (up to
    /// a second) for the peer to read the frame and hang up, holding a descriptor meanwhile;
    /// while many refusals wait across the process, peers are refused at once instead.
    pub(crate) fn refuse(&mut self, stream: Stream, limit: usize) {
        if let Some(suppressed) = self.refusals.check(Instant::now()) {
            tracing::warn!(limit, suppressed, "connection refused: the server is at its limit");
        }
        match Lingering::take() {
            Some(lingering) => {
                tokio::spawn(async move {
                    refuse(stream, limit).await;
                    drop(lingering);
                });
            }
            None => {
                let message = format!("the server is at its limit of {limit} connections");
                refuse_at_once(&stream, &message);
            }
        }
    }

    /// Out of descriptors with a peer waiting: closes the spare to make room, accepts the peer,
    /// refuses it at once, closes it and takes the spare back.
    async fn shed(&mut self, listener: &Listener) {
        drop(self.spare.take());
        match tokio::time::timeout(SHED_WAIT, listener.accept()).await {
            Ok(Ok(stream)) => {
                refuse_at_once(&stream, "the server is out of file descriptors");
                drop(stream);
                if let Some(suppressed) = self.refusals.check(Instant::now()) {
                    tracing::warn!(
                        suppressed,
                        "connection refused: the process is out of file descriptors"
                    );
                }
            }
            Ok(Err(AcceptError::Setup(e))) => self.peer_failed(&e),
            // Something else took the descriptor the spare freed.
            Ok(Err(AcceptError::Accept(e))) => self.failed(&e),
            Err(_) => {} // nobody was waiting after all
        }
        self.spare = open_spare();
    }

    /// A connection broke as it was accepted: the peer's doing, nothing to wait for.
    fn peer_failed(&mut self, error: &io::Error) {
        if let Some(suppressed) = self.resets.check(Instant::now()) {
            tracing::warn!(error = %error, suppressed, "a connection failed as it was accepted");
        }
    }

    /// Accept failed in a way that retrying at once would not cure.
    fn failed(&mut self, error: &io::Error) {
        // Running out of descriptors or memory passes; spinning on it would not help, and
        // exiting would take down every other connection.
        if let Some(suppressed) = self.failures.check(Instant::now()) {
            tracing::warn!(error = %error, suppressed, "accept failed; retrying in 100 ms");
        }
        self.retry_at = Some(Instant::now() + BACKOFF);
    }
}

fn is_out_of_descriptors(errno: Errno) -> bool {
    errno == Errno::MFILE || errno == Errno::NFILE
}

/// Errors `accept` returns for one connection that failed in the backlog; Linux passes these
/// on from the new socket and asks callers to retry as for EAGAIN (accept(2), "Error
/// handling"). EPERM is a firewall refusing the connection.
fn is_peer_failure(errno: Errno) -> bool {
    [
        Errno::CONNABORTED,
        Errno::CONNRESET,
        Errno::PROTO,
        Errno::PERM,
        Errno::TIMEDOUT,
        Errno::NETDOWN,
        Errno::NETUNREACH,
        Errno::HOSTDOWN,
        Errno::HOSTUNREACH,
        Errno::NOPROTOOPT,
        Errno::OPNOTSUPP,
    ]
    .contains(&errno)
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Refuses a peer with an `Overloaded` Close frame without waiting, for when no descriptor may
/// be held: writes the frame (a socket just accepted takes a small frame whole), reads away
/// what the peer sent already, so that closing the socket ends the connection rather than
/// resets it, and leaves the closing to the caller.
fn refuse_at_once(stream: &Stream, message: &str) {
    let mut frame = BytesMut::new();
    let close = Header::close(Code::Overloaded, message);
    if wire::encode(&mut frame, &close, wire::no_body, usize::MAX).is_ok() {
        let _ = stream.send_now(&frame);
    }
    stream.discard_received(64 * 1024);
}

/// One refusal waiting for its peer, counted in [`LINGERING`] until dropped.
struct Lingering;

impl Lingering {
    fn take() -> Option<Lingering> {
        LINGERING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LINGERING_MAX).then_some(n + 1)
            })
            .ok()
            .map(|_| Lingering)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    }
}
