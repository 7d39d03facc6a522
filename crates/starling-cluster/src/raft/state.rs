//! [`ClusterState`]: the replicated state machine, as a pure value. Applying
//! an entry is a function of the state and the entry; no I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use openraft::{EntryPayload, LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use starling_placement::{MAX_SHARD_COUNT, NodeId, PlacementError, Plan, ShardId, ShardMap};

use crate::raft::types::{
    ClusterCommand, ClusterResponse, CommandRejected, Handoff, HandoffRecord, NodeInfo, TypeConfig,
};

/// Finished hand-offs the state remembers, newest last.
pub const RECENT_HANDOFFS: usize = 32;

/// A cluster member as the state machine knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// QUIC cluster address.
    pub addr: SocketAddr,
    /// Client-plane HTTP address.
    pub http_addr: String,
    /// Whether the member votes in Raft (otherwise it is a learner: it
    /// serves clients and owns shards but does not count for quorum).
    pub voter: bool,
}

/// The replicated cluster state: members, the shard map, settings, and the
/// Raft bookkeeping a snapshot must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Every member (voters and learners), from the last applied membership.
    pub members: BTreeMap<NodeId, Member>,
    /// Shard → owner; `None` until the first node initializes the cluster.
    pub shard_map: Option<ShardMap>,
    /// Cluster-wide settings.
    pub settings: BTreeMap<String, String>,
    /// The last log entry applied.
    pub last_applied: Option<LogId<u64>>,
    /// The last applied Raft membership config.
    pub membership: StoredMembership<u64, NodeInfo>,
    /// Shard moves in progress, by shard: the old owner ships the rooms to the new one.
    #[serde(default)]
    pub handoffs: BTreeMap<ShardId, Handoff>,
    /// The last [`RECENT_HANDOFFS`] finished hand-offs, oldest first.
    #[serde(default)]
    pub recent_handoffs: VecDeque<HandoffRecord>,
    /// Members being drained: no rebalance gives them shards.
    #[serde(default)]
    pub draining: BTreeSet<NodeId>,
    /// Each shard's replica: the member its owner copies every publication to before
    /// acknowledging it, and the shard's next owner if the owner dies.
    #[serde(default)]
    pub replicas: BTreeMap<ShardId, NodeId>,
}

