//! Rooms to shards.

use crate::{PlacementError, ShardId, stable_hash};

/// The shard count a new cluster starts with.
pub const DEFAULT_SHARD_COUNT: u32 = 256;

/// The largest shard count a map may have. Every node keeps one owner per
/// shard in memory and in every Raft snapshot, so the count stays modest;
/// 65,536 shards is far more than any cluster needs to spread rooms evenly.
pub const MAX_SHARD_COUNT: u32 = 1 << 16;

/// Checks that `count` can be a shard count: a power of two (so a split
/// sends each room of shard `i` to `i` or `i + count`) and at most
/// [`MAX_SHARD_COUNT`].
pub fn validate_shard_count(count: u32) -> Result<(), PlacementError> {
    if !count.is_power_of_two() {
        return Err(PlacementError::NotPowerOfTwo { count });
    }
    if count > MAX_SHARD_COUNT {
        return Err(PlacementError::TooManyShards {
            count: u64::from(count),
            max: MAX_SHARD_COUNT,
        });
    }
    Ok(())
}

/// The shard that `room` belongs to among `shard_count` shards: the low bits
/// of [`stable_hash`] of the room name's UTF-8 bytes.
///
/// `shard_count` must be a power of two (see [`validate_shard_count`]; a
/// [`ShardMap`](crate::ShardMap) guarantees it). Masking low bits is what
/// makes splits cheap: with `2c` shards a room of shard `i` (under `c`) lands
/// in `i` or `i + c`, because only one more hash bit is looked at.
pub fn shard_of(room: &str, shard_count: u32) -> ShardId {
    debug_assert!(
        shard_count.is_power_of_two(),
        "shard count {shard_count} is not a power of two"
    );
    // saturating_sub keeps a (never valid) count of 0 from panicking: every
    // room would map to shard 0 instead.
    let mask = u64::from(shard_count.saturating_sub(1));
    // The masked value is below shard_count, so it fits in u32.
    ShardId((stable_hash(room.as_bytes()) & mask) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_count_must_be_a_power_of_two() {
        assert_eq!(
            validate_shard_count(0),
            Err(PlacementError::NotPowerOfTwo { count: 0 })
        );
        assert_eq!(
            validate_shard_count(96),
            Err(PlacementError::NotPowerOfTwo { count: 96 })
        );
        assert_eq!(validate_shard_count(1), Ok(()));
        assert_eq!(validate_shard_count(DEFAULT_SHARD_COUNT), Ok(()));
        assert_eq!(validate_shard_count(MAX_SHARD_COUNT), Ok(()));
    }

    #[test]
    fn shard_count_above_the_maximum_is_refused() {
        assert_eq!(
            validate_shard_count(MAX_SHARD_COUNT * 2),
            Err(PlacementError::TooManyShards {
                count: u64::from(MAX_SHARD_COUNT) * 2,
                max: MAX_SHARD_COUNT
            })
        );
    }

    #[test]
    fn one_shard_holds_every_room() {
        for room in ["", "chat", "news:sports", "#user,42"] {
            assert_eq!(shard_of(room, 1), ShardId(0));
        }
    }

    /// Golden values: room names and where they live among 256 shards. If
    /// this test fails, the hash or the mapping changed and every deployed
    /// cluster would re-home its rooms. Do not "fix" the expected values.
    #[test]
    fn room_hashes_and_shards_are_pinned() {
        let golden: &[(&str, u64, u32)] = &[
            ("chat", 0x5BB6_560A_B263_2270, 112),
            ("news:sports", 0x15AF_A033_2B2C_6315, 21),
            ("#user,42", 0xAEF2_2906_006D_EFC0, 192),
            ("personal:#42", 0xC361_6DA1_CFF7_285A, 90),
            ("$private:room", 0x159F_7C42_E7DA_47DE, 222),
            ("комната", 0x75F4_7F3C_B651_C6CC, 204),
            ("", 0xEF46_DB37_51D8_E999, 153),
        ];
        for &(room, hash, shard) in golden {
            assert_eq!(stable_hash(room.as_bytes()), hash, "stable_hash({room:?})");
            assert_eq!(
                shard_of(room, 256),
                ShardId(shard),
                "shard_of({room:?}, 256)"
            );
        }
    }
}
