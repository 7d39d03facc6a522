//! Shard hand-offs: moving a shard's rooms to a new owner with nothing lost, nothing
//! duplicated, and every room's offsets and epoch continued.
//!
//! A move is committed in Raft as a [`HandoffPlan`](starling_cluster::ClusterCommand): the map
//! names the new owner, and the state records the hand-off (`from`, `to`, version) until the
//! new owner says it is done. Then, on every node, following the map it serves by
//! ([`Serving`], switched by the control loop):
//!
//! - **The old owner** stops creating the shard's rooms at once (room creation checks the
//!   serving map under its read lock, and the switch takes the write lock, so the switch sees
//!   every room there is). Each room actor gets `RoomMsg::HandOff`: it turns its local
//!   subscribers into a relay that follows the new owner and leaves the table, then ships its
//!   state (offset, epoch, history, presence, subscribers) to the new owner on the old owner's
//!   link and tells every relay node `FromRoom::Moved`. For a few seconds more it passes on
//!   the unsubscribes that still reach it; calls that reach it are dropped, and their senders
//!   route again, to the new owner. Then `HandoffMsg::Done` ends the shard.
//! - **The new owner** marks the shard *incoming*: rooms of it are created waiting
//!   (`RoomMsg` held in the actor) until their state arrives (`RoomMsg::Resume`) or the
//!   shard's `Done` says there is none (`RoomMsg::Fresh`). A relay it had for such a room
//!   hands its subscribers to the room (`RelayMsg::Absorb`). After `Done`, or after
//!   [`HANDOFF_TIMEOUT`] without progress when the old owner went silent, it asks the leader
//!   to commit the end of the hand-off.
//! - **Other nodes' relays** take frames from the old owner until its `Moved`, holding the new
//!   owner's meanwhile (`starling_room::RelayCursor`), so their subscribers see every offset
//!   once, in order, and are never told to resubscribe.
//!
//! Hand-off frames are queued on the link with back-pressure, never dropped
//! ([`Cluster::send_reliably`]): they travel after the publications the room sent before them,
//! on the same ordered stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{
    Call, CallReply, ClusterCommand, ClusterState, Frame, HandoffMsg, WireRoomState,
};
use starling_placement::{NodeId, ShardId, ShardMap};
use starling_protocol::ClientInfo;
use starling_room::Room;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Cluster, Route, info_to_wire, publications_to_wire};
use crate::node::Node;
use crate::room_actor::{RoomMsg, Subscriber};

/// How long a new owner waits without progress (no room arriving) before starting the rest
/// of a shard's rooms afresh (the old owner went silent), and a relay for the old owner's last
/// frame. Below the 5 s that callers wait for a room, so what the rooms held meanwhile is
/// still answered.
pub(crate) const HANDOFF_TIMEOUT: Duration = Duration::from_secs(4);
/// Bytes of history one room's hand-off carries at most: well inside the 16 MiB frame limit,
/// with room for presence and the subscriber list.
const HISTORY_BUDGET: usize = 8 * 1024 * 1024;
/// Attempts at telling the leader a hand-off is done before each further one is logged.
const COMPLETE_ATTEMPTS: u32 = 50;

/// The shard map a node routes and sequences by, and the shards it is taking over.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    map: Option<ShardMap>,
    incoming: HashMap<ShardId, Incoming>,
    /// Hand-offs finished here whose end the leader has not committed yet: not taken up again.
    finished: HashSet<(ShardId, u64)>,
}

/// A shard this node is taking over.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    from: NodeId,
    version: u64,
    since: Instant,
    /// When the last room arrived (or the hand-off began).
    progress: Instant,
    rooms: u32,
}

/// What this node may do with a room, by the map it serves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// It owns the room's shard: sequence.
    Owned,
    /// It owns the shard and is taking it over: requests wait for the room's state.
    Incoming,
    /// Another node owns it in map `version`.
    NotOwner { version: u64 },
}

impl Serving {
    /// The version of the map (0 before the first).
    pub(crate) fn version(&self) -> u64 {
        self.map.as_ref().map_or(0, ShardMap::version)
    }

