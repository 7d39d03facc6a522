//! The node's cluster runtime: Raft membership and the shard map (through
//! `starling_cluster::ClusterNode`), links to every other member, and the data plane that lets a
//! client on any node use any room.
//!
//! - `peers` — one outbound link per member (dialled and re-dialled here), the readers of the
//!   links other members opened, liveness (pings) and the quorum lease.
//! - `dispatch` — what a frame from another node does here.
//! - `relay` — `RelayActor`: the local face of a room owned elsewhere.
//! - `control` — the loop that reacts to the shard map (ownership changes) and, on the leader,
//!   reassigns the shards of dead members and rebalances after joins.
//! - `handoff` — shard hand-offs: the map this node serves by, shipping a moved shard's rooms
//!   to their new owner, and taking them over on the new owner.
//! - `admin` — operator commands, carried out by the leader: move, split, rebalance, drain.
//! - `replica` — shard replicas: the copies a replica keeps, and the leader's choice of them.
//! - `wire` — conversions between client-protocol and wire types.
//!
//! Which link carries what: a node sends its calls, `ToRoom` and `FromRoom` frames on the link
//! it dialled to the peer (its *outbound* link), so everything one room sends one peer leaves
//! through one ordered stream. A call is answered on the link it arrived on, which is the
//! caller's outbound link; that is also how a node that is not a member yet (a joiner) gets its
//! answer.

mod admin;
mod control;
mod dispatch;
mod handoff;
mod peers;
mod relay;
mod replica;
pub(crate) use replica::ReplicaOf;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use serde::Serialize;
use starling_cluster::{
    Call, CallReply, ClusterCommand, ClusterEndpoint, ClusterNode, ClusterNodeConfig, ClusterState,
    ClusterTls, Frame, MemberRole, NodeInfo, PeerSender, Refusal,
};
use starling_placement::NodeId;
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::NodeError;
use crate::node::Node;

pub use admin::ADMIN_TIMEOUT;
pub(crate) use handoff::{HANDOFF_TIMEOUT, Ownership, presence_from_wire, room_state_to_wire};
pub(crate) use relay::{RelayActor, RelayArgs, RelayMsg, TakenOver};
pub(crate) use wire::{
    info_from_wire, info_to_wire, position_from_wire, position_to_wire, publication_from_wire,
    publication_to_wire, publications_to_wire,
};

/// Upper bound on one call to another node (publish, history, presence, join).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each outbound link is pinged; a pong (or any frame) marks the peer alive.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// The id of heartbeat calls: never used by other calls (their ids start at 1), so the answer
/// needs no pending entry.
const HEARTBEAT_ID: u64 = 0;
/// How long a joining node keeps trying its seeds before giving up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at a call whose target answers "not the owner" while the maps converge.
const ROUTE_ATTEMPTS: usize = 20;
/// How long a hand-off waits for the link to a new owner to come up.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// Everything a node needs to take part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's id, unique in the cluster and stable across restarts.
    pub node_id: NodeId,
    /// The UDP address the QUIC endpoint binds (port 0 for any).
    pub listen: SocketAddr,
    /// The cluster address other members dial; `None` means the bound address.
    pub advertise: Option<SocketAddr>,
    /// The client-plane address operators and clients reach this node at (`host:port`).
    pub http_addr: String,
    /// Cluster addresses of existing members to join through; empty initializes a new
    /// one-node cluster (or, after a restart, rejoins the one in the data directory).
    pub join: Vec<SocketAddr>,
    /// The cluster CA and this node's certificate.
    pub tls: ClusterTls,
    /// The node's data directory; Raft keeps its files in `raft/` inside.
    pub data_dir: PathBuf,
    /// Voters the cluster grows to; later members stay learners.
    pub max_voters: usize,
    /// Shards of the map a new cluster starts with (a power of two).
    pub shard_count: u32,
    /// A member silent this long is declared dead and its shards get new owners. A node that
    /// hears from less than a quorum of voters for half of this stops sequencing (the lease),
    /// so an isolated owner never sequences next to its replacement.
    pub failover_timeout: Duration,
    /// Once drained (`cluster drain`), the node closes its client connections with a
    /// reconnect advice spread evenly over this long, so they come back to the other nodes
    /// as a trickle rather than a storm.
    pub drain_reconnect_spread: Duration,
    /// Copies of each shard: 2 keeps a replica on another member (each publication is on it
    /// before it is acknowledged, and it takes over when the owner dies); 1 keeps none.
    pub replication_factor: usize,
}

