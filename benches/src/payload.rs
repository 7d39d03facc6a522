//! Publication payloads stamped with their send time.
//!
//! A payload is a JSON object, `{"t":<unix ns>,"p":"xxx…"}`, padded to the
//! requested size. JSON so that JSON clients can carry it (their `data` is
//! embedded raw JSON); Protobuf clients carry the same bytes. Wall-clock
//! nanoseconds rather than `Instant`, because publisher and subscriber may
//! live in different worker processes; on one machine they share the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

const PREFIX: &[u8] = b"{\"t\":";
/// `{"t":` + `,"p":"` + `"}` around the digits and the padding.
const OVERHEAD: usize = PREFIX.len() + 6 + 2;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> u64 {
    // A clock before 1970 or after 2554 would be a broken machine; 0 then
    // just makes latencies nonsense rather than stopping the run.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The smallest payload [`stamped`] can produce (an 19-digit timestamp).
pub(crate) const MIN_SIZE: usize = OVERHEAD + 19;

/// A payload of `size` bytes (at least what the stamp needs) carrying `sent_ns`.
pub(crate) fn stamped(sent_ns: u64, size: usize) -> Bytes {
    let digits = sent_ns.to_string();
    let padding = size.saturating_sub(OVERHEAD + digits.len());
    let mut out = Vec::with_capacity(OVERHEAD + digits.len() + padding);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(digits.as_bytes());
    out.extend_from_slice(b",\"p\":\"");
    out.resize(out.len() + padding, b'x');
    out.extend_from_slice(b"\"}");
    Bytes::from(out)
}

/// The send time of a payload made by [`stamped`]; `None` for anything else.
pub(crate) fn read_stamp(data: &[u8]) -> Option<u64> {
    // A fixed layout keeps this a prefix scan instead of a second JSON parse
    // per delivery, which matters when the generator shares 2 cores.
    let (sent_ns, rest) = leading_number(data.strip_prefix(PREFIX)?)?;
    // The padding field follows the stamp.
    (!rest.is_empty()).then_some(sent_ns)
}

/// The unsigned decimal number (1 to 20 digits) at the front of `bytes`, and what follows it.
pub(crate) fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    if end == 0 || end > 20 {
        return None;
    }
    let value = bytes[..end].iter().try_fold(0u64, |acc, digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })?;
    Some((value, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_has_the_requested_size() {
        let sent = 1_763_900_000_123_456_789;
        let payload = stamped(sent, 100);
        assert_eq!(payload.len(), 100);
        assert_eq!(read_stamp(&payload), Some(sent));
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("valid JSON");
        assert_eq!(value["t"], serde_json::json!(sent));
    }

    #[test]
    fn too_small_a_size_still_carries_the_stamp() {
        let payload = stamped(now_ns(), 1);
        assert_eq!(payload.len(), MIN_SIZE);
        assert!(read_stamp(&payload).is_some());
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(read_stamp(br#"{"text":"hi"}"#), None);
        assert_eq!(read_stamp(br#"{"t":"#), None);
        assert_eq!(read_stamp(br#"{"t":,"p":""}"#), None);
        assert_eq!(read_stamp(br#"{"t":99999999999999999999999,"p":""}"#), None);
    }
}
