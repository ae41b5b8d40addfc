//! W3C trace context carried in metadata (`traceparent`), so one trace covers client and server.
//!
//! Without an OpenTelemetry dependency, the context travels as a task-local value: a call made
//! inside [`in_trace`] (or inside a handler whose request carried a `traceparent`) sends a
//! child context in its metadata, and the server records the trace id on its call span and
//! passes it on to the handler ([`Context::trace`](crate::Context::trace)). A program using
//! `tracing-opentelemetry` bridges the two by reading its span's context into a
//! [`TraceContext`] and running the calls in [`in_trace`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace's id; never zero.
    pub trace_id: u128,
    /// The id of the span that made the call; never zero.
    pub span_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace with fresh ids, sampled.
    pub fn new_root() -> TraceContext {
        let high = u128::from(fresh_id());
        TraceContext {
            trace_id: (high << 64) | u128::from(fresh_id()),
            span_id: fresh_id(),
            flags: 1,
        }
    }

    /// The context of a call made from this span: same trace, a fresh span id.
    pub fn child(&self) -> TraceContext {
        TraceContext { span_id: fresh_id(), ..*self }
    }

    /// Reads a `traceparent` value; `None` if it is not version `00` in the W3C form or
    /// has an all-zero id.
    pub fn parse(text: &str) -> Option<TraceContext> {
        let bytes = text.as_bytes();
        if bytes.len() != 55 || &bytes[..3] != b"00-" || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let (trace, span, flags) = (&text[3..35], &text[36..52], &text[53..55]);
        if !(hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id, flags })
    }

    /// The trace id as 32 lowercase hex digits, as span fields show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl std::fmt::Display for TraceContext {
    /// The `traceparent` value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// Runs `future` with `context` as the current trace: calls it makes carry a child of it.
pub async fn in_trace<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The trace the running task is in, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `future` in `context`'s trace, for the server's handler futures.
pub(crate) fn scope<F: Future>(
    context: TraceContext,
    future: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, future)
}

/// A non-zero id, unique in the process and unlikely to repeat across processes: a counter
/// mixed with the start time and the process id (no random number dependency).
fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed);
    // A bijective mix (splitmix64's finalizer), so consecutive counts look unrelated.
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_malformed_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(text).expect("valid");
        assert_eq!(context.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(context.span_id, 0x00f067aa0ba902b7);
        assert_eq!(context.to_string(), text);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }
}