/// A running cluster runtime; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
pub struct ClusterHandle {
    cluster: Arc<Cluster>,
    tasks: Vec<AbortHandle>,
}

impl ClusterHandle {
    /// The bound cluster (QUIC) address.
    pub fn local_addr(&self) -> SocketAddr {
        self.cluster.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cluster.node_id
    }

    /// Stops the data plane and Raft, and closes the endpoint. Peers see this node go silent
    /// and, after the failover timeout, give its shards to others.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.cluster.peers.clear();
        if let Some(raft) = self.cluster.raft.write().await.take()
            && let Err(error) = raft.shutdown().await
        {
            warn!(%error, "raft did not stop cleanly");
        }
        let endpoint = self
            .cluster
            .endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(endpoint) = endpoint {
            match Arc::try_unwrap(endpoint) {
                Ok(endpoint) => endpoint.shutdown().await,
                Err(shared) => shared.close(),
            }
        }
        info!(node_id = %self.cluster.node_id, "cluster runtime stopped");
    }
}

/// A shard move in [`ClusterStatus`]: in progress, or among the last finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffStatus {
    /// The shard.
    pub shard: u32,
    /// Its old owner.
    pub from: u64,
    /// Its new owner.
    pub to: u64,
    /// The map version the move was committed at.
    pub version: u64,
    /// Rooms the new owner received (finished moves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<u32>,
    /// Milliseconds the new owner waited for them (finished moves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    /// Whether every room arrived (finished moves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
}

/// One member in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The member's id.
    pub node_id: u64,
    /// `"voter"` or `"learner"`.
    pub role: &'static str,
    /// Whether the reporting node hears from it (always true for itself).
    pub alive: bool,
    /// Shards it owns in the current map.
    pub shards: u32,
    /// Its cluster (QUIC) address.
    pub cluster_addr: String,
    /// Its client-plane address.
    pub http_addr: String,
    /// Whether it is being drained (no rebalance gives it shards).
    pub draining: bool,
    /// Shards it keeps the replica of.
    pub replicas: u32,
}

/// The cluster as one node sees it: `starling cluster status` and `GET /api/cluster`.
/// Scripts rely on the keys `leader`, `members` (`node_id`, `role`, `alive`, `shards`) and
/// `shard_map_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node_id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The Raft term.
    pub term: u64,
    /// Every member, by id.
    pub members: Vec<MemberStatus>,
    /// The shard map's version (0 before the first map).
    pub shard_map_version: u64,
    /// Shards in the map.
    pub shard_count: u32,
    /// Whether every shard sits on its rendezvous owner among the members that are not
    /// draining (false: a rebalance has moves to make, or an operator placed shards by hand).
    pub balanced: bool,
    /// Shard moves in progress.
    pub handoffs: Vec<HandoffStatus>,
    /// The last finished shard moves, oldest first.
    pub recent_handoffs: Vec<HandoffStatus>,
    /// Shards without a replica (none assigned: replication factor 1, or no other live
    /// member to hold one).
    pub unreplicated_shards: u32,
    /// Rooms owned by the reporting node whose replica does not hold their state yet (it is
    /// down, or has not answered): a publish to them fails until it does.
    pub unreplicated_rooms: u64,
    /// Copies the reporting node holds as the replica of other nodes' rooms.
    pub replica_rooms: u64,
}

