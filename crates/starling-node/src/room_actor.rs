//! `RoomActor`: the owner-side actor of one active room.
//!
//! A thin shell around [`starling_room::Room`]: the pure state machine decides offsets,
//! history, recovery and presence; this actor adds the clock, fan-out to subscribers' outbound
//! queues and its own lifetime (it removes itself from the node's room table when the room has
//! no subscribers and no history left).
//!
//! A room of a shard this node is taking over starts *awaiting*: it holds every message until
//! the old owner's state arrives (`Resume`, taking over the local relay's subscribers) or the
//! hand-off ends without one (`Fresh`), then handles them in order. On the old owner,
//! `HandOff` ships the state and turns the local subscribers into a relay (see
//! `cluster::handoff`).
//!
//! Fan-out encodes each push once per wire encoding in use and shares the bytes with every
//! recipient. Ordering holds because everything a subscriber sees from a room (its subscribe
//! reply or push, then publications, joins and leaves, and a server unsubscribe push last) is
//! queued by this one actor, in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use starling_config::ChannelOptions;
use starling_protocol::{
    ClientInfo, DisconnectCode, Encoding, Join, Leave, Publication, Push, Reply, StreamPosition,
    Subscribe, SubscribeResult, UnsubscribeCode, encode_reply,
};
use starling_room::{HistoryPage, HistoryQuery, PresenceStats, Room, RoomError, RoomOptions};
use tracing::{debug, warn};

use starling_cluster::{Frame, FromRoom, HandoffMsg, WireRoomState};
use starling_placement::{NodeId, ShardId};

use crate::clock::unix_now_ms;
use crate::cluster::{
    Cluster, HANDOFF_TIMEOUT, RelayMsg, ReplicaOf, TakenOver, info_to_wire, position_to_wire,
    publication_from_wire, publication_to_wire, publications_to_wire, room_state_to_wire,
};
use crate::error::NodeError;
use crate::node::Node;
use crate::outbound::Outbound;

/// A subscriber as the room sees it: where to put frames and in which encoding.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub(crate) outbound: Outbound,
    pub(crate) encoding: Encoding,
    /// Whether this subscriber receives join and leave pushes.
    pub(crate) join_leave: bool,
}

/// How the client learns about a new subscription. Except for connect, the room queues the
/// announcement itself, before adding the subscriber, so no publication can overtake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    /// The reply to the client's `subscribe` command with this id.
    Reply(u32),
    /// A `subscribe` push (a server-side subscription made through the server API), followed
    /// by the recovered publications as `pub` pushes.
    Push,
    /// Nothing: a server-side subscription made during connect, whose result goes into the
    /// connect reply (the queue is held until then).
    ConnectReply,
}

/// What a connection asks for when it subscribes.
#[derive(Debug, Clone)]
pub(crate) struct SubscribeParams {
    pub(crate) client_id: Arc<str>,
    pub(crate) subscriber: Subscriber,
    pub(crate) announce: Announce,
    /// The stream position the client comes back from, when it asked to recover.
    pub(crate) recover_from: Option<StreamPosition>,
    pub(crate) recoverable: bool,
    pub(crate) positioned: bool,
    /// Presence entry; `None` when the namespace keeps no presence.
    pub(crate) presence: Option<ClientInfo>,
    /// Most publications a recovery may replay.
    pub(crate) recovery_limit: usize,
    /// Subscription data from the subscription token's claims or the server.
    pub(crate) data: Bytes,
    pub(crate) expires_in: Option<u32>,
}

/// An accepted publication and the epoch of the room that gave it its offset.
pub(crate) type Published = (Arc<Publication>, Arc<str>);

/// Messages a [`RoomActor`] handles.
#[derive(Debug)]
pub(crate) enum RoomMsg {
    Subscribe {
        params: Box<SubscribeParams>,
        reply: RpcReplyPort<SubscribeResult>,
    },
    Unsubscribe {
        client_id: Arc<str>,
        /// Queue this unsubscribe push to the subscriber as the last thing it gets from the room.
        notify: Option<UnsubscribeCode>,
    },
    Publish {
        data: Bytes,
        info: Option<ClientInfo>,
        tags: BTreeMap<String, String>,
        /// Centrifugo's `skip_history`: no offset, not kept (see `Room::ephemeral`).
        skip_history: bool,
        /// The publication and the room's epoch, which together give its stream position.
        /// Fails when the shard's replica did not confirm the publication (taken back then).
        reply: RpcReplyPort<Result<Published, NodeError>>,
    },
    /// Drop the retained publications, keep the stream position.
    RemoveHistory {
        reply: RpcReplyPort<()>,
    },
    /// How many connections are subscribed.
    SubscriberCount {
        reply: RpcReplyPort<usize>,
    },
    History {
        query: HistoryQuery,
        max: usize,
        reply: RpcReplyPort<Result<HistoryPage, RoomError>>,
    },
    Presence {
        reply: RpcReplyPort<Vec<ClientInfo>>,
    },
    PresenceStats {
        reply: RpcReplyPort<PresenceStats>,
    },
    /// Timer: trim expired history and check whether the room can go.
    Trim,
    /// A client on node `from` subscribes through that node's relay; answered on the link to
    /// `from` with `FromRoom::Subscribed`, in order with the room's publications.
    RemoteSubscribe {
        from: NodeId,
        req: u64,
        client: Arc<str>,
        presence: Option<ClientInfo>,
        recover_since: Option<StreamPosition>,
        recovery_limit: usize,
    },
    /// A client on node `from` left.
    RemoteUnsubscribe {
        from: NodeId,
        client: Arc<str>,
    },
    /// Node `.0` was declared dead: its clients leave.
    MemberDown(NodeId),
    /// A member declared dead answers again: if this room dropped its relay at `MemberDown`,
    /// it tells the member so (`FromRoom::Closed`), whose relay then sends its subscribers to
    /// resubscribe instead of waiting for copies that will not come.
    MemberUp(NodeId),
    /// This node no longer owns the room's shard and `to` does: ship the state there, tell
    /// relay nodes, turn the local subscribers into a relay, stop. Answers whether the state
    /// was shipped.
    HandOff {
        to: NodeId,
        shard: ShardId,
        map_version: u64,
        reply: RpcReplyPort<bool>,
    },
    /// The state the old owner shipped; `relay` is this node's relay of the room, whose
    /// subscribers the room takes over.
    Resume {
        state: Box<WireRoomState>,
        relay: Option<ActorRef<RelayMsg>>,
    },
    /// The hand-off ended without a state for this room: it starts afresh.
    Fresh,
    /// Timer: waited too long for a state or for the relay's subscribers.
    AwaitTimeout,
    /// Timer: a handed-off room has passed on what still reached it for long enough.
    Retire,
    /// The shard's replica may have changed: give a new one the room's state now, so that it
    /// holds the room even before the next publication.
    SyncReplica,
    /// The room's shard was taken from this node without a hand-off (a failover while it was
    /// cut off): the room is stale. Its local subscribers resubscribe, reaching the room's
    /// real owner; the actor stops.
    Abandon,
}