impl ClusterState {
    /// Applies one committed entry and answers it. Blank entries only move
    /// `last_applied`; membership entries replace the member list.
    pub fn apply(&mut self, entry: &openraft::Entry<TypeConfig>) -> ClusterResponse {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => self.applied(),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                self.sync_members();
                self.applied()
            }
            EntryPayload::Normal(command) => match self.apply_command(command) {
                Ok(()) => self.applied(),
                Err(rejected) => ClusterResponse::Rejected(rejected),
            },
        }
    }

    /// Applies a command, all or nothing.
    pub fn apply_command(&mut self, command: &ClusterCommand) -> Result<(), CommandRejected> {
        match command {
            ClusterCommand::SetShardMap { map } => {
                if let Some(current) = &self.shard_map
                    && map.version() <= current.version()
                {
                    return Err(CommandRejected::NotNewer {
                        proposed: map.version(),
                        current: current.version(),
                    });
                }
                self.check_owners(map)?;
                self.shard_map = Some(map.clone());
            }
            ClusterCommand::ApplyPlan { base_version, plan } => {
                let next = self.planned_map(*base_version, plan)?;
                // Without a hand-off the new owner starts the rooms afresh: a hand-off still
                // pending for a moved shard has nobody left to finish it.
                for mv in &plan.moves {
                    self.handoffs.remove(&mv.shard);
                }
                self.shard_map = Some(next);
            }
            ClusterCommand::HandoffPlan { base_version, plan } => {
                if let Some((shard, pending)) = plan
                    .moves
                    .iter()
                    .find_map(|mv| self.handoffs.get(&mv.shard).map(|h| (mv.shard, *h)))
                {
                    return Err(CommandRejected::HandoffPending {
                        shard,
                        from: pending.from,
                        to: pending.to,
                    });
                }
                let next = self.planned_map(*base_version, plan)?;
                for mv in &plan.moves {
                    self.handoffs.insert(
                        mv.shard,
                        Handoff {
                            from: mv.from,
                            to: mv.to,
                            version: next.version(),
                        },
                    );
                }
                self.shard_map = Some(next);
            }
            ClusterCommand::CompleteHandoff {
                shard,
                version,
                rooms,
                millis,
                complete,
            } => {
                if let Some(handoff) = self.handoffs.get(shard).copied()
                    && handoff.version == *version
                {
                    self.handoffs.remove(shard);
                    if self.recent_handoffs.len() >= RECENT_HANDOFFS {
                        self.recent_handoffs.pop_front();
                    }
                    self.recent_handoffs.push_back(HandoffRecord {
                        shard: *shard,
                        handoff,
                        rooms: *rooms,
                        millis: *millis,
                        complete: *complete,
                    });
                }
            }
            ClusterCommand::Split { base_version } => {
                let current = self.shard_map.as_ref().ok_or(CommandRejected::NoShardMap)?;
                if current.version() != *base_version {
                    return Err(CommandRejected::StaleShardMap {
                        base_version: *base_version,
                        current: current.version(),
                    });
                }
                if let Some((&shard, pending)) = self.handoffs.iter().next() {
                    return Err(CommandRejected::HandoffPending {
                        shard,
                        from: pending.from,
                        to: pending.to,
                    });
                }
                let next = current
                    .split()
                    .map_err(|_| CommandRejected::TooManyShards {
                        max: MAX_SHARD_COUNT,
                    })?;
                self.shard_map = Some(next);
            }
            ClusterCommand::SetReplicas {
                map_version,
                replicas,
            } => {
                let current = self.shard_map.as_ref().ok_or(CommandRejected::NoShardMap)?;
                if current.version() != *map_version {
                    return Err(CommandRejected::StaleShardMap {
                        base_version: *map_version,
                        current: current.version(),
                    });
                }
                if let Some(node) = replicas.values().find(|n| !self.members.contains_key(n)) {
                    return Err(CommandRejected::NotAMember { node: *node });
                }
                self.replicas = replicas.clone();
            }
            ClusterCommand::SetDraining { node, draining } => {
                if *draining {
                    if !self.members.contains_key(node) {
                        return Err(CommandRejected::NotAMember { node: *node });
                    }
                    self.draining.insert(*node);
                } else {
                    self.draining.remove(node);
                }
            }
            ClusterCommand::SetSetting { key, value } => {
                self.settings.insert(key.clone(), value.clone());
            }
            ClusterCommand::RemoveSetting { key } => {
                self.settings.remove(key);
            }
        }
        Ok(())
    }

    /// The member ids, in order.
    pub fn member_ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// The voters' ids, in order.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The map after `plan`, if it was made from the current map and moves shards to members.
    /// `with_moves` works on a copy: a failing move leaves the current map untouched.
    fn planned_map(&self, base_version: u64, plan: &Plan) -> Result<ShardMap, CommandRejected> {
        let current = self.shard_map.as_ref().ok_or(CommandRejected::NoShardMap)?;
        if current.version() != base_version {
            return Err(CommandRejected::StaleShardMap {
                base_version,
                current: current.version(),
            });
        }
        if let Some(mv) = plan
            .moves
            .iter()
            .find(|mv| !self.members.contains_key(&mv.to))
        {
            return Err(CommandRejected::NotAMember { node: mv.to });
        }
        current.with_moves(plan).map_err(rejected)
    }

    fn check_owners(&self, map: &ShardMap) -> Result<(), CommandRejected> {
        match map
            .shards()
            .find(|(_, owner)| !self.members.contains_key(owner))
        {
            Some((_, node)) => Err(CommandRejected::NotAMember { node }),
            None => Ok(()),
        }
    }

    fn sync_members(&mut self) {
        let membership = self.membership.membership();
        self.members = membership
            .nodes()
            .map(|(id, info)| {
                let member = Member {
                    addr: info.cluster_addr,
                    http_addr: info.http_addr.clone(),
                    voter: membership.voter_ids().any(|v| v == *id),
                };
                (NodeId(*id), member)
            })
            .collect();
        let members = &self.members;
        self.draining.retain(|node| members.contains_key(node));
    }

    fn applied(&self) -> ClusterResponse {
        ClusterResponse::Applied {
            shard_map_version: self.shard_map.as_ref().map(ShardMap::version),
        }
    }
}

