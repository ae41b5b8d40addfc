//! Delays between reconnection attempts: exponential backoff with jitter, without clocks.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long a client waits between failed connection attempts: `initial`, multiplied by
/// `multiplier` after each failure, never more than `max`; each delay is then moved by a
/// random fraction of at most `jitter` either way (and kept within `max`), so that many
/// clients cut off at once do not all come back in the same instant.
///
/// The first attempt after a connection is lost is made at once (for one that went away idle,
/// when the next call needs it); the delays come between the attempts that follow.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay after the first failed attempt. Default: 100 ms.
    pub initial: Duration,
    /// The factor each further failure multiplies the delay by. Default: 2.
    pub multiplier: f64,
    /// The longest delay. Default: 5 s.
    pub max: Duration,
    /// The largest random change of a delay, as a fraction of it (0 to 1). Default: 0.2,
    /// so a delay of 1 s becomes one between 0.8 s and 1.2 s.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt after `failures` failed attempts in a row (1 or
    /// more), for a `random` number in `[0, 1)`.
    pub(crate) fn delay(&self, failures: u32, random: f64) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent)).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0) * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        // NaN (a NaN field) and infinities fall back to the bounds rather than panicking.
        Duration::try_from_secs_f64((base * (1.0 + jitter)).clamp(0.0, max)).unwrap_or(self.max)
    }
}

/// Random numbers for jitter: xorshift seeded from the standard library's random hash keys,
/// enough to spread clients apart, and no dependency.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Jitter {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Jitter(hasher.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_from_the_initial_one_up_to_the_maximum() {
        let backoff = Backoff { jitter: 0.0, ..Backoff::default() };
        let delays: Vec<_> = (1..=8).map(|n| backoff.delay(n, 0.5)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms));
        assert_eq!(backoff.delay(u32::MAX, 0.5), ms(5000));
    }

    #[test]
    fn jitter_moves_a_delay_by_at_most_its_fraction_and_never_past_the_maximum() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 0.0), ms(80));
        assert_eq!(backoff.delay(1, 1.0), ms(120));
        assert_eq!(backoff.delay(10, 1.0), ms(5000));
        let mut jitter = Jitter::new();
        for failures in 1..20 {
            let delay = backoff.delay(failures, jitter.next());
            let base = backoff.initial.as_secs_f64() * 2f64.powi(failures as i32 - 1);
            assert!(delay.as_secs_f64() >= (base * 0.8).min(4.0) - 1e-9, "{delay:?}");
            assert!(delay <= backoff.max, "{delay:?}");
        }
    }

    #[test]
    fn nonsense_settings_give_bounded_delays_without_panicking() {
        let backoff = Backoff { multiplier: f64::NAN, jitter: f64::INFINITY, ..Backoff::default() };
        assert!(backoff.delay(3, 0.3) <= backoff.max);
        let backoff = Backoff { multiplier: 0.1, ..Backoff::default() };
        assert!(backoff.delay(3, 0.5) >= ms(100));
    }

    #[test]
    fn jitter_numbers_stay_in_the_unit_interval_and_vary() {
        let mut jitter = Jitter::new();
        let numbers: Vec<f64> = (0..1000).map(|_| jitter.next()).collect();
        assert!(numbers.iter().all(|n| (0.0..1.0).contains(n)));
        assert!(numbers.iter().any(|&n| n < 0.1) && numbers.iter().any(|&n| n > 0.9));
    }
}