/// Whether the room serves, waits for a hand-off, or was handed off.
enum Mode {
    Ready,
    /// Created for a shard this node is taking over: messages are held (with when they came)
    /// until the state arrives or the hand-off ends without one.
    Awaiting {
        held: Vec<(tokio::time::Instant, RoomMsg)>,
        timer: Option<tokio::task::AbortHandle>,
    },
    /// Handed to `to`: off the table, and for a little while still passing on the
    /// unsubscribes that were already on their way here.
    Gone {
        to: NodeId,
    },
}

/// How long the owner waits for the replica's answer before going on without it.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a handed-off room lingers to pass late messages on.
const GONE_LINGER: Duration = Duration::from_secs(5);
/// Held calls older than this are dropped when the room starts serving: their callers gave up
/// (room calls time out after 5 s) and will have retried.
const HELD_MAX: Duration = Duration::from_secs(4);

/// Whether the actor goes on after a message.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The actor type; its state is [`RoomState`].
pub(crate) struct RoomActor;

/// Start-up arguments of a room actor.
pub(crate) struct RoomArgs {
    pub(crate) name: Arc<str>,
    pub(crate) options: ChannelOptions,
    pub(crate) node: Node,
    pub(crate) epoch: String,
    /// Wait for a hand-off's state before serving.
    pub(crate) awaiting: bool,
    /// Continue from this position and history (this node held the room's replica and owns
    /// the room now).
    pub(crate) resume: Option<(StreamPosition, Vec<Arc<Publication>>)>,
}