fn rejected(error: PlacementError) -> CommandRejected {
    match error {
        PlacementError::UnknownShard { shard, count } => {
            CommandRejected::UnknownShard { shard, count }
        }
        PlacementError::StaleMove {
            shard,
            expected,
            actual,
        } => CommandRejected::StaleMove {
            shard,
            expected,
            actual,
        },
        PlacementError::NotAMember { node } | PlacementError::OwnerNotAMember { node, .. } => {
            CommandRejected::NotAMember { node }
        }
        // `with_moves` reports only the two kinds above; the shape errors
        // cannot arise from a map that already exists.
        PlacementError::NotPowerOfTwo { .. }
        | PlacementError::TooManyShards { .. }
        | PlacementError::OwnerCountMismatch { .. }
        | PlacementError::NoMembers => CommandRejected::NoShardMap,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, Entry, Membership};
    use starling_placement::{Move, Plan, ShardId, assign};

    use super::*;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn info(port: u16) -> NodeInfo {
        NodeInfo {
            cluster_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http_addr: format!("127.0.0.1:{}", port + 1000),
        }
    }

    fn membership_entry(index: u64, voters: &[u64], learners: &[u64]) -> Entry<TypeConfig> {
        let nodes: BTreeMap<u64, NodeInfo> = voters
            .iter()
            .chain(learners)
            .map(|&id| (id, info(7000 + id as u16)))
            .collect();
        let config = vec![voters.iter().copied().collect::<BTreeSet<_>>()];
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Membership(Membership::new(config, nodes)),
        }
    }

    fn command(index: u64, command: ClusterCommand) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(command),
        }
    }

    /// Members 1, 2 (voters) and 3 (learner), with all shards on node 1 at
    /// map version 1.
    fn state_with_map() -> ClusterState {
        let mut state = ClusterState::default();
        state.apply(&membership_entry(1, &[1, 2], &[3]));
        let map = assign(8, &[NodeId(1)], 1).expect("assign");
        let response = state.apply(&command(2, ClusterCommand::SetShardMap { map }));
        assert_eq!(
            response,
            ClusterResponse::Applied {
                shard_map_version: Some(1)
            }
        );
        state
    }

    #[test]
    fn membership_entry_defines_members_and_voters() {
        let state = state_with_map();
        assert_eq!(state.member_ids(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(state.voter_ids(), vec![NodeId(1), NodeId(2)]);
        assert_eq!(state.members[&NodeId(3)].addr, info(7003).cluster_addr);
        assert_eq!(state.last_applied, Some(log_id(2)));
        assert_eq!(state.membership.log_id(), &Some(log_id(1)));
    }

    #[test]
    fn plan_on_current_version_moves_shards_and_bumps_version() {
        let mut state = state_with_map();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(3),
                from: NodeId(1),
                to: NodeId(2),
            }],
        };
        let response = state.apply(&command(
            3,
            ClusterCommand::ApplyPlan {
                base_version: 1,
                plan,
            },
        ));
        assert_eq!(
            response,
            ClusterResponse::Applied {
                shard_map_version: Some(2)
            }
        );
        let map = state.shard_map.as_ref().expect("map");
        assert_eq!(map.owner(ShardId(3)), Some(NodeId(2)));
        assert_eq!(map.version(), 2);
    }

    #[test]
    fn plan_for_an_older_map_version_is_rejected_whole() {
        let mut state = state_with_map();
        let before = state.shard_map.clone();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(0),
                from: NodeId(1),
                to: NodeId(2),
            }],
        };
        let response = state.apply(&command(
            3,
            ClusterCommand::ApplyPlan {
                base_version: 0,
                plan,
            },
        ));
        assert_eq!(
            response,
            ClusterResponse::Rejected(CommandRejected::StaleShardMap {
                base_version: 0,
                current: 1
            })
        );
        assert_eq!(state.shard_map, before);
        assert_eq!(state.last_applied, Some(log_id(3)));
    }

    #[test]
    fn plan_with_one_stale_move_is_never_half_applied() {
        let mut state = state_with_map();
        let before = state.shard_map.clone();
        let plan = Plan {
            moves: vec![
                Move {
                    shard: ShardId(0),
                    from: NodeId(1),
                    to: NodeId(2),
                },
                Move {
                    shard: ShardId(1),
                    from: NodeId(2),
                    to: NodeId(3),
                },
            ],
        };
        let response = state.apply(&command(
            3,
            ClusterCommand::ApplyPlan {
                base_version: 1,
                plan,
            },
        ));
        assert_eq!(
            response,
            ClusterResponse::Rejected(CommandRejected::StaleMove {
                shard: ShardId(1),
                expected: NodeId(2),
                actual: NodeId(1)
            })
        );
        assert_eq!(state.shard_map, before);
    }

    #[test]
    fn plan_moving_a_shard_to_a_non_member_is_rejected() {
        let mut state = state_with_map();
        let plan = Plan {
            moves: vec![Move {
                shard: ShardId(0),
                from: NodeId(1),
                to: NodeId(9),
            }],
        };
        let result = state.apply_command(&ClusterCommand::ApplyPlan {
            base_version: 1,
            plan,
        });
        assert_eq!(result, Err(CommandRejected::NotAMember { node: NodeId(9) }));
    }

    #[test]
    fn plan_without_a_map_is_rejected() {
        let mut state = ClusterState::default();
        let result = state.apply_command(&ClusterCommand::ApplyPlan {
            base_version: 0,
            plan: Plan::default(),
        });
        assert_eq!(result, Err(CommandRejected::NoShardMap));
    }

    #[test]
    fn shard_map_must_be_newer_and_owned_by_members() {
        let mut state = state_with_map();
        let same = assign(8, &[NodeId(2)], 1).expect("assign");
        assert_eq!(
            state.apply_command(&ClusterCommand::SetShardMap { map: same }),
            Err(CommandRejected::NotNewer {
                proposed: 1,
                current: 1
            })
        );
        let stranger = assign(8, &[NodeId(9)], 5).expect("assign");
        assert_eq!(
            state.apply_command(&ClusterCommand::SetShardMap { map: stranger }),
            Err(CommandRejected::NotAMember { node: NodeId(9) })
        );
        let newer = assign(16, &[NodeId(2), NodeId(3)], 2).expect("assign");
        assert_eq!(
            state.apply_command(&ClusterCommand::SetShardMap { map: newer.clone() }),
            Ok(())
        );
        assert_eq!(state.shard_map, Some(newer));
    }

    fn one_move(shard: u32, from: u64, to: u64) -> Plan {
        Plan {
            moves: vec![Move {
                shard: ShardId(shard),
                from: NodeId(from),
                to: NodeId(to),
            }],
        }
    }

    #[test]
    fn a_handoff_move_is_recorded_until_the_new_owner_completes_it() {
        let mut state = state_with_map();
        let plan = one_move(3, 1, 2);
        assert_eq!(
            state.apply_command(&ClusterCommand::HandoffPlan {
                base_version: 1,
                plan
            }),
            Ok(())
        );
        let map = state.shard_map.as_ref().expect("map");
        assert_eq!(map.owner(ShardId(3)), Some(NodeId(2)));
        let handoff = Handoff {
            from: NodeId(1),
            to: NodeId(2),
            version: 2,
        };
        assert_eq!(state.handoffs.get(&ShardId(3)), Some(&handoff));

        // A second move of the same shard waits for the first to finish; a split too.
        let again = ClusterCommand::HandoffPlan {
            base_version: 2,
            plan: one_move(3, 2, 3),
        };
        let pending = Err(CommandRejected::HandoffPending {
            shard: ShardId(3),
            from: NodeId(1),
            to: NodeId(2),
        });
        assert_eq!(state.apply_command(&again), pending);
        assert_eq!(
            state.apply_command(&ClusterCommand::Split { base_version: 2 }),
            pending
        );

        // Completing an older hand-off of the shard changes nothing.
        let stale = ClusterCommand::CompleteHandoff {
            shard: ShardId(3),
            version: 1,
            rooms: 0,
            millis: 0,
            complete: true,
        };
        assert_eq!(state.apply_command(&stale), Ok(()));
        assert!(state.handoffs.contains_key(&ShardId(3)));
        let done = ClusterCommand::CompleteHandoff {
            shard: ShardId(3),
            version: 2,
            rooms: 7,
            millis: 12,
            complete: true,
        };
        assert_eq!(state.apply_command(&done), Ok(()));
        assert!(state.handoffs.is_empty());
        assert_eq!(state.recent_handoffs.back().map(|r| r.rooms), Some(7));
        assert_eq!(state.apply_command(&again), Ok(()));
    }

    #[test]
    fn a_failover_move_cancels_a_pending_handoff() {
        let mut state = state_with_map();
        let plan = one_move(5, 1, 2);
        state
            .apply_command(&ClusterCommand::HandoffPlan {
                base_version: 1,
                plan,
            })
            .expect("hand-off plan");
        // Node 2 died before taking the shard over; the leader gives it to node 3 directly.
        state
            .apply_command(&ClusterCommand::ApplyPlan {
                base_version: 2,
                plan: one_move(5, 2, 3),
            })
            .expect("failover plan");
        assert!(state.handoffs.is_empty());
        let map = state.shard_map.as_ref().expect("map");
        assert_eq!(map.owner(ShardId(5)), Some(NodeId(3)));
    }

    #[test]
    fn a_split_doubles_the_shards_without_changing_owners() {
        let mut state = state_with_map();
        assert_eq!(
            state.apply_command(&ClusterCommand::Split { base_version: 0 }),
            Err(CommandRejected::StaleShardMap {
                base_version: 0,
                current: 1
            })
        );
        assert_eq!(
            state.apply_command(&ClusterCommand::Split { base_version: 1 }),
            Ok(())
        );
        let map = state.shard_map.as_ref().expect("map");
        assert_eq!(map.shard_count(), 16);
        assert_eq!(map.version(), 2);
        assert!(map.owners().iter().all(|&o| o == NodeId(1)));
    }

    #[test]
    fn draining_marks_only_members_and_is_dropped_when_they_leave() {
        let mut state = state_with_map();
        assert_eq!(
            state.apply_command(&ClusterCommand::SetDraining {
                node: NodeId(9),
                draining: true
            }),
            Err(CommandRejected::NotAMember { node: NodeId(9) })
        );
        state
            .apply_command(&ClusterCommand::SetDraining {
                node: NodeId(2),
                draining: true,
            })
            .expect("drain");
        assert!(state.draining.contains(&NodeId(2)));
        state.apply(&membership_entry(5, &[1], &[3]));
        assert!(state.draining.is_empty());
    }

    #[test]
    fn settings_are_set_and_removed() {
        let mut state = ClusterState::default();
        let set = ClusterCommand::SetSetting {
            key: "history_ttl".into(),
            value: "60s".into(),
        };
        assert_eq!(state.apply_command(&set), Ok(()));
        assert_eq!(state.settings["history_ttl"], "60s");
        let remove = ClusterCommand::RemoveSetting {
            key: "history_ttl".into(),
        };
        assert_eq!(state.apply_command(&remove), Ok(()));
        assert!(state.settings.is_empty());
    }

    #[test]
    fn state_round_trips_through_msgpack() {
        let state = state_with_map();
        let bytes = rmp_serde::to_vec(&state).expect("encode");
        let back: ClusterState = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, state);
    }
}
