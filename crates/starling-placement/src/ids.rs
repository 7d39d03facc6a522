//! Identifiers of the two things placement maps between.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A cluster member, as given to `starling serve --node-id N`.
///
/// Serialized as a bare number, so it reads naturally in the Raft state
/// machine, the status JSON and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        NodeId(id)
    }
}

/// A shard: the unit of ownership and of movement. Rooms hash to shards
/// ([`shard_of`](crate::shard_of)); the shard map gives each shard an owner.
///
/// Serialized as a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The shard's position in a [`ShardMap`](crate::ShardMap)'s owner list.
    pub fn index(self) -> usize {
        // u32 -> usize is lossless on every target with 32- or 64-bit
        // pointers, which is every target Starling builds for.
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for ShardId {
    fn from(id: u32) -> Self {
        ShardId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_bare_numbers() {
        assert_eq!(NodeId(7).to_string(), "7");
        assert_eq!(ShardId(255).to_string(), "255");
    }

    #[test]
    fn ids_deserialize_from_bare_numbers() {
        use serde::de::{IntoDeserializer, value::Error};
        let node = NodeId::deserialize(IntoDeserializer::<Error>::into_deserializer(3u64));
        assert_eq!(node, Ok(NodeId(3)));
        let shard = ShardId::deserialize(IntoDeserializer::<Error>::into_deserializer(9u32));
        assert_eq!(shard, Ok(ShardId(9)));
    }
}
