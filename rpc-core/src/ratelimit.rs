//! A limit on repeated log lines: one per period, carrying the count of those held back.

use std::time::Duration;

use tokio::time::Instant;

/// Lets one event through per period and counts the ones it holds back, so a warning that
/// fires thousands of times a second (accept failing while descriptors are out) costs a line
/// every few seconds and still says how often it happened.
///
/// The time is passed in rather than read, so the limiter is a plain value that tests drive
/// without a clock. In use:
///
/// ```text
/// if let Some(suppressed) = self.warnings.check(Instant::now()) {
///     tracing::warn!(suppressed, "accept failed");
/// }
/// ```
#[derive(Debug)]
pub(crate) struct RateLimit {
    period: Duration,
    /// When the last event was let through; `None` before the first.
    last: Option<Instant>,
    /// Events held back since the last one let through.
    suppressed: u64,
}

impl RateLimit {
    /// A limiter letting one event through per `period`.
    pub(crate) const fn new(period: Duration) -> RateLimit {
        RateLimit { period, last: None, suppressed: 0 }
    }

    /// For an event at `now`: `Some(held_back)` if it is to be written, with the number of
    /// events held back since the last one written; `None` (and it is counted) if not.
    pub(crate) fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(5);

    #[test]
    fn the_first_event_is_written_with_nothing_held_back() {
        let mut limit = RateLimit::new(PERIOD);
        assert_eq!(limit.check(Instant::now()), Some(0));
    }

    #[test]
    fn events_within_the_period_are_held_back_and_counted_on_the_next_line() {
        let mut limit = RateLimit::new(PERIOD);
        let start = Instant::now();
        assert_eq!(limit.check(start), Some(0));
        for ms in [1, 10, 2_000, 4_999] {
            assert_eq!(limit.check(start + Duration::from_millis(ms)), None, "at {ms} ms");
        }
        assert_eq!(limit.check(start + PERIOD), Some(4), "the period is over");
        assert_eq!(limit.check(start + PERIOD), None, "a new period began");
        assert_eq!(limit.check(start + PERIOD * 2), Some(1));
    }

    #[test]
    fn the_period_counts_from_the_last_line_written_not_from_the_last_event() {
        let mut limit = RateLimit::new(PERIOD);
        let start = Instant::now();
        assert_eq!(limit.check(start), Some(0));
        // An event every second never resets the period: one line every five seconds.
        let written: Vec<u64> = (1..=10)
            .filter_map(|s| limit.check(start + Duration::from_secs(s)).map(|_| s))
            .collect();
        assert_eq!(written, [5, 10]);
    }

    #[test]
    fn after_a_quiet_spell_the_next_event_is_written_at_once() {
        let mut limit = RateLimit::new(PERIOD);
        let start = Instant::now();
        assert_eq!(limit.check(start), Some(0));
        assert_eq!(limit.check(start + Duration::from_secs(3_600)), Some(0));
    }
}
