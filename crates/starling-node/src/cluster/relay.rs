//! `RelayActor`: this node's face of a room owned by another node.
//!
//! It holds the room's local subscribers and its place in the room's stream. Every local
//! subscribe goes to the owner (`ToRoom::Subscribe`), which answers in the room's own order on
//! its link to this node (`FromRoom::Subscribed`), so the relay adds the subscriber exactly
//! between the publications the answer already covers and those it does not. The owner counts
//! this node in while it has subscribers here, and sends each publication once to this node
//! however many local subscribers share it; the relay encodes it once per wire encoding and
//! queues the bytes for each of them.
//!
//! The order is kept by a [`RelayCursor`]: frames are taken from the node the relay follows,
//! offsets are checked (a gap — a copy lost on a full link — is filled from the owner's
//! history first), and when the room's shard moves the old owner's last frame,
//! `FromRoom::Moved`, hands the relay to the new owner, whose frames were held until then.
//! Subscribers notice nothing. Only when no `Moved` can come (the old owner died, or did not
//! send it within [`HANDOFF_TIMEOUT`]) are they sent to resubscribe with code 2500, which the
//! SDKs do with recovery, through whichever node owns the room now. When the room moves to
//! *this* node, the new room actor takes the relay's subscribers over (`Absorb`).

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use starling_cluster::{Call, CallReply, Frame, FromRoom, Refusal, ToRoom, WirePosition};
use starling_placement::NodeId;
use starling_protocol::{
    ClientInfo, Join, Leave, Publication, Push, StreamPosition, SubscribeResult,
};
use starling_room::{RelayCursor, RelayFrame, RelayStep};
use tracing::{debug, info, warn};

use super::{
    CALL_TIMEOUT, HANDOFF_TIMEOUT, info_from_wire, info_to_wire, position_from_wire,
    position_to_wire, publication_from_wire, unexpected,
};
use crate::error::NodeError;
use crate::node::Node;
use crate::room_actor::{SubscribeParams, Subscriber, announce_to, fan_out_local};

/// Frames from a room's next owner a relay holds while the old owner's last ones are on their
/// way; past this the hand-off is given up and the subscribers resubscribe.
const MAX_HELD: usize = 10_000;

/// Messages a [`RelayActor`] handles.
#[derive(Debug)]
pub(crate) enum RelayMsg {
    /// A local connection subscribes.
    Subscribe {
        params: Box<SubscribeParams>,
        reply: RpcReplyPort<Result<SubscribeResult, NodeError>>,
    },
    /// A local connection leaves.
    Unsubscribe {
        client_id: Arc<str>,
        notify: Option<starling_protocol::UnsubscribeCode>,
    },
    /// A room owner's message, in the order node `from` sent them.
    FromRoom { from: NodeId, msg: FromRoom },
    /// Subscribe request `req` got no answer in time.
    Expire(u64),
    /// The serving map gives the room to `owner`. With `handoff`, the old owner is alive and
    /// will send its `Moved`; without, nobody will.
    Follow { owner: NodeId, handoff: bool },
    /// Timer: the hand-off the relay waits for did not finish in time.
    FollowTimeout,
    /// This node owns the room now: answer with the subscribers and the last offset passed
    /// on to them, for the room to take over, and stop.
    Absorb { reply: RpcReplyPort<Absorbed> },
    /// The room's owner went away: send everyone to resubscribe, then stop.
    Close,
    /// How many local connections are subscribed.
    SubscriberCount { reply: RpcReplyPort<usize> },
}

pub(crate) struct RelayActor;

/// What a relay hands the room that takes it over: its subscribers, and the last offset it
/// passed on to them.
pub(crate) type Absorbed = (Vec<(Arc<str>, Subscriber)>, Option<u64>);

/// The local subscribers of a room this node just handed away, for the relay that keeps
/// serving them.
pub(crate) struct TakenOver {
    pub(crate) subscribers: HashMap<Arc<str>, Subscriber>,
    /// The last offset they were sent.
    pub(crate) last: u64,
    pub(crate) epoch: String,
}

pub(crate) struct RelayArgs {
    pub(crate) name: Arc<str>,
    pub(crate) owner: NodeId,
    pub(crate) node: Node,
    pub(crate) taken_over: Option<TakenOver>,
}

struct Pending {
    params: Box<SubscribeParams>,
    reply: RpcReplyPort<Result<SubscribeResult, NodeError>>,
    timer: tokio::task::AbortHandle,
}

