//! The connection manager behind a [`Client`](crate::Client): the current connection, a new
//! one dialled at once on GoAway or loss, backoff between failed attempts, and the state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Jitter};
use crate::client::{ClientConfig, Connection};
use crate::task::spawn_logged;
use crate::{Endpoint, Error};

/// What a client does when its connection is lost or the server sends GoAway.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reconnect {
    /// Whether to connect again at all; when `false` a lost connection stays lost and every
    /// later call fails with its error. Default: `true`.
    pub enabled: bool,
    /// The delays between failed attempts. Default: [`Backoff::default()`].
    pub backoff: Backoff,
    /// Failed attempts in a row after which the client gives up for good
    /// ([`ConnectionState::Failed`]); `None` tries for ever. Default: `None`.
    pub max_attempts: Option<u32>,
    /// While there is no connection and the last attempt failed, `true` fails calls at once
    /// with that attempt's error; `false` lets them wait for a connection, up to their
    /// deadline and never past it. Calls always wait while a first attempt is under way (as
    /// in a GoAway handoff). Default: `false`.
    pub fail_fast: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            backoff: Backoff::default(),
            max_attempts: None,
            fail_fast: false,
        }
    }
}

impl Reconnect {
    /// Never connect again: a client with this setting is one connection, as before.
    pub fn disabled() -> Reconnect {
        Reconnect { enabled: false, ..Reconnect::default() }
    }
}

/// Where a client stands with its server, from [`Client::state`](crate::Client::state).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionState {
    /// A connection is up and takes calls.
    Connected,
    /// The connection went away while no call used it (such as a server's idle close); the
    /// next call makes a new one.
    Idle,
    /// No connection takes calls; one is being made, or will be after a backoff delay.
    Connecting {
        /// Failed attempts in a row so far.
        failures: u32,
        /// Why the last attempt (or the last connection) failed, if one did.
        last_error: Option<Error>,
    },
    /// The client gave up: reconnecting is off, or `max_attempts` failed in a row. Every
    /// call fails with (a copy of) `last_error`.
    Failed {
        /// Why the last attempt (or the connection) failed.
        last_error: Error,
    },
}

impl Clone for ConnectionState {
    fn clone(&self) -> Self {
        match self {
            ConnectionState::Connected => ConnectionState::Connected,
            ConnectionState::Idle => ConnectionState::Idle,
            ConnectionState::Connecting { failures, last_error } => ConnectionState::Connecting {
                failures: *failures,
                last_error: last_error.as_ref().map(Error::duplicate),
            },
            ConnectionState::Failed { last_error } => {
                ConnectionState::Failed { last_error: last_error.duplicate() }
            }
        }
    }
}

/// Shared by a client's handles and its manager task.
pub(crate) struct Manager {
    pub(crate) endpoint: Endpoint,
    config: ClientConfig,
    /// The connection new calls go to; `None` until the first one is made.
    current: Current,
    state: watch::Sender<ConnectionState>,
    /// Cancelled when the last handle goes: the manager task stops.
    gone: CancellationToken,
    /// A caller (or the balancer) needs a connection; see [`Manager::want`].
    wanted: Notify,
}

impl Manager {
    /// A manager for `endpoint`, with `first` as its connection if one was made already; its
    /// task runs until [`Manager::stop`].
    pub(crate) fn start(
        endpoint: Endpoint,
        config: ClientConfig,
        first: Option<Connection>,
    ) -> Arc<Manager> {
        let state = match first {
            Some(_) => ConnectionState::Connected,
            None => ConnectionState::Connecting { failures: 0, last_error: None },
        };
        let manager = Arc::new(Manager {
            endpoint,
            config,
            current: Current::new(first),
            state: watch::Sender::new(state),
            gone: CancellationToken::new(),
            wanted: Notify::new(),
        });
        let gone = manager.gone.clone();
        let run = manager.clone().run();
        spawn_logged("client connection manager", async move {
            // Dropping `run` on cancellation drops an attempt under way, and with it its socket.
            gone.run_until_cancelled(run).await;
        });
        manager
    }

