//! `RelayActor`: this node's face of a room owned by another node.
//!
//! It holds the room's local subscribers and the last stream position it has passed on. Every
//! local subscribe goes to the owner (`ToRoom::Subscribe`), which answers in the room's own
//! order on its link to this node (`FromRoom::Subscribed`), so the relay adds the subscriber
//! exactly between the publications the answer already covers and those it does not. The
//! owner counts this node in while it has subscribers here, and sends each publication once
//! to this node however many local subscribers share it; the relay encodes it once per wire
//! encoding and queues the bytes for each of them.
//!
//! Offsets are checked: a publication more than one past the last one seen means frames were
//! lost (a full link queue), and the relay fills the gap from the owner's history before going
//! on. When the owner stops serving the room (its shard moved, or it died and the map gave the
//! shard to another node) every local subscriber gets an unsubscribe push with code 2500, on
//! which the SDKs resubscribe, with recovery, through whichever node owns the room now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use starling_cluster::{Call, CallReply, Frame, FromRoom, Refusal, ToRoom};
use starling_placement::NodeId;
use starling_protocol::{Join, Leave, Publication, Push, StreamPosition, SubscribeResult};
use tracing::{debug, warn};

use super::{
    CALL_TIMEOUT, info_from_wire, info_to_wire, position_from_wire, position_to_wire,
    publication_from_wire, unexpected,
};
use crate::error::NodeError;
use crate::node::Node;
use crate::room_actor::{SubscribeParams, Subscriber, announce_to, fan_out_local};

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
    /// The owner's message, in the order it sent them.
    FromRoom(FromRoom),
    /// Subscribe request `req` got no answer in time.
    Expire(u64),
    /// The room's owner changed or went away: send everyone to resubscribe, then stop.
    Close,
    /// How many local connections are subscribed.
    SubscriberCount { reply: RpcReplyPort<usize> },
}

pub(crate) struct RelayActor;

pub(crate) struct RelayArgs {
    pub(crate) name: Arc<str>,
    pub(crate) owner: NodeId,
    pub(crate) node: Node,
}

struct Pending {
    params: Box<SubscribeParams>,
    reply: RpcReplyPort<Result<SubscribeResult, NodeError>>,
    timer: tokio::task::AbortHandle,
}

