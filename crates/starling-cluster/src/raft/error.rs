//! The control plane's errors:
//! - [`StoreError`] — the data directory (the node cannot keep its Raft
//!   promises without it; openraft stops the node on it);
//! - [`ClusterNodeError`] — starting the node and the membership and
//!   proposal calls (a request failed, or this node is not the leader).

use std::path::PathBuf;

use starling_placement::{NodeId, PlacementError};

use crate::raft::types::CommandRejected;

/// A failure of the control plane's files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("{op} {} failed: {source}", path.display())]
    Io {
        /// What was being done ("append to", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record or file could not be decoded.
    #[error("cannot decode {what} in {}: {source}", path.display())]
    Decode {
        /// What was being read.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: rmp_serde::decode::Error,
    },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// The encoder's error.
        source: rmp_serde::encode::Error,
    },
    /// The log file does not start with this format's magic bytes.
    #[error("{} is not a Starling Raft log (bad header)", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
    },
    /// A single record is larger than a record may be.
    #[error("log record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a [`ClusterNode`](crate::ClusterNode) call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterNodeError {
    /// The data directory could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Raft settings are invalid.
    #[error("invalid Raft configuration: {source}")]
    Config {
        /// openraft's complaint.
        source: Box<openraft::ConfigError>,
    },
    /// The call needs the leader and this node is not it.
    #[error("node {node} is not the leader (leader: {leader:?})")]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader, when known.
        leader: Option<NodeId>,
    },
    /// The state machine refused the command.
    #[error("command rejected: {0}")]
    Rejected(#[from] CommandRejected),
    /// The initial shard map could not be computed.
    #[error("cannot place shards: {0}")]
    Placement(#[from] PlacementError),
    /// A membership change was refused (another one in progress, a learner
    /// missing, ...).
    #[error("membership change refused: {source}")]
    Membership {
        /// openraft's reason.
        source: Box<openraft::error::ChangeMembershipError<u64>>,
    },
    /// The node is not a member of the cluster.
    #[error("node {node} is not a cluster member")]
    UnknownMember {
        /// The node.
        node: NodeId,
    },
    /// Raft stopped (storage failure or shutdown); the node must stop.
    #[error("raft stopped: {source}")]
    Fatal {
        /// Why.
        source: Box<openraft::error::Fatal<u64>>,
    },
    /// A wait on the node's metrics timed out.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
}