/// What the cursor carries from an owner frame to the step that passes it on.
enum Held {
    Publication(Publication),
    Join(ClientInfo),
    Leave(ClientInfo),
    Subscribed {
        req: u64,
        position: WirePosition,
        recovered: bool,
        publications: Vec<starling_cluster::WirePublication>,
    },
}

pub(crate) struct RelayState {
    name: Arc<str>,
    node: Node,
    /// Where subscribes, unsubscribes and history calls go: the room's owner in the map this
    /// node serves by. The cursor may still follow the previous owner.
    target: NodeId,
    cursor: RelayCursor<NodeId, Held>,
    /// The room's epoch, from the answers (or the hand-off).
    epoch: Option<String>,
    subscribers: HashMap<Arc<str>, Subscriber>,
    pending: HashMap<u64, Pending>,
    next_req: u64,
    /// While waiting for a `Moved` (or to be absorbed).
    follow_timer: Option<tokio::task::AbortHandle>,
}

impl Actor for RelayActor {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let (cursor, epoch, subscribers) = match args.taken_over {
            Some(taken) => {
                if !taken.subscribers.is_empty() {
                    args.node.metrics().channel_active(true);
                }
                (
                    RelayCursor::at(args.owner, taken.last, MAX_HELD),
                    Some(taken.epoch),
                    taken.subscribers,
                )
            }
            None => (RelayCursor::new(args.owner, MAX_HELD), None, HashMap::new()),
        };
        Ok(RelayState {
            name: args.name,
            target: args.owner,
            node: args.node,
            cursor,
            epoch,
            subscribers,
            pending: HashMap::new(),
            next_req: 1,
            follow_timer: None,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        state.node.forget_relay(&state.name, &myself);
        if let Some(timer) = state.follow_timer.take() {
            timer.abort();
        }
        for (_, pending) in state.pending.drain() {
            pending.timer.abort();
            let _ = pending.reply.send(Err(NodeError::PeerUnavailable {
                node: state.target.0,
            }));
        }
        let removed = state.subscribers.len() as u64;
        if removed > 0 {
            state.node.metrics().subscriptions_removed(removed);
            state.node.metrics().channel_active(false);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        msg: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RelayMsg::Subscribe { params, reply } => state.subscribe(&myself, params, reply),
            RelayMsg::Unsubscribe { client_id, notify } => {
                state.unsubscribe(&client_id, notify);
            }
            RelayMsg::FromRoom { from, msg } => {
                // Boxed while it runs: inline, its future (≈ 5 KiB) would sit in ractor's
                // loop for the relay's whole life.
                if Box::pin(state.on_owner_message(&myself, from, msg)).await {
                    return Ok(());
                }
            }
            RelayMsg::Expire(req) => {
                if let Some(pending) = state.pending.remove(&req) {
                    warn!(
                        room = %state.name,
                        owner = %state.target,
                        following = %state.cursor.owner(),
                        held = state.cursor.held(),
                        "subscribe unanswered"
                    );
                    let _ = pending.reply.send(Err(NodeError::PeerUnavailable {
                        node: state.target.0,
                    }));
                }
            }
            RelayMsg::SubscriberCount { reply } => {
                let _ = reply.send(state.subscribers.len());
            }
            RelayMsg::Follow { owner, handoff } => state.follow(&myself, owner, handoff),
            RelayMsg::FollowTimeout => {
                state.follow_timer = None;
                if state.cursor.owner() != state.target {
                    warn!(
                        room = %state.name,
                        from = %state.cursor.owner(),
                        to = %state.target,
                        "room's hand-off not seen in time; subscribers resubscribe"
                    );
                    state.restart();
                }
            }
            RelayMsg::Absorb { reply } => {
                state.absorb(&myself, reply);
                return Ok(());
            }
            RelayMsg::Close => {
                state.close(&myself);
                myself.stop(None);
                return Ok(());
            }
        }
        let waiting = state.follow_timer.is_some();
        if state.subscribers.is_empty() && state.pending.is_empty() && !waiting {
            // Take the name off the table first, so no new subscriber finds a stopping relay.
            state.node.forget_relay(&state.name, &myself);
            myself.stop(None);
        }
        Ok(())
    }
}

impl RelayState {
    fn subscribe(
        &mut self,
        myself: &ActorRef<RelayMsg>,
        params: Box<SubscribeParams>,
        reply: RpcReplyPort<Result<SubscribeResult, NodeError>>,
    ) {
        let Some(cluster) = self.node.cluster() else {
            let _ = reply.send(Err(NodeError::PeerUnavailable {
                node: self.target.0,
            }));
            return;
        };
        let req = self.next_req;
        self.next_req += 1;
        let recover_since = params
            .recover_from
            .as_ref()
            .filter(|_| params.recoverable)
            .map(position_to_wire);
        let msg = ToRoom::Subscribe {
            map_version: cluster.map_version(),
            req,
            client: params.client_id.to_string(),
            presence: params.presence.as_ref().map(info_to_wire),
            recover_since,
            recovery_limit: u32::try_from(params.recovery_limit).unwrap_or(u32::MAX),
        };
        let frame = Frame::ToRoom {
            room: self.name.to_string(),
            msg,
        };
        if !cluster.send(self.target, frame) {
            let _ = reply.send(Err(NodeError::PeerUnavailable {
                node: self.target.0,
            }));
            return;
        }
        let timer = myself
            .send_after(CALL_TIMEOUT, move || RelayMsg::Expire(req))
            .abort_handle();
        self.pending.insert(
            req,
            Pending {
                params,
                reply,
                timer,
            },
        );
    }