/// The shared state of the cluster runtime.
pub(crate) struct Cluster {
    node_id: NodeId,
    settings: ClusterSettings,
    /// Taken on shutdown, so the UDP port is free again once the runtime stops (a restart on
    /// the same address needs it).
    endpoint: std::sync::Mutex<Option<Arc<ClusterEndpoint>>>,
    /// The bound address, readable after shutdown.
    local_addr: SocketAddr,
    /// Taken on shutdown.
    raft: tokio::sync::RwLock<Option<ClusterNode>>,
    /// Leader id and term, readable without the mutex.
    raft_handle: starling_cluster::StarlingRaft,
    state: watch::Receiver<Arc<ClusterState>>,
    /// Senders of this node's outbound links, by peer.
    peers: DashMap<NodeId, PeerSender>,
    /// When each peer last answered.
    last_seen: DashMap<NodeId, Instant>,
    /// Calls in flight, by id.
    calls: DashMap<u64, oneshot::Sender<CallReply>>,
    next_id: AtomicU64,
    started: Instant,
    /// The shard map this node routes and sequences by, and the shards it is taking over.
    /// Switched by the control loop only; room creation holds the read side while it checks
    /// ownership and enters the room in the table, so the loop's write side sees every room
    /// it must hand off (see `handoff`).
    serving: std::sync::RwLock<handoff::Serving>,
    /// The serving map's version, for waiting on it.
    serving_version: watch::Sender<u64>,
    /// Hand-off frames, in the order they arrived, for the task that takes rooms over.
    handoffs: tokio::sync::mpsc::UnboundedSender<(NodeId, starling_cluster::HandoffMsg)>,
    /// Rooms this node handed to another node, and to which: unsubscribes that still reach
    /// it are passed on.
    handed_off: DashMap<Arc<str>, (NodeId, Instant)>,
    /// Operator commands running on this node (as leader): the control loop leaves the map
    /// to them meanwhile instead of rebalancing under them.
    admin_running: std::sync::atomic::AtomicUsize,
    /// Woken whenever an outbound link comes up.
    link_up: tokio::sync::Notify,
    /// Copies of the rooms of shards this node replicates.
    replica_rooms: DashMap<Arc<str>, replica::ReplicaRoom>,
    /// Rooms owned here whose replica does not hold their state (it was down, or did not
    /// answer): the control loop's sweep asks them to try again.
    unreplicated_rooms: DashSet<Arc<str>>,
    /// The node's metrics (the `starling_rooms_unreplicated` gauge follows the set above).
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// Where a room's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// This node owns the room (or there is no cluster).
    Local,
    /// `owner` does, in map `version`.
    Remote { owner: NodeId, version: u64 },
}