pub(crate) struct RelayState {
    name: Arc<str>,
    owner: NodeId,
    node: Node,
    subscribers: HashMap<Arc<str>, Subscriber>,
    pending: HashMap<u64, Pending>,
    /// The last position passed on (or learnt from a subscribe answer).
    position: Option<StreamPosition>,
    next_req: u64,
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
        Ok(RelayState {
            name: args.name,
            owner: args.owner,
            node: args.node,
            subscribers: HashMap::new(),
            pending: HashMap::new(),
            position: None,
            next_req: 1,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        state.node.forget_relay(&state.name, &myself);
        for (_, pending) in state.pending.drain() {
            pending.timer.abort();
            let _ = pending.reply.send(Err(NodeError::PeerUnavailable {
                node: state.owner.0,
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
            RelayMsg::FromRoom(msg) => state.on_owner_message(&myself, msg).await,
            RelayMsg::Expire(req) => {
                if let Some(pending) = state.pending.remove(&req) {
                    warn!(room = %state.name, owner = %state.owner, "subscribe unanswered");
                    let _ = pending.reply.send(Err(NodeError::PeerUnavailable {
                        node: state.owner.0,
                    }));
                }
            }
            RelayMsg::SubscriberCount { reply } => {
                let _ = reply.send(state.subscribers.len());
            }
            RelayMsg::Close => {
                state.close(&myself);
                myself.stop(None);
                return Ok(());
            }
        }
        if state.subscribers.is_empty() && state.pending.is_empty() {
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
            let _ = reply.send(Err(NodeError::PeerUnavailable { node: self.owner.0 }));
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
        if !cluster.send(self.owner, frame) {
            let _ = reply.send(Err(NodeError::PeerUnavailable { node: self.owner.0 }));
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
        if let Some(cluster) = self.node.cluster() {
            let frame = Frame::ToRoom {
                room: self.name.to_string(),
                msg: ToRoom::Unsubscribe {
                    client: client_id.to_string(),
                },
            };
            if !cluster.send(self.owner, frame) {
                // The owner is unreachable; when it is declared dead its presence entries for
                // this node go with it.
                debug!(room = %self.name, "unsubscribe not sent: no link to the owner");
            }
        }
    }

    async fn on_owner_message(&mut self, myself: &ActorRef<RelayMsg>, msg: FromRoom) {
        match msg {
            FromRoom::Subscribed {
                req,
                position,
                recovered,
                publications,
            } => {
                let Some(pending) = self.pending.remove(&req) else {
                    return;
                };
                pending.timer.abort();
                let position = position_from_wire(position);
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
                // In the owner's order, this answer comes after every publication up to
                // `position`: from here on the relay expects the next offset.
                let behind = self
                    .position
                    .as_ref()
                    .is_none_or(|p| p.epoch != position.epoch || p.offset < position.offset);
                if behind {
                    self.position = Some(position);
                }
                let _ = pending.reply.send(Ok(result));
            }
            FromRoom::Refused { req, refusal } => {
                if let Some(pending) = self.pending.remove(&req) {
                    pending.timer.abort();
                    let error = match refusal {
                        Refusal::NotOwner { map_version } => NodeError::StaleRoute { map_version },
                        other => unexpected(CallReply::Refused(other)),
                    };
                    let _ = pending.reply.send(Err(error));
                }
            }
            FromRoom::Publication(publication) => {
                let publication = publication_from_wire(publication);
                self.on_publication(publication).await;
            }
            FromRoom::Join(info) => {
                let push = Push {
                    channel: self.name.to_string(),
                    join: Some(Join {
                        info: Some(info_from_wire(info)),
                    }),
                    ..Push::default()
                };
                fan_out_local(&self.node, &self.name, self.subscribers.values(), push);
            }
            FromRoom::Leave(info) => {
                let push = Push {
                    channel: self.name.to_string(),
                    leave: Some(Leave {
                        info: Some(info_from_wire(info)),
                    }),
                    ..Push::default()
                };
                fan_out_local(&self.node, &self.name, self.subscribers.values(), push);
            }
            FromRoom::Closed => {
                self.close(myself);
                myself.stop(None);
            }
        }
    }

    async fn on_publication(&mut self, publication: Publication) {
        match arrival(self.position.as_ref(), publication.offset) {
            Arrival::Unsequenced => {}
            Arrival::Unwanted | Arrival::Duplicate => return,
            Arrival::Next => {}
            Arrival::Gap => {
                if let Some(position) = self.position.clone() {
                    self.fill_gap(&position, publication.offset).await;
                }
            }
        }
        if publication.offset > 0
            && let Some(p) = self.position.as_mut()
        {
            p.offset = publication.offset;
        }
        self.deliver(publication);
    }

    /// Fetches the publications after `from` and before `upto` from the owner's history and
    /// passes them on.
    async fn fill_gap(&mut self, from: &StreamPosition, upto: u64) {
        let Some(cluster) = self.node.cluster() else {
            return;
        };
        let missing = upto - from.offset - 1;
        self.node.metrics().relay_gap_filled();
        warn!(room = %self.name, after = from.offset, missing, "offset gap; filling from history");
        let call = Call::History {
            map_version: cluster.map_version(),
            room: self.name.to_string(),
            since: Some(position_to_wire(from)),
            limit: i32::try_from(missing).unwrap_or(i32::MAX),
            reverse: false,
        };
        let reply = tokio::time::timeout(
            CALL_TIMEOUT + Duration::from_secs(1),
            cluster.call(self.owner, call),
        )
        .await;
        match reply {
            Ok(Ok(CallReply::History { publications, .. })) => {
                for publication in publications.into_iter().map(publication_from_wire) {
                    if publication.offset > from.offset && publication.offset < upto {
                        self.deliver(publication);
                    }
                }
            }
            other => {
                // The history no longer reaches back (or the owner is gone): subscribers
                // resubscribe and learn from the owner whether they recovered.
                warn!(room = %self.name, ?other, "cannot fill gap; resubscribing subscribers");
                self.resubscribe_all();
            }
        }
    }

    fn deliver(&self, publication: Publication) {
        let push = Push {
            channel: self.name.to_string(),
            r#pub: Some(publication),
            ..Push::default()
        };
        fan_out_local(&self.node, &self.name, self.subscribers.values(), push);
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
        self.position = None;
    }

    fn close(&mut self, myself: &ActorRef<RelayMsg>) {
        debug!(room = %self.name, owner = %self.owner, "relay closing");
        self.node.forget_relay(&self.name, myself);
        self.resubscribe_all();
        for (_, pending) in self.pending.drain() {
            pending.timer.abort();
            let _ = pending
                .reply
                .send(Err(NodeError::PeerUnavailable { node: self.owner.0 }));
        }
    }
}

/// What a relay does with a publication at `offset`, given the last position it passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// No offset (it skipped history): pass it on unchecked.
    Unsequenced,
    /// No subscriber has been answered yet, so nobody here needs it.
    Unwanted,
    /// At or before the last offset passed on: already delivered (or covered by a subscribe
    /// answer).
    Duplicate,
    /// The next offset: pass it on.
    Next,
    /// Past the next offset: publications were lost on the way; fill from history first.
    Gap,
}

fn arrival(position: Option<&StreamPosition>, offset: u64) -> Arrival {
    if offset == 0 {
        return Arrival::Unsequenced;
    }
    let Some(position) = position else {
        return Arrival::Unwanted;
    };
    if offset <= position.offset {
        Arrival::Duplicate
    } else if offset == position.offset + 1 {
        Arrival::Next
    } else {
        Arrival::Gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_checked_against_the_last_one_passed_on() {
        let at = |offset| StreamPosition {
            offset,
            epoch: "e".into(),
        };
        assert_eq!(arrival(Some(&at(5)), 0), Arrival::Unsequenced);
        assert_eq!(arrival(None, 0), Arrival::Unsequenced);
        assert_eq!(arrival(None, 7), Arrival::Unwanted);
        assert_eq!(arrival(Some(&at(5)), 4), Arrival::Duplicate);
        assert_eq!(arrival(Some(&at(5)), 5), Arrival::Duplicate);
        assert_eq!(arrival(Some(&at(5)), 6), Arrival::Next);
        assert_eq!(arrival(Some(&at(5)), 8), Arrival::Gap);
        assert_eq!(arrival(Some(&at(0)), 1), Arrival::Next);
    }
}
