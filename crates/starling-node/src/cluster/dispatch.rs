//! What a frame from another node does here. Calls run in their own task (they may wait on a
//! room); `ToRoom` and `FromRoom` frames go straight to the room's or relay's mailbox, so their
//! order on the link is the order the actor sees.

use std::sync::Arc;

use starling_cluster::{Call, CallReply, Frame, FromRoom, PeerSender, Refusal, ToRoom};
use starling_placement::NodeId;
use starling_room::{HistoryQuery, RoomError};
use tracing::{debug, warn};

use super::{
    Cluster, info_from_wire, info_to_wire, position_from_wire, position_to_wire,
    publications_to_wire,
};
use crate::error::NodeError;
use crate::node::Node;
use crate::room_actor::RoomMsg;

/// Handles one frame `from` a peer; calls are answered on `reply_to`.
pub(super) fn incoming(node: &Node, from: NodeId, reply_to: &PeerSender, frame: Frame) {
    let Some(cluster) = node.cluster() else {
        return;
    };
    match frame {
        Frame::Call {
            id,
            call: Call::Heartbeat,
        } => {
            let reply = if cluster.state().members.contains_key(&from) {
                CallReply::Done
            } else {
                CallReply::Refused(Refusal::NotMember)
            };
            // A full queue drops the answer; the caller's next heartbeat tries again.
            let _ = reply_to.try_send(Frame::Reply { id, reply });
        }
        Frame::Call { id, call } => {
            let node = node.clone();
            let reply_to = reply_to.clone();
            tokio::spawn(async move {
                let reply = answer_call(&node, call).await;
                if reply_to.send(Frame::Reply { id, reply }).await.is_err() {
                    debug!(peer = %from, "caller gone before its answer");
                }
            });
        }
        Frame::Reply { id, reply } => cluster.answer(id, reply),
        Frame::ToRoom { room, msg } => to_room(node, cluster, from, room, msg),
        Frame::FromRoom { room, msg } => node.relay_frame(&room, from, msg),
        Frame::Handoff(msg) => {
            // In arrival order, to the one task that takes rooms over.
            let _ = cluster.handoffs.send((from, msg));
        }
        other => debug!(peer = %from, kind = other.kind(), "ignored cluster frame"),
    }
}

async fn answer_call(node: &Node, call: Call) -> CallReply {
    let Some(cluster) = node.cluster() else {
        return refused("no cluster");
    };
    match call {
        Call::Join { node_id, info } => cluster.handle_join(node_id, info).await,
        Call::User { target, op } => CallReply::Count {
            n: node.local_user_op(target, op).await as u64,
        },
        Call::Channels => CallReply::Channels {
            channels: node.local_channels(&|_: &str| true).await,
        },
        Call::Info => CallReply::Info(node.info_to_wire()),
        Call::Heartbeat => CallReply::Done,
        Call::Remove { node_id } => cluster.handle_remove(node_id).await,
        done @ Call::HandoffDone { .. } => super::handoff::commit_completion(cluster, done).await,
        Call::Admin(op) => super::admin::on_leader(cluster, op).await,
        Call::Replicate {
            room,
            epoch,
            publication,
        } => super::replica::on_publication(cluster, room, epoch, publication).await,
        Call::ReplicaState { state } => super::replica::on_state(node, cluster, *state).await,
        Call::ReplicaForget { room, epoch } => super::replica::on_forget(cluster, &room, &epoch),
        Call::Publish {
            map_version,
            room,
            data,
            info,
            tags,
            skip_history,
        } => {
            if let Err(refusal) = owner_check(cluster, &room, map_version).await {
                return CallReply::Refused(refusal);
            }
            if !cluster.has_quorum() {
                return CallReply::Refused(Refusal::NoQuorum);
            }
            match node
                .local_publish(&room, data, info.map(info_from_wire), tags, skip_history)
                .await
            {
                Ok((publication, epoch)) => CallReply::Published {
                    offset: publication.offset,
                    epoch: epoch.to_string(),
                    time: publication.time,
                },
                Err(error) => refusal_of(error),
            }
        }
        Call::History {
            map_version,
            room,
            since,
            limit,
            reverse,
        } => {
            if let Err(refusal) = owner_check(cluster, &room, map_version).await {
                return CallReply::Refused(refusal);
            }
            let query = HistoryQuery {
                since: since.map(position_from_wire),
                limit,
                reverse,
            };
            match node.local_history(&room, query).await {
                Ok(page) => CallReply::History {
                    publications: publications_to_wire(&page.publications),
                    position: position_to_wire(&page.position),
                },
                Err(error) => refusal_of(error),
            }
        }
        Call::Presence { map_version, room } => {
            if let Err(refusal) = owner_check(cluster, &room, map_version).await {
                return CallReply::Refused(refusal);
            }
            match node.local_presence(&room).await {
                Ok(clients) => CallReply::Presence {
                    clients: clients.iter().map(info_to_wire).collect(),
                },
                Err(error) => refusal_of(error),
            }
        }
        Call::PresenceStats { map_version, room } => {
            if let Err(refusal) = owner_check(cluster, &room, map_version).await {
                return CallReply::Refused(refusal);
            }
            match node.local_presence_stats(&room).await {
                Ok(stats) => CallReply::PresenceStats {
                    clients: stats.num_clients,
                    users: stats.num_users,
                },
                Err(error) => refusal_of(error),
            }
        }
        Call::RemoveHistory { map_version, room } => {
            if let Err(refusal) = owner_check(cluster, &room, map_version).await {
                return CallReply::Refused(refusal);
            }
            match node.local_remove_history(&room).await {
                Ok(()) => CallReply::Done,
                Err(error) => refusal_of(error),
            }
        }
    }
}

