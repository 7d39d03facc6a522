//! The Starling node runtime: the actors that hold rooms and client connections, and the
//! [`Node`] handle that ties them together.
//!
//! The runtime is transport-independent. A transport (WebSocket, HTTP-streaming, SSE and
//! unidirectional SSE in `starling-gateway`) calls [`Node::open_connection_with`] with its
//! [`TransportMode`], feeds every inbound message to the returned [`ConnectionHandle`] (or, for
//! bidirectional emulation, through [`Node::emulate`]) and writes whatever
//! [`Outbound::next_batch`] yields.
//!
//! Layout:
//! - `node` — [`Node`]: configuration, token verifiers, the room and connection tables.
//! - `connection` — `ConnectionActor`: the Centrifugo protocol session of one client.
//! - `room_actor` — `RoomActor`: a thin shell around `starling_room::Room`; fan-out.
//! - `outbound` — [`Outbound`]: a connection's byte-bounded, coalescing write queue.
//! - `server_api` — what the server HTTP API does to the node: per-user subscribe,
//!   unsubscribe, disconnect and refresh ([`UserConnections`]), history removal, the channel
//!   list and [`NodeInfo`].
//! - `transport` — [`TransportMode`] and [`Resume`]: what differs between transports.
//! - `metrics` — [`Metrics`] counters.
//! - `error` — [`NodeError`] and the mapping to protocol codes.
//! - `rate` — the token bucket behind the connection-rate and command-rate limits.
//! - `clock` — the only reads of the system clock.

mod clock;
pub mod cluster;
mod connection;
mod error;
mod heartbeat;
mod metrics;
mod node;
mod outbound;
mod rate;
mod room_actor;
mod server_api;
mod transport;

pub use cluster::{
    ADMIN_TIMEOUT, ClusterHandle, ClusterSettings, ClusterStatus, HandoffStatus, MemberStatus,
    start_cluster,
};
pub use error::NodeError;
pub use metrics::{Metrics, MetricsSnapshot};
pub use node::{ConnectionHandle, Node};
pub use outbound::{Batch, Close, Frames, Outbound, Overflow};
pub use server_api::{
    ChannelOverrides, ExpiryUpdate, NodeInfo, ServerSubscription, UserConnections,
    default_api_disconnect,
};
pub use starling_cluster::{AdminOp, AdminReport};
pub use starling_placement::{NodeId, ShardId};
pub use starling_room::{HistoryPage, HistoryQuery, PresenceStats, RoomError};
pub use transport::{Resume, TransportMode};
