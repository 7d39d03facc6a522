//! The openraft type configuration: node ids, node addresses, the commands
//! the log carries and what applying them answers.

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use starling_placement::{NodeId, Plan, ShardId, ShardMap};

openraft::declare_raft_types!(
    /// Starling's openraft types: `u64` node ids (the inner value of
    /// [`NodeId`]), [`NodeInfo`] addresses, [`ClusterCommand`] entries
    /// answered by [`ClusterResponse`], snapshots as bytes in memory.
    pub TypeConfig:
        D = ClusterCommand,
        R = ClusterResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The openraft handle of a Starling node.
pub type StarlingRaft = openraft::Raft<TypeConfig>;

/// Where a member can be reached; carried in Raft's membership config, so
/// every node learns every member's addresses from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The member's QUIC cluster address (Raft and the data plane).
    pub cluster_addr: SocketAddr,
    /// The member's client-plane HTTP address, as operators and clients
    /// should reach it (`host:port`).
    pub http_addr: String,
}

impl Default for NodeInfo {
    /// An unroutable placeholder (`0.0.0.0:0`). openraft needs a default
    /// node for membership entries that name ids without addresses; such
    /// entries only appear in its storage tests.
    fn default() -> Self {
        NodeInfo {
            cluster_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            http_addr: String::new(),
        }
    }
}

/// A change to the cluster state, proposed on the leader and applied by
/// every node in log order.
///
/// Members are not commands: they follow Raft's own membership entries
/// ([`ClusterNode::add_member`](crate::ClusterNode::add_member),
/// [`ClusterNode::remove`](crate::ClusterNode::remove)), so the member list
/// and the voter set can never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// Replaces the shard map. Refused unless `map` is newer than the
    /// current map (or there is none yet): used for the first map and for
    /// splits.
    SetShardMap {
        /// The new map.
        map: ShardMap,
    },
    /// Applies a plan of moves made from the map at `base_version`. Refused
    /// as a whole when the map has moved on, when a move's `from` is not the
    /// shard's owner, or when a target is not a member — never half-applied.
    ApplyPlan {
        /// The map version the plan was computed from.
        base_version: u64,
        /// The moves.
        plan: Plan,
    },
    /// Moves shards with a hand-off: each moved shard's old owner ships its rooms' state to
    /// the new owner, which holds the shard's requests until it has them. Refused as
    /// [`ApplyPlan`](Self::ApplyPlan) is, and also when a moved shard still has a hand-off in
    /// progress (one hand-off per shard at a time keeps old and new owner unambiguous on every
    /// node, whichever map versions it skipped). Records a [`Handoff`] per move.
    HandoffPlan {
        /// The map version the plan was computed from.
        base_version: u64,
        /// The moves.
        plan: Plan,
    },
    /// The new owner has taken `shard` over (or gave up waiting): the hand-off recorded at map
    /// version `version` ends. A no-op when no such hand-off is pending.
    CompleteHandoff {
        /// The shard.
        shard: ShardId,
        /// The map version the hand-off began at.
        version: u64,
        /// Rooms received.
        rooms: u32,
        /// Milliseconds from the new owner seeing the move to holding every room.
        millis: u64,
        /// Whether every room arrived (false: the old owner went silent and the new owner
        /// started the shard's rooms afresh).
        complete: bool,
    },
    /// Doubles the shard count: shard `i` becomes `i` and `i + old count`, both on `i`'s owner,
    /// so no room changes owner. Refused while a hand-off is in progress.
    Split {
        /// The map version the split was asked for at.
        base_version: u64,
    },
    /// Replaces the replica assignment: shard → the member that keeps a copy of its rooms.
    /// Refused when made from another map version than the current one.
    SetReplicas {
        /// The map version the assignment was made from.
        map_version: u64,
        /// The replica of each shard that has one.
        replicas: std::collections::BTreeMap<ShardId, NodeId>,
    },
    /// Marks `node` as draining (no rebalance gives it shards) or clears the mark.
    SetDraining {
        /// The node.
        node: NodeId,
        /// Draining or not.
        draining: bool,
    },
    /// Sets a cluster-wide setting.
    SetSetting {
        /// The setting's name.
        key: String,
        /// Its value.
        value: String,
    },
    /// Removes a cluster-wide setting (no-op when absent).
    RemoveSetting {
        /// The setting's name.
        key: String,
    },
}

/// What applying one log entry answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// Applied; the shard map version afterwards (`None` before the first
    /// map).
    Applied {
        /// The shard map version after the entry.
        shard_map_version: Option<u64>,
    },
    /// Refused by the state machine; the state did not change.
    Rejected(CommandRejected),
}

/// Why the state machine refused a command. Deterministic: every node
/// refuses the same entry the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandRejected {
    /// The command needs a shard map and there is none yet.
    #[error("there is no shard map yet")]
    NoShardMap,
    /// A plan was computed from a map version that is no longer current.
    #[error("plan is based on shard map version {base_version}, current is {current}")]
    StaleShardMap {
        /// The version the plan was made from.
        base_version: u64,
        /// The current version.
        current: u64,
    },
    /// A new map is not newer than the current one.
    #[error("shard map version {proposed} is not newer than the current {current}")]
    NotNewer {
        /// The proposed map's version.
        proposed: u64,
        /// The current version.
        current: u64,
    },
    /// A move names a shard that does not exist.
    #[error("shard {shard} does not exist (the map has {count} shards)")]
    UnknownShard {
        /// The shard.
        shard: ShardId,
        /// Shards in the map.
        count: u32,
    },
    /// A move's `from` is not the shard's owner at that point of the plan.
    #[error("stale move of shard {shard}: expected owner {expected}, map says {actual}")]
    StaleMove {
        /// The shard.
        shard: ShardId,
        /// The owner the plan expected.
        expected: NodeId,
        /// The owner the map has.
        actual: NodeId,
    },
    /// A shard would be given to a node that is not a member.
    #[error("node {node} is not a cluster member")]
    NotAMember {
        /// The node.
        node: NodeId,
    },
    /// A hand-off move or a split while `shard` is still being handed over.
    #[error("shard {shard} is still being handed over from node {from} to node {to}")]
    HandoffPending {
        /// The shard.
        shard: ShardId,
        /// Its old owner.
        from: NodeId,
        /// Its new owner.
        to: NodeId,
    },
    /// The map cannot split further.
    #[error("the shard map cannot grow past {max} shards")]
    TooManyShards {
        /// The largest shard count.
        max: u32,
    },
}

/// A shard move in progress: `from` ships the shard's rooms to `to`, which holds the shard's
/// requests until it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The old owner.
    pub from: NodeId,
    /// The new owner (the map's owner of the shard).
    pub to: NodeId,
    /// The map version the move was committed at.
    pub version: u64,
}

/// A finished hand-off, kept in the state for `cluster status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRecord {
    /// The shard.
    pub shard: ShardId,
    /// The hand-off.
    pub handoff: Handoff,
    /// Rooms received.
    pub rooms: u32,
    /// Milliseconds the new owner waited for them.
    pub millis: u64,
    /// Whether every room arrived.
    pub complete: bool,
}