/// Starts the cluster runtime for `node`: binds the QUIC endpoint, starts Raft, initializes a
/// new cluster or joins one through `settings.join`, and starts the data plane.
pub async fn start_cluster(
    node: &Node,
    settings: ClusterSettings,
) -> Result<ClusterHandle, NodeError> {
    let cluster_error = |what: &str, error: &dyn std::fmt::Display| NodeError::Cluster {
        reason: format!("{what}: {error}"),
    };
    let (endpoint, incoming) =
        ClusterEndpoint::bind(settings.listen, settings.tls.clone(), settings.node_id)
            .map_err(|e| cluster_error("cannot start the cluster endpoint", &e))?;
    let advertise = settings.advertise.unwrap_or_else(|| endpoint.local_addr());
    let info = NodeInfo {
        cluster_addr: advertise,
        http_addr: settings.http_addr.clone(),
    };
    let mut raft_config =
        ClusterNodeConfig::new(settings.node_id, &settings.data_dir, info.clone());
    raft_config.max_voters = settings.max_voters;
    raft_config.shard_count = settings.shard_count;
    let raft = ClusterNode::start(raft_config, &endpoint)
        .await
        .map_err(|e| cluster_error("cannot start raft", &e))?;
    let state = raft.subscribe();
    let raft_handle = raft.raft().clone();
    let local_addr = endpoint.local_addr();
    let (handoffs, handoff_frames) = tokio::sync::mpsc::unbounded_channel();
    let cluster = Arc::new(Cluster {
        serving: std::sync::RwLock::new(handoff::Serving::default()),
        serving_version: watch::Sender::new(0),
        handoffs,
        handed_off: DashMap::new(),
        admin_running: std::sync::atomic::AtomicUsize::new(0),
        link_up: tokio::sync::Notify::new(),
        replica_rooms: DashMap::new(),
        unreplicated_rooms: DashSet::new(),
        metrics: node.metrics_handle(),
        node_id: settings.node_id,
        endpoint: std::sync::Mutex::new(Some(Arc::new(endpoint))),
        local_addr,
        raft: tokio::sync::RwLock::new(Some(raft)),
        raft_handle,
        state,
        peers: DashMap::new(),
        last_seen: DashMap::new(),
        calls: DashMap::new(),
        next_id: AtomicU64::new(1),
        started: Instant::now(),
        settings,
    });
    node.attach_cluster(Arc::clone(&cluster));
    let mut tasks = vec![peers::spawn_acceptor(node.clone(), incoming)];
    tasks.push(peers::spawn_link_manager(
        node.clone(),
        Arc::clone(&cluster),
    ));

    let initialized = {
        let guard = cluster.raft.read().await;
        match guard.as_ref() {
            Some(raft) => raft
                .is_initialized()
                .await
                .map_err(|e| cluster_error("cannot read raft state", &e))?,
            None => false,
        }
    };
    if initialized {
        // A restart: Raft has its log and rejoins its cluster by itself.
        info!(node_id = %cluster.node_id, addr = %advertise, "cluster node restarted");
    } else if cluster.settings.join.is_empty() {
        let guard = cluster.raft.read().await;
        if let Some(raft) = guard.as_ref() {
            raft.initialize()
                .await
                .map_err(|e| cluster_error("cannot initialize the cluster", &e))?;
        }
        info!(node_id = %cluster.node_id, addr = %advertise, "new one-node cluster up");
    } else {
        peers::join(&cluster, info).await?;
    }
    tasks.push(handoff::spawn_receiver(
        node.clone(),
        Arc::clone(&cluster),
        handoff_frames,
    ));
    tasks.push(control::spawn(node.clone(), Arc::clone(&cluster)));
    Ok(ClusterHandle { cluster, tasks })
}

impl Cluster {
    /// This node's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Whether `room`'s shard is one this node is taking over.
    pub(crate) fn owns_incoming(&self, room: &str) -> bool {
        self.read_serving().ownership(room, self.node_id) == Ownership::Incoming
    }

    /// Remembers that `room` went to `to`, so unsubscribes that still reach this node follow
    /// it.
    pub(crate) fn remember_handoff(&self, room: Arc<str>, to: NodeId) {
        self.handed_off.insert(room, (to, Instant::now()));
    }

