//! Data-plane frame payloads: what nodes say to each other about rooms,
//! and the join and remove calls of the control plane.
//!
//! Three shapes, each a [`Frame`](crate::Frame) kind:
//! - [`Call`] / [`CallReply`]: a request with an id and its one answer
//!   (forwarded publishes, history and presence queries, join, remove).
//!   Answers may arrive in any order; the id pairs them up.
//! - [`ToRoom`]: relay → owner, one way, about one room (subscribe,
//!   unsubscribe). Delivered to the room in the order sent.
//! - [`FromRoom`]: owner → relay, one way, about one room (subscribe
//!   answers, publications, joins, leaves, close). Sent by the room itself,
//!   in order on one link, so a relay sees a subscribe answer exactly between
//!   the publications before it and those after it.
//!
//! Every call and subscribe that a node answers only as a shard's owner
//! carries the sender's shard map version; a node that does not own the
//! shard answers [`Refusal::NotOwner`] with its own version (fencing).
//!
//! These are plain values, independent of the client protocol's types, so
//! the wire format between nodes does not change when the client protocol
//! crate does.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_placement::{NodeId, ShardId};

use crate::raft::types::NodeInfo;

/// A stream position: the last offset and the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePosition {
    /// The offset.
    pub offset: u64,
    /// The epoch.
    pub epoch: String,
}

/// Who published, or who is present: the client protocol's `ClientInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireClientInfo {
    /// User id (empty for anonymous users).
    pub user: String,
    /// Client (connection) id.
    pub client: String,
    /// Connection info (raw JSON or bytes).
    pub conn_info: Bytes,
    /// Channel info (raw JSON or bytes).
    pub chan_info: Bytes,
}

/// One publication as the owner sequenced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePublication {
    /// The offset the owner assigned (0 for a publication that skipped
    /// history).
    pub offset: u64,
    /// Payload.
    pub data: Bytes,
    /// Publisher.
    pub info: Option<WireClientInfo>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Publication time, Unix milliseconds.
    pub time: i64,
}

/// A request to another node; answered by a [`CallReply`] with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// Add the sender to the cluster (sent to any member; members that are
    /// not the leader answer [`Refusal::NotLeader`]).
    Join {
        /// The joining node.
        node_id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Remove a member (sent to the leader).
    Remove {
        /// The node to remove.
        node_id: NodeId,
    },
    /// Sequence a publication in `room` (sent to its owner).
    Publish {
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        room: String,
        /// Payload.
        data: Bytes,
        /// Publisher.
        info: Option<WireClientInfo>,
        /// Tags.
        tags: BTreeMap<String, String>,
        /// Deliver without an offset and without keeping it.
        skip_history: bool,
    },
    /// A page of `room`'s history.
    History {
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        room: String,
        /// Start after this position (and check its epoch).
        since: Option<WirePosition>,
        /// Most publications to return; 0 for none, negative for all.
        limit: i32,
        /// Newest first.
        reverse: bool,
    },
    /// `room`'s presence.
    Presence {
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        room: String,
    },
    /// `room`'s presence counts.
    PresenceStats {
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        room: String,
    },
    /// Drop `room`'s retained publications.
    RemoveHistory {
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        room: String,
    },
    /// A server API operation on a user's connections held by the called node.
    User {
        /// Which connections.
        target: WireTarget,
        /// What to do.
        op: WireUserOp,
    },
    /// The called node's rooms and relays with subscribers there, and how many.
    Channels,
    /// The called node's counters (the server API's `info`).
    Info,
    /// Liveness: answered [`CallReply::Done`] when the caller is a member in the called
    /// node's state, [`Refusal::NotMember`] otherwise. Only answered heartbeats count as
    /// contact, so a removed node cannot keep a quorum lease from its old peers' pongs.
    Heartbeat,
    /// The caller, a shard's new owner, has taken the shard over (sent to the leader, which
    /// commits the end of the hand-off).
    HandoffDone {
        /// The shard.
        shard: ShardId,
        /// The map version the hand-off began at.
        version: u64,
        /// Rooms received.
        rooms: u32,
        /// Milliseconds spent waiting for them.
        millis: u64,
        /// Whether every room arrived.
        complete: bool,
    },
    /// An operator command (sent to the leader).
    Admin(AdminOp),
    /// The owner of `room` copies one publication to the shard's replica before
    /// acknowledging it. Answered [`CallReply::Done`], or [`CallReply::NeedState`] when the
    /// replica does not hold the room at the previous offset in this epoch.
    Replicate {
        /// The room.
        room: String,
        /// Its epoch.
        epoch: String,
        /// The publication, as sequenced.
        publication: WirePublication,
    },
    /// The owner of a room gives the shard's replica the room's whole state (when the replica
    /// is new to it, or asked with [`CallReply::NeedState`]).
    ReplicaState {
        /// The state.
        state: Box<WireRoomState>,
    },
    /// The owner of `room` stopped it as idle: the replica drops its copy, if the copy is of
    /// this epoch (a newer room of the same name may have replaced it already). Answered
    /// [`CallReply::Done`].
    ReplicaForget {
        /// The room.
        room: String,
        /// The epoch of the room that stopped.
        epoch: String,
    },
}

