//! The uni-SSE event id: the stream positions of every recoverable subscription of a
//! connection, compact enough to ride on every event.
//!
//! The browser keeps the id of the last event it processed and sends it back as
//! `Last-Event-ID` when it reconnects, so each room resumes from exactly what the client saw.
//!
//! Format (version 1): URL-safe base64 without padding of
//!
//! ```text
//! 0x01                                   version
//! then per subscription, in channel order:
//!   digest   u32, big-endian             FNV-1a 32 of the channel name
//!   epoch    u8 length, then its bytes   the stream's epoch (Starling's are 8 bytes)
//!   offset   unsigned LEB128             the last offset the client received
//! ```
//!
//! About 21 characters per room. Channels are named by digest, not by name, because names can
//! be long; the connection knows its server-side channels again on reconnect and looks each up
//! by digest. A digest collision within one connection (about 1 in 2³² per pair) makes both
//! channels resume from one position, whose epoch then does not match the other room's: that
//! room answers `recovered: false`, never a wrong replay. The id is not a secret and not
//! trusted: a forged one can only ask for publications the connection may read anyway.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use starling_protocol::StreamPosition;

/// The only format so far.
const VERSION: u8 = 1;
/// Longest `Last-Event-ID` taken, in characters: room for `client.channel_limit` (128) rooms
/// with long epochs, and a bound on what a client can make the server decode.
const MAX_ID_CHARS: usize = 16 * 1024;
/// LEB128 of a u64 takes at most 10 bytes.
const MAX_VARINT_BYTES: usize = 10;

/// Why a `Last-Event-ID` did not decode. The connect goes on without resuming.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EventIdError {
    /// Longer than [`MAX_ID_CHARS`].
    #[error("event id of {len} characters is over the {max} limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not URL-safe base64.
    #[error("event id is not base64url")]
    NotBase64,
    /// A format this server does not know.
    #[error("event id version {version} is unknown")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// The bytes end inside an entry.
    #[error("event id is truncated at byte {at}")]
    Truncated {
        /// Where the missing field starts.
        at: usize,
    },
    /// An offset does not fit a u64.
    #[error("event id offset at byte {at} overflows")]
    OffsetOverflow {
        /// Where the offset starts.
        at: usize,
    },
}

/// FNV-1a, 32 bits: small, stable across versions and platforms, and good enough to tell
/// apart the few channels of one connection.
pub(crate) fn channel_digest(channel: &str) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    channel.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// The event id for `positions` (channel → last position sent). Empty when there is nothing to
/// resume, which clears the browser's last event id.
pub(crate) fn encode(positions: &BTreeMap<String, StreamPosition>) -> String {
    if positions.is_empty() {
        return String::new();
    }
    let mut raw = Vec::with_capacity(1 + positions.len() * 16);
    raw.push(VERSION);
    for (channel, position) in positions {
        // An epoch over 255 bytes cannot be written; that room is left out and will not
        // resume. Starling's epochs are 8 bytes.
        let Ok(epoch_len) = u8::try_from(position.epoch.len()) else {
            continue;
        };
        raw.extend_from_slice(&channel_digest(channel).to_be_bytes());
        raw.push(epoch_len);
        raw.extend_from_slice(position.epoch.as_bytes());
        let mut offset = position.offset;
        loop {
            let byte = (offset & 0x7f) as u8;
            offset >>= 7;
            if offset == 0 {
                raw.push(byte);
                break;
            }
            raw.push(byte | 0x80);
        }
    }
    URL_SAFE_NO_PAD.encode(raw)
}

