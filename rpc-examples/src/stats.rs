//! [`Stats`]: a second service on the calculator's listeners: calls served per method since
//! start, uptime, and a one-way `log`. An interceptor ([`CallCounter`]) does the counting, so no
//! calculator handler knows about it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::{CallInfo, Interceptor, Outcome, Rejection};
use serde::{Deserialize, Serialize};

/// What [`Stats::stats`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Time since the server started, in milliseconds.
    pub uptime_ms: u64,
    /// Calls served per method (`Service.method`), counted when they end, in name order.
    pub calls: Vec<(String, u64)>,
    /// Lines received by [`Stats::log`].
    pub logged: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uptime = Duration::from_millis(self.uptime_ms);
        writeln!(f, "uptime: {:.1}s", uptime.as_secs_f64())?;
        writeln!(f, "lines logged: {}", self.logged)?;
        write!(f, "calls served:")?;
        if self.calls.is_empty() {
            write!(f, " none")?;
        }
        for (method, n) in &self.calls {
            write!(f, "\n  {method}: {n}")?;
        }
        Ok(())
    }
}

/// The server's own statistics.
#[rpc_core::service]
pub trait Stats {
    /// Calls served per method since start, and uptime.
    async fn stats(&self) -> Report;
    /// Writes `line` to the server's log. One-way: returns once sent, and nothing comes back.
    #[rpc(oneway)]
    async fn log(&self, line: String);
}

/// Counts shared by [`StatsService`] and [`CallCounter`].
#[derive(Debug)]
struct Counts {
    started: Instant,
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    logged: Mutex<u64>,
}

/// The [`Stats`] implementation; make it with [`stats`].
#[derive(Debug, Clone)]
pub struct StatsService(Arc<Counts>);

/// Counts every call that ends, per method; make it with [`stats`].
#[derive(Debug, Clone)]
pub struct CallCounter(Arc<Counts>);

/// A [`StatsService`] and the [`CallCounter`] that feeds it: install both on one server.
pub fn stats() -> (StatsService, CallCounter) {
    let counts = Arc::new(Counts {
        started: Instant::now(),
        calls: Mutex::new(BTreeMap::new()),
        logged: Mutex::new(0),
    });
    (StatsService(counts.clone()), CallCounter(counts))
}

impl Stats for StatsService {
    async fn stats(&self) -> Report {
        let calls = lock(&self.0.calls)
            .iter()
            .map(|((service, method), n)| (format!("{service}.{method}"), *n))
            .collect();
        Report {
            uptime_ms: u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            calls,
            logged: *lock(&self.0.logged),
        }
    }

    async fn log(&self, line: String) {
        *lock(&self.0.logged) += 1;
        tracing::info!(target: "calculator::log", "{}", line.escape_debug());
    }
}

impl Interceptor for CallCounter {
    fn before(&self, _: &CallInfo<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    fn after(&self, service: &'static str, method: &'static str, _: Outcome, _: Duration) {
        *lock(&self.0.calls).entry((service, method)).or_default() += 1;
    }
}

/// A lock whose holder cannot leave it half-updated (a counter increment), so poisoning is
/// ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
