//! [`Node`]: the node runtime's shared handle — configuration, token verifiers, the room table,
//! the connection table and metrics.
//!
//! Lookup tables are dashmaps; no guard is ever held across an `.await`. A room is created on
//! first use with `spawn_instant` inside the map's entry, so two connections racing for a new
//! room always meet the same actor. A third table indexes connections by user, for the server
//! API's per-user operations (`server_api`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use rand::RngCore;
use starling_auth::{TokenKeys, TokenVerifier};
use starling_config::{ChannelError, ChannelRules, Config, ResolvedChannel, TokenConfig};
use starling_protocol::{
    ClientInfo, DisconnectCode, Encoding, Publication, SubscribeResult, UnsubscribeCode,
};
use starling_room::{HistoryPage, HistoryQuery, PresenceStats};
use tracing::{debug, info, warn};

use starling_cluster::{Call, CallReply, FromRoom};
use starling_placement::NodeId;

use crate::cluster::{
    Cluster, Ownership, RelayActor, RelayArgs, RelayMsg, Route, info_to_wire, position_from_wire,
    position_to_wire, publication_from_wire, unexpected,
};
use crate::connection::{ConnectionActor, ConnectionArgs, ConnectionMsg};
use crate::error::NodeError;
use crate::heartbeat::Heartbeats;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::rate::TokenBucket;
use crate::room_actor::{Published, RoomActor, RoomArgs, RoomMsg, SubscribeParams};
use crate::transport::TransportMode;

/// How many times a room call is retried when the room stopped between lookup and delivery.
const ROOM_CALL_ATTEMPTS: usize = 4;
/// Upper bound on one call into a room actor. Rooms answer in microseconds; this only turns a
/// wedged room into an error instead of a hung connection.
const ROOM_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on a subscribe through a relay: the owner's answer plus a margin.
const RELAY_CALL_TIMEOUT: Duration = Duration::from_secs(7);
/// Attempts at routing one request while the shard map changes under it.
const ROUTE_ATTEMPTS: usize = 20;

/// A running Starling node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    channels: ChannelRules,
    name: String,
    connect_tokens: TokenVerifier,
    subscription_tokens: TokenVerifier,
    rooms: DashMap<Arc<str>, ActorRef<RoomMsg>>,
    connections: DashMap<Arc<str>, ActorRef<ConnectionMsg>>,
    /// Emulation session id → connection. Separate from the client id, which other clients see
    /// in presence: the session id is what authorizes an emulation request.
    sessions: DashMap<Arc<str>, ActorRef<ConnectionMsg>>,
    /// User id → client ids of its authenticated connections (anonymous ones under `""`).
    users: DashMap<Arc<str>, ClientSet>,
    /// Random id of this node process, reported by the server API's `info`.
    uid: String,
    started: tokio::time::Instant,
    metrics: Arc<Metrics>,
    /// Open connections per client IP, for `client.connection_limit_per_ip`.
    per_ip: DashMap<IpAddr, usize>,
    /// Admission of new connections, for `client.connection_rate_limit`.
    connection_rate: Option<Mutex<TokenBucket>>,
    /// The cluster runtime, once started; absent for a node embedded without one.
    cluster: OnceLock<Arc<Cluster>>,
    /// Relays: rooms owned by another node that have subscribers here.
    relays: DashMap<Arc<str>, RelayEntry>,
    /// Every connection's next ping or pong deadline.
    heartbeats: Heartbeats,
}

/// The connections of one user: almost always one, held inline — a set for one client id
/// costs an allocation of four buckets, and every idle connection of a distinct user held one.
#[derive(Debug, Default)]
enum ClientSet {
    #[default]
    Empty,
    One(Arc<str>),
    Many(HashSet<Arc<str>>),
}

impl ClientSet {
    fn insert(&mut self, client_id: Arc<str>) {
        match self {
            ClientSet::Empty => *self = ClientSet::One(client_id),
            ClientSet::One(only) if *only == client_id => {}
            ClientSet::One(only) => {
                let set = HashSet::from([Arc::clone(only), client_id]);
                *self = ClientSet::Many(set);
            }
            ClientSet::Many(set) => {
                set.insert(client_id);
            }
        }
    }

    fn remove(&mut self, client_id: &str) {
        match self {
            ClientSet::One(only) if &**only == client_id => *self = ClientSet::Empty,
            ClientSet::Many(set) => {
                set.remove(client_id);
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            ClientSet::Empty => true,
            ClientSet::One(_) => false,
            ClientSet::Many(set) => set.is_empty(),
        }
    }

    fn to_vec(&self) -> Vec<Arc<str>> {
        match self {
            ClientSet::Empty => Vec::new(),
            ClientSet::One(only) => vec![Arc::clone(only)],
            ClientSet::Many(set) => set.iter().cloned().collect(),
        }
    }
}

/// A relay and the owner it follows.
#[derive(Clone)]
struct RelayEntry {
    owner: NodeId,
    actor: ActorRef<RelayMsg>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("rooms", &self.inner.rooms.len())
            .field("connections", &self.inner.connections.len())
            .finish()
    }
}