    /// Stops the manager task; the connections close once their calls have finished.
    pub(crate) fn stop(&self) {
        self.gone.cancel();
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection for a new call: the current one if it takes calls (the fast path: a
    /// read lock and a reference count), or the next one, waited for up to `deadline`.
    pub(crate) async fn connection(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Arc<Connection>, Error> {
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        if !self.config.reconnect.enabled {
            // One connection, as before: calls on it after GoAway or loss fail as it says.
            if let Some(conn) = self.current.get() {
                return Ok(conn);
            }
        }
        let mut changes = self.state.subscribe();
        loop {
            // Looked at after subscribing: a connection made since is either seen here or
            // announced to `changes`.
            if let Some(conn) = self.usable() {
                return Ok(conn);
            }
            match &*changes.borrow_and_update() {
                ConnectionState::Failed { last_error } => return Err(last_error.duplicate()),
                ConnectionState::Connecting { failures, last_error: Some(e) }
                    if *failures > 0 && self.config.reconnect.fail_fast =>
                {
                    return Err(e.duplicate());
                }
                _ => {}
            }
            self.want();
            let changed = changes.changed();
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, changed).await,
                None => Ok(changed.await),
            };
            match changed {
                Ok(Ok(())) => {}
                // The manager is gone: so is every handle but this call's, which is ending.
                Ok(Err(_)) => return Err(Error::ConnectionClosed),
                Err(_) => return Err(Error::DeadlineExceeded(Duration::ZERO)),
            }
        }
    }

    /// Changes of the state from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// The error the client gave up with, if it did.
    pub(crate) fn failed(&self) -> Option<Error> {
        match &*self.state.borrow() {
            ConnectionState::Failed { last_error } => Some(last_error.duplicate()),
            _ => None,
        }
    }

    /// The current connection, if it takes calls.
    #[inline]
    pub(crate) fn usable(&self) -> Option<Arc<Connection>> {
        self.current.get().filter(|conn| conn.usable())
    }

    /// The manager task: waits for the current connection to stop taking calls, then makes
    /// the next one. The old connection is left to its calls in flight (GoAway handoff).
    async fn run(self: Arc<Manager>) {
        let mut jitter = Jitter::new();
        let mut last_error = None;
        loop {
            if let Some(conn) = self.current.get() {
                conn.unusable().await;
                tracing::debug!(endpoint = %self.endpoint, "connection lost or going away");
                if !self.config.reconnect.enabled {
                    let last_error = Error::ConnectionClosed;
                    self.state.send_replace(ConnectionState::Failed { last_error });
                    return;
                }
                last_error = Some(Error::ConnectionClosed);
                if !conn.busy() {
                    // Nobody was using it (a server's idle close, say): the next call asks for
                    // a new one, so an idle client does not redial a server that keeps closing
                    // idle connections.
                    self.state.send_replace(ConnectionState::Idle);
                    self.wanted.notified().await;
                }
            }
            let mut failures = 0;
            let conn = loop {
                let shown = last_error.as_ref().map(Error::duplicate);
                self.state
                    .send_replace(ConnectionState::Connecting { failures, last_error: shown });
                match Connection::open(&self.endpoint, &self.config).await {
                    Ok(conn) => break conn,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::debug!(endpoint = %self.endpoint, error = %e, failures, "connect failed");
                        let give_up = !self.config.reconnect.enabled
                            || self.config.reconnect.max_attempts.is_some_and(|n| failures >= n);
                        if give_up {
                            self.state.send_replace(ConnectionState::Failed { last_error: e });
                            return;
                        }
                        last_error = Some(e);
                        let delay = self.config.reconnect.backoff.delay(failures, jitter.next());
                        let shown = last_error.as_ref().map(Error::duplicate);
                        self.state.send_replace(ConnectionState::Connecting {
                            failures,
                            last_error: shown,
                        });
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            // The connection first, then the news: a caller woken by the news finds it.
            self.current.set(conn);
            self.state.send_replace(ConnectionState::Connected);
            last_error = None;
        }
    }

    /// Asks for a connection: one that went away idle is replaced only when this is called.
    pub(crate) fn want(&self) {
        self.wanted.notify_one();
    }
}

/// The current connection, in one copy per slot: every call takes a reference to it, and
/// callers on different threads then count on different cache lines. With one shared
/// reference count (and lock) the threads took turns owning that line, which cost about a
/// tenth of the throughput of 128 callers on one connection.
struct Current {
    slots: Box<[Slot]>,
}

/// One copy of the current connection, alone on its cache lines.
#[repr(align(128))]
struct Slot(RwLock<Option<Arc<Connection>>>);

impl Current {
    fn new(first: Option<Connection>) -> Current {
        let n = std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(2, 64);
        let copies = (0..n).map(|_| Slot(RwLock::new(first.clone().map(Arc::new))));
        Current { slots: copies.collect() }
    }

    /// The current connection, from this thread's slot.
    #[inline]
    fn get(&self) -> Option<Arc<Connection>> {
        let slot = &self.slots[thread_index() % self.slots.len()];
        slot.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `conn` the current connection in every slot.
    fn set(&self, conn: Connection) {
        for slot in &self.slots {
            *slot.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(conn.clone()));
        }
    }
}

/// A small number that differs between threads, to spread them over [`Current`]'s slots.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}