/// An operator command on the shard map, carried out by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    /// Move one shard to a member, with a hand-off.
    MoveShard {
        /// The shard.
        shard: ShardId,
        /// The member that takes it.
        to: NodeId,
    },
    /// Double the shard count.
    Split,
    /// Move shards to their rendezvous owners among the members that are not draining.
    Rebalance,
    /// Move every shard off a member and mark it draining.
    Drain {
        /// The member.
        node: NodeId,
    },
}

/// What an operator command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReport {
    /// Shards moved, as `(shard, from, to)`.
    pub moves: Vec<(ShardId, NodeId, NodeId)>,
    /// The shard map version afterwards.
    pub map_version: u64,
    /// The shard count afterwards.
    pub shard_count: u32,
    /// Rooms handed over.
    pub rooms: u64,
    /// Milliseconds from committing the change to the last new owner holding its rooms.
    pub handoff_millis: u64,
    /// Hand-offs that ended without every room (the old owner went silent).
    pub incomplete: u32,
}

/// The server API's selection of a user's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTarget {
    /// User id (`""` for anonymous connections).
    pub user: String,
    /// Only this client id, when not empty.
    pub client: String,
    /// Only this session, when not empty.
    pub session: String,
    /// Client ids left alone.
    pub whitelist: Vec<String>,
}

/// A server API operation on a user's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireUserOp {
    /// Subscribe them to a channel.
    Subscribe {
        /// The channel.
        channel: String,
        /// Subscription data.
        data: Bytes,
        /// Channel info.
        chan_info: Bytes,
        /// Recover after this position.
        recover_since: Option<WirePosition>,
        /// Namespace overrides: presence, join_leave, force_push_join_leave,
        /// force_recovery, force_positioning.
        overrides: [Option<bool>; 5],
    },
    /// Unsubscribe them from a channel.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Disconnect them.
    Disconnect {
        /// Close code.
        code: u32,
        /// Close reason.
        reason: String,
    },
    /// Change their expiry: expired now, at a Unix second, or never.
    Refresh {
        /// Expire now.
        expired: bool,
        /// Expire at this Unix second.
        expire_at: Option<i64>,
    },
}

/// One node's counters for the server API's `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireNodeInfo {
    /// Random id of the node process.
    pub uid: String,
    /// Node name.
    pub name: String,
    /// Release.
    pub version: String,
    /// Open client connections.
    pub num_clients: u64,
    /// Distinct users.
    pub num_users: u64,
    /// Rooms with subscribers there.
    pub num_channels: u64,
    /// Subscriptions.
    pub num_subs: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
}

impl Call {
    /// The kind's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Join { .. } => "Join",
            Call::Remove { .. } => "Remove",
            Call::Publish { .. } => "Publish",
            Call::History { .. } => "History",
            Call::Presence { .. } => "Presence",
            Call::PresenceStats { .. } => "PresenceStats",
            Call::RemoveHistory { .. } => "RemoveHistory",
            Call::User { .. } => "User",
            Call::Channels => "Channels",
            Call::Info => "Info",
            Call::Heartbeat => "Heartbeat",
            Call::HandoffDone { .. } => "HandoffDone",
            Call::Admin(_) => "Admin",
            Call::Replicate { .. } => "Replicate",
            Call::ReplicaState { .. } => "ReplicaState",
            Call::ReplicaForget { .. } => "ReplicaForget",
        }
    }
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallReply {
    /// Joined; whether the node is a voter.
    Joined {
        /// Voter (otherwise learner).
        voter: bool,
    },
    /// Published at this stream position, at this time.
    Published {
        /// The offset assigned (0 with `skip_history`).
        offset: u64,
        /// The room's epoch.
        epoch: String,
        /// Publication time, Unix milliseconds.
        time: i64,
    },
    /// A history page.
    History {
        /// The publications.
        publications: Vec<WirePublication>,
        /// The room's current position.
        position: WirePosition,
    },
    /// Presence entries.
    Presence {
        /// One per subscribed connection.
        clients: Vec<WireClientInfo>,
    },
    /// Presence counts.
    PresenceStats {
        /// Connections.
        clients: u32,
        /// Distinct users.
        users: u32,
    },
    /// Done, nothing to report.
    Done,
    /// How many connections an operation reached.
    Count {
        /// The count.
        n: u64,
    },
    /// Channels with subscribers on the answering node.
    Channels {
        /// Channel → subscribers there.
        channels: BTreeMap<String, u32>,
    },
    /// The answering node's counters.
    Info(WireNodeInfo),
    /// What an operator command did.
    Admin(AdminReport),
    /// The replica lacks the room's state; send it ([`Call::ReplicaState`]).
    NeedState,
    /// Not done; why.
    Refused(Refusal),
}