/// What a transport gets back when it opens a connection: the actor to feed with inbound
/// frames and the queue to write from.
#[derive(Debug)]
pub struct ConnectionHandle {
    /// Client id (a UUID), as reported in the connect reply.
    pub client_id: Arc<str>,
    /// Encoded frames to write, in order; see [`Outbound::next_batch`].
    pub outbound: Outbound,
    actor: ActorRef<ConnectionMsg>,
    join: JoinHandle<()>,
}

impl ConnectionHandle {
    /// Hands one inbound transport message (one WebSocket frame) to the connection.
    pub fn inbound(&self, frame: Bytes) {
        // Fails only when the actor already stopped, in which case the outbound queue is
        // closing and the transport is about to end anyway.
        let _ = self.actor.send_message(ConnectionMsg::Inbound(frame));
    }

    /// Tells the connection its transport is gone, and waits until it has cleaned up
    /// (subscriptions, presence, the node's tables).
    pub async fn closed(self) {
        let _ = self.actor.send_message(ConnectionMsg::TransportClosed);
        let _ = self.join.await;
    }
}

impl Node {
    /// Builds a node from a validated configuration.
    pub fn new(config: Config) -> Result<Node, NodeError> {
        let connect_tokens = verifier("client.token", &config.client.token)?;
        let subscription_tokens = if config.client.subscription_token.enabled {
            verifier(
                "client.subscription_token",
                config
                    .client
                    .subscription_token
                    .effective(&config.client.token),
            )?
        } else {
            connect_tokens.clone()
        };
        let name = if config.node.name.is_empty() {
            format!("starling-{}", config.node.http_addr)
        } else {
            config.node.name.clone()
        };
        let connection_rate = (config.client.connection_rate_limit > 0).then(|| {
            let rate = config.client.connection_rate_limit;
            Mutex::new(TokenBucket::new(rate, rate, tokio::time::Instant::now()))
        });
        Ok(Node {
            inner: Arc::new(Inner {
                channels: ChannelRules::new(&config),
                config: Arc::new(config),
                name,
                connect_tokens,
                subscription_tokens,
                rooms: DashMap::new(),
                connections: DashMap::new(),
                sessions: DashMap::new(),
                users: DashMap::new(),
                uid: new_client_id(),
                started: tokio::time::Instant::now(),
                metrics: Arc::new(Metrics::default()),
                per_ip: DashMap::new(),
                connection_rate,
                cluster: OnceLock::new(),
                relays: DashMap::new(),
                heartbeats: Heartbeats::new(),
            }),
        })
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The node's name, reported to clients in the connect reply.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters for `/metrics` and tests.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The heartbeat timer of the node's connections.
    pub(crate) fn heartbeats(&self) -> &Heartbeats {
        &self.inner.heartbeats
    }

    /// The node's metrics, shared (for the cluster runtime's gauges).
    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// A random id of this node process (a UUID), as Centrifugo's `info` reports it.
    pub fn uid(&self) -> &str {
        &self.inner.uid
    }

    /// Time since the node was built.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Number of distinct users with at least one connection (anonymous counts as one user).
    pub fn user_count(&self) -> usize {
        self.inner.users.len()
    }

    /// Resolves a channel name to its namespace options (indexed lookup).
    pub fn resolve_channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> Result<ResolvedChannel<'a>, ChannelError> {
        self.inner.channels.resolve(channel)
    }

    /// Whether `channel` carries the private prefix, which always needs a subscription token.
    pub(crate) fn is_private_channel(&self, channel: &str) -> bool {
        self.inner.channels.is_private(channel)
    }

    pub(crate) fn connect_tokens(&self) -> &TokenVerifier {
        &self.inner.connect_tokens
    }

    pub(crate) fn subscription_tokens(&self) -> &TokenVerifier {
        &self.inner.subscription_tokens
    }

    /// Number of live room actors on this node.
    pub fn room_count(&self) -> usize {
        self.inner.rooms.len()
    }

