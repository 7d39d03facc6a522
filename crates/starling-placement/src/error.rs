//! [`PlacementError`], the one error type of this crate.

use crate::{NodeId, ShardId};

/// Why a placement request was refused. Every variant is a "this request
/// failed" error: placement is pure, so nothing here means a node must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The shard count is zero or not a power of two. Powers of two are what
    /// make a split move each room to `i` or `i + count`, never elsewhere.
    #[error("shard count {count} is not a power of two")]
    NotPowerOfTwo {
        /// The rejected count.
        count: u32,
    },
    /// The shard count is above [`MAX_SHARD_COUNT`](crate::MAX_SHARD_COUNT),
    /// or a split would take it there.
    #[error("shard count {count} exceeds the maximum of {max}")]
    TooManyShards {
        /// The rejected count.
        count: u64,
        /// The largest count allowed.
        max: u32,
    },
    /// The owner list's length differs from the shard count.
    #[error("shard map has {owners} owners for {count} shards")]
    OwnerCountMismatch {
        /// Number of owners given.
        owners: usize,
        /// The map's shard count.
        count: u32,
    },
    /// The shard does not exist in a map of `count` shards.
    #[error("shard {shard} does not exist (the map has {count} shards)")]
    UnknownShard {
        /// The shard asked for.
        shard: ShardId,
        /// The map's shard count.
        count: u32,
    },
    /// The node was named as a target but is not a cluster member.
    #[error("node {node} is not a cluster member")]
    NotAMember {
        /// The node named.
        node: NodeId,
    },
    /// A shard in the map is owned by a node that is not a member.
    #[error("shard {shard} is owned by node {node}, which is not a cluster member")]
    OwnerNotAMember {
        /// The shard.
        shard: ShardId,
        /// Its owner.
        node: NodeId,
    },
    /// There is no member to place shards on.
    #[error("no cluster members to place shards on")]
    NoMembers,
    /// A move's `from` is not the shard's current owner: the plan was made
    /// from an older map than the one it is being applied to.
    #[error("stale move of shard {shard}: expected owner {expected}, map says {actual}")]
    StaleMove {
        /// The shard the move is about.
        shard: ShardId,
        /// The owner the plan assumed.
        expected: NodeId,
        /// The owner the map has.
        actual: NodeId,
    },
}
