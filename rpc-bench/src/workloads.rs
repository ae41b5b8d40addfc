//! The measurement harness: what a client must offer ([`Caller`], [`Sequential`]), timed loops
//! for latency and byte throughput, and a call-rate meter shared by concurrent caller tasks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::probe;

/// How long each measurement warms up and runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warm: Duration,
    pub measure: Duration,
}

/// A client handle that many tasks share; `rpc` and `tarpc` clients are this.
pub trait Caller: Clone + Send + Sync + 'static {
    fn add(&self, a: i64, b: i64) -> impl Future<Output = i64> + Send;
    fn echo(&self, data: Bytes) -> impl Future<Output = Bytes> + Send;
}

/// A client used by one task, one call at a time; every [`Caller`] is one, and so is a raw
/// connection.
pub trait Sequential: Send + 'static {
    fn add(&mut self, a: i64, b: i64) -> impl Future<Output = i64> + Send;
    fn echo(&mut self, data: Bytes) -> impl Future<Output = Bytes> + Send;
}

impl<C: Caller> Sequential for C {
    fn add(&mut self, a: i64, b: i64) -> impl Future<Output = i64> + Send {
        Caller::add(self, a, b)
    }
    fn echo(&mut self, data: Bytes) -> impl Future<Output = Bytes> + Send {
        Caller::echo(self, data)
    }
}

/// Named results of one measurement, e.g. `("p50_us", 8.1)`.
pub type Metrics = Vec<(&'static str, f64)>;

/// `w1`: calls `add` back to back; warms up, then records every call's latency. Returns
/// `p50_us`, `p99_us`, `p999_us` and `calls_per_s`.
pub async fn latency<C: Sequential>(timing: Timing, mut client: C) -> Metrics {
    let mut i = 0i64;
    let warm_end = Instant::now() + timing.warm;
    while Instant::now() < warm_end {
        check(client.add(i, 1).await, i + 1);
        i += 1;
    }
    let mut samples: Vec<u32> = Vec::with_capacity(1 << 20);
    let probe = probe::snapshot();
    let start = Instant::now();
    let end = start + timing.measure;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        check(client.add(i, 1).await, i + 1);
        let ns = t0.elapsed().as_nanos();
        samples.push(u32::try_from(ns).unwrap_or(u32::MAX));
        i += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let probes = probe::per_call(&probe, &probe::snapshot(), samples.len() as u64);
    samples.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
        samples.get(rank - 1).map_or(0.0, |&ns| f64::from(ns) / 1_000.0)
    };
    let mut out = vec![
        ("p50_us", pct(0.50)),
        ("p99_us", pct(0.99)),
        ("p999_us", pct(0.999)),
        ("calls_per_s", samples.len() as f64 / elapsed),
    ];
    out.extend(probes);
    out
}

/// `w4`: echoes `payload` back to back; returns `mb_per_s`, MB (10^6 bytes) of payload echoed
/// per second.
pub async fn echo_rate<C: Sequential>(timing: Timing, mut client: C, payload: Bytes) -> Metrics {
    let warm_end = Instant::now() + timing.warm;
    while Instant::now() < warm_end {
        check_len(client.echo(payload.clone()).await.len(), payload.len());
    }
    let probe = probe::snapshot();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < timing.measure {
        check_len(client.echo(payload.clone()).await.len(), payload.len());
        calls += 1;
    }
    let rate = (calls * payload.len() as u64) as f64 / start.elapsed().as_secs_f64() / 1e6;
    let mut out = vec![("mb_per_s", rate)];
    out.extend(probe::per_call(&probe, &probe::snapshot(), calls));
    out
}

/// The mean of each metric over runs of equal length.
pub fn mean(runs: &[Metrics]) -> Metrics {
    let Some(first) = runs.first() else { return Vec::new() };
    first
        .iter()
        .enumerate()
        .map(|(i, &(name, _))| {
            let sum: f64 = runs.iter().map(|r| r[i].1).sum();
            (name, sum / runs.len() as f64)
        })
        .collect()
}

/// Counts calls made by concurrent tasks without sharing a cache line between them, and tells
/// them when to stop.
pub struct Meter {
    stop: AtomicBool,
    counts: Vec<Slot>,
}

#[repr(align(128))]
struct Slot(AtomicU64);

impl Meter {
    pub fn new(tasks: usize) -> Arc<Meter> {
        let counts = (0..tasks).map(|_| Slot(AtomicU64::new(0))).collect();
        Arc::new(Meter { stop: AtomicBool::new(false), counts })
    }

    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Publishes task `task`'s running total.
    pub fn set(&self, task: usize, total: u64) {
        self.counts[task].0.store(total, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    /// Lets the tasks warm up, counts their calls over the measuring time, then stops them.
    /// Returns `calls_per_s`.
    pub async fn rate(&self, timing: Timing) -> Metrics {
        tokio::time::sleep(timing.warm).await;
        let (c0, t0, p0) = (self.total(), Instant::now(), probe::snapshot());
        tokio::time::sleep(timing.measure).await;
        let (c1, t1, p1) = (self.total(), Instant::now(), probe::snapshot());
        self.stop.store(true, Ordering::Relaxed);
        let mut out = vec![("calls_per_s", (c1 - c0) as f64 / (t1 - t0).as_secs_f64())];
        out.extend(probe::per_call(&p0, &p1, c1 - c0));
        out
    }
}

/// `w2`/`w3`: `per_conn` tasks on each client in `clients`, each calling `add` in a loop;
/// returns `calls_per_s` over all of them.
pub async fn callers<C: Caller>(timing: Timing, clients: &[C], per_conn: usize) -> Metrics {
    let meter = Meter::new(clients.len() * per_conn);
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for k in 0..per_conn {
            let (client, meter) = (client.clone(), meter.clone());
            let task = c * per_conn + k;
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = (task as i64) << 40;
                while meter.running() {
                    check(client.add(i, 1).await, i + 1);
                    i += 1;
                    n += 1;
                    meter.set(task, n);
                }
            }));
        }
    }
    let rate = meter.rate(timing).await;
    for t in tasks {
        t.await.expect("caller task panicked");
    }
    rate
}

pub fn check(got: i64, want: i64) {
    assert_eq!(got, want, "add returned a wrong sum");
}

fn check_len(got: usize, want: usize) {
    assert_eq!(got, want, "echo returned a payload of the wrong length");
}

/// A stream of items being received, one system's way; [`stream_rate`] measures it.
pub trait Items: Send + 'static {
    /// The next item's size in bytes.
    fn next(&mut self) -> impl Future<Output = usize> + Send;
}

/// `s1_8b` / `s2_64kib`: reads one stream's items as fast as they come; warms up, then counts.
/// Returns `items_per_s` and `mb_per_s` (10^6 bytes of item payload per second).
pub async fn stream_rate<I: Items>(timing: Timing, mut items: I) -> Metrics {
    let warm_end = Instant::now() + timing.warm;
    while Instant::now() < warm_end {
        for _ in 0..256 {
            items.next().await;
        }
    }
    let (mut n, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + timing.measure;
    // The clock is read once per 256 items, so that reading it costs little next to an item.
    while Instant::now() < end {
        for _ in 0..256 {
            bytes += items.next().await as u64;
        }
        n += 256;
    }
    let elapsed = start.elapsed().as_secs_f64();
    vec![("items_per_s", n as f64 / elapsed), ("mb_per_s", bytes as f64 / elapsed / 1e6)]
}
