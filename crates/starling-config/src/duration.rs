//! Go-style duration strings (`"25s"`, `"1m30s"`, `"100ms"`), as Centrifugo configs use them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ConfigError;

/// A [`Duration`] read from and written as a Go duration string.
///
/// Accepted: one or more `<number><unit>` parts with units `ns`, `us` (or `µs`), `ms`, `s`,
/// `m`, `h`; numbers may carry a fraction (`"1.5h"`); a bare `"0"` means zero. Negative
/// durations are rejected because nothing in the configuration can use one.
/// Written back in a canonical form that drops zero parts (`"1m30s"`, `"5m"`, `"0s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Zero duration (`"0s"`).
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        GoDuration(Duration::from_millis(millis))
    }

    /// The wrapped [`Duration`].
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

/// Nanoseconds per unit, longest unit names first so `ms` wins over `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

fn unit_nanos(unit: &str) -> Option<u128> {
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, n)| *n)
}

fn duration_error(value: &str, reason: &'static str) -> ConfigError {
    ConfigError::InvalidDuration {
        value: value.to_owned(),
        reason,
    }
}

impl FromStr for GoDuration {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(duration_error(s, "empty duration"));
        }
        if input == "0" {
            return Ok(GoDuration::ZERO);
        }
        if input.starts_with('-') {
            return Err(duration_error(s, "negative durations are not allowed"));
        }
        let rest = input.strip_prefix('+').unwrap_or(input);
        let mut total: u128 = 0;
        let mut chars = rest.char_indices().peekable();
        let mut any_part = false;
        while chars.peek().is_some() {
            // Number: digits with an optional fraction.
            let num_start = chars.peek().map_or(rest.len(), |(i, _)| *i);
            let mut num_end = num_start;
            while let Some(&(i, c)) = chars.peek() {
                if c.is_ascii_digit() || c == '.' {
                    num_end = i + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let number = &rest[num_start..num_end];
            if number.is_empty() || number == "." {
                return Err(duration_error(s, "expected a number before the unit"));
            }
            let unit_start = num_end;
            let mut unit_end = unit_start;
            while let Some(&(i, c)) = chars.peek() {
                if c.is_ascii_digit() || c == '.' {
                    break;
                }
                unit_end = i + c.len_utf8();
                chars.next();
            }
            let unit = &rest[unit_start..unit_end];
            if unit.is_empty() {
                return Err(duration_error(
                    s,
                    "missing unit (use ns, us, ms, s, m or h)",
                ));
            }
            let Some(per_unit) = unit_nanos(unit) else {
                return Err(duration_error(
                    s,
                    "unknown unit (use ns, us, ms, s, m or h)",
                ));
            };
            let (whole, frac) = match number.split_once('.') {
                Some((w, f)) => (w, f),
                None => (number, ""),
            };
            if frac.contains('.') {
                return Err(duration_error(s, "malformed number"));
            }
            let whole_val: u128 = if whole.is_empty() {
                0
            } else {
                whole
                    .parse()
                    .map_err(|_| duration_error(s, "number is too large"))?
            };
            let mut part = whole_val
                .checked_mul(per_unit)
                .ok_or_else(|| duration_error(s, "duration is too large"))?;
            // Fractions finer than a nanosecond are dropped, as Go does.
            let mut scale = per_unit;
            for digit in frac.chars().take(30) {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                let d = u128::from(digit.to_digit(10).unwrap_or(0));
                part += d * scale;
            }
            total = total
                .checked_add(part)
                .ok_or_else(|| duration_error(s, "duration is too large"))?;
            any_part = true;
        }
        if !any_part {
            return Err(duration_error(s, "empty duration"));
        }
        let secs = u64::try_from(total / 1_000_000_000)
            .map_err(|_| duration_error(s, "duration is too large"))?;
        // The remainder of a division by 1e9 always fits in u32.
        let nanos = (total % 1_000_000_000) as u32;
        Ok(GoDuration(Duration::new(secs, nanos)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        let mut rest = self.0.as_nanos();
        for (unit, per) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ] {
            let n = rest / per;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * per;
            }
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GoDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"25s\", \"1m30s\" or \"100ms\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GoDuration, E> {
                v.parse().map_err(E::custom)
            }

            // A bare 0 is unambiguous; any other bare number has no unit and is refused.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GoDuration, E> {
                if v == 0 {
                    Ok(GoDuration::ZERO)
                } else {
                    Err(E::custom(ConfigError::InvalidDuration {
                        value: v.to_string(),
                        reason: "missing unit (use ns, us, ms, s, m or h)",
                    }))
                }
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GoDuration, E> {
                if v == 0 {
                    Ok(GoDuration::ZERO)
                } else {
                    Err(E::custom(ConfigError::InvalidDuration {
                        value: v.to_string(),
                        reason: "missing unit (use ns, us, ms, s, m or h)",
                    }))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Duration {
        s.parse::<GoDuration>().unwrap().0
    }

    #[test]
    fn parses_go_style_strings() {
        assert_eq!(parse("300s"), Duration::from_secs(300));
        assert_eq!(parse("25s"), Duration::from_secs(25));
        assert_eq!(parse("1m30s"), Duration::from_secs(90));
        assert_eq!(parse("100ms"), Duration::from_millis(100));
        assert_eq!(parse("1h"), Duration::from_secs(3600));
        assert_eq!(parse("0s"), Duration::ZERO);
        assert_eq!(parse("0"), Duration::ZERO);
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse(".5s"), Duration::from_millis(500));
        assert_eq!(parse("10us"), Duration::from_micros(10));
        assert_eq!(parse("10µs"), Duration::from_micros(10));
        assert_eq!(parse("7ns"), Duration::from_nanos(7));
        assert_eq!(parse("2h45m10s5ms"), Duration::from_millis(9_910_005));
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in ["", "5", "s", "5x", "-1s", "1.2.3s", "1s5", "abc", "5 s"] {
            let err = bad.parse::<GoDuration>().unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidDuration { value, .. } if value == bad),
                "{bad:?} -> {err}"
            );
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (input, canon) in [
            ("300s", "5m"),
            ("25s", "25s"),
            ("90s", "1m30s"),
            ("100ms", "100ms"),
            ("0", "0s"),
            ("1h0m1s", "1h1s"),
            ("1.5s", "1s500ms"),
        ] {
            let d: GoDuration = input.parse().unwrap();
            assert_eq!(d.to_string(), canon);
            assert_eq!(canon.parse::<GoDuration>().unwrap(), d);
        }
    }

    #[test]
    fn error_names_the_value() {
        let err = "5x".parse::<GoDuration>().unwrap_err().to_string();
        assert!(err.contains("\"5x\""), "{err}");
    }
}