    pub(crate) fn route(&self, room: &str, me: NodeId) -> Route {
        match &self.map {
            Some(map) => {
                let owner = map.owner_of_room(room);
                if owner == me {
                    Route::Local
                } else {
                    Route::Remote {
                        owner,
                        version: map.version(),
                    }
                }
            }
            // Before the first map (a joiner catching up) everything waits for one.
            None => Route::Remote {
                owner: me,
                version: 0,
            },
        }
    }

    pub(crate) fn ownership(&self, room: &str, me: NodeId) -> Ownership {
        match &self.map {
            Some(map) if map.owner_of_room(room) == me => {
                if self.incoming.contains_key(&map.shard_of_room(room)) {
                    Ownership::Incoming
                } else {
                    Ownership::Owned
                }
            }
            other => Ownership::NotOwner {
                version: other.as_ref().map_or(0, ShardMap::version),
            },
        }
    }

    fn shard_of(&self, room: &str) -> Option<ShardId> {
        self.map.as_ref().map(|map| map.shard_of_room(room))
    }
}

/// A shard that moved away from this node, and the rooms of it to ship.
struct Outgoing {
    shard: ShardId,
    to: NodeId,
    map_version: u64,
    rooms: Vec<ractor::ActorRef<RoomMsg>>,
    /// Whether the new owner waits for this shard's `Done` (a planned move in the newest map),
    /// rather than this being a late room found by a sweep.
    whole_shard: bool,
}