    fn unsubscribe(&mut self, client_id: &str, notify: Option<starling_protocol::UnsubscribeCode>) {
        let Some(subscriber) = self.subscribers.remove(client_id) else {
            return;
        };
        self.node.metrics().subscriptions_removed(1);
        if self.subscribers.is_empty() {
            self.node.metrics().channel_active(false);
        }
        if let Some(code) = notify {
            let push = code.push(self.name.to_string());
            crate::room_actor::queue_to(&self.node, &self.name, &subscriber, &push, "unsubscribe");
        }
        let Some(cluster) = self.node.cluster() else {
            return;
        };
        // While a hand-off is under way both owners hear it: the old one passes it on if the
        // room has left it already, the new one holds it until the room's state arrives.
        let mut owners = vec![self.target];
        if self.cursor.owner() != self.target {
            owners.push(self.cursor.owner());
        }
        for owner in owners {
            if owner == cluster.node_id() {
                continue;
            }
            let frame = Frame::ToRoom {
                room: self.name.to_string(),
                msg: ToRoom::Unsubscribe {
                    client: client_id.to_string(),
                },
            };
            if !cluster.send(owner, frame) {
                // The owner is unreachable; when it is declared dead its presence entries for
                // this node go with it.
                debug!(room = %self.name, %owner, "unsubscribe not sent: no link to the owner");
            }
        }
    }

    /// Handles one frame from node `from`; true when the relay stopped.
    async fn on_owner_message(
        &mut self,
        myself: &ActorRef<RelayMsg>,
        from: NodeId,
        msg: FromRoom,
    ) -> bool {
        let frame = match msg {
            FromRoom::Refused { req, refusal } => {
                // Answers are paired by request id, whoever sends them.
                if let Some(pending) = self.pending.remove(&req) {
                    pending.timer.abort();
                    let error = match refusal {
                        Refusal::NotOwner { map_version } => NodeError::StaleRoute { map_version },
                        other => unexpected(CallReply::Refused(other)),
                    };
                    let _ = pending.reply.send(Err(error));
                }
                return false;
            }
            FromRoom::Closed => {
                // From the node followed, or from the room's new owner: either way the stream
                // the subscribers are on has ended.
                if from == self.cursor.owner() || from == self.target {
                    self.close(myself);
                    myself.stop(None);
                    return true;
                }
                return false;
            }
            FromRoom::Subscribed {
                req,
                position,
                recovered,
                publications,
            } => RelayFrame::Answer {
                offset: position.offset,
                item: Held::Subscribed {
                    req,
                    position,
                    recovered,
                    publications,
                },
            },
            FromRoom::Publication(publication) => RelayFrame::Item {
                offset: publication.offset,
                item: Held::Publication(publication_from_wire(publication)),
            },
            FromRoom::Join(info) => RelayFrame::Item {
                offset: 0,
                item: Held::Join(info_from_wire(info)),
            },
            FromRoom::Leave(info) => RelayFrame::Item {
                offset: 0,
                item: Held::Leave(info_from_wire(info)),
            },
            FromRoom::Moved { to } => RelayFrame::Moved { to },
        };
        let before = self.cursor.owner();
        let mut steps = Vec::new();
        if self.cursor.receive(from, frame, &mut steps).is_err() {
            warn!(room = %self.name, held = MAX_HELD, "too many frames held for a hand-off");
            self.restart();
            return false;
        }
        for step in steps {
            match step {
                RelayStep::Deliver(held) => self.deliver(held),
                RelayStep::Answer(held) => self.answered(held),
                RelayStep::Fill { after, upto } => self.fill_gap(after, upto).await,
            }
        }
        if self.cursor.owner() != before {
            info!(room = %self.name, from = %before, to = %self.cursor.owner(), "relay follows the room's new owner");
            self.node.metrics().relay_followed();
            if self.cursor.owner() == self.target
                && let Some(timer) = self.follow_timer.take()
            {
                timer.abort();
            }
        }
        false
    }