    /// The Raft node, if this node runs it and leads; otherwise the refusal to answer with.
    pub(super) async fn as_leader(
        &self,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, ClusterNode>, CallReply> {
        let guard = self.raft.read().await;
        let raft = tokio::sync::RwLockReadGuard::try_map(guard, Option::as_ref)
            .map_err(|_| refused_failed("shutting down"))?;
        if raft.is_leader() {
            Ok(raft)
        } else {
            Err(CallReply::Refused(Refusal::NotLeader {
                leader: self.leader(),
            }))
        }
    }

    /// Proposes `command` on this node (the leader) and reports the outcome as a call answer.
    pub(crate) async fn propose(&self, command: ClusterCommand) -> CallReply {
        let raft = match self.as_leader().await {
            Ok(raft) => raft,
            Err(refusal) => return refusal,
        };
        match raft.propose(command).await {
            Ok(_) => CallReply::Done,
            Err(error) => refused_failed(&error.to_string()),
        }
    }

    /// The endpoint, unless the runtime stopped.
    pub(crate) fn endpoint(&self) -> Option<Arc<ClusterEndpoint>> {
        self.endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The applied cluster state.
    pub(crate) fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// The version of the shard map this node serves by (0 before the first map).
    pub(crate) fn map_version(&self) -> u64 {
        *self.serving_version.borrow()
    }

    /// Who owns `room` in the map this node serves by.
    pub(crate) fn route(&self, room: &str) -> Route {
        self.read_serving().route(room, self.node_id)
    }

    /// Whether this node owns `room` in the map it serves by (a shard it is still taking over
    /// counts: its requests wait for the hand-off).
    pub(crate) fn owns(&self, room: &str) -> bool {
        self.route(room) == Route::Local
    }

    /// The serving view, read-locked. Held only for lookups, never across an `.await`.
    pub(crate) fn read_serving(&self) -> std::sync::RwLockReadGuard<'_, handoff::Serving> {
        self.serving
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (bounded) until the serving map has at least `version`.
    pub(crate) async fn wait_for_map(&self, version: u64) {
        let mut served = self.serving_version.subscribe();
        let reached = served.wait_for(|&v| v >= version);
        let _ = tokio::time::timeout(Duration::from_secs(2), reached).await;
    }

    /// Queues `frame` on the outbound link to `peer`, waiting while the queue is full: for
    /// frames that must not be dropped (hand-offs). False when there is no link.
    pub(crate) async fn send_reliably(&self, peer: NodeId, frame: Frame) -> bool {
        // A member that just joined may not have its link up yet: wait (bounded) for it.
        let deadline = Instant::now() + LINK_WAIT;
        loop {
            let link_up = self.link_up.notified();
            let sender = self.peers.get(&peer).map(|s| s.clone());
            match sender {
                Some(sender) => return sender.send(frame).await.is_ok(),
                None => {
                    if tokio::time::timeout_at(deadline, link_up).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// The other members that answer now.
    pub(crate) fn live_peers(&self) -> Vec<NodeId> {
        self.state()
            .members
            .keys()
            .copied()
            .filter(|&id| id != self.node_id && self.is_alive(id))
            .collect()
    }

    /// Whether `peer` answered within the failover timeout (this node always counts).
    pub(crate) fn is_alive(&self, peer: NodeId) -> bool {
        if peer == self.node_id {
            return true;
        }
        self.seen_within(peer, self.settings.failover_timeout)
    }

    /// Whether `peer` answered a heartbeat within `window`. Before its first answer the
    /// node's own start counts, so a freshly started leader does not declare everyone dead.
    fn seen_within(&self, peer: NodeId, window: Duration) -> bool {
        let last = self
            .last_seen
            .get(&peer)
            .map_or(self.started, |seen| *seen.value());
        last.elapsed() < window
    }

    /// Whether `peer` really answered a heartbeat within `window` (no start-up grace).
    pub(crate) fn answered_within(&self, peer: NodeId, window: Duration) -> bool {
        self.last_seen
            .get(&peer)
            .is_some_and(|seen| seen.value().elapsed() < window)
    }

    /// The lease: whether a quorum of voters (itself included when it votes) answered this
    /// node's heartbeats, as a member, within half the failover timeout. An owner without it
    /// does not sequence: the rest of the cluster may already have given its shards to another
    /// node, or removed this one. A restarted node starts without it.
    pub(crate) fn has_quorum(&self) -> bool {
        let state = self.state.borrow();
        let voters = state.voter_ids();
        if voters.is_empty() {
            return true;
        }
        let lease = self.settings.failover_timeout / 2;
        let heard = voters
            .iter()
            .filter(|&&v| v == self.node_id || self.answered_within(v, lease))
            .count();
        heard * 2 > voters.len()
    }

    /// Queues `frame` on the outbound link to `peer`. False when there is no link or its
    /// queue is full (the frame is dropped; relays detect the gap by offset).
    pub(crate) fn send(&self, peer: NodeId, frame: Frame) -> bool {
        match self.peers.get(&peer) {
            Some(sender) => sender.try_send(frame).is_ok(),
            None => false,
        }
    }

    /// Calls `peer` and waits for its answer.
    pub(crate) async fn call(&self, peer: NodeId, call: Call) -> Result<CallReply, NodeError> {
        self.call_within(peer, call, CALL_TIMEOUT).await
    }

    /// Calls `peer` and waits up to `timeout` for its answer.
    pub(crate) async fn call_within(
        &self,
        peer: NodeId,
        call: Call,
        timeout: Duration,
    ) -> Result<CallReply, NodeError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.calls.insert(id, tx);
        let kind = call.kind();
        if !self.send(peer, Frame::Call { id, call }) {
            self.calls.remove(&id);
            return Err(NodeError::PeerUnavailable { node: peer.0 });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.calls.remove(&id);
                warn!(%peer, call = kind, "cluster call unanswered");
                Err(NodeError::PeerUnavailable { node: peer.0 })
            }
        }
    }

    /// Completes call `id` with `reply`.
    pub(crate) fn answer(&self, id: u64, reply: CallReply) {
        if let Some((_, tx)) = self.calls.remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// The status report of `starling cluster status`.
    pub(crate) fn status(&self) -> ClusterStatus {
        let metrics = self.raft_handle.metrics().borrow().clone();
        let state = self.state();
        let counts = state
            .shard_map
            .as_ref()
            .map(|map| map.counts_per_node())
            .unwrap_or_default();
        let members = state
            .members
            .iter()
            .map(|(id, member)| MemberStatus {
                node_id: id.0,
                role: if member.voter { "voter" } else { "learner" },
                alive: self.is_alive(*id),
                shards: counts.get(id).copied().unwrap_or(0),
                cluster_addr: member.addr.to_string(),
                http_addr: member.http_addr.clone(),
                draining: state.draining.contains(id),
                replicas: u32::try_from(state.replicas.values().filter(|r| *r == id).count())
                    .unwrap_or(u32::MAX),
            })
            .collect();
        let handoffs = state
            .handoffs
            .iter()
            .map(|(shard, h)| HandoffStatus {
                shard: shard.0,
                from: h.from.0,
                to: h.to.0,
                version: h.version,
                rooms: None,
                millis: None,
                complete: None,
            })
            .collect();
        let recent_handoffs = state
            .recent_handoffs
            .iter()
            .map(|r| HandoffStatus {
                shard: r.shard.0,
                from: r.handoff.from.0,
                to: r.handoff.to.0,
                version: r.handoff.version,
                rooms: Some(r.rooms),
                millis: Some(r.millis),
                complete: Some(r.complete),
            })
            .collect();
        ClusterStatus {
            node_id: self.node_id.0,
            leader: metrics.current_leader,
            term: metrics.current_term,
            members,
            shard_map_version: state.shard_map.as_ref().map_or(0, |m| m.version()),
            shard_count: state.shard_map.as_ref().map_or(0, |m| m.shard_count()),
            balanced: state.shard_map.as_ref().is_some_and(|map| {
                let serving: Vec<NodeId> = state
                    .members
                    .keys()
                    .copied()
                    .filter(|id| !state.draining.contains(id))
                    .collect();
                starling_placement::plan_rebalance(map, &serving, &BTreeMap::new())
                    .is_ok_and(|plan| plan.is_empty())
            }),
            handoffs,
            recent_handoffs,
            unreplicated_shards: state.shard_map.as_ref().map_or(0, |map| {
                let replicated = u32::try_from(state.replicas.len()).unwrap_or(u32::MAX);
                map.shard_count().saturating_sub(replicated)
            }),
            unreplicated_rooms: self.unreplicated_rooms.len() as u64,
            replica_rooms: self.replica_rooms.len() as u64,
        }
    }

    /// The leader's id and cluster address, as this node knows them.
    fn leader(&self) -> Option<(NodeId, SocketAddr)> {
        let leader = NodeId(self.raft_handle.metrics().borrow().current_leader?);
        let addr = self.state().members.get(&leader)?.addr;
        Some((leader, addr))
    }

    /// On the leader: adds `node_id`. Elsewhere: names the leader.
    async fn handle_join(&self, node_id: NodeId, info: NodeInfo) -> CallReply {
        let raft = match self.as_leader().await {
            Ok(raft) => raft,
            Err(refusal) => return refusal,
        };
        match raft.add_member(node_id, info).await {
            Ok(role) => {
                info!(%node_id, ?role, "member joined");
                CallReply::Joined {
                    voter: role == MemberRole::Voter,
                }
            }
            Err(error) => refused_failed(&error.to_string()),
        }
    }

    /// On the leader: removes `node_id`, then moves its shards to live members.
    async fn handle_remove(&self, node_id: NodeId) -> CallReply {
        let raft = match self.as_leader().await {
            Ok(raft) => raft,
            Err(refusal) => return refusal,
        };
        if node_id == self.node_id {
            return CallReply::Refused(Refusal::BadRequest {
                reason: "the leader cannot remove itself; remove it through another member \
                         after a new leader is elected, or stop it first"
                    .into(),
            });
        }
        // Leave the membership first: while the node is a member, a rebalance may hand its
        // shards straight back to it.
        if let Err(error) = raft.remove(node_id).await {
            return refused_failed(&error.to_string());
        }
        let mut live = self.live_peers();
        live.push(self.node_id);
        live.retain(|&id| id != node_id);
        match control::drain(&raft, node_id, &live).await {
            Ok(()) => CallReply::Done,
            Err(error) => refused_failed(&error.to_string()),
        }
    }
}

fn refused_failed(reason: &str) -> CallReply {
    CallReply::Refused(Refusal::Failed {
        reason: reason.to_string(),
    })
}

impl Node {
    /// The cluster as this node sees it; `None` when the node runs without a cluster runtime
    /// (embedded in tests).
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.cluster().map(|cluster| cluster.status())
    }

    /// The node id that owns `room` in this node's shard map; `None` without a cluster or
    /// before the first map.
    pub fn room_owner(&self, room: &str) -> Option<u64> {
        let cluster = self.cluster()?;
        let state = cluster.state();
        state
            .shard_map
            .as_ref()
            .map(|map| map.owner_of_room(room).0)
    }

    /// The node id that keeps the replica of `room`'s shard in this node's state; `None`
    /// without a cluster, a map, or a replica.
    pub fn room_replica(&self, room: &str) -> Option<u64> {
        let cluster = self.cluster()?;
        let state = cluster.state();
        let shard = state.shard_map.as_ref()?.shard_of_room(room);
        state.replicas.get(&shard).map(|node| node.0)
    }

    /// Removes member `node_id` from the cluster, asking the leader wherever it is: a live
    /// member is drained first (its shards handed to the others with nothing lost), then it
    /// leaves the membership and anything left of its shards moves without a hand-off.
    pub async fn cluster_remove(&self, node_id: u64) -> Result<(), NodeError> {
        let cluster = self.cluster().ok_or(NodeError::Cluster {
            reason: "this node runs without a cluster".into(),
        })?;
        let target = NodeId(node_id);
        if !cluster.state().members.contains_key(&target) {
            return Err(NodeError::Cluster {
                reason: format!("node {node_id} is not a member"),
            });
        }
        // A live member is drained first, with hand-offs, so its rooms keep their history and
        // subscribers; a dead one's shards can only restart elsewhere.
        if cluster.is_alive(target)
            && let Err(error) = self
                .admin(starling_cluster::AdminOp::Drain { node: target })
                .await
        {
            warn!(%target, %error, "drain before removal failed; removing without it");
        }
        for _ in 0..ROUTE_ATTEMPTS {
            let reply = match cluster.leader() {
                Some((leader, _)) if leader == cluster.node_id => {
                    cluster.handle_remove(target).await
                }
                Some((leader, _)) => {
                    cluster
                        .call(leader, Call::Remove { node_id: target })
                        .await?
                }
                None => CallReply::Refused(Refusal::NotLeader { leader: None }),
            };
            match reply {
                CallReply::Done => return Ok(()),
                CallReply::Refused(Refusal::NotLeader { .. }) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return Err(unexpected(other)),
            }
        }
        Err(NodeError::Cluster {
            reason: "no leader answered".into(),
        })
    }

    /// Calls the owner of `room` when that is another node, following ownership changes.
    /// `Ok(None)` means this node owns the room and the caller serves it locally (after
    /// [`Node::check_lease`]).
    pub(crate) async fn call_owner(
        &self,
        room: &str,
        make: impl Fn(u64) -> Call,
    ) -> Result<Option<CallReply>, NodeError> {
        let Some(cluster) = self.cluster() else {
            return Ok(None);
        };
        for _ in 0..ROUTE_ATTEMPTS {
            match cluster.route(room) {
                Route::Local => return Ok(None),
                Route::Remote { version: 0, .. } => cluster.wait_for_map(1).await,
                Route::Remote { owner, version } => {
                    self.metrics().forwarded_call();
                    match cluster.call(owner, make(version)).await? {
                        CallReply::Refused(Refusal::NotOwner { map_version }) => {
                            self.await_map_change(cluster, version, map_version).await;
                        }
                        reply => return Ok(Some(reply)),
                    }
                }
            }
        }
        Err(NodeError::Cluster {
            reason: format!("no owner found for room {room}"),
        })
    }

    /// Runs a room operation where the room's owner is: `remote` reads the owner's answer to
    /// the call `make` builds (given the map version), `local` runs it here when this node
    /// owns the room. A local attempt refused because the shard moved meanwhile is routed
    /// again.
    pub(crate) async fn at_owner<T, L, Fut>(
        &self,
        room: &str,
        make: impl Fn(u64) -> Call,
        mut local: L,
        remote: impl FnOnce(CallReply) -> Result<T, NodeError>,
    ) -> Result<T, NodeError>
    where
        L: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        for _ in 0..ROUTE_ATTEMPTS {
            match self.call_owner(room, &make).await? {
                Some(reply) => return remote(reply),
                None => match local().await {
                    Err(NodeError::StaleRoute { map_version }) => {
                        if let Some(cluster) = self.cluster() {
                            self.await_map_change(cluster, cluster.map_version(), map_version)
                                .await;
                        }
                    }
                    other => return other,
                },
            }
        }
        Err(NodeError::Cluster {
            reason: format!("no owner found for room {room}"),
        })
    }

    /// After a "not the owner" answer: wait until this node's map is past both versions, or a
    /// short while when the other node is the one behind.
    pub(crate) async fn await_map_change(&self, cluster: &Cluster, mine: u64, theirs: u64) {
        if theirs > mine {
            cluster.wait_for_map(theirs).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Refuses to sequence while this node does not hold the quorum lease.
    pub(crate) fn check_lease(&self) -> Result<(), NodeError> {
        match self.cluster() {
            Some(cluster) if !cluster.has_quorum() => Err(NodeError::NoQuorum),
            _ => Ok(()),
        }
    }
}

/// The answer of a call that should have been another variant.
pub(crate) fn unexpected(reply: CallReply) -> NodeError {
    match reply {
        CallReply::Refused(Refusal::UnrecoverablePosition) => {
            NodeError::Room(starling_room::RoomError::UnrecoverablePosition {
                requested_epoch: String::new(),
                current_epoch: String::new(),
            })
        }
        CallReply::Refused(Refusal::NoQuorum) => NodeError::NoQuorum,
        CallReply::Refused(Refusal::BadRequest { reason }) => NodeError::Remote {
            bad_request: true,
            reason,
        },
        CallReply::Refused(refusal) => NodeError::Remote {
            bad_request: false,
            reason: refusal.to_string(),
        },
        other => NodeError::Remote {
            bad_request: false,
            reason: format!("unexpected answer {other:?}"),
        },
    }
}

/// Shards per node of a state, for logs.
pub(crate) fn shard_counts(state: &ClusterState) -> BTreeMap<NodeId, u32> {
    state
        .shard_map
        .as_ref()
        .map(|map| map.counts_per_node())
        .unwrap_or_default()
}
