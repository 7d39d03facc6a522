//! Rebalancing plans: the moves that take a map to where it should be.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NodeId, PlacementError, ShardId, ShardMap, hrw_owner};

/// One shard changing owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The shard that moves.
    pub shard: ShardId,
    /// Its owner when the plan was made; [`ShardMap::with_moves`] refuses
    /// the move if the map says otherwise.
    pub from: NodeId,
    /// Its new owner.
    pub to: NodeId,
}

/// An ordered list of moves, in shard order when this crate makes it. Plans
/// are data: the leader commits them and [`ShardMap::with_moves`] applies
/// them; nothing here ships room state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The moves, applied in order.
    pub moves: Vec<Move>,
}

impl Plan {
    /// Whether the plan moves nothing.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// The moves that give every shard its target owner among `members`: its
/// pin, when it has one and the pinned node is a member, otherwise its
/// [`hrw_owner`]. Shards already on their target do not move, so the plan
/// for an unchanged membership is empty, and the one after a join or leave
/// holds only the shards whose rendezvous winner changed.
pub fn plan_rebalance(
    map: &ShardMap,
    members: &[NodeId],
    pins: &BTreeMap<ShardId, NodeId>,
) -> Result<Plan, PlacementError> {
    if members.is_empty() {
        return Err(PlacementError::NoMembers);
    }
    if let Some((&shard, _)) = pins.range(ShardId(map.shard_count())..).next() {
        return Err(PlacementError::UnknownShard {
            shard,
            count: map.shard_count(),
        });
    }
    let mut moves = Vec::new();
    for (shard, from) in map.shards() {
        let to = match pins.get(&shard) {
            Some(pin) if members.contains(pin) => *pin,
            _ => hrw_owner(shard, members).ok_or(PlacementError::NoMembers)?,
        };
        if to != from {
            moves.push(Move { shard, from, to });
        }
    }
    Ok(Plan { moves })
}

/// The moves that take every shard off `node` before it leaves, each to its
/// [`hrw_owner`] among the other `members` — the owner a rebalance without
/// `node` would pick, so draining and then removing the node moves each
/// shard once. Only `node`'s shards move; pins are not consulted (a pin to
/// a leaving node cannot be honoured, and other pins are the next
/// rebalance's business).
pub fn plan_drain(
    map: &ShardMap,
    node: NodeId,
    members: &[NodeId],
) -> Result<Plan, PlacementError> {
    let rest: Vec<NodeId> = members.iter().copied().filter(|&m| m != node).collect();
    if rest.is_empty() {
        return Err(PlacementError::NoMembers);
    }
    let moves = map
        .shards_of(node)
        .map(|shard| {
            let to = hrw_owner(shard, &rest).ok_or(PlacementError::NoMembers)?;
            Ok(Move {
                shard,
                from: node,
                to,
            })
        })
        .collect::<Result<Vec<_>, PlacementError>>()?;
    Ok(Plan { moves })
}

/// An operator's move of `shard` to `to`, which must be one of `members`.
/// Moving a shard to its current owner is an empty plan.
///
/// The next [`plan_rebalance`] moves the shard back to its rendezvous owner
/// unless the caller also records `to` as the shard's pin; that choice
/// belongs to the cluster's state machine, not to this function.
pub fn plan_move(
    map: &ShardMap,
    shard: ShardId,
    to: NodeId,
    members: &[NodeId],
) -> Result<Plan, PlacementError> {
    let from = map.owner(shard).ok_or(PlacementError::UnknownShard {
        shard,
        count: map.shard_count(),
    })?;
    if !members.contains(&to) {
        return Err(PlacementError::NotAMember { node: to });
    }
    let moves = if from == to {
        Vec::new()
    } else {
        vec![Move { shard, from, to }]
    };
    Ok(Plan { moves })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign;

    fn nodes(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn rebalance_of_an_hrw_map_with_the_same_members_is_empty() {
        let members = nodes(&[1, 2, 3]);
        let map = assign(64, &members, 1).unwrap();
        assert!(
            plan_rebalance(&map, &members, &BTreeMap::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rebalance_honours_a_pin_to_a_member() {
        let members = nodes(&[1, 2, 3]);
        let map = assign(64, &members, 1).unwrap();
        let shard = map.shards_of(NodeId(1)).next().unwrap();
        let pins = BTreeMap::from([(shard, NodeId(3))]);
        let plan = plan_rebalance(&map, &members, &pins).unwrap();
        assert_eq!(
            plan.moves,
            [Move {
                shard,
                from: NodeId(1),
                to: NodeId(3)
            }]
        );
    }

    #[test]
    fn rebalance_ignores_a_pin_to_a_non_member() {
        let members = nodes(&[1, 2, 3]);
        let map = assign(64, &members, 1).unwrap();
        let pins = BTreeMap::from([(ShardId(0), NodeId(42))]);
        assert!(plan_rebalance(&map, &members, &pins).unwrap().is_empty());
    }

    #[test]
    fn rebalance_refuses_a_pin_on_an_unknown_shard() {
        let members = nodes(&[1]);
        let map = assign(4, &members, 1).unwrap();
        let pins = BTreeMap::from([(ShardId(4), NodeId(1))]);
        assert_eq!(
            plan_rebalance(&map, &members, &pins),
            Err(PlacementError::UnknownShard {
                shard: ShardId(4),
                count: 4
            })
        );
    }

    #[test]
    fn rebalance_without_members_is_refused() {
        let map = assign(4, &nodes(&[1]), 1).unwrap();
        assert_eq!(
            plan_rebalance(&map, &[], &BTreeMap::new()),
            Err(PlacementError::NoMembers)
        );
    }

    #[test]
    fn drain_moves_only_the_drained_nodes_shards() {
        let members = nodes(&[1, 2, 3]);
        let map = assign(64, &members, 1).unwrap();
        let plan = plan_drain(&map, NodeId(2), &members).unwrap();
        let drained: Vec<ShardId> = map.shards_of(NodeId(2)).collect();
        assert_eq!(
            plan.moves.iter().map(|m| m.shard).collect::<Vec<_>>(),
            drained
        );
        assert!(
            plan.moves
                .iter()
                .all(|m| m.from == NodeId(2) && m.to != NodeId(2))
        );
        let after = map.with_moves(&plan).unwrap();
        assert_eq!(after.shards_of(NodeId(2)).count(), 0);
    }

    #[test]
    fn drain_of_the_last_member_is_refused() {
        let members = nodes(&[1]);
        let map = assign(4, &members, 1).unwrap();
        assert_eq!(
            plan_drain(&map, NodeId(1), &members),
            Err(PlacementError::NoMembers)
        );
    }

    #[test]
    fn move_to_a_member_is_one_move() {
        let map = ShardMap::new(1, nodes(&[1, 2])).unwrap();
        let plan = plan_move(&map, ShardId(0), NodeId(2), &nodes(&[1, 2])).unwrap();
        assert_eq!(
            plan.moves,
            [Move {
                shard: ShardId(0),
                from: NodeId(1),
                to: NodeId(2)
            }]
        );
    }

    #[test]
    fn move_to_the_current_owner_is_empty() {
        let map = ShardMap::new(1, nodes(&[1, 2])).unwrap();
        assert!(
            plan_move(&map, ShardId(1), NodeId(2), &nodes(&[1, 2]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn move_refuses_unknown_shards_and_non_members() {
        let map = ShardMap::new(1, nodes(&[1, 2])).unwrap();
        assert_eq!(
            plan_move(&map, ShardId(2), NodeId(1), &nodes(&[1, 2])),
            Err(PlacementError::UnknownShard {
                shard: ShardId(2),
                count: 2
            })
        );
        assert_eq!(
            plan_move(&map, ShardId(0), NodeId(3), &nodes(&[1, 2])),
            Err(PlacementError::NotAMember { node: NodeId(3) })
        );
    }
}