/// Follows `state` on this node: switches the serving map, takes up and lets go of incoming
/// shards, starts shipping rooms that moved away, and points relays at their rooms' owners.
/// Called by the control loop on every state change and tick; cheap when nothing changed.
pub(super) fn follow(node: &Node, cluster: &Arc<Cluster>, state: &ClusterState, sweep: bool) {
    let Some(new_map) = &state.shard_map else {
        return;
    };
    let me = cluster.node_id;
    {
        // Most ticks have nothing to do: no new map, no sweep, no hand-off anywhere. Then
        // the write lock, which every route on the publish path would wait for, is not taken.
        let serving = cluster.read_serving();
        let idle = !sweep
            && serving.version() == new_map.version()
            && state.handoffs.is_empty()
            && serving.incoming.is_empty()
            && serving.finished.is_empty();
        if idle {
            return;
        }
    }
    let mut released = Vec::new();
    let mut abandoned = Vec::new();
    let mut outgoing: Vec<Outgoing> = Vec::new();
    let mut stale = Vec::new();
    let changed;
    {
        let mut serving = cluster
            .serving
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        changed = serving.version() != new_map.version();

        // Incoming shards: every recorded hand-off to this node that is not finished here.
        for (&shard, handoff) in &state.handoffs {
            if handoff.to != me
                || serving.finished.contains(&(shard, handoff.version))
                || serving.incoming.contains_key(&shard)
            {
                continue;
            }
            // The leader recorded the hand-off, so it heard from the old owner; this node's
            // own liveness view may lag (it may have just come back from a partition and not
            // heard from the old owner yet), so only a non-member counts as gone. A silent
            // old owner is given up on by the progress timeout (`overdue`).
            let source_up = state.members.contains_key(&handoff.from) && handoff.from != me;
            if source_up {
                debug!(%shard, from = %handoff.from, version = handoff.version, "taking a shard over");
                serving.incoming.insert(
                    shard,
                    Incoming {
                        from: handoff.from,
                        version: handoff.version,
                        since: Instant::now(),
                        progress: Instant::now(),
                        rooms: 0,
                    },
                );
            } else {
                // Nobody will ship the rooms: they start afresh, and the hand-off ends now.
                serving.finished.insert((shard, handoff.version));
                abandoned.push((shard, handoff.version));
            }
        }
        // A hand-off that the state no longer records (a failover move cancelled it) leaves
        // its waiting rooms to start afresh.
        let cancelled: Vec<ShardId> = serving
            .incoming
            .iter()
            .filter(|(shard, incoming)| {
                state
                    .handoffs
                    .get(shard)
                    .is_none_or(|h| h.version != incoming.version || h.to != me)
            })
            .map(|(shard, _)| *shard)
            .collect();
        for shard in cancelled {
            serving.incoming.remove(&shard);
            released.push(shard);
        }
        serving.finished.retain(|(shard, version)| {
            state
                .handoffs
                .get(shard)
                .is_some_and(|h| h.version == *version)
        });

        if changed || sweep {
            let old_map = if changed {
                serving.map.replace(new_map.clone())
            } else {
                None
            };
            // Only a hand-off the state records from this node ships rooms: a shard that left
            // without one was taken away while this node was cut off or declared dead (a
            // failover), and its rooms here are stale: their new owner continues from the
            // shard's replica or afresh, and would refuse what this node shipped.
            let recorded = |shard: ShardId, to: NodeId| {
                state
                    .handoffs
                    .get(&shard)
                    .is_some_and(|h| h.from == me && h.to == to)
            };
            // Whole shards that left this node: their new owners wait for a `Done`.
            let mut groups: HashMap<(ShardId, NodeId), Outgoing> = HashMap::new();
            if let Some(old_map) = &old_map {
                for (shard, owner) in new_map.shards() {
                    if owner != me
                        && previous_owner(old_map, new_map, shard) == Some(me)
                        && recorded(shard, owner)
                    {
                        groups.insert(
                            (shard, owner),
                            Outgoing {
                                shard,
                                to: owner,
                                map_version: new_map.version(),
                                rooms: Vec::new(),
                                whole_shard: true,
                            },
                        );
                    }
                }
            }
            // Every room this node still runs but no longer owns. Under the write lock no room
            // can be created meanwhile, so none is missed.
            for (name, room) in node.room_refs() {
                let owner = new_map.owner_of_room(&name);
                if owner == me {
                    continue;
                }
                let shard = new_map.shard_of_room(&name);
                if !recorded(shard, owner) {
                    // Off the table now, under the write lock: a room of the shard that comes
                    // back here later (a rebalance) must start anew, awaiting its hand-off,
                    // and not find this stale actor, which may be busy with a queued call.
                    node.forget_room(&name, &room);
                    stale.push((name, room));
                    continue;
                }
                groups
                    .entry((shard, owner))
                    .or_insert_with(|| Outgoing {
                        shard,
                        to: owner,
                        map_version: new_map.version(),
                        rooms: Vec::new(),
                        whole_shard: false,
                    })
                    .rooms
                    .push(room);
            }
            outgoing = groups.into_values().collect();
            if changed {
                cluster.serving_version.send_replace(new_map.version());
            }
        }
    }

    for shard in released {
        info!(%shard, "hand-off cancelled; the shard's rooms start afresh");
        release(node, cluster, shard);
    }
    for (shard, version) in abandoned {
        warn!(%shard, "old owner gone before the hand-off; the shard's rooms start afresh");
        node.metrics().handoff_finished(false, 0);
        release(node, cluster, shard);
        propose_completion(cluster, shard, version, 0, 0, false);
    }
    for group in outgoing {
        let cluster = Arc::clone(cluster);
        tokio::spawn(async move { ship(&cluster, group).await });
    }
    for (name, room) in stale {
        info!(room = %name, "room's shard taken away without a hand-off; its subscribers resubscribe");
        let _ = room.send_message(RoomMsg::Abandon);
    }
    if changed || sweep {
        follow_relays(node, cluster);
    }
}

/// The owner of `shard` (of `new`) in `old`: the same shard, or, when `new` has more shards (a
/// split), the shard it was split from.
fn previous_owner(old: &ShardMap, new: &ShardMap, shard: ShardId) -> Option<NodeId> {
    if new.shard_count() >= old.shard_count() {
        old.owner(ShardId(shard.0 & (old.shard_count() - 1)))
    } else {
        None
    }
}