    fn answered(&mut self, held: Held) {
        let Held::Subscribed {
            req,
            position,
            recovered,
            publications,
        } = held
        else {
            return;
        };
        let Some(pending) = self.pending.remove(&req) else {
            return;
        };
        pending.timer.abort();
        let position = position_from_wire(position);
        if self.epoch.as_ref().is_some_and(|e| *e != position.epoch) {
            // The room restarted (a failover): subscribers from the old stream resubscribe.
            self.resubscribe_all();
        }
        self.epoch = Some(position.epoch.clone());
        let params = *pending.params;
        let mut result = SubscribeResult {
            recoverable: params.recoverable,
            positioned: params.positioned || params.recoverable,
            data: params.data.clone(),
            expires: params.expires_in.is_some(),
            ttl: params.expires_in.unwrap_or(0),
            ..SubscribeResult::default()
        };
        if result.positioned {
            result.offset = position.offset;
            result.epoch = position.epoch.clone();
        }
        if params.recover_from.is_some() && params.recoverable {
            result.was_recovering = true;
            result.recovered = recovered;
            result.publications = publications
                .into_iter()
                .map(publication_from_wire)
                .collect();
        }
        announce_to(
            &self.node,
            &self.name,
            &params.subscriber,
            params.announce,
            &result,
        );
        if self.subscribers.is_empty() {
            self.node.metrics().channel_active(true);
        }
        if self
            .subscribers
            .insert(params.client_id.clone(), params.subscriber)
            .is_none()
        {
            self.node.metrics().subscriptions_added(1);
        }
        let _ = pending.reply.send(Ok(result));
    }

    fn deliver(&self, held: Held) {
        let push = match held {
            Held::Publication(publication) => Push {
                channel: self.name.to_string(),
                r#pub: Some(publication),
                ..Push::default()
            },
            Held::Join(info) => Push {
                channel: self.name.to_string(),
                join: Some(Join { info: Some(info) }),
                ..Push::default()
            },
            Held::Leave(info) => Push {
                channel: self.name.to_string(),
                leave: Some(Leave { info: Some(info) }),
                ..Push::default()
            },
            Held::Subscribed { .. } => return,
        };
        fan_out_local(&self.node, &self.name, self.subscribers.values(), push);
    }

    /// Fetches the publications after offset `after` and before `upto` from the owner's
    /// history and passes them on.
    async fn fill_gap(&mut self, after: u64, upto: u64) {
        let missing = upto - after - 1;
        self.node.metrics().relay_gap_filled();
        warn!(room = %self.name, after, missing, "offset gap; filling from history");
        let since = self.epoch.clone().map(|epoch| StreamPosition {
            offset: after,
            epoch,
        });
        let query = starling_room::HistoryQuery {
            since,
            limit: i32::try_from(missing).unwrap_or(i32::MAX),
            reverse: false,
        };
        // Asked of the node followed, then of the room's new owner — never of this node, whose
        // own room may be waiting for this relay's subscribers (a call would wait on a call).
        let history = self.history_from_owners(query).await;
        match history {
            Ok(page) => {
                for publication in page.publications {
                    if publication.offset > after && publication.offset < upto {
                        self.deliver(Held::Publication(Publication::clone(&publication)));
                    }
                }
            }
            Err(error) => {
                // The history no longer reaches back (or the owner is gone): subscribers
                // resubscribe and learn from the owner whether they recovered.
                warn!(room = %self.name, %error, "cannot fill gap; resubscribing subscribers");
                self.resubscribe_all();
            }
        }
    }

