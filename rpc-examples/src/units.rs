//! Durations and sizes as people write them on a command line: `500ms`, `2s`, `1m`, `64KiB`,
//! `4MiB`, `1000`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Duration units, in nanoseconds, with the names accepted for each (the first is shown).
const DURATION_UNITS: &[(u128, &[&str])] = &[
    (3_600_000_000_000, &["h"]),
    (60_000_000_000, &["m", "min"]),
    (1_000_000_000, &["s"]),
    (1_000_000, &["ms"]),
    (1_000, &["us", "µs"]),
    (1, &["ns"]),
];

/// Size units, in bytes, with the names accepted for each (the first is shown). Binary
/// (KiB = 1,024) and decimal (KB = 1,000) prefixes both mean what they say.
const SIZE_UNITS: &[(u128, &[&str])] = &[
    (1 << 30, &["GiB"]),
    (1 << 20, &["MiB"]),
    (1 << 10, &["KiB"]),
    (1_000_000_000, &["GB"]),
    (1_000_000, &["MB"]),
    (1_000, &["KB", "kB"]),
    (1, &["B", ""]),
];

const DURATION_HINT: &str = "write a number and a unit: h, m, s, ms, us or ns (e.g. 2s, 500ms, 1m)";
const SIZE_HINT: &str = "write a number of bytes, with a unit or not: KiB, MiB, GiB, KB, MB, GB (e.g. 64KiB, 4MiB, 1000)";

/// A duration with its unit, such as `2s`, `500ms`, `1m` or `1.5h`. The unit is required:
/// a bare `30` could mean seconds or milliseconds. Shown in the largest unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// A size in bytes: a bare number of bytes (`1000`), or with a unit such as `64KiB`, `4MiB`
/// or `1.5GB`. Shown in the largest binary unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub usize);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let nanos = parse(input, DURATION_UNITS).and_then(|nanos| {
            let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| "too long".to_owned())?;
            // The remainder is below 10^9, so it fits.
            Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
        });
        nanos.map(HumanDuration).map_err(|why| format!("{why}; {DURATION_HINT}"))
    }
}

impl FromStr for HumanSize {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        parse(input, SIZE_UNITS)
            .and_then(|bytes| usize::try_from(bytes).map_err(|_| "too large".to_owned()))
            .map(HumanSize)
            .map_err(|why| format!("{why}; {SIZE_HINT}"))
    }
}

/// Reads a number (digits, optionally with a fraction) followed by one of `units`, and returns
/// it in the smallest unit, which it must be a whole number of.
fn parse(input: &str, units: &[(u128, &[&str])]) -> Result<u128, String> {
    let input = input.trim();
    let split = input.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(input.len());
    let (number, unit) = input.split_at(split);
    if number.is_empty() {
        return Err("it does not start with a number".to_owned());
    }
    let unit = unit.trim_start();
    let Some(&(scale, _)) = units.iter().find(|(_, names)| names.contains(&unit)) else {
        let why =
            if unit.is_empty() { "no unit".to_owned() } else { format!("unknown unit {unit:?}") };
        return Err(why);
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!("{number:?} is not a number"));
    }
    let too_large = || "the number is too large".to_owned();
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let mut value = whole.checked_mul(scale).ok_or_else(too_large)?;
    // Only so many fraction digits can matter: the smallest unit is 10^12 times the largest
    // scale at most, and trailing zeros say nothing.
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        if fraction.len() > 18 {
            return Err("too many digits after the point".to_owned());
        }
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let denominator = 10_u128.pow(fraction.len() as u32);
        let part = digits * scale;
        if part % denominator != 0 {
            return Err("it is not a whole number of the smallest unit".to_owned());
        }
        value = value.checked_add(part / denominator).ok_or_else(too_large)?;
    }
    Ok(value)
}

/// `value` in the first of `units` that divides it exactly, e.g. `4MiB` or `90s`; `zero` for
/// zero. The units are in order of preference: the largest first, binary sizes before decimal.
fn show(value: u128, units: &[(u128, &[&str])], zero: &str) -> String {
    match units.iter().find(|(scale, _)| value % scale == 0) {
        _ if value == 0 => zero.to_owned(),
        Some((scale, names)) => format!("{}{}", value / scale, names[0]),
        None => value.to_string(), // no unit of 1: not reached with the tables above
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(self.0.as_nanos(), DURATION_UNITS, "0s"))
    }
}

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(self.0 as u128, SIZE_UNITS, "0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(input: &str) -> Result<Duration, String> {
        input.parse::<HumanDuration>().map(|d| d.0)
    }

    fn size(input: &str) -> Result<usize, String> {
        input.parse::<HumanSize>().map(|s| s.0)
    }

    #[test]
    fn durations_are_read_in_every_unit() {
        for (input, expected) in [
            ("2s", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1min", Duration::from_secs(60)),
            ("2h", Duration::from_secs(7_200)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
            ("1.5s", Duration::from_millis(1_500)),
            (".25s", Duration::from_millis(250)),
            ("1.50m", Duration::from_secs(90)),
            (" 30 s ", Duration::from_secs(30)),
        ] {
            assert_eq!(duration(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn sizes_are_read_with_binary_and_decimal_units_or_none() {
        for (input, expected) in [
            ("1000", 1_000),
            ("1000B", 1_000),
            ("64KiB", 65_536),
            ("4MiB", 4 << 20),
            ("1GiB", 1 << 30),
            ("1.5KiB", 1_536),
            ("2KB", 2_000),
            ("2kB", 2_000),
            ("3MB", 3_000_000),
            ("1GB", 1_000_000_000),
            ("0", 0),
        ] {
            assert_eq!(size(input), Ok(expected), "{input:?}");
        }
    }

    /// Every error says what is wrong and shows how to write it. (Clap's message around it
    /// names the flag and the value.)
    #[test]
    fn bad_input_is_refused_with_the_reason_and_an_example() {
        for (input, why) in [
            ("", "does not start with a number"),
            ("s", "does not start with a number"),
            ("-1s", "does not start with a number"),
            ("30", "no unit"),
            ("3 fortnights", "unknown unit \"fortnights\""),
            ("2S", "unknown unit \"S\""),
            ("1.2.3s", "is not a number"),
            (".s", "is not a number"),
            ("0.5ns", "not a whole number"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("18446744073709551616s", "too long"),
        ] {
            let error = duration(input).expect_err(input);
            assert!(error.contains(why), "{input:?}: {error}");
            assert!(error.contains("(e.g. 2s, 500ms, 1m)"), "{error}");
        }
        for (input, why) in [
            ("4XB", "unknown unit \"XB\""),
            ("4mib", "unknown unit \"mib\""),
            ("MiB", "does not start with a number"),
            ("1.5", "not a whole number"),
            ("99999999999999999999999GiB", "too large"),
        ] {
            let error = size(input).expect_err(input);
            assert!(error.contains(why), "{input:?}: {error}");
            assert!(error.contains("(e.g. 64KiB, 4MiB, 1000)"), "{error}");
        }
    }

    #[test]
    fn values_are_shown_in_the_largest_exact_unit_and_read_back() {
        for (value, shown) in [
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_millis(1_500), "1500ms"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(HumanDuration(value).to_string(), shown);
            assert_eq!(duration(shown), Ok(value));
        }
        for (value, shown) in [
            (4 << 20, "4MiB"),
            (65_536, "64KiB"),
            (1_000, "1KB"),
            (1_536, "1536B"),
            (1_001, "1001B"),
            (0, "0"),
        ] {
            assert_eq!(HumanSize(value).to_string(), shown);
            assert_eq!(size(shown), Ok(value));
        }
    }
}