/// Positions from a `Last-Event-ID`, by channel digest.
pub(crate) fn decode(id: &str) -> Result<HashMap<u32, StreamPosition>, EventIdError> {
    let id = id.trim();
    if id.len() > MAX_ID_CHARS {
        return Err(EventIdError::TooLong {
            len: id.len(),
            max: MAX_ID_CHARS,
        });
    }
    let raw = URL_SAFE_NO_PAD
        .decode(id)
        .map_err(|_| EventIdError::NotBase64)?;
    let Some((&version, mut rest)) = raw.split_first() else {
        return Ok(HashMap::new());
    };
    if version != VERSION {
        return Err(EventIdError::UnknownVersion { version });
    }
    let at = |rest: &[u8]| raw.len() - rest.len();
    let mut positions = HashMap::new();
    while !rest.is_empty() {
        let (digest, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(EventIdError::Truncated { at: at(rest) })?;
        let (&epoch_len, tail) = tail
            .split_first()
            .ok_or(EventIdError::Truncated { at: at(tail) })?;
        let (epoch, tail) = tail
            .split_at_checked(usize::from(epoch_len))
            .ok_or(EventIdError::Truncated { at: at(tail) })?;
        let (offset, tail) = read_varint(tail).map_err(|overflow| {
            if overflow {
                EventIdError::OffsetOverflow { at: at(tail) }
            } else {
                EventIdError::Truncated { at: at(tail) }
            }
        })?;
        positions.insert(
            u32::from_be_bytes(*digest),
            StreamPosition {
                offset,
                // Epochs are compared, never shown: a non-UTF-8 one simply never matches.
                epoch: String::from_utf8_lossy(epoch).into_owned(),
            },
        );
        rest = tail;
    }
    Ok(positions)
}

/// Unsigned LEB128; `Err(true)` on overflow, `Err(false)` when the bytes end first.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), bool> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return Err(true);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(bytes.len() >= MAX_VARINT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn positions_survive_a_round_trip() {
        let mut positions = BTreeMap::new();
        positions.insert("news".to_string(), position(0, "AbCdEfGh"));
        positions.insert("#alice".to_string(), position(300, "zzzzzzzz"));
        positions.insert("big".to_string(), position(u64::MAX, "e"));
        let id = encode(&positions);
        assert!(!id.contains(['=', '+', '/', '\n', '\r']), "{id}");
        let decoded = decode(&id).unwrap();
        assert_eq!(decoded.len(), 3);
        for (channel, expected) in &positions {
            assert_eq!(decoded.get(&channel_digest(channel)), Some(expected));
        }
    }

    #[test]
    fn a_room_costs_about_twenty_characters() {
        let mut positions = BTreeMap::new();
        for n in 0..10 {
            positions.insert(format!("room-{n}"), position(1_000_000, "AbCdEfGh"));
        }
        let id = encode(&positions);
        assert!(id.len() <= 10 * 22 + 2, "{} chars: {id}", id.len());
    }

    #[test]
    fn no_positions_is_the_empty_id() {
        assert_eq!(encode(&BTreeMap::new()), "");
        assert!(decode("").unwrap().is_empty());
    }

    #[test]
    fn damaged_ids_are_refused_not_misread() {
        let mut positions = BTreeMap::new();
        positions.insert("news".to_string(), position(5, "AbCdEfGh"));
        let id = encode(&positions);
        assert_eq!(decode("not base64!"), Err(EventIdError::NotBase64));
        let truncated = &id[..id.len() - 4];
        assert!(matches!(
            decode(truncated),
            Err(EventIdError::Truncated { .. })
        ));
        let other_version = URL_SAFE_NO_PAD.encode([2u8, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decode(&other_version),
            Err(EventIdError::UnknownVersion { version: 2 })
        );
        let overflow = URL_SAFE_NO_PAD.encode([
            1u8, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert!(matches!(
            decode(&overflow),
            Err(EventIdError::OffsetOverflow { .. })
        ));
        let long = "A".repeat(MAX_ID_CHARS + 1);
        assert!(matches!(decode(&long), Err(EventIdError::TooLong { .. })));
    }

    #[test]
    fn digest_is_fnv1a() {
        // Reference values of FNV-1a 32.
        assert_eq!(channel_digest(""), 0x811c_9dc5);
        assert_eq!(channel_digest("a"), 0xe40c_292c);
    }
}
