//! [`ShardMap`]: who owns which shard, at which map version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    MAX_SHARD_COUNT, NodeId, PlacementError, Plan, ShardId, shard_of, validate_shard_count,
};

/// The owner of every shard, stamped with a version.
///
/// This is the value the Raft state machine holds and every node routes
/// with. The version fences routing: a node that receives traffic for a
/// shard it no longer owns answers with its newer version, and the sender
/// retries once it has caught up. Every change this crate makes
/// ([`split`](Self::split), [`with_moves`](Self::with_moves)) raises the
/// version by one.
///
/// A `ShardMap` is always well formed — a power-of-two shard count of at
/// most [`MAX_SHARD_COUNT`] and exactly one owner per shard — because the
/// constructor and deserialization both check it. Whether the owners are
/// *members* depends on the membership, so that is [`validate`](Self::validate)'s job.
///
/// Serialized as `{ "version": .., "shard_count": .., "owners": [..] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawShardMap")]
pub struct ShardMap {
    version: u64,
    shard_count: u32,
    owners: Vec<NodeId>,
}

/// The wire form, checked by `TryFrom` before it becomes a [`ShardMap`].
#[derive(Deserialize)]
struct RawShardMap {
    version: u64,
    shard_count: u32,
    owners: Vec<NodeId>,
}

impl TryFrom<RawShardMap> for ShardMap {
    type Error = PlacementError;

    fn try_from(raw: RawShardMap) -> Result<Self, Self::Error> {
        validate_shard_count(raw.shard_count)?;
        if raw.owners.len() != raw.shard_count as usize {
            return Err(PlacementError::OwnerCountMismatch {
                owners: raw.owners.len(),
                count: raw.shard_count,
            });
        }
        Ok(ShardMap {
            version: raw.version,
            shard_count: raw.shard_count,
            owners: raw.owners,
        })
    }
}

impl ShardMap {
    /// A map whose shard `i` is owned by `owners[i]`; the shard count is
    /// `owners.len()`, which must be a power of two of at most
    /// [`MAX_SHARD_COUNT`].
    pub fn new(version: u64, owners: Vec<NodeId>) -> Result<Self, PlacementError> {
        let shard_count =
            u32::try_from(owners.len()).map_err(|_| PlacementError::TooManyShards {
                count: owners.len() as u64,
                max: MAX_SHARD_COUNT,
            })?;
        ShardMap::try_from(RawShardMap {
            version,
            shard_count,
            owners,
        })
    }

    /// The map's version; higher is newer.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many shards the map has (a power of two).
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The owner of each shard, indexed by shard number.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The shard `room` belongs to under this map's shard count.
    pub fn shard_of_room(&self, room: &str) -> ShardId {
        shard_of(room, self.shard_count)
    }

    /// The node that sequences `room`: the owner of its shard.
    pub fn owner_of_room(&self, room: &str) -> NodeId {
        // shard_of masks with shard_count - 1 and owners.len() == shard_count
        // (checked at construction), so the index is always in range.
        self.owners[self.shard_of_room(room).index()]
    }

    /// The owner of `shard`, or `None` if the map has no such shard.
    pub fn owner(&self, shard: ShardId) -> Option<NodeId> {
        self.owners.get(shard.index()).copied()
    }