pub(crate) struct RoomState {
    name: Arc<str>,
    /// The room's epoch, shared with publish replies without a copy.
    epoch: Arc<str>,
    node: Node,
    room: Room<Subscriber>,
    join_leave: bool,
    /// The pending `Trim` timer, so at most one is; cancelled when the room stops, because a
    /// timer holds the actor (and its memory) until it fires.
    trim_timer: Option<tokio::task::AbortHandle>,
    /// Whether this room is counted in the node's channels gauge (it has subscribers).
    counted_active: bool,
    /// Subscribers on other nodes: client → the node holding its connection.
    remote: HashMap<Arc<str>, NodeId>,
    /// Nodes with subscribers of this room, and how many each has: each gets one copy of
    /// every publication.
    relay_nodes: BTreeMap<NodeId, usize>,
    mode: Mode,
    /// Clients a shipped state lists as connected to this node: the local relay's subscribers,
    /// until it hands them over. Those it does not hand over left meanwhile.
    adopting: HashSet<Arc<str>>,
    /// The replica that holds this room's state up to the last publication, if one does.
    synced_replica: Option<NodeId>,
    /// Members whose relay this room dropped when they were declared dead.
    dropped_relays: HashSet<NodeId>,
    /// A room continued from a replica's copy is not stopped as idle before this: its
    /// subscribers elsewhere are on their way back (told to resubscribe) and must find it,
    /// epoch and all, rather than a fresh room.
    keep_until: Option<tokio::time::Instant>,
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RoomArgs,
    ) -> Result<RoomState, ActorProcessingErr> {
        let options = room_options(&args.options);
        args.node.metrics().rooms_started();
        let mode = if args.awaiting {
            Mode::Awaiting {
                held: Vec::new(),
                timer: Some(await_timer(&myself)),
            }
        } else {
            // The replica learns of the room (its epoch) before anything happens in it, so a
            // failover continues even a room without publications in the same epoch.
            if let Some(cluster) = args.node.cluster()
                && cluster.replica_of(&args.name) != ReplicaOf::None
            {
                cluster.set_replicated(&args.name, false);
            }
            let _ = myself.send_message(RoomMsg::SyncReplica);
            Mode::Ready
        };
        let continued = args.resume.is_some();
        let room = match args.resume {
            Some((position, history)) => match Room::resume(options, position.clone(), history) {
                Ok(room) => {
                    debug!(room = %args.name, offset = position.offset, epoch = %position.epoch, "room continues from its replica");
                    room
                }
                Err(error) => {
                    warn!(room = %args.name, %error, "replica copy unusable; starting afresh");
                    Room::new(options, args.epoch)
                }
            },
            None => Room::new(options, args.epoch),
        };
        Ok(RoomState {
            mode,
            adopting: HashSet::new(),
            synced_replica: None,
            dropped_relays: HashSet::new(),
            keep_until: continued.then(|| keep_for_resubscribers(&myself)),
            epoch: room.epoch().into(),
            room,
            join_leave: args.options.join_leave,
            name: args.name,
            node: args.node,
            trim_timer: None,
            counted_active: false,
            remote: HashMap::new(),
            relay_nodes: BTreeMap::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.trim_timer.take() {
            timer.abort();
        }
        state.node.forget_room(&state.name, &myself);
        state.node.metrics().rooms_stopped();
        if state.counted_active {
            state.node.metrics().channel_active(false);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RoomMsg,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        // Boxed while it runs: ractor keeps this handler's future inside the actor's loop for
        // the room's whole life, and inline it is ≈ 3.3 KiB (the hand-off, replication and
        // history paths), which every idle room would carry; boxed, a message costs one short
        // allocation instead.
        Box::pin(state.on_message(myself, msg)).await;
        Ok(())
    }
}

impl RoomState {
    /// Everything [`RoomActor`] does with a message.
    async fn on_message(&mut self, myself: ActorRef<RoomMsg>, msg: RoomMsg) {
        let state = self;
        let now = unix_now_ms();
        if matches!(msg, RoomMsg::SyncReplica) {
            // No idle check after this one: a new room sends it to itself before the request
            // that created it, which must still find the room.
            match state.mode {
                Mode::Ready => state.sync_if_replica_changed().await,
                // Handed off: its replica is the new owner's business.
                Mode::Gone { .. } => {
                    if let Some(cluster) = state.node.cluster() {
                        cluster.set_replicated(&state.name, true);
                    }
                }
                // Waiting for a hand-off: it syncs once the state has come.
                Mode::Awaiting { .. } => {}
            }
            return;
        }
        if matches!(msg, RoomMsg::Abandon) {
            state.abandon(&myself);
            myself.stop(None);
            return;
        }
        if let Mode::Gone { to } = state.mode {
            if matches!(msg, RoomMsg::Retire) {
                myself.stop(None);
            } else {
                state.pass_on(msg, to);
            }
            return;
        }
        let held = match msg {
            RoomMsg::Resume { state: wire, relay } => {
                let held = state.resume(*wire, relay, &myself).await;
                // This node's replica of the shard gets the room as it arrived.
                let _ = myself.send_message(RoomMsg::SyncReplica);
                held
            }
            RoomMsg::Fresh => match state.mode {
                Mode::Awaiting { .. } => {
                    state.start_fresh(&myself);
                    state.become_ready()
                }
                _ => Vec::new(),
            },
            RoomMsg::AwaitTimeout => {
                if !matches!(state.mode, Mode::Ready) {
                    warn!(room = %state.name, "hand-off not finished in time; starting afresh");
                    state.start_fresh(&myself);
                }
                state.become_ready()
            }
            other if !matches!(state.mode, Mode::Ready) => {
                if let Mode::Awaiting { held, .. } = &mut state.mode {
                    held.push((tokio::time::Instant::now(), other));
                }
                return;
            }
            other => vec![(tokio::time::Instant::now(), other)],
        };
        if !matches!(state.mode, Mode::Ready) {
            return;
        }
        let mut held = held.into_iter();
        while let Some((at, msg)) = held.next() {
            if at.elapsed() > HELD_MAX && waits_for_answer(&msg) {
                debug!(room = %state.name, "held call outlived its caller; dropped");
                continue;
            }
            if state.handle_ready(&myself, msg, now).await == Flow::Stop {
                // Handed off while messages were held: they follow the room.
                if let Mode::Gone { to } = state.mode {
                    for (_, msg) in held {
                        state.pass_on(msg, to);
                    }
                }
                return;
            }
        }
        state.settle(&myself, now);
    }
    /// One message, in order, once the room serves.
    async fn handle_ready(&mut self, myself: &ActorRef<RoomMsg>, msg: RoomMsg, now: i64) -> Flow {
        let state = self;
        match msg {
            RoomMsg::Subscribe { params, reply } => {
                let result = state.subscribe(*params, now);
                // The caller may have gone (connection closed meanwhile); its cleanup sends an
                // Unsubscribe that follows this message, so nothing leaks.
                let _ = reply.send(result);
            }
            RoomMsg::Unsubscribe { client_id, notify } => state.unsubscribe(&client_id, notify),
            RoomMsg::Publish {
                data,
                info,
                tags,
                skip_history,
                reply,
            } => {
                let publication = if skip_history {
                    state.room.ephemeral(data, info, tags, now)
                } else {
                    let publication = state.room.publish(data, info, tags, now);
                    // On the replica before anyone sees it or the publisher hears back.
                    if let Err(error) = state.replicate(&publication).await {
                        let _ = reply.send(Err(error));
                        return Flow::Continue;
                    }
                    publication
                };
                state.fan_out_publication(&publication);
                // Only rooms with subscribers on other nodes pay for the wire form.
                if !state.relay_nodes.is_empty() {
                    let copies =
                        state.relay_out(FromRoom::Publication(publication_to_wire(&publication)));
                    state.node.metrics().cluster_copies(copies);
                }
                // Acknowledged after the fan-out. Acknowledging first (the publication is
                // already ordered, in history and on the replica) cut the median ack with
                // 5,000 subscribers from 14 ms to 0.6 ms, but halved the fan-out's throughput
                // at saturation and doubled its CPU per delivery (measured, docs/performance.md):
                // why was not profiled.
                let _ = reply.send(Ok((publication, Arc::clone(&state.epoch))));
                state.node.metrics().publication_in();
            }
            RoomMsg::RemoveHistory { reply } => {
                state.room.remove_history();
                // The replica's copy gets the emptied history too.
                state.synced_replica = None;
                state.sync_if_replica_changed().await;
                let _ = reply.send(());
            }
            RoomMsg::SyncReplica => state.sync_if_replica_changed().await,
            RoomMsg::SubscriberCount { reply } => {
                let _ = reply.send(state.room.subscriber_count());
            }
            RoomMsg::History { query, max, reply } => {
                let _ = reply.send(state.room.history(query, max, now));
            }
            RoomMsg::Presence { reply } => {
                let _ = reply.send(state.room.presence().cloned().collect());
            }
            RoomMsg::PresenceStats { reply } => {
                let _ = reply.send(state.room.presence_stats());
            }
            RoomMsg::Trim => {
                state.trim_timer = None;
            }
            RoomMsg::RemoteSubscribe {
                from,
                req,
                client,
                presence,
                recover_since,
                recovery_limit,
            } => state.remote_subscribe(
                from,
                req,
                client,
                presence,
                recover_since,
                recovery_limit,
                now,
            ),
            RoomMsg::RemoteUnsubscribe { from, client } => {
                if state.remote.get(&client) == Some(&from) {
                    state.remote_unsubscribe(&client);
                }
            }
            RoomMsg::MemberUp(member) => {
                if state.dropped_relays.remove(&member)
                    && let Some(cluster) = state.node.cluster()
                {
                    let closed = Frame::FromRoom {
                        room: state.name.to_string(),
                        msg: FromRoom::Closed,
                    };
                    if !cluster.send(member, closed) {
                        debug!(room = %state.name, %member, "cannot tell a member back from silence");
                    }
                }
            }
            RoomMsg::MemberDown(member) => {
                if state.relay_nodes.contains_key(&member) {
                    state.dropped_relays.insert(member);
                }
                let gone: Vec<Arc<str>> = state
                    .remote
                    .iter()
                    .filter(|(_, node)| **node == member)
                    .map(|(client, _)| client.clone())
                    .collect();
                for client in gone {
                    state.remote_unsubscribe(&client);
                }
                state.relay_nodes.remove(&member);
            }
            RoomMsg::HandOff {
                to,
                shard,
                map_version,
                reply,
            } => {
                let shipped = state.hand_off(myself, to, shard, map_version).await;
                // The timer runs on without its handle; the actor stops when it fires.
                drop(myself.send_after(GONE_LINGER, || RoomMsg::Retire));
                let _ = reply.send(shipped);
                return Flow::Stop;
            }
            // Only an awaiting room takes these; `handle` answers them before this.
            RoomMsg::Resume { .. }
            | RoomMsg::Fresh
            | RoomMsg::AwaitTimeout
            | RoomMsg::Retire
            | RoomMsg::Abandon => {}
        }
        Flow::Continue
    }
}

pub(crate) fn room_options(options: &ChannelOptions) -> RoomOptions {
    RoomOptions {
        history_size: options.history_size,
        history_ttl_ms: i64::try_from(options.history_ttl.0.as_millis()).unwrap_or(i64::MAX),
        presence: options.presence,
    }
}

impl RoomState {
    fn subscribe(&mut self, params: SubscribeParams, now: i64) -> SubscribeResult {
        let SubscribeParams {
            client_id,
            subscriber,
            announce,
            recover_from,
            recoverable,
            positioned,
            presence,
            recovery_limit,
            data,
            expires_in,
        } = params;

        let mut result = SubscribeResult {
            recoverable,
            positioned: positioned || recoverable,
            data,
            expires: expires_in.is_some(),
            ttl: expires_in.unwrap_or(0),
            ..SubscribeResult::default()
        };
        if result.positioned {
            let position = self.room.position();
            result.offset = position.offset;
            result.epoch = position.epoch;
        }
        if let Some(since) = recover_from.filter(|_| recoverable) {
            let recovery = self.room.recover(&since, recovery_limit, now);
            result.was_recovering = true;
            result.recovered = recovery.recovered;
            result.publications = recovery
                .publications
                .iter()
                .map(|p| Publication::clone(p))
                .collect();
        }

        announce_to(&self.node, &self.name, &subscriber, announce, &result);
        if self.room.subscribe(&client_id, subscriber).is_none() {
            self.node.metrics().subscriptions_added(1);
        }
        // Before the caller hears back, so `info` agrees with what the client just saw.
        self.count_active();
        if let Some(info) = presence {
            self.join(info);
        }
        result
    }

    /// Adds a presence entry, and tells subscribers when the namespace wants joins.
    fn join(&mut self, info: ClientInfo) {
        if self.room.join(info.clone()) && self.join_leave {
            if !self.relay_nodes.is_empty() {
                self.relay_out(FromRoom::Join(info_to_wire(&info)));
            }
            self.fan_out(Push {
                channel: self.name.to_string(),
                join: Some(Join { info: Some(info) }),
                ..Push::default()
            });
        }
    }

    /// Removes a presence entry, and tells subscribers when the namespace wants leaves.
    fn leave(&mut self, client_id: &str) {
        if let Some(info) = self.room.leave(client_id)
            && self.join_leave
        {
            if !self.relay_nodes.is_empty() {
                self.relay_out(FromRoom::Leave(info_to_wire(&info)));
            }
            self.fan_out(Push {
                channel: self.name.to_string(),
                leave: Some(Leave { info: Some(info) }),
                ..Push::default()
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn remote_subscribe(
        &mut self,
        from: NodeId,
        req: u64,
        client: Arc<str>,
        presence: Option<ClientInfo>,
        recover_since: Option<StreamPosition>,
        recovery_limit: usize,
        now: i64,
    ) {
        let position = self.room.position();
        let (recovered, publications) = match recover_since {
            Some(since) => {
                let recovery = self.room.recover(&since, recovery_limit, now);
                (
                    recovery.recovered,
                    publications_to_wire(&recovery.publications),
                )
            }
            None => (false, Vec::new()),
        };
        let answer = FromRoom::Subscribed {
            req,
            position: position_to_wire(&position),
            recovered,
            publications,
        };
        let Some(cluster) = self.node.cluster() else {
            return;
        };
        if !cluster.send(
            from,
            Frame::FromRoom {
                room: self.name.to_string(),
                msg: answer,
            },
        ) {
            // No link to the subscriber's node: its relay times out and the client retries.
            warn!(room = %self.name, node = %from, "subscribe answer not sent: no link");
            return;
        }
        if let Some(previous) = self.remote.insert(client.clone(), from) {
            self.release_relay(previous);
        }
        *self.relay_nodes.entry(from).or_default() += 1;
        if let Some(info) = presence {
            self.join(info);
        }
    }

    fn remote_unsubscribe(&mut self, client: &str) {
        if let Some(node) = self.remote.remove(client) {
            self.release_relay(node);
            self.leave(client);
        }
    }

    fn release_relay(&mut self, node: NodeId) {
        if let Some(count) = self.relay_nodes.get_mut(&node) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.relay_nodes.remove(&node);
            }
        }
    }

    /// Sends one copy of `msg` to every node with subscribers of this room; returns how many
    /// were queued.
    fn relay_out(&self, msg: FromRoom) -> u64 {
        if self.relay_nodes.is_empty() {
            return 0;
        }
        let Some(cluster) = self.node.cluster() else {
            return 0;
        };
        let mut sent = 0u64;
        for &node in self.relay_nodes.keys() {
            let frame = Frame::FromRoom {
                room: self.name.to_string(),
                msg: msg.clone(),
            };
            if cluster.send(node, frame) {
                sent += 1;
            } else {
                // The relay finds the gap by offset and fills it from history.
                debug!(room = %self.name, %node, "copy to relay node dropped");
            }
        }
        sent
    }

    /// Ships the room to `to` (see `cluster::handoff`). Its successors come first, before
    /// anything is awaited, so that nothing sent to the room from here on is lost: the local
    /// subscribers move into a relay following `to`, the node remembers where the room went,
    /// and the room leaves the table (what still reaches this actor is passed on, `pass_on`).
    /// Then the state goes to `to` on this node's link, after the publications already sent
    /// there, and `Moved` to every other node with subscribers. If the state cannot be shipped
    /// everyone is told to resubscribe instead.
    async fn hand_off(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        to: NodeId,
        shard: ShardId,
        map_version: u64,
    ) -> bool {
        let Some(cluster) = self.node.cluster().cloned() else {
            return false;
        };
        let me = cluster.node_id();
        let frame = shippable(
            room_state_to_wire(&self.name, &self.room, &self.remote, me),
            shard,
            map_version,
        );
        let position = self.room.position();
        let clients: Vec<Arc<str>> = self
            .room
            .subscribers()
            .map(|(client, _)| Arc::<str>::from(client))
            .collect();
        let mut subscribers = HashMap::with_capacity(clients.len());
        for client in clients {
            if let Some(subscriber) = self.room.unsubscribe(&client) {
                subscribers.insert(client, subscriber);
            }
        }
        if !subscribers.is_empty() {
            let taken_over = TakenOver {
                subscribers,
                last: position.offset,
                epoch: position.epoch,
            };
            if let Err(error) = self
                .node
                .relay_taking_over(self.name.clone(), to, taken_over)
            {
                warn!(room = %self.name, %error, "cannot start the relay for local subscribers");
            }
        }
        cluster.remember_handoff(self.name.clone(), to);
        self.node.forget_room(&self.name, myself);
        self.mode = Mode::Gone { to };
        let relay_nodes: Vec<NodeId> = std::mem::take(&mut self.relay_nodes)
            .into_keys()
            .filter(|&node| node != to)
            .collect();
        self.remote.clear();
        self.count_active();

        let shipped = match frame {
            Some(frame) => cluster.send_reliably(to, frame).await,
            None => false,
        };
        let msg = if shipped {
            self.node.metrics().handoff_room_sent();
            FromRoom::Moved { to }
        } else {
            warn!(room = %self.name, %to, "room state not shipped; subscribers resubscribe");
            if let Some(relay) = self.node.relay_actor(&self.name) {
                let _ = relay.send_message(RelayMsg::Close);
            }
            FromRoom::Closed
        };
        for node in relay_nodes {
            let frame = Frame::FromRoom {
                room: self.name.to_string(),
                msg: msg.clone(),
            };
            if !cluster.send_reliably(node, frame).await {
                debug!(room = %self.name, %node, "relay node unreachable for the move");
            }
        }
        debug!(room = %self.name, %to, shipped, "room handed off");
        shipped
    }

    /// Lets go of a stale room (see [`RoomMsg::Abandon`]): its local subscribers are told to
    /// resubscribe (2500), which reaches the room's owner, and recover there from history.
    /// Nothing goes to other nodes: their relays follow the map to the owner by themselves.
    fn abandon(&mut self, myself: &ActorRef<RoomMsg>) {
        self.node.forget_room(&self.name, myself);
        let clients: Vec<String> = self
            .room
            .subscribers()
            .map(|(client, _)| client.to_owned())
            .collect();
        for client in clients {
            self.unsubscribe(&client, None);
            self.node.resubscribe_client(&client, &self.name);
        }
        self.count_active();
        if let Some(cluster) = self.node.cluster() {
            cluster.set_replicated(&self.name, true);
        }
    }

    /// Puts `publication` on the shard's replica before anyone sees it: waits for the
    /// replica's answer, and sends the whole state instead when the replica does not hold the
    /// room in this epoch at the previous offset. A shard without a replica (replication factor
    /// 1, or no other live member) needs nothing. When the replica is down or does not answer
    /// in time, the publication is taken back and the publish fails: an acknowledgement
    /// always means two copies while the shard has a replica.
    async fn replicate(&mut self, publication: &Publication) -> Result<(), NodeError> {
        let Some(cluster) = self.node.cluster().cloned() else {
            return Ok(());
        };
        let outcome = match cluster.replica_of(&self.name) {
            ReplicaOf::None => {
                self.synced_replica = None;
                return Ok(());
            }
            // The shard just came here from its dead owner: its second copy is this node's,
            // until the leader names the next replica. Acknowledging now would promise two
            // copies with one.
            ReplicaOf::Reassigning => Err(NodeError::Cluster {
                reason: "the shard's replica is being reassigned".to_owned(),
            }),
            ReplicaOf::Node(replica) => {
                if self.confirm_on(&cluster, replica, publication).await {
                    Ok(())
                } else {
                    Err(NodeError::PeerUnavailable { node: replica.0 })
                }
            }
        };
        match &outcome {
            Ok(()) => self.node.metrics().replicated(),
            Err(_) => {
                self.synced_replica = None;
                cluster.set_replicated(&self.name, false);
                self.node.metrics().unreplicated();
                self.room.retract(publication);
            }
        }
        outcome
    }

    /// Whether `replica` confirms it holds the room up to `publication`.
    async fn confirm_on(
        &mut self,
        cluster: &Cluster,
        replica: NodeId,
        publication: &Publication,
    ) -> bool {
        if !cluster.is_alive(replica) {
            // Fail at once rather than wait for a dead node; the leader names a new replica
            // once the failure detector has declared this one dead.
            return false;
        }
        if self.synced_replica != Some(replica) {
            // The state includes this publication already.
            return self.sync_replica(cluster, replica).await;
        }
        let call = starling_cluster::Call::Replicate {
            room: self.name.to_string(),
            epoch: self.epoch.to_string(),
            publication: publication_to_wire(publication),
        };
        match cluster.call_within(replica, call, REPLICA_TIMEOUT).await {
            Ok(starling_cluster::CallReply::Done) => true,
            Ok(starling_cluster::CallReply::NeedState) => self.sync_replica(cluster, replica).await,
            other => {
                debug!(room = %self.name, %replica, ?other, "replica did not take the publication");
                false
            }
        }
    }

    /// Gives the shard's replica the room's state if it is not the one that has it.
    async fn sync_if_replica_changed(&mut self) {
        let Some(cluster) = self.node.cluster().cloned() else {
            return;
        };
        match cluster.replica_of(&self.name) {
            ReplicaOf::Reassigning => cluster.set_replicated(&self.name, false),
            ReplicaOf::Node(replica) if self.synced_replica != Some(replica) => {
                if cluster.is_alive(replica) {
                    self.sync_replica(&cluster, replica).await;
                } else {
                    cluster.set_replicated(&self.name, false);
                }
            }
            // In step with its replica, or without one: nothing is missing.
            _ => cluster.set_replicated(&self.name, true),
        }
    }

    /// Gives `replica` the room's whole state; true when it confirmed.
    async fn sync_replica(&mut self, cluster: &Cluster, replica: NodeId) -> bool {
        let wire = room_state_to_wire(&self.name, &self.room, &HashMap::new(), cluster.node_id());
        let call = starling_cluster::Call::ReplicaState {
            state: Box::new(wire),
        };
        let synced = match cluster.call_within(replica, call, REPLICA_TIMEOUT).await {
            Ok(starling_cluster::CallReply::Done) => true,
            other => {
                debug!(room = %self.name, %replica, ?other, "replica did not take the state");
                false
            }
        };
        self.synced_replica = synced.then_some(replica);
        cluster.set_replicated(&self.name, synced);
        synced
    }

    /// A handed-off room's answer to what still reaches it: leaving clients are passed on to
    /// whoever holds their subscription now; calls are dropped, so their callers route again.
    fn pass_on(&self, msg: RoomMsg, to: NodeId) {
        let Some(cluster) = self.node.cluster() else {
            return;
        };
        match msg {
            RoomMsg::Unsubscribe { client_id, notify } => {
                if let Some(relay) = self.node.relay_actor(&self.name) {
                    let _ = relay.send_message(RelayMsg::Unsubscribe { client_id, notify });
                }
            }
            RoomMsg::RemoteUnsubscribe { from, client } => {
                let forwarded = Frame::ToRoom {
                    room: self.name.to_string(),
                    msg: starling_cluster::ToRoom::ForwardedUnsubscribe {
                        client: client.to_string(),
                        origin: from,
                    },
                };
                if !cluster.send(to, forwarded) {
                    debug!(room = %self.name, %to, "unsubscribe not passed on: no link");
                }
            }
            RoomMsg::RemoteSubscribe { from, req, .. } => {
                let refused = Frame::FromRoom {
                    room: self.name.to_string(),
                    msg: FromRoom::Refused {
                        req,
                        refusal: starling_cluster::Refusal::NotOwner {
                            map_version: cluster.map_version(),
                        },
                    },
                };
                let _ = cluster.send(from, refused);
            }
            _ => {}
        }
    }

    /// Takes the state a room's old owner shipped, and the subscribers of this node's relay of
    /// the room. Returns the held messages to handle now that the room serves.
    async fn resume(
        &mut self,
        wire: WireRoomState,
        relay: Option<ActorRef<RelayMsg>>,
        myself: &ActorRef<RoomMsg>,
    ) -> Vec<(tokio::time::Instant, RoomMsg)> {
        if !matches!(self.mode, Mode::Awaiting { .. }) {
            warn!(room = %self.name, "handed-off state for a room already serving; dropped");
            return Vec::new();
        }
        let presence = crate::cluster::presence_from_wire(&wire);
        let position = StreamPosition {
            offset: wire.offset,
            epoch: wire.epoch.clone(),
        };
        let history = wire
            .history
            .into_iter()
            .map(|p| Arc::new(publication_from_wire(p)));
        match Room::resume(*self.room.options(), position, history) {
            Ok(room) => self.room = room,
            Err(error) => {
                warn!(room = %self.name, %error, "handed-off state unusable; starting afresh");
                self.start_fresh(myself);
                return self.become_ready();
            }
        }
        self.epoch = wire.epoch.as_str().into();
        for info in presence {
            self.room.join(info);
        }
        let me = self.node.cluster().map(|c| c.node_id());
        for (client, node) in wire.subscribers {
            let client: Arc<str> = client.into();
            if Some(node) == me {
                self.adopting.insert(client);
            } else {
                *self.relay_nodes.entry(node).or_default() += 1;
                self.remote.insert(client, node);
            }
        }
        if let Some(relay) = relay {
            // The relay answers after the publications already in its mailbox, which the old
            // owner sent before the state: what it passed on is exactly up to `last`.
            match relay
                .call(
                    |reply| RelayMsg::Absorb { reply },
                    Some(Duration::from_secs(3)),
                )
                .await
            {
                Ok(ractor::rpc::CallResult::Success((subscribers, last))) => {
                    self.adopt(subscribers, last);
                }
                other => {
                    debug!(room = %self.name, ?other, "no relay subscribers to take over");
                }
            }
        }
        self.forget_adopting();
        self.count_active();
        self.become_ready()
    }

    /// Takes the local relay's subscribers over; passes them what the relay had not yet.
    fn adopt(&mut self, subscribers: Vec<(Arc<str>, Subscriber)>, last: Option<u64>) {
        let mut adopted = Vec::with_capacity(subscribers.len());
        for (client, subscriber) in subscribers {
            self.adopting.remove(&client);
            adopted.push(subscriber.clone());
            self.room.subscribe(&client, subscriber);
        }
        if let Some(last) = last {
            let missed: Vec<Arc<Publication>> = self
                .room
                .retained()
                .filter(|p| p.offset > last)
                .cloned()
                .collect();
            for publication in missed {
                let push = Push {
                    channel: self.name.to_string(),
                    r#pub: Some(Publication::clone(&publication)),
                    ..Push::default()
                };
                fan_out_local(&self.node, &self.name, adopted.iter(), push);
            }
        }
    }

    /// No state came for this room, so it starts a new stream. Anyone who may follow it from
    /// an old one must hear so: this node's relay that waited to become the room, and relays
    /// elsewhere that followed the old owner's `Moved` here although the state was lost
    /// (their subscribers resubscribe and learn `recovered: false`).
    fn start_fresh(&mut self, myself: &ActorRef<RoomMsg>) {
        // A copy this node holds as the shard's replica (the old owner died mid-hand-off) is
        // the room's stream still: continue it, so those resubscribing recover.
        if let Some((position, history)) = self
            .node
            .cluster()
            .and_then(|cluster| cluster.take_replica(&self.name))
        {
            match Room::resume(*self.room.options(), position, history) {
                Ok(room) => {
                    debug!(room = %self.name, offset = room.position().offset, epoch = room.epoch(), "hand-off abandoned; room continues from its replica");
                    self.epoch = room.epoch().into();
                    self.room = room;
                    self.keep_until = Some(keep_for_resubscribers(myself));
                }
                Err(error) => warn!(room = %self.name, %error, "replica copy unusable"),
            }
        }
        if let Some(relay) = self.node.relay_actor(&self.name) {
            let _ = relay.send_message(RelayMsg::Close);
        }
        if let Some(cluster) = self.node.cluster() {
            for peer in cluster.live_peers() {
                let closed = Frame::FromRoom {
                    room: self.name.to_string(),
                    msg: FromRoom::Closed,
                };
                if !cluster.send(peer, closed) {
                    debug!(room = %self.name, %peer, "cannot tell a peer the room restarted");
                }
            }
        }
    }

    /// Clients the shipped state placed on this node that no relay handed over: they left.
    fn forget_adopting(&mut self) {
        for client in std::mem::take(&mut self.adopting) {
            self.leave(&client);
        }
    }

    /// Serves from now on; returns the messages held meanwhile, in order.
    fn become_ready(&mut self) -> Vec<(tokio::time::Instant, RoomMsg)> {
        match std::mem::replace(&mut self.mode, Mode::Ready) {
            Mode::Awaiting { held, timer } => {
                if let Some(timer) = timer {
                    timer.abort();
                }
                held
            }
            Mode::Ready => Vec::new(),
            gone @ Mode::Gone { .. } => {
                self.mode = gone;
                Vec::new()
            }
        }
    }

    fn unsubscribe(&mut self, client_id: &str, notify: Option<UnsubscribeCode>) {
        if let Some(subscriber) = self.room.unsubscribe(client_id) {
            self.node.metrics().subscriptions_removed(1);
            if let Some(code) = notify {
                queue_to(
                    &self.node,
                    &self.name,
                    &subscriber,
                    &code.push(self.name.to_string()),
                    "unsubscribe push",
                );
            }
        }
        self.leave(client_id);
    }

    fn fan_out_publication(&self, publication: &Publication) {
        self.fan_out(Push {
            channel: self.name.to_string(),
            r#pub: Some(publication.clone()),
            ..Push::default()
        });
    }

    /// Queues `push` for every local subscriber that should see it.
    fn fan_out(&self, push: Push) {
        fan_out_local(
            &self.node,
            &self.name,
            self.room.subscribers().map(|(_, subscriber)| subscriber),
            push,
        );
    }

    /// Keeps the node's channels gauge in step with whether this room has subscribers.
    fn count_active(&mut self) {
        let active = self.room.subscriber_count() > 0;
        if active != self.counted_active {
            self.counted_active = active;
            self.node.metrics().channel_active(active);
        }
    }

    /// After each message: keep a trim timer while history is held, and stop when idle.
    fn settle(&mut self, myself: &ActorRef<RoomMsg>, now: i64) {
        if !matches!(self.mode, Mode::Ready) {
            return;
        }
        self.count_active();
        let next_expiry = self.room.trim(now);
        let kept = self
            .keep_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        if self.room.is_idle(now) && self.remote.is_empty() && !kept {
            // Take the name off the table first so no new caller finds this actor; callers that
            // already hold the ref see their call fail and retry with a fresh room.
            self.node.forget_room(&self.name, myself);
            if let Some(cluster) = self.node.cluster() {
                if let Some(replica) = self.synced_replica {
                    cluster.forget_on_replica(&self.name, &self.epoch, replica);
                } else {
                    cluster.set_replicated(&self.name, true);
                }
            }
            myself.stop(None);
            return;
        }
        if let Some(at) = next_expiry
            && self.trim_timer.is_none()
        {
            let delay = Duration::from_millis(u64::try_from((at - now).max(1)).unwrap_or(1));
            self.trim_timer = Some(myself.send_after(delay, || RoomMsg::Trim).abort_handle());
        }
    }
}

/// How long a room continued from a replica's copy waits for its subscribers to come back
/// before it may stop as idle.
const RESUBSCRIBE_GRACE: Duration = Duration::from_secs(10);

/// The end of a continued room's grace, with a timer that looks at idleness again then.
fn keep_for_resubscribers(myself: &ActorRef<RoomMsg>) -> tokio::time::Instant {
    drop(myself.send_after(RESUBSCRIBE_GRACE, || RoomMsg::Trim));
    tokio::time::Instant::now() + RESUBSCRIBE_GRACE
}

/// Whether a message's sender waits for an answer (and gives up after a timeout).
fn waits_for_answer(msg: &RoomMsg) -> bool {
    matches!(
        msg,
        RoomMsg::Subscribe { .. }
            | RoomMsg::Publish { .. }
            | RoomMsg::RemoveHistory { .. }
            | RoomMsg::SubscriberCount { .. }
            | RoomMsg::History { .. }
            | RoomMsg::Presence { .. }
            | RoomMsg::PresenceStats { .. }
            | RoomMsg::RemoteSubscribe { .. }
    )
}

/// The hand-off frame of a room's state, within the frame size limit: history is halved from
/// the oldest end until it fits (recovery from that far back then answers `recovered: false`,
/// as after a trim). `None` when even the state without history does not fit.
fn shippable(mut wire: WireRoomState, shard: ShardId, map_version: u64) -> Option<Frame> {
    loop {
        let frame = Frame::Handoff(HandoffMsg::Room {
            shard,
            map_version,
            state: Box::new(wire),
        });
        if starling_cluster::encode(&frame).is_ok() {
            return Some(frame);
        }
        let Frame::Handoff(HandoffMsg::Room { state, .. }) = frame else {
            return None;
        };
        wire = *state;
        if wire.history.is_empty() {
            return None;
        }
        let keep = wire.history.len() / 2;
        wire.history.drain(..wire.history.len() - keep);
    }
}

/// The backstop for a room that waits for a hand-off: the shard's own timeout normally ends
/// the wait first.
fn await_timer(myself: &ActorRef<RoomMsg>) -> tokio::task::AbortHandle {
    myself
        .send_after(HANDOFF_TIMEOUT + Duration::from_secs(2), || {
            RoomMsg::AwaitTimeout
        })
        .abort_handle()
}

fn encoding_slot(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 0,
        Encoding::Protobuf => 1,
    }
}

/// Tells a new subscriber about its subscription as `announce` says: the subscribe reply, or
/// a subscribe push followed by the recovered publications. Shared by rooms and relays.
pub(crate) fn announce_to(
    node: &Node,
    room: &str,
    subscriber: &Subscriber,
    announce: Announce,
    result: &SubscribeResult,
) {
    match announce {
        Announce::Reply(id) => {
            let reply = Reply {
                id,
                subscribe: Some(result.clone()),
                ..Reply::default()
            };
            queue_to(node, room, subscriber, &reply, "subscribe reply");
        }
        Announce::Push => {
            let push = Push {
                channel: room.to_string(),
                subscribe: Some(Subscribe {
                    recoverable: result.recoverable,
                    epoch: result.epoch.clone(),
                    offset: result.offset,
                    positioned: result.positioned,
                    data: result.data.clone(),
                }),
                ..Push::default()
            };
            queue_to(node, room, subscriber, &Reply::push(push), "subscribe push");
            // The push has no room for a replay, so recovered publications follow it.
            for publication in &result.publications {
                let push = Push {
                    channel: room.to_string(),
                    r#pub: Some(publication.clone()),
                    ..Push::default()
                };
                queue_to(
                    node,
                    room,
                    subscriber,
                    &Reply::push(push),
                    "recovered publication",
                );
            }
        }
        Announce::ConnectReply => {}
    }
}

/// Encodes `reply` for one subscriber and queues it.
pub(crate) fn queue_to(
    node: &Node,
    room: &str,
    subscriber: &Subscriber,
    reply: &Reply,
    what: &'static str,
) {
    match encode_reply(subscriber.encoding, reply) {
        Ok(frame) => {
            if subscriber.outbound.push(frame).is_err() {
                node.metrics().slow_consumer_disconnect();
            }
        }
        Err(error) => {
            warn!(%room, %error, what, "cannot encode for subscriber");
        }
    }
}

/// Encodes `push` at most once per encoding and queues the bytes for every subscriber that
/// should see it. Shared by rooms (their local subscribers) and relays.
pub(crate) fn fan_out_local<'a>(
    node: &Node,
    room: &str,
    subscribers: impl Iterator<Item = &'a Subscriber>,
    push: Push,
) {
    let is_join_leave = push.join.is_some() || push.leave.is_some();
    let reply = Reply {
        push: Some(push),
        ..Reply::default()
    };
    let mut encoded: [Option<Bytes>; 2] = [None, None];
    let mut delivered = 0u64;
    for subscriber in subscribers {
        if is_join_leave && !subscriber.join_leave {
            continue;
        }
        let slot = &mut encoded[encoding_slot(subscriber.encoding)];
        let frame = match slot {
            Some(frame) => frame.clone(),
            None => match encode_reply(subscriber.encoding, &reply) {
                Ok(frame) => {
                    node.metrics().push_encoded();
                    slot.insert(frame).clone()
                }
                Err(error) => {
                    // Binary data cannot travel in a JSON frame. Skipping it would leave a
                    // silent gap, so the subscriber is told, as Centrifugo does: 3506.
                    debug!(%room, %error, "push not encodable for subscriber");
                    subscriber
                        .outbound
                        .close(DisconnectCode::InappropriateProtocol.into(), true);
                    continue;
                }
            },
        };
        if subscriber.outbound.push(frame).is_err() {
            node.metrics().slow_consumer_disconnect();
        } else {
            delivered += 1;
        }
    }
    node.metrics().publications_out(delivered);
}
