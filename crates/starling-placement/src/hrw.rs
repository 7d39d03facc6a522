//! Rendezvous (highest random weight) hashing: shards to nodes.

use crate::{NodeId, PlacementError, ShardId, ShardMap, stable_hash, validate_shard_count};

/// The rendezvous score of `node` for `shard`: [`stable_hash`] of 12 bytes,
/// the shard number as a little-endian `u32` followed by the node id as a
/// little-endian `u64`. Like `stable_hash`, this layout is fixed forever:
/// changing it would reassign shards in every running cluster.
pub fn hrw_score(shard: ShardId, node: NodeId) -> u64 {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&shard.0.to_le_bytes());
    bytes[4..].copy_from_slice(&node.0.to_le_bytes());
    stable_hash(&bytes)
}

/// The member with the highest [`hrw_score`] for `shard`, or `None` when
/// `members` is empty. Ties (two 64-bit scores equal: practically never) go
/// to the larger node id, so the answer never depends on the members' order
/// or on duplicates.
pub fn hrw_owner(shard: ShardId, members: &[NodeId]) -> Option<NodeId> {
    members
        .iter()
        .copied()
        .max_by_key(|&node| (hrw_score(shard, node), node))
}

/// A fresh map of `shard_count` shards, each owned by its [`hrw_owner`]
/// among `members`, stamped with `version` (the caller's: usually one more
/// than the map it replaces, or 1 for a new cluster).
pub fn assign(
    shard_count: u32,
    members: &[NodeId],
    version: u64,
) -> Result<ShardMap, PlacementError> {
    validate_shard_count(shard_count)?;
    if members.is_empty() {
        return Err(PlacementError::NoMembers);
    }
    let owners = (0..shard_count)
        .map(|shard| hrw_owner(ShardId(shard), members).ok_or(PlacementError::NoMembers))
        .collect::<Result<Vec<_>, _>>()?;
    ShardMap::new(version, owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrw_owner_of_no_members_is_none() {
        assert_eq!(hrw_owner(ShardId(0), &[]), None);
    }

    #[test]
    fn hrw_owner_ignores_member_order() {
        let members = [NodeId(4), NodeId(1), NodeId(9), NodeId(2)];
        let mut reversed = members;
        reversed.reverse();
        for shard in 0..64 {
            assert_eq!(
                hrw_owner(ShardId(shard), &members),
                hrw_owner(ShardId(shard), &reversed)
            );
        }
    }

    /// Golden values for the score's byte layout: a change here reassigns
    /// shards in every cluster. Do not "fix" the expected values.
    #[test]
    fn hrw_scores_are_pinned() {
        let golden: &[(u32, u64, u64)] = &[
            (0, 1, 0xF96A_9DD0_802A_A462),
            (0, 2, 0x3182_C460_B2A1_C6EC),
            (255, 3, 0x73A7_293D_75D7_5FC7),
            (7, u64::MAX, 0x9583_0F6E_3D54_3B9B),
        ];
        for &(shard, node, score) in golden {
            assert_eq!(hrw_score(ShardId(shard), NodeId(node)), score);
        }
    }

    #[test]
    fn assign_gives_every_shard_its_hrw_owner() {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let map = assign(16, &members, 1).unwrap();
        assert_eq!(map.version(), 1);
        for (shard, owner) in map.shards() {
            assert_eq!(Some(owner), hrw_owner(shard, &members));
        }
    }

    #[test]
    fn assign_refuses_no_members_and_bad_counts() {
        assert_eq!(assign(16, &[], 1), Err(PlacementError::NoMembers));
        assert_eq!(
            assign(12, &[NodeId(1)], 1),
            Err(PlacementError::NotPowerOfTwo { count: 12 })
        );
    }
}