    /// Every shard with its owner, in shard order.
    pub fn shards(&self) -> impl Iterator<Item = (ShardId, NodeId)> + '_ {
        // The zip with 0..shard_count yields exactly one ShardId per owner
        // without a usize -> u32 cast.
        (0..self.shard_count)
            .map(ShardId)
            .zip(self.owners.iter().copied())
    }

    /// The shards `node` owns, in shard order.
    pub fn shards_of(&self, node: NodeId) -> impl Iterator<Item = ShardId> + '_ {
        self.shards()
            .filter(move |&(_, owner)| owner == node)
            .map(|(shard, _)| shard)
    }

    /// How many shards each owner has. Nodes owning nothing are absent.
    pub fn counts_per_node(&self) -> BTreeMap<NodeId, u32> {
        let mut counts = BTreeMap::new();
        for &owner in &self.owners {
            *counts.entry(owner).or_insert(0) += 1;
        }
        counts
    }

    /// The map with twice the shards, one version later. Shard `i + old
    /// count` starts on shard `i`'s owner, and every room of old shard `i`
    /// now hashes to `i` or `i + old count`, so no room changes owner: a
    /// split moves no data until a rebalance moves shards.
    pub fn split(&self) -> Result<ShardMap, PlacementError> {
        let count = u64::from(self.shard_count) * 2;
        if count > u64::from(MAX_SHARD_COUNT) {
            return Err(PlacementError::TooManyShards {
                count,
                max: MAX_SHARD_COUNT,
            });
        }
        let mut owners = Vec::with_capacity(self.owners.len() * 2);
        owners.extend_from_slice(&self.owners);
        owners.extend_from_slice(&self.owners);
        Ok(ShardMap {
            version: self.version + 1,
            shard_count: self.shard_count * 2,
            owners,
        })
    }

    /// The map after `plan`'s moves, applied in order, one version later. An
    /// empty plan returns the map unchanged, at the same version.
    ///
    /// Each move's `from` must be the shard's owner at that point, so a plan
    /// made from an older map is refused ([`PlacementError::StaleMove`])
    /// instead of silently undoing a newer change. Whether the targets are
    /// members is not known here; see [`validate`](Self::validate).
    pub fn with_moves(&self, plan: &Plan) -> Result<ShardMap, PlacementError> {
        if plan.moves.is_empty() {
            return Ok(self.clone());
        }
        let mut next = self.clone();
        for mv in &plan.moves {
            let count = next.shard_count;
            let owner =
                next.owners
                    .get_mut(mv.shard.index())
                    .ok_or(PlacementError::UnknownShard {
                        shard: mv.shard,
                        count,
                    })?;
            if *owner != mv.from {
                return Err(PlacementError::StaleMove {
                    shard: mv.shard,
                    expected: mv.from,
                    actual: *owner,
                });
            }
            *owner = mv.to;
        }
        next.version = self.version + 1;
        Ok(next)
    }

    /// Checks that every owner is one of `members`. (The shape — power of
    /// two, one owner per shard — holds for every `ShardMap` by
    /// construction.) Reports the first shard whose owner is not a member.
    pub fn validate(&self, members: &[NodeId]) -> Result<(), PlacementError> {
        if members.is_empty() {
            return Err(PlacementError::NoMembers);
        }
        match self.shards().find(|(_, owner)| !members.contains(owner)) {
            Some((shard, node)) => Err(PlacementError::OwnerNotAMember { shard, node }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Move;

    fn nodes(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn new_refuses_a_shard_count_that_is_not_a_power_of_two() {
        assert_eq!(
            ShardMap::new(1, nodes(&[1, 2, 3])),
            Err(PlacementError::NotPowerOfTwo { count: 3 })
        );
        assert_eq!(
            ShardMap::new(1, Vec::new()),
            Err(PlacementError::NotPowerOfTwo { count: 0 })
        );
    }

    #[test]
    fn decoding_a_map_with_too_few_owners_fails() {
        // Deserialization goes through this TryFrom (serde's `try_from`).
        let raw = RawShardMap {
            version: 1,
            shard_count: 4,
            owners: nodes(&[1, 2, 3]),
        };
        assert_eq!(
            ShardMap::try_from(raw),
            Err(PlacementError::OwnerCountMismatch {
                owners: 3,
                count: 4
            })
        );
    }

    #[test]
    fn lookups_follow_the_owner_list() {
        let map = ShardMap::new(3, nodes(&[1, 2, 1, 3])).unwrap();
        assert_eq!(map.version(), 3);
        assert_eq!(map.shard_count(), 4);
        assert_eq!(map.owner(ShardId(1)), Some(NodeId(2)));
        assert_eq!(map.owner(ShardId(4)), None);
        assert_eq!(
            map.shards_of(NodeId(1)).collect::<Vec<_>>(),
            [ShardId(0), ShardId(2)]
        );
        assert_eq!(
            map.counts_per_node(),
            BTreeMap::from([(NodeId(1), 2), (NodeId(2), 1), (NodeId(3), 1)])
        );
        let room = "news";
        assert_eq!(
            map.owner_of_room(room),
            map.owners()[shard_of(room, 4).index()]
        );
    }

    #[test]
    fn split_doubles_the_count_and_keeps_owners() {
        let map = ShardMap::new(7, nodes(&[1, 2])).unwrap();
        let split = map.split().unwrap();
        assert_eq!(split.version(), 8);
        assert_eq!(split.owners(), nodes(&[1, 2, 1, 2]).as_slice());
    }

    #[test]
    fn split_past_the_maximum_is_refused() {
        let map = ShardMap::new(1, vec![NodeId(1); MAX_SHARD_COUNT as usize]).unwrap();
        assert_eq!(
            map.split(),
            Err(PlacementError::TooManyShards {
                count: u64::from(MAX_SHARD_COUNT) * 2,
                max: MAX_SHARD_COUNT
            })
        );
    }

    #[test]
    fn with_moves_applies_moves_and_bumps_the_version() {
        let map = ShardMap::new(1, nodes(&[1, 1])).unwrap();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(1),
                from: NodeId(1),
                to: NodeId(2),
            }],
        };
        let next = map.with_moves(&plan).unwrap();
        assert_eq!(next.owners(), nodes(&[1, 2]).as_slice());
        assert_eq!(next.version(), 2);
    }

    #[test]
    fn with_moves_of_an_empty_plan_keeps_the_version() {
        let map = ShardMap::new(5, nodes(&[1, 1])).unwrap();
        assert_eq!(map.with_moves(&Plan::default()), Ok(map));
    }

    #[test]
    fn with_moves_refuses_a_move_made_from_an_older_map() {
        let map = ShardMap::new(1, nodes(&[1, 3])).unwrap();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(1),
                from: NodeId(2),
                to: NodeId(1),
            }],
        };
        assert_eq!(
            map.with_moves(&plan),
            Err(PlacementError::StaleMove {
                shard: ShardId(1),
                expected: NodeId(2),
                actual: NodeId(3)
            })
        );
    }

    #[test]
    fn with_moves_refuses_an_unknown_shard() {
        let map = ShardMap::new(1, nodes(&[1, 1])).unwrap();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(2),
                from: NodeId(1),
                to: NodeId(2),
            }],
        };
        assert_eq!(
            map.with_moves(&plan),
            Err(PlacementError::UnknownShard {
                shard: ShardId(2),
                count: 2
            })
        );
    }

    #[test]
    fn validate_reports_an_owner_that_left() {
        let map = ShardMap::new(1, nodes(&[1, 2])).unwrap();
        assert_eq!(map.validate(&nodes(&[1, 2, 3])), Ok(()));
        assert_eq!(
            map.validate(&nodes(&[1])),
            Err(PlacementError::OwnerNotAMember {
                shard: ShardId(1),
                node: NodeId(2)
            })
        );
        assert_eq!(map.validate(&[]), Err(PlacementError::NoMembers));
    }
}