/// Ships one group of rooms to their new owner, then (for a whole shard) tells it the shard is
/// complete.
async fn ship(cluster: &Cluster, group: Outgoing) {
    let started = Instant::now();
    let handoffs = group.rooms.iter().map(|room| {
        room.call(
            |reply| RoomMsg::HandOff {
                to: group.to,
                shard: group.shard,
                map_version: group.map_version,
                reply,
            },
            Some(HANDOFF_TIMEOUT),
        )
    });
    let mut shipped = 0u32;
    for answer in futures_util::future::join_all(handoffs).await {
        // A room that stopped meanwhile (idle) had nothing to ship.
        if matches!(answer, Ok(ractor::rpc::CallResult::Success(true))) {
            shipped += 1;
        }
    }
    if !group.whole_shard {
        debug!(shard = %group.shard, to = %group.to, rooms = shipped, "late rooms shipped");
        return;
    }
    let done = Frame::Handoff(HandoffMsg::Done {
        shard: group.shard,
        map_version: group.map_version,
        rooms: shipped,
    });
    if cluster.send_reliably(group.to, done).await {
        info!(
            shard = %group.shard,
            to = %group.to,
            rooms = shipped,
            millis = started.elapsed().as_millis() as u64,
            "shard handed off"
        );
    } else {
        warn!(shard = %group.shard, to = %group.to, "no link to the new owner; it will time out");
    }
}

/// The wire form of a room's state for its new owner. `me` is this node: its local
/// subscribers are listed as held by it (a relay here takes them over).
pub(crate) fn room_state_to_wire(
    name: &str,
    room: &Room<Subscriber>,
    remote: &HashMap<Arc<str>, NodeId>,
    me: NodeId,
) -> WireRoomState {
    let position = room.position();
    // The newest publications that fit in one frame: history must stay contiguous up to the
    // top, so the oldest are the ones left behind (a recovery from that far back then answers
    // `recovered: false`, as after a trim).
    let mut budget = HISTORY_BUDGET;
    let mut history: Vec<Arc<starling_protocol::Publication>> = room
        .retained()
        .rev()
        .take_while(|p| {
            let size = p.data.len()
                + p.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                + p.info.as_ref().map_or(0, |i| {
                    i.user.len() + i.client.len() + i.conn_info.len() + i.chan_info.len()
                })
                + 64;
            budget = budget.saturating_sub(size);
            budget > 0
        })
        .cloned()
        .collect();
    history.reverse();
    let mut subscribers: Vec<(String, NodeId)> = room
        .subscribers()
        .map(|(client, _)| (client.to_string(), me))
        .collect();
    subscribers.extend(remote.iter().map(|(c, n)| (c.to_string(), *n)));
    WireRoomState {
        room: name.to_string(),
        epoch: position.epoch,
        offset: position.offset,
        history: publications_to_wire(&history),
        presence: room.presence().map(info_to_wire).collect(),
        subscribers,
    }
}

/// Starts the task that takes hand-off frames in the order they arrived.
pub(super) fn spawn_receiver(
    node: Node,
    cluster: Arc<Cluster>,
    mut frames: UnboundedReceiver<(NodeId, HandoffMsg)>,
) -> AbortHandle {
    tokio::spawn(async move {
        while let Some((from, msg)) = frames.recv().await {
            match msg {
                HandoffMsg::Room {
                    shard: _,
                    map_version,
                    state,
                } => {
                    // The sender may be a map version ahead of this node.
                    catch_up(&cluster, map_version).await;
                    take_room(&node, &cluster, from, *state);
                }
                HandoffMsg::Done {
                    shard,
                    map_version,
                    rooms,
                } => {
                    catch_up(&cluster, map_version).await;
                    finish(&node, &cluster, shard, Some(from), rooms);
                }
            }
        }
    })
    .abort_handle()
}

/// Waits (up to [`HANDOFF_TIMEOUT`]) until this node serves map `version`: a hand-off frame
/// may overtake the Raft entry that makes this node the owner.
async fn catch_up(cluster: &Cluster, version: u64) {
    let deadline = Instant::now() + HANDOFF_TIMEOUT;
    while cluster.map_version() < version && Instant::now() < deadline {
        cluster.wait_for_map(version).await;
    }
}