    /// A history page from the node followed or the room's new owner, whichever answers.
    async fn history_from_owners(
        &self,
        query: starling_room::HistoryQuery,
    ) -> Result<starling_room::HistoryPage, NodeError> {
        let Some(cluster) = self.node.cluster() else {
            return Err(NodeError::PeerUnavailable {
                node: self.target.0,
            });
        };
        let mut owners = vec![self.cursor.owner()];
        if self.target != self.cursor.owner() {
            owners.push(self.target);
        }
        let mut last_error = NodeError::PeerUnavailable {
            node: self.target.0,
        };
        for owner in owners.into_iter().filter(|&o| o != cluster.node_id()) {
            let call = Call::History {
                map_version: cluster.map_version(),
                room: self.name.to_string(),
                since: query.since.as_ref().map(position_to_wire),
                limit: query.limit,
                reverse: query.reverse,
            };
            match cluster.call(owner, call).await {
                Ok(CallReply::History { publications, .. }) => {
                    return Ok(starling_room::HistoryPage {
                        publications: publications
                            .into_iter()
                            .map(|p| Arc::new(publication_from_wire(p)))
                            .collect(),
                        position: self
                            .epoch
                            .clone()
                            .map(|epoch| StreamPosition { offset: 0, epoch })
                            .unwrap_or_default(),
                    });
                }
                Ok(other) => last_error = unexpected(other),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The serving map gives the room to `owner`.
    fn follow(&mut self, myself: &ActorRef<RelayMsg>, owner: NodeId, handoff: bool) {
        self.target = owner;
        if self.subscribers.is_empty() && self.pending.is_empty() {
            // No stream to keep whole: follow the new owner at once.
            self.cursor.reset(owner);
            self.epoch = None;
            return;
        }
        if handoff && self.node.cluster().is_some_and(|c| c.node_id() == owner) {
            // The room comes to this node: its actor takes the subscribers (`Absorb`) or, if
            // it starts without a state, closes this relay. Only if neither happens in time
            // do the subscribers resubscribe.
            if self.follow_timer.is_none() {
                self.follow_timer = Some(
                    myself
                        .send_after(HANDOFF_TIMEOUT * 2, || RelayMsg::FollowTimeout)
                        .abort_handle(),
                );
            }
            return;
        }
        if owner == self.cursor.owner() {
            if let Some(timer) = self.follow_timer.take() {
                timer.abort();
            }
            return;
        }
        if !handoff {
            // No `Moved` will come; the room starts over on its new owner.
            info!(room = %self.name, from = %self.cursor.owner(), to = %owner, "room's owner gone; subscribers resubscribe");
            self.restart();
            return;
        }
        if self.follow_timer.is_none() {
            self.follow_timer = Some(
                myself
                    .send_after(HANDOFF_TIMEOUT, || RelayMsg::FollowTimeout)
                    .abort_handle(),
            );
        }
    }

    /// Hands the subscribers to the room (this node owns the room now) and stops.
    fn absorb(&mut self, myself: &ActorRef<RelayMsg>, reply: RpcReplyPort<Absorbed>) {
        let map_version = self.node.cluster().map_or(0, |c| c.map_version());
        for (_, pending) in self.pending.drain() {
            pending.timer.abort();
            // Routed again, to the room on this node.
            let _ = pending
                .reply
                .send(Err(NodeError::StaleRoute { map_version }));
        }
        let subscribers: Vec<(Arc<str>, Subscriber)> = self.subscribers.drain().collect();
        if !subscribers.is_empty() {
            self.node.metrics().channel_active(false);
        }
        let count = subscribers.len();
        // Their subscription counts move with them: the room does not count them again.
        if reply.send((subscribers, self.cursor.last())).is_err() {
            warn!(room = %self.name, count, "room gone before taking the relay's subscribers");
            self.node.metrics().subscriptions_removed(count as u64);
        }
        debug!(room = %self.name, count, "relay absorbed by the room");
        self.node.forget_relay(&self.name, myself);
        myself.stop(None);
    }

    /// Gives up on the stream: subscribers resubscribe, and the relay follows its target
    /// afresh.
    fn restart(&mut self) {
        self.resubscribe_all();
        self.cursor.reset(self.target);
        self.epoch = None;
        if let Some(timer) = self.follow_timer.take() {
            timer.abort();
        }
    }

    /// Tells every local subscriber to resubscribe (2500) and forgets them.
    fn resubscribe_all(&mut self) {
        let count = self.subscribers.len() as u64;
        for (client_id, _) in self.subscribers.drain() {
            self.node.resubscribe_client(&client_id, &self.name);
        }
        if count > 0 {
            self.node.metrics().subscriptions_removed(count);
            self.node.metrics().channel_active(false);
        }
    }

    fn close(&mut self, myself: &ActorRef<RelayMsg>) {
        debug!(room = %self.name, owner = %self.target, "relay closing");
        self.node.forget_relay(&self.name, myself);
        self.resubscribe_all();
        for (_, pending) in self.pending.drain() {
            pending.timer.abort();
            let _ = pending.reply.send(Err(NodeError::PeerUnavailable {
                node: self.target.0,
            }));
        }
    }
}