/// Why a node did not carry out a call or subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// This node does not own the room's shard in its shard map, whose
    /// version is given: the sender updates its map and retries.
    NotOwner {
        /// The refusing node's shard map version.
        map_version: u64,
    },
    /// This node owns the shard but has lost contact with the cluster's
    /// quorum, so it may no longer own it: it does not sequence.
    NoQuorum,
    /// The caller is not a member of the cluster (it was removed).
    NotMember,
    /// This node is not the Raft leader; the leader it knows, if any.
    NotLeader {
        /// The leader's id and cluster address.
        leader: Option<(NodeId, SocketAddr)>,
    },
    /// A history position from another epoch.
    UnrecoverablePosition,
    /// A request the owner judged malformed (for example a reverse history
    /// query from offset 0, or an invalid room name).
    BadRequest {
        /// Why.
        reason: String,
    },
    /// Anything else, with a reason for the log.
    Failed {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotOwner { map_version } => {
                write!(f, "not the owner (shard map version {map_version})")
            }
            Refusal::NoQuorum => f.write_str("owner has lost contact with the quorum"),
            Refusal::NotMember => f.write_str("not a cluster member"),
            Refusal::NotLeader {
                leader: Some((id, addr)),
            } => {
                write!(f, "not the leader; the leader is node {id} at {addr}")
            }
            Refusal::NotLeader { leader: None } => f.write_str("not the leader; no leader known"),
            Refusal::UnrecoverablePosition => f.write_str("unrecoverable position"),
            Refusal::BadRequest { reason } => write!(f, "bad request: {reason}"),
            Refusal::Failed { reason } => f.write_str(reason),
        }
    }
}

/// A relay's message to a room's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRoom {
    /// A local client subscribes: count the relay node in, add presence,
    /// answer with [`FromRoom::Subscribed`] (or [`FromRoom::Refused`]).
    Subscribe {
        /// The sender's shard map version.
        map_version: u64,
        /// Pairs the answer with the request.
        req: u64,
        /// The subscribing client.
        client: String,
        /// Its presence entry, when the namespace keeps presence.
        presence: Option<WireClientInfo>,
        /// Recover from this position.
        recover_since: Option<WirePosition>,
        /// Most publications a recovery may return.
        recovery_limit: u32,
    },
    /// A local client left (or its connection closed).
    Unsubscribe {
        /// The client.
        client: String,
    },
    /// A client on node `origin` left; forwarded by the room's previous owner, which received
    /// it after handing the room over.
    ForwardedUnsubscribe {
        /// The client.
        client: String,
        /// The node holding its connection.
        origin: NodeId,
    },
}

/// A room owner's message to a relay node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromRoom {
    /// The answer to [`ToRoom::Subscribe`].
    Subscribed {
        /// The request answered.
        req: u64,
        /// The room's position at subscribe time.
        position: WirePosition,
        /// Whether a recovery was asked for and succeeded.
        recovered: bool,
        /// Recovered publications, oldest first.
        publications: Vec<WirePublication>,
    },
    /// A [`ToRoom::Subscribe`] was refused.
    Refused {
        /// The request answered.
        req: u64,
        /// Why.
        refusal: Refusal,
    },
    /// A publication, in offset order.
    Publication(WirePublication),
    /// A client joined the room.
    Join(WireClientInfo),
    /// A client left the room.
    Leave(WireClientInfo),
    /// The owner stopped serving the room (its shard moved or it shut
    /// down): relays drop their subscribers, who resubscribe.
    Closed,
    /// The room was handed over to node `to`, which continues the same
    /// offsets and epoch; this was the sender's last message about it. The
    /// relay follows `to` from here, taking the frames `to` sent meanwhile in
    /// order after this one.
    Moved {
        /// The new owner.
        to: NodeId,
    },
}

/// One room's state, shipped by its old owner to its new owner in a hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRoomState {
    /// The room.
    pub room: String,
    /// Its epoch.
    pub epoch: String,
    /// The last offset assigned.
    pub offset: u64,
    /// Retained publications, oldest first, contiguous up to `offset`.
    pub history: Vec<WirePublication>,
    /// Presence entries.
    pub presence: Vec<WireClientInfo>,
    /// Every subscriber: client id and the node holding its connection.
    pub subscribers: Vec<(String, NodeId)>,
}

/// A shard hand-off from the old owner to the new one, on the old owner's link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandoffMsg {
    /// One room of `shard`.
    Room {
        /// The shard (under the sender's map).
        shard: ShardId,
        /// The sender's shard map version.
        map_version: u64,
        /// The room.
        state: Box<WireRoomState>,
    },
    /// Every room of `shard` has been sent.
    Done {
        /// The shard.
        shard: ShardId,
        /// The sender's shard map version.
        map_version: u64,
        /// Rooms sent.
        rooms: u32,
    },
}