/// Gives a shipped room's state to the room actor here (created waiting for it when needed).
fn take_room(node: &Node, cluster: &Cluster, from: NodeId, state: WireRoomState) {
    let name = state.room.clone();
    let room = match node.room_for_handoff(&name) {
        Ok(room) => room,
        Err(error) => {
            warn!(room = %name, %from, %error, "handed-off room refused: not owned here");
            return;
        }
    };
    {
        let mut serving = cluster
            .serving
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shard) = serving.shard_of(&name)
            && let Some(incoming) = serving.incoming.get_mut(&shard)
        {
            incoming.rooms += 1;
            incoming.progress = Instant::now();
        }
    }
    node.metrics().handoff_room_received();
    let relay = node.relay_actor(&name);
    if room
        .send_message(RoomMsg::Resume {
            state: Box::new(state),
            relay,
        })
        .is_err()
    {
        warn!(room = %name, "handed-off room stopped before taking its state");
    }
}

/// Ends the incoming hand-off of `shard`: on the old owner's `Done` (`from` given) or when it
/// timed out (`from` is `None`). Rooms still waiting start afresh; the leader is told.
pub(super) fn finish(
    node: &Node,
    cluster: &Arc<Cluster>,
    shard: ShardId,
    from: Option<NodeId>,
    sent: u32,
) {
    let taken = {
        let mut serving = cluster
            .serving
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match serving.incoming.get(&shard) {
            Some(incoming) if from.is_none_or(|f| f == incoming.from) => {
                let incoming = *incoming;
                serving.incoming.remove(&shard);
                serving.finished.insert((shard, incoming.version));
                Some(incoming)
            }
            _ => None,
        }
    };
    let Some(incoming) = taken else {
        debug!(%shard, ?from, "hand-off end for a shard not being taken over here");
        return;
    };
    let complete = from.is_some() && incoming.rooms >= sent;
    let millis = u64::try_from(incoming.since.elapsed().as_millis()).unwrap_or(u64::MAX);
    if complete {
        info!(%shard, from = %incoming.from, rooms = incoming.rooms, millis, "shard taken over");
    } else {
        warn!(
            %shard,
            from = %incoming.from,
            received = incoming.rooms,
            sent,
            millis,
            "shard hand-off incomplete; rooms without state start afresh"
        );
    }
    node.metrics().handoff_finished(complete, millis);
    release(node, cluster, shard);
    propose_completion(
        cluster,
        shard,
        incoming.version,
        incoming.rooms,
        millis,
        complete,
    );
}

/// Incoming shards whose old owner has sent nothing for [`HANDOFF_TIMEOUT`].
pub(super) fn overdue(cluster: &Cluster) -> Vec<ShardId> {
    cluster
        .read_serving()
        .incoming
        .iter()
        .filter(|(_, incoming)| incoming.progress.elapsed() >= HANDOFF_TIMEOUT)
        .map(|(shard, _)| *shard)
        .collect()
}

/// Lets the rooms of `shard` that still wait for a state start afresh, and closes relays that
/// waited to become its rooms (their subscribers resubscribe).
fn release(node: &Node, cluster: &Cluster, shard: ShardId) {
    let serving = cluster.read_serving();
    let in_shard = |name: &str| serving.shard_of(name) == Some(shard);
    let rooms: Vec<_> = node
        .room_refs()
        .into_iter()
        .filter(|(name, _)| in_shard(name))
        .collect();
    // A relay whose room runs here is the room's business: it takes the relay's subscribers
    // with the state, or closes it on `Fresh`. Only relays without a room have nobody.
    let relays: Vec<_> = node
        .relay_refs()
        .into_iter()
        .filter(|(name, _, _)| {
            in_shard(name)
                && serving.route(name, cluster.node_id) == Route::Local
                && node.existing_room(name).is_none()
        })
        .collect();
    drop(serving);
    for (_, room) in rooms {
        let _ = room.send_message(RoomMsg::Fresh);
    }
    for (_, _, relay) in relays {
        let _ = relay.send_message(super::RelayMsg::Close);
    }
}