    /// Number of open client connections on this node.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.len()
    }

    /// Opens a client connection speaking `encoding` over a full-duplex transport (WebSocket).
    /// The transport feeds inbound frames through the returned handle and writes what
    /// [`Outbound::next_batch`] yields.
    pub async fn open_connection(
        &self,
        encoding: Encoding,
        remote: Option<SocketAddr>,
    ) -> Result<ConnectionHandle, NodeError> {
        self.open_connection_with(encoding, remote, TransportMode::Bidirectional)
            .await
    }

    /// [`Node::open_connection`] for any kind of transport: `mode` says how the client's
    /// commands reach the connection after the connect.
    pub async fn open_connection_with(
        &self,
        encoding: Encoding,
        remote: Option<SocketAddr>,
        mode: TransportMode,
    ) -> Result<ConnectionHandle, NodeError> {
        if let Err(refused) = self.admit(remote.map(|addr| addr.ip())).await {
            self.inner
                .metrics
                .error_code(u32::from(refused.refusal().code));
            return Err(refused);
        }
        let client_id: Arc<str> = new_client_id().into();
        let outbound = Outbound::with_metrics(
            self.inner.config.client.queue_max_size,
            Arc::clone(&self.inner.metrics),
        );
        let args = ConnectionArgs {
            node: self.clone(),
            client_id: client_id.clone(),
            encoding,
            outbound: outbound.clone(),
            remote,
            mode,
        };
        let (actor, join) = match ractor::Actor::spawn(None, ConnectionActor, args).await {
            Ok(spawned) => spawned,
            Err(error) => {
                self.release_ip(remote.map(|addr| addr.ip()));
                return Err(NodeError::Spawn {
                    what: "connection",
                    reason: error.to_string(),
                });
            }
        };
        self.inner
            .connections
            .insert(client_id.clone(), actor.clone());
        self.inner.metrics.connection_opened();
        Ok(ConnectionHandle {
            client_id,
            outbound,
            actor,
            join,
        })
    }

    /// Hands one emulation request's commands to the connection holding `session`, in the
    /// order requests arrive. Only sessions opened on this node are found here; a request for
    /// another node's session is that node's to take (cross-node routing comes with the
    /// cluster).
    pub fn emulate(&self, session: &str, frame: Bytes) -> Result<(), NodeError> {
        let actor = self
            .inner
            .sessions
            .get(session)
            .map(|actor| actor.clone())
            .ok_or(NodeError::UnknownSession)?;
        actor
            .send_message(ConnectionMsg::Inbound(frame))
            .map_err(|_| NodeError::UnknownSession)
    }

    /// Makes `session` route emulation requests to `actor` (after its connect succeeded).
    pub(crate) fn register_session(&self, session: Arc<str>, actor: ActorRef<ConnectionMsg>) {
        self.inner.sessions.insert(session, actor);
    }

    pub(crate) fn forget_session(&self, session: &str) {
        self.inner.sessions.remove(session);
    }

    pub(crate) fn forget_connection(&self, client_id: &str, remote: Option<SocketAddr>) {
        if self.inner.connections.remove(client_id).is_some() {
            self.inner.metrics.connection_closed();
            self.release_ip(remote.map(|addr| addr.ip()));
        }
    }

    /// Admission control for a new connection from `ip`: the connection rate (with its
    /// queue), the node-wide limit and the per-IP limit. On success the connection counts against its IP until
    /// [`Node::release_ip`].
    async fn admit(&self, ip: Option<IpAddr>) -> Result<(), NodeError> {
        let client = &self.inner.config.client;
        if let Some(bucket) = &self.inner.connection_rate {
            // Past the rate, a connection queues for a later token (promise 9: a reconnection
            // storm is spread, not refused) unless the queue is longer than the timeout.
            let wait = bucket
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .reserve(
                    tokio::time::Instant::now(),
                    client.connection_queue_timeout.0,
                );
            match wait {
                Some(wait) if wait.is_zero() => {}
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    return Err(NodeError::ConnectionRate {
                        limit: client.connection_rate_limit,
                    });
                }
            }
        }
        let limit = client.connection_limit;
        if limit > 0 && self.inner.connections.len() >= limit {
            return Err(NodeError::ConnectionLimit { limit });
        }
        let per_ip = client.connection_limit_per_ip;
        if let Some(ip) = ip.filter(|_| per_ip > 0) {
            // The entry guard makes check-and-increment atomic per IP; nothing awaits under it.
            let mut count = self.inner.per_ip.entry(ip).or_insert(0);
            if *count >= per_ip {
                return Err(NodeError::ConnectionLimitPerIp { limit: per_ip, ip });
            }
            *count += 1;
        }
        Ok(())
    }

    /// Gives back the per-IP slot taken by [`Node::admit`].
    fn release_ip(&self, ip: Option<IpAddr>) {
        if self.inner.config.client.connection_limit_per_ip == 0 {
            return;
        }
        if let Some(ip) = ip {
            self.inner.per_ip.remove_if_mut(&ip, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            });
        }
    }

    /// Records that `client_id` is a connection of `user` (after its `connect` succeeded).
    pub(crate) fn index_user(&self, user: &str, client_id: &Arc<str>) {
        self.inner
            .users
            .entry(user.into())
            .or_default()
            .insert(client_id.clone());
    }

    /// Undoes [`Node::index_user`]; the user's entry goes with its last connection.
    pub(crate) fn unindex_user(&self, user: &str, client_id: &str) {
        if let Some(mut clients) = self.inner.users.get_mut(user) {
            clients.remove(client_id);
        }
        // The guard above is gone; remove_if re-checks emptiness under the shard lock, so a
        // connection indexed meanwhile keeps the entry.
        self.inner
            .users
            .remove_if(user, |_, clients| clients.is_empty());
    }

    /// The connections of `user`: client id and actor, in no particular order.
    pub(crate) fn user_connections(&self, user: &str) -> Vec<(Arc<str>, ActorRef<ConnectionMsg>)> {
        let ids: Vec<Arc<str>> = match self.inner.users.get(user) {
            Some(clients) => clients.to_vec(),
            None => return Vec::new(),
        };
        ids.into_iter()
            .filter_map(|id| {
                let actor = self.inner.connections.get(&id).map(|a| a.clone())?;
                Some((id, actor))
            })
            .collect()
    }

    /// The room actor registered under `name`, without starting one.
    pub(crate) fn existing_room(&self, name: &str) -> Option<ActorRef<RoomMsg>> {
        self.inner.rooms.get(name).map(|room| room.clone())
    }

    /// Every live room: name and actor. A copy, so no table guard outlives the call.
    pub(crate) fn room_refs(&self) -> Vec<(Arc<str>, ActorRef<RoomMsg>)> {
        self.inner
            .rooms
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect()
    }

    /// The actor of room `name`, started on first use — only on the room's owner: another
    /// node's room is refused with `StaleRoute`, and a room of a shard this node is still
    /// taking over starts waiting for its state (see `cluster::handoff`).
    fn room(&self, name: &str) -> Result<ActorRef<RoomMsg>, NodeError> {
        match self.existing_room(name) {
            Some(room) => Ok(room),
            None => self.start_room(name, false),
        }
    }

    /// Makes sure room `name` runs here (its owner), starting it if needed.
    pub(crate) fn ensure_room(&self, name: &str) -> Result<(), NodeError> {
        self.room(name).map(drop)
    }

    /// The room actor that takes a handed-off room's state: the one running, or a new one
    /// waiting for the state, when this node owns the room.
    pub(crate) fn room_for_handoff(&self, name: &str) -> Result<ActorRef<RoomMsg>, NodeError> {
        match self.existing_room(name) {
            Some(room) => Ok(room),
            None => self.start_room(name, true),
        }
    }

    /// Starts room `name` (unless another caller just did), waiting for a hand-off's state
    /// when `for_handoff` or when its shard is still being taken over.
    fn start_room(&self, name: &str, for_handoff: bool) -> Result<ActorRef<RoomMsg>, NodeError> {
        let options = self
            .resolve_channel(name)
            .map_err(NodeError::Channel)?
            .options
            .clone();
        // Ownership is checked and the room entered in the table under the serving map's read
        // lock, so a map switch (the write side) either comes first and is obeyed here, or
        // comes after and finds this room to hand off.
        let serving = self.cluster().map(|cluster| cluster.read_serving());
        let ownership = serving
            .as_ref()
            .zip(self.cluster())
            .map(|(serving, cluster)| serving.ownership(name, cluster.node_id()));
        let awaiting = match ownership {
            None | Some(Ownership::Owned) => for_handoff,
            Some(Ownership::Incoming) => true,
            Some(Ownership::NotOwner { version }) => {
                return Err(NodeError::StaleRoute {
                    map_version: version,
                });
            }
        };
        if awaiting {
            debug!(room = %name, for_handoff, "room starts waiting for a hand-off's state");
        }
        let key: Arc<str> = name.into();
        match self.inner.rooms.entry(key.clone()) {
            Entry::Occupied(entry) => Ok(entry.get().clone()),
            Entry::Vacant(entry) => {
                // A room this node replicated goes on from the copy (the owner died and the
                // shard came here); a hand-off's state, when one comes, replaces it.
                let resume = if awaiting {
                    None
                } else {
                    self.cluster()
                        .and_then(|cluster| cluster.take_replica(name))
                };
                let args = RoomArgs {
                    name: key,
                    options,
                    node: self.clone(),
                    epoch: new_epoch(),
                    awaiting,
                    resume,
                };
                // spawn_instant does not await pre_start, so this runs under the entry guard
                // without an await; messages queue until the actor is up.
                let (room, _start) = ractor::ActorRuntime::spawn_instant(None, RoomActor, args)
                    .map_err(|error| NodeError::Spawn {
                        what: "room",
                        reason: error.to_string(),
                    })?;
                entry.insert(room.clone());
                Ok(room)
            }
        }
    }

    /// Removes `room` from the table if it is still the actor registered under `name`.
    pub(crate) fn forget_room(&self, name: &str, room: &ActorRef<RoomMsg>) {
        self.inner
            .rooms
            .remove_if(name, |_, current| current.get_id() == room.get_id());
    }

    /// Calls room `name`, retrying with a fresh actor when the one found stopped meanwhile.
    pub(crate) async fn call_room<T, F>(&self, name: &str, mut build: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnMut(RpcReplyPort<T>) -> RoomMsg,
    {
        for _ in 0..ROOM_CALL_ATTEMPTS {
            let room = self.room(name)?;
            match room.call(&mut build, Some(ROOM_CALL_TIMEOUT)).await {
                Ok(CallResult::Success(value)) => return Ok(value),
                Ok(CallResult::Timeout) => {
                    return Err(NodeError::RoomTimeout { room: name.into() });
                }
                // The room stopped (idle) between lookup and delivery: drop the stale entry
                // and try again with a new one.
                Ok(CallResult::SenderError) | Err(_) => self.forget_room(name, &room),
            }
        }
        Err(NodeError::RoomUnavailable { room: name.into() })
    }

    /// Subscribes through the room's owner: the local room actor when this node owns the room
    /// (or runs alone), otherwise the room's relay here.
    pub(crate) async fn subscribe(
        &self,
        room: &str,
        params: SubscribeParams,
    ) -> Result<SubscribeResult, NodeError> {
        let Some(cluster) = self.cluster() else {
            return self.local_subscribe(room, params).await;
        };
        self.resolve_channel(room)?;
        for _ in 0..ROUTE_ATTEMPTS {
            match cluster.route(room) {
                Route::Local => {
                    self.check_lease()?;
                    match self.local_subscribe(room, params.clone()).await {
                        // The shard moved between routing and the room.
                        Err(NodeError::StaleRoute { map_version }) => {
                            self.await_map_change(cluster, cluster.map_version(), map_version)
                                .await;
                        }
                        other => return other,
                    }
                }
                Route::Remote { version: 0, .. } => cluster.wait_for_map(1).await,
                Route::Remote { owner, version } => {
                    match self.relay_subscribe(room, owner, params.clone()).await {
                        Err(NodeError::StaleRoute { map_version }) => {
                            self.await_map_change(cluster, version, map_version).await;
                        }
                        // The relay stopped under the call (its owner changed): route again.
                        Err(NodeError::RoomUnavailable { .. }) => {}
                        other => return other,
                    }
                }
            }
        }
        Err(NodeError::RoomUnavailable { room: room.into() })
    }

    async fn local_subscribe(
        &self,
        room: &str,
        params: SubscribeParams,
    ) -> Result<SubscribeResult, NodeError> {
        self.call_room(room, |reply| RoomMsg::Subscribe {
            params: Box::new(params.clone()),
            reply,
        })
        .await
    }

    async fn relay_subscribe(
        &self,
        room: &str,
        owner: NodeId,
        params: SubscribeParams,
    ) -> Result<SubscribeResult, NodeError> {
        let relay = self.relay(room, owner)?;
        let call = relay
            .call(
                |reply| RelayMsg::Subscribe {
                    params: Box::new(params),
                    reply,
                },
                Some(RELAY_CALL_TIMEOUT),
            )
            .await;
        match call {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(NodeError::PeerUnavailable { node: owner.0 }),
            Ok(CallResult::SenderError) | Err(_) => {
                self.forget_relay(room, &relay);
                Err(NodeError::RoomUnavailable { room: room.into() })
            }
        }
    }

    /// The relay of room `name`, following `owner`; started on first use, replaced when the
    /// one registered follows another owner.
    fn relay(&self, name: &str, owner: NodeId) -> Result<ActorRef<RelayMsg>, NodeError> {
        if let Some(entry) = self.inner.relays.get(name)
            && entry.owner == owner
        {
            return Ok(entry.actor.clone());
        }
        let key: Arc<str> = name.into();
        match self.inner.relays.entry(key.clone()) {
            Entry::Occupied(entry) if entry.get().owner == owner => Ok(entry.get().actor.clone()),
            Entry::Occupied(mut entry) => {
                // The room moved and the control loop has not told the relay yet: the same
                // relay follows it (its subscribers stay).
                let previous = entry.get().owner;
                entry.get_mut().owner = owner;
                let actor = entry.get().actor.clone();
                drop(entry);
                let handoff = self.cluster().is_some_and(|cluster| {
                    cluster.state().members.contains_key(&previous) && cluster.is_alive(previous)
                });
                let _ = actor.send_message(RelayMsg::Follow { owner, handoff });
                Ok(actor)
            }
            Entry::Vacant(entry) => {
                let actor = self.spawn_relay(RelayArgs {
                    name: key,
                    owner,
                    node: self.clone(),
                    taken_over: None,
                })?;
                entry.insert(RelayEntry {
                    owner,
                    actor: actor.clone(),
                });
                Ok(actor)
            }
        }
    }

    /// Turns the local subscribers of room `name`, which this node just handed to `owner`,
    /// into a relay following `owner` from offset `last` on.
    pub(crate) fn relay_taking_over(
        &self,
        name: Arc<str>,
        owner: NodeId,
        taken_over: crate::cluster::TakenOver,
    ) -> Result<(), NodeError> {
        let actor = self.spawn_relay(RelayArgs {
            name: name.clone(),
            owner,
            node: self.clone(),
            taken_over: Some(taken_over),
        })?;
        let old = self.inner.relays.insert(name, RelayEntry { owner, actor });
        if let Some(old) = old {
            let _ = old.actor.send_message(RelayMsg::Close);
        }
        Ok(())
    }

    /// The relay of room `name`, if there is one.
    pub(crate) fn relay_actor(&self, name: &str) -> Option<ActorRef<RelayMsg>> {
        self.inner.relays.get(name).map(|e| e.actor.clone())
    }

    /// Records that the relay of `name` follows `owner` now.
    pub(crate) fn set_relay_owner(&self, name: &str, owner: NodeId) {
        if let Some(mut entry) = self.inner.relays.get_mut(name) {
            entry.owner = owner;
        }
    }

    fn spawn_relay(&self, args: RelayArgs) -> Result<ActorRef<RelayMsg>, NodeError> {
        // As for rooms: no await under the table's entry guard.
        ractor::ActorRuntime::spawn_instant(None, RelayActor, args)
            .map(|(actor, _)| actor)
            .map_err(|error| NodeError::Spawn {
                what: "relay",
                reason: error.to_string(),
            })
    }

    /// Removes `relay` from the table if it is still the one registered under `name`.
    pub(crate) fn forget_relay(&self, name: &str, relay: &ActorRef<RelayMsg>) {
        self.inner
            .relays
            .remove_if(name, |_, entry| entry.actor.get_id() == relay.get_id());
    }

    /// Every relay: room, owner and actor (a copy).
    pub(crate) fn relay_refs(&self) -> Vec<(Arc<str>, NodeId, ActorRef<RelayMsg>)> {
        self.inner
            .relays
            .iter()
            .map(|e| (e.key().clone(), e.value().owner, e.value().actor.clone()))
            .collect()
    }

    /// Hands an owner's message to the relay of `room`.
    pub(crate) fn relay_frame(&self, room: &str, from: NodeId, msg: FromRoom) {
        let relay = self.inner.relays.get(room).map(|e| e.actor.clone());
        match relay {
            Some(relay) => {
                let _ = relay.send_message(RelayMsg::FromRoom { from, msg });
            }
            // Publications for a relay that just stopped: nobody here wants them.
            None => tracing::trace!(%room, "frame for a room without a relay here"),
        }
    }

    /// Takes `client_id`'s subscription to `room` away and tells the client to resubscribe
    /// (2500), because the room's owner changed under it.
    pub(crate) fn resubscribe_client(&self, client_id: &str, room: &str) {
        let connection = self.inner.connections.get(client_id).map(|c| c.clone());
        if let Some(connection) = connection {
            let _ = connection.send_message(ConnectionMsg::Resubscribe {
                channel: room.into(),
            });
        }
    }

    /// Asks every room here to give its shard's replica its state, if the replica changed.
    /// Each counts as unreplicated until it has answered (`starling_rooms_unreplicated`).
    pub(crate) fn sync_replicas(&self) {
        let cluster = self.cluster();
        for (name, room) in self.room_refs() {
            if let Some(cluster) = cluster {
                cluster.set_replicated(&name, false);
            }
            let _ = room.send_message(RoomMsg::SyncReplica);
        }
    }

    /// Asks room `name`, if it runs here, to give its shard's replica its state.
    /// False when the room does not run here.
    pub(crate) fn sync_replica_of(&self, name: &str) -> bool {
        self.existing_room(name)
            .is_some_and(|room| room.send_message(RoomMsg::SyncReplica).is_ok())
    }

    /// A member was declared dead: every room owned here drops its presence entries and its
    /// relay count for that node.
    pub(crate) fn member_down(&self, member: NodeId) {
        for (_, room) in self.room_refs() {
            let _ = room.send_message(RoomMsg::MemberDown(member));
        }
    }

    /// A member declared dead answers again (a partition healed, or it was only slow). Rooms
    /// here that dropped its relays tell it so. It most likely declared this node dead too
    /// and dropped this node's relays of its rooms, so those relays would wait for copies
    /// that never come: they close instead, telling their subscribers to resubscribe (2500);
    /// the SDKs do, recovering what they missed.
    pub(crate) fn member_up(&self, member: NodeId) {
        for (_, room) in self.room_refs() {
            let _ = room.send_message(RoomMsg::MemberUp(member));
        }
        for (name, owner, relay) in self.relay_refs() {
            if owner == member {
                info!(room = %name, owner = %member, "owner back from silence; subscribers resubscribe");
                let _ = relay.send_message(RelayMsg::Close);
            }
        }
    }

    /// Sends `msg` to room `name`, starting the room when needed.
    pub(crate) fn send_to_room(&self, name: &str, msg: RoomMsg) -> Result<(), NodeError> {
        let room = self.room(name)?;
        room.send_message(msg).map_err(|_| {
            self.forget_room(name, &room);
            NodeError::RoomUnavailable { room: name.into() }
        })
    }

    /// Connects this node to its cluster runtime (once).
    pub(crate) fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }

    /// The cluster runtime, when the node has one.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }

    /// Takes `client_id` out of room `room`; with `notify`, the room queues that unsubscribe
    /// push to the client as the last thing it sends it.
    pub(crate) fn unsubscribe(
        &self,
        room: &str,
        client_id: Arc<str>,
        notify: Option<UnsubscribeCode>,
    ) {
        // Room, relay, room again: during a hand-off the room becomes a relay here (old
        // owner) or a relay becomes the room (new owner), and each registers its successor
        // before it stops taking messages. Whichever way this races with that, one of the
        // three sends reaches the actor holding the subscription; the others find nothing to
        // remove, and removing is idempotent.
        let to_room = |notify| {
            if let Some(room) = self.existing_room(room) {
                let _ = room.send_message(RoomMsg::Unsubscribe {
                    client_id: client_id.clone(),
                    notify,
                });
            }
        };
        to_room(notify);
        let relay = self.inner.relays.get(room).map(|e| e.actor.clone());
        if let Some(relay) = relay {
            let _ = relay.send_message(RelayMsg::Unsubscribe {
                client_id: client_id.clone(),
                notify,
            });
        }
        to_room(None);
    }

    /// Publishes into room `room` and returns the publication with the offset the room gave it.
    pub async fn publish(
        &self,
        room: &str,
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Publication>, NodeError> {
        let (publication, _epoch) = self.publish_to_room(room, data, info, tags, false).await?;
        Ok(publication)
    }

    /// [`Node::publish`], or with `skip_history` a publication that gets no offset and is not
    /// kept (see `starling_room::Room::ephemeral`). Also returns the room's epoch. Goes to the
    /// room's owner, wherever it is; its answer is the acknowledgement.
    pub(crate) async fn publish_to_room(
        &self,
        room: &str,
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
        skip_history: bool,
    ) -> Result<Published, NodeError> {
        self.resolve_channel(room)?;
        self.at_owner(
            room,
            |map_version| Call::Publish {
                map_version,
                room: room.to_string(),
                data: data.clone(),
                info: info.as_ref().map(info_to_wire),
                tags: tags.clone(),
                skip_history,
            },
            || async {
                self.check_lease()?;
                self.local_publish(room, data.clone(), info.clone(), tags.clone(), skip_history)
                    .await
            },
            |reply| match reply {
                CallReply::Published {
                    offset,
                    epoch,
                    time,
                } => {
                    let publication = Publication {
                        data: data.clone(),
                        info: info.clone(),
                        offset,
                        tags: tags.clone(),
                        time,
                        ..Publication::default()
                    };
                    Ok((Arc::new(publication), epoch.into()))
                }
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    /// Publishes in the room actor on this node.
    pub(crate) async fn local_publish(
        &self,
        room: &str,
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
        skip_history: bool,
    ) -> Result<Published, NodeError> {
        self.call_room(room, |reply| RoomMsg::Publish {
            data: data.clone(),
            info: info.clone(),
            tags: tags.clone(),
            skip_history,
            reply,
        })
        .await?
    }

    /// History of room `room` (Centrifugo semantics for `since`, `limit`, `reverse`), from its
    /// owner.
    pub async fn history(&self, room: &str, query: HistoryQuery) -> Result<HistoryPage, NodeError> {
        self.resolve_channel(room)?;
        self.at_owner(
            room,
            |map_version| Call::History {
                map_version,
                room: room.to_string(),
                since: query.since.as_ref().map(position_to_wire),
                limit: query.limit,
                reverse: query.reverse,
            },
            || self.local_history(room, query.clone()),
            |reply| match reply {
                CallReply::History {
                    publications,
                    position,
                } => Ok(HistoryPage {
                    publications: publications
                        .into_iter()
                        .map(|p| Arc::new(publication_from_wire(p)))
                        .collect(),
                    position: position_from_wire(position),
                }),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    /// History from the room actor on this node.
    pub(crate) async fn local_history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, NodeError> {
        let max = self.inner.config.client.history_max_publication_limit;
        self.call_room(room, |reply| RoomMsg::History {
            query: query.clone(),
            max,
            reply,
        })
        .await?
        .map_err(NodeError::Room)
    }

    /// Presence of room `room`: one entry per subscribed connection, on any node.
    pub async fn presence(&self, room: &str) -> Result<Vec<ClientInfo>, NodeError> {
        self.resolve_channel(room)?;
        self.at_owner(
            room,
            |map_version| Call::Presence {
                map_version,
                room: room.to_string(),
            },
            || self.local_presence(room),
            |reply| match reply {
                CallReply::Presence { clients } => Ok(clients
                    .into_iter()
                    .map(crate::cluster::info_from_wire)
                    .collect()),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    pub(crate) async fn local_presence(&self, room: &str) -> Result<Vec<ClientInfo>, NodeError> {
        self.call_room(room, |reply| RoomMsg::Presence { reply })
            .await
    }

    /// Presence counts of room `room`.
    pub async fn presence_stats(&self, room: &str) -> Result<PresenceStats, NodeError> {
        self.resolve_channel(room)?;
        self.at_owner(
            room,
            |map_version| Call::PresenceStats {
                map_version,
                room: room.to_string(),
            },
            || self.local_presence_stats(room),
            |reply| match reply {
                CallReply::PresenceStats { clients, users } => Ok(PresenceStats {
                    num_clients: clients,
                    num_users: users,
                }),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    pub(crate) async fn local_presence_stats(
        &self,
        room: &str,
    ) -> Result<PresenceStats, NodeError> {
        self.call_room(room, |reply| RoomMsg::PresenceStats { reply })
            .await
    }

    /// Every open connection's actor (a copy, so no table guard outlives the call).
    fn connection_refs(&self) -> Vec<ActorRef<ConnectionMsg>> {
        self.inner
            .connections
            .iter()
            .map(|entry| entry.value().clone())
            .collect()
    }

    /// Closes every client connection with `shutdown` (3001: reconnect advised), one after
    /// another, evenly over `spread`, so a drained node's clients come back to the other nodes
    /// at a rate their admission control absorbs (promise 9).
    pub(crate) async fn advise_reconnect(&self, spread: Duration) {
        let connections = self.connection_refs();
        let count = connections.len();
        info!(
            connections = count,
            ?spread,
            "advising clients to reconnect elsewhere"
        );
        let pause = spread
            .checked_div(u32::try_from(count).unwrap_or(u32::MAX).max(1))
            .unwrap_or_default();
        let mut ticker = tokio::time::interval(pause.max(Duration::from_micros(1)));
        for connection in connections {
            if !pause.is_zero() {
                ticker.tick().await;
            }
            let _ =
                connection.send_message(ConnectionMsg::Disconnect(DisconnectCode::Shutdown.into()));
        }
    }

    /// Disconnects every client with `shutdown` (3001, reconnect advised), then waits, up to
    /// `grace`, for the connections to close.
    pub async fn shutdown(&self, grace: Duration) {
        let connections = self.connection_refs();
        info!(connections = connections.len(), "disconnecting clients");
        for connection in &connections {
            let _ =
                connection.send_message(ConnectionMsg::Disconnect(DisconnectCode::Shutdown.into()));
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.inner.connections.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !self.inner.connections.is_empty() {
            warn!(
                left = self.inner.connections.len(),
                "grace period over with connections still open"
            );
        }
    }
}

fn verifier(key: &'static str, config: &TokenConfig) -> Result<TokenVerifier, NodeError> {
    let keys = TokenKeys {
        hmac_secret_key: config.hmac_secret_key.clone(),
        rsa_public_key: config.rsa_public_key.clone(),
        ecdsa_public_key: config.ecdsa_public_key.clone(),
        audience: config.audience.clone(),
        issuer: config.issuer.clone(),
    };
    TokenVerifier::new(&keys).map_err(|source| NodeError::TokenKeys { key, source })
}

/// A random UUID v4 string, the form Centrifugo uses for client and session ids.
pub(crate) fn new_client_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = |bytes: &[u8]| bytes.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

/// A fresh epoch: changes whenever a room's offset sequence restarts.
fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut raw = [0u8; 8];
    rand::rng().fill_bytes(&mut raw);
    raw.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_set_grows_past_one_and_empties() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut set = ClientSet::default();
        assert!(set.is_empty());
        set.insert(Arc::clone(&a));
        set.insert(Arc::clone(&a));
        assert!(matches!(set, ClientSet::One(_)));
        assert_eq!(set.to_vec(), vec![Arc::clone(&a)]);
        set.insert(Arc::clone(&b));
        let mut all = set.to_vec();
        all.sort();
        assert_eq!(all, vec![Arc::clone(&a), Arc::clone(&b)]);
        set.remove("a");
        set.remove("missing");
        assert_eq!(set.to_vec(), vec![Arc::clone(&b)]);
        set.remove("b");
        assert!(set.is_empty());
        let mut one = ClientSet::default();
        one.insert(a);
        one.remove("b");
        assert!(!one.is_empty());
        one.remove("a");
        assert!(one.is_empty());
    }
}