/// Fencing: only the owner in this node's map answers, after catching up with a newer map the
/// sender has already seen.
async fn owner_check(cluster: &Cluster, room: &str, their_version: u64) -> Result<(), Refusal> {
    if cluster.owns(room) {
        return Ok(());
    }
    if their_version > cluster.map_version() {
        cluster.wait_for_map(their_version).await;
        if cluster.owns(room) {
            return Ok(());
        }
    }
    Err(Refusal::NotOwner {
        map_version: cluster.map_version(),
    })
}

fn refused(reason: &str) -> CallReply {
    CallReply::Refused(Refusal::Failed {
        reason: reason.to_string(),
    })
}

/// How a local failure travels back to the calling node.
fn refusal_of(error: NodeError) -> CallReply {
    CallReply::Refused(match error {
        NodeError::Room(RoomError::UnrecoverablePosition { .. }) => Refusal::UnrecoverablePosition,
        NodeError::Room(RoomError::ReverseFromOffsetZero) | NodeError::Channel(_) => {
            Refusal::BadRequest {
                reason: error.to_string(),
            }
        }
        NodeError::NoQuorum => Refusal::NoQuorum,
        // The shard moved between the owner check and the room.
        NodeError::StaleRoute { map_version } => Refusal::NotOwner { map_version },
        other => Refusal::Failed {
            reason: other.to_string(),
        },
    })
}

fn to_room(node: &Node, cluster: &Cluster, from: NodeId, room: String, msg: ToRoom) {
    match msg {
        ToRoom::Subscribe {
            map_version: _,
            req,
            client,
            presence,
            recover_since,
            recovery_limit,
        } => {
            let refuse = |refusal: Refusal| {
                tracing::debug!(%room, peer = %from, %refusal, "remote subscribe refused");
                let msg = FromRoom::Refused { req, refusal };
                if !cluster.send(
                    from,
                    Frame::FromRoom {
                        room: room.clone(),
                        msg,
                    },
                ) {
                    debug!(peer = %from, "cannot refuse a subscribe: no link");
                }
            };
            if !cluster.owns(&room) {
                return refuse(Refusal::NotOwner {
                    map_version: cluster.map_version(),
                });
            }
            if !cluster.has_quorum() {
                return refuse(Refusal::NoQuorum);
            }
            let msg = RoomMsg::RemoteSubscribe {
                from,
                req,
                client: client.into(),
                presence: presence.map(info_from_wire),
                recover_since: recover_since.map(position_from_wire),
                recovery_limit: usize::try_from(recovery_limit).unwrap_or(usize::MAX),
            };
            if let Err(error) = node.send_to_room(&room, msg) {
                warn!(%room, %error, "remote subscribe not delivered");
                refuse(Refusal::BadRequest {
                    reason: error.to_string(),
                });
            }
        }
        ToRoom::Unsubscribe { client } => unsubscribe(node, cluster, room, client, from, true),
        ToRoom::ForwardedUnsubscribe { client, origin } => {
            unsubscribe(node, cluster, room, client, origin, false);
        }
    }
}

/// Client `client` on node `origin` left `room`: the room here takes it out; a room this node
/// handed away gets it passed on (once), and a room of a shard being taken over holds it
/// until its state arrives.
fn unsubscribe(
    node: &Node,
    cluster: &Cluster,
    room: String,
    client: String,
    origin: NodeId,
    forward: bool,
) {
    let msg = RoomMsg::RemoteUnsubscribe {
        from: origin,
        client: Arc::from(client.as_str()),
    };
    if let Some(actor) = node.existing_room(&room) {
        let _ = actor.send_message(msg);
        return;
    }
    if cluster.owns_incoming(&room) {
        if let Err(error) = node.send_to_room(&room, msg) {
            debug!(%room, %error, "unsubscribe for a room being taken over not delivered");
        }
        return;
    }
    let handed = cluster.handed_off.get(room.as_str()).map(|entry| entry.0);
    if forward && let Some(to) = handed {
        let frame = Frame::ToRoom {
            room,
            msg: ToRoom::ForwardedUnsubscribe { client, origin },
        };
        if !cluster.send(to, frame) {
            debug!(%to, "unsubscribe not passed on: no link to the new owner");
        }
    }
}