/// Points every relay at its room's owner in the serving map.
fn follow_relays(node: &Node, cluster: &Cluster) {
    let state = cluster.state();
    for (name, owner, relay) in node.relay_refs() {
        let Route::Remote { owner: now, .. } = cluster.route(&name) else {
            // This node owns the room now: the relay waits for the room to take its
            // subscribers (or for the hand-off to end without it).
            if owner != cluster.node_id {
                node.set_relay_owner(&name, cluster.node_id);
                // A hand-off (recorded in the state until the leader commits its end) brings
                // the room with this relay's subscribers; after a failover nothing will, and
                // they resubscribe to the room here at once.
                let recorded = state.shard_map.as_ref().is_some_and(|map| {
                    state
                        .handoffs
                        .get(&map.shard_of_room(&name))
                        .is_some_and(|h| h.to == cluster.node_id)
                });
                let _ = relay.send_message(super::RelayMsg::Follow {
                    owner: cluster.node_id,
                    handoff: recorded || cluster.owns_incoming(&name),
                });
            }
            continue;
        };
        if now != owner {
            // Without a live old owner no `Moved` will come: the subscribers resubscribe.
            let handoff = state.members.contains_key(&owner)
                && cluster.is_alive(owner)
                && owner != cluster.node_id;
            node.set_relay_owner(&name, now);
            let _ = relay.send_message(super::RelayMsg::Follow {
                owner: now,
                handoff,
            });
        }
    }
}

/// Tells the leader that the hand-off of `shard` begun at `version` is over; retried in the
/// background until some leader commits it.
fn propose_completion(
    cluster: &Arc<Cluster>,
    shard: ShardId,
    version: u64,
    rooms: u32,
    millis: u64,
    complete: bool,
) {
    let cluster = Arc::clone(cluster);
    let done = Call::HandoffDone {
        shard,
        version,
        rooms,
        millis,
        complete,
    };
    tokio::spawn(async move {
        let pending = move |state: &ClusterState| {
            state
                .handoffs
                .get(&shard)
                .is_some_and(|h| h.version == version)
        };
        // Until some leader has committed it: a stuck record would block the shard's next
        // move, splits and drains.
        let mut attempt = 0u32;
        let mut applied = cluster.state.clone();
        while pending(&cluster.state()) {
            attempt += 1;
            let reply = match cluster.leader() {
                Some((leader, _)) if leader == cluster.node_id => {
                    commit_completion(&cluster, done.clone()).await
                }
                Some((leader, _)) => {
                    cluster
                        .call(leader, done.clone())
                        .await
                        .unwrap_or(CallReply::Refused(starling_cluster::Refusal::NotLeader {
                            leader: None,
                        }))
                }
                None => CallReply::Refused(starling_cluster::Refusal::NotLeader { leader: None }),
            };
            if matches!(reply, CallReply::Done) {
                return;
            }
            if attempt == COMPLETE_ATTEMPTS {
                warn!(%shard, version, "the end of a hand-off is not committed yet; still trying");
            }
            // Try again once the record is gone (another path committed it) or after a
            // growing pause (no leader yet).
            let backoff = Duration::from_millis(200).saturating_mul(attempt.min(10));
            let _ = tokio::time::timeout(backoff, applied.wait_for(|s| !pending(s))).await;
        }
    });
}

/// On the leader: commits the end of a hand-off that a new owner reported
/// ([`Call::HandoffDone`]).
pub(super) async fn commit_completion(cluster: &Cluster, done: Call) -> CallReply {
    let Call::HandoffDone {
        shard,
        version,
        rooms,
        millis,
        complete,
    } = done
    else {
        return CallReply::Refused(starling_cluster::Refusal::BadRequest {
            reason: "not a hand-off report".into(),
        });
    };
    cluster
        .propose(ClusterCommand::CompleteHandoff {
            shard,
            version,
            rooms,
            millis,
            complete,
        })
        .await
}

/// Presence entries shipped with a room, back in client-protocol form.
pub(crate) fn presence_from_wire(state: &WireRoomState) -> Vec<ClientInfo> {
    state
        .presence
        .iter()
        .cloned()
        .map(super::info_from_wire)
        .collect()
}
