//! Errors of the node runtime, and the one place they turn into protocol codes.

use starling_auth::KeyError;
use starling_config::ChannelError;
use starling_protocol::{DisconnectCode, ErrorCode};
use starling_room::RoomError;

use crate::outbound::Close;

/// Something the node could not do. Request-level failures; none of these stop the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The channel name is invalid or names an unknown namespace.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// The room refused the request (for example an unrecoverable history position).
    #[error("room: {0}")]
    Room(#[from] RoomError),
    /// The node is at `client.connection_limit`.
    #[error("connection limit of {limit} reached")]
    ConnectionLimit {
        /// The configured limit.
        limit: usize,
    },
    /// Too many connections from one IP address (`client.connection_limit_per_ip`).
    #[error("connection limit of {limit} per IP address reached for {ip}")]
    ConnectionLimitPerIp {
        /// The configured limit.
        limit: usize,
        /// The address at its limit.
        ip: std::net::IpAddr,
    },
    /// New connections arrive faster than `client.connection_rate_limit`.
    #[error("more than {limit} new connections per second")]
    ConnectionRate {
        /// The configured rate.
        limit: u32,
    },
    /// A room actor did not answer in time.
    #[error("room {room} did not answer in time")]
    RoomTimeout {
        /// The room's name.
        room: String,
    },
    /// A room actor kept stopping under the request.
    #[error("room {room} unavailable")]
    RoomUnavailable {
        /// The room's name.
        room: String,
    },
    /// An actor could not be started.
    #[error("cannot start {what} actor: {reason}")]
    Spawn {
        /// Which kind of actor.
        what: &'static str,
        /// The runtime's reason.
        reason: String,
    },
    /// An emulation request names a session this node does not hold (never opened here, or
    /// already closed). The id itself is left out: it is the credential that lets a request
    /// drive the connection, so it stays out of logs.
    #[error("no emulation session with that id on this node")]
    UnknownSession,
    /// The cluster runtime could not do something (start, join, remove, route).
    #[error("cluster: {reason}")]
    Cluster {
        /// What went wrong.
        reason: String,
    },
    /// Another node did not answer (no link to it, or no answer in time).
    #[error("node {node} is unavailable")]
    PeerUnavailable {
        /// The node.
        node: u64,
    },
    /// This node owns the room but has lost contact with the cluster's quorum, so it may no
    /// longer own it; it does not sequence until contact is back.
    #[error("no quorum contact: not sequencing")]
    NoQuorum,
    /// The node asked is not the room's owner in its shard map, whose version is given; the
    /// caller updates its map and routes again. Internal to routing.
    #[error("stale route (owner has shard map version {map_version})")]
    StaleRoute {
        /// The refusing node's map version.
        map_version: u64,
    },
    /// The room's owner refused the request.
    #[error("owner refused: {reason}")]
    Remote {
        /// Whether the owner judged the request malformed.
        bad_request: bool,
        /// Why.
        reason: String,
    },
    /// Token key material in the configuration is unusable.
    #[error("{key}: {source}")]
    TokenKeys {
        /// The configuration section holding the keys.
        key: &'static str,
        /// What is wrong with them.
        source: KeyError,
    },
}

/// How a failed command ends: an error reply, or the end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandError {
    /// Reply to the command with this error; the connection stays.
    Reply(ErrorCode),
    /// Close the connection with this code.
    Disconnect(DisconnectCode),
}

impl From<NodeError> for CommandError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Channel(ChannelError::UnknownNamespace { .. }) => {
                CommandError::Reply(ErrorCode::UnknownChannel)
            }
            NodeError::Channel(_) => CommandError::Reply(ErrorCode::BadRequest),
            NodeError::Room(RoomError::UnrecoverablePosition { .. }) => {
                CommandError::Reply(ErrorCode::UnrecoverablePosition)
            }
            NodeError::Room(RoomError::ReverseFromOffsetZero) => {
                CommandError::Reply(ErrorCode::BadRequest)
            }
            NodeError::Room(_) => CommandError::Reply(ErrorCode::Internal),
            NodeError::ConnectionLimit { .. } | NodeError::ConnectionLimitPerIp { .. } => {
                CommandError::Disconnect(DisconnectCode::ConnectionLimit)
            }
            NodeError::ConnectionRate { .. } => {
                CommandError::Disconnect(DisconnectCode::TooManyRequests)
            }
            NodeError::Remote {
                bad_request: true, ..
            } => CommandError::Reply(ErrorCode::BadRequest),
            // Internal (100) is a temporary error to the SDKs: they retry subscribes, which is
            // what a failover in progress wants.
            NodeError::RoomTimeout { .. }
            | NodeError::Cluster { .. }
            | NodeError::PeerUnavailable { .. }
            | NodeError::NoQuorum
            | NodeError::StaleRoute { .. }
            | NodeError::Remote { .. }
            | NodeError::RoomUnavailable { .. }
            | NodeError::Spawn { .. }
            | NodeError::UnknownSession
            | NodeError::TokenKeys { .. } => CommandError::Reply(ErrorCode::Internal),
        }
    }
}

impl NodeError {
    /// How a transport closes a connection that [`Node::open_connection`] refused: the one
    /// place refusals become close codes, for every transport.
    ///
    /// [`Node::open_connection`]: crate::Node::open_connection
    pub fn refusal(&self) -> Close {
        match self {
            NodeError::ConnectionLimit { .. } | NodeError::ConnectionLimitPerIp { .. } => {
                DisconnectCode::ConnectionLimit.into()
            }
            // 3013 makes the SDK reconnect with backoff, which is what a rate limit wants.
            NodeError::ConnectionRate { .. } => DisconnectCode::TooManyRequests.into(),
            _ => DisconnectCode::ServerError.into(),
        }
    }
}

impl From<ChannelError> for CommandError {
    fn from(error: ChannelError) -> Self {
        NodeError::Channel(error).into()
    }
}
