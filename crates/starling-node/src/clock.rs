//! Wall-clock time for protocol timestamps and token expiry.
//!
//! Timers use tokio's clock (pausable in tests); only values that leave the node — publication
//! times, token `exp` comparisons — read the system clock, and only through here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch, the unit of JWT `exp`.
pub(crate) fn unix_now_secs() -> i64 {
    unix_now_ms() / 1000
}
