//! Shard replicas: every shard has a replica on another member (`cluster.replication_factor`
//! 2), chosen by the leader by rendezvous hashing and kept in the Raft state. A room's owner
//! copies each publication to the replica and waits for its answer before it fans the
//! publication out and acknowledges it (`RoomState::replicate`), so an acknowledged
//! publication is on two nodes. When the owner dies, the leader gives the shard to its replica,
//! whose rooms then continue from the copies: same epoch, same offsets, the history there.
//!
//! A replica keeps, per room, a pure `starling_room::Room` without subscribers, fed in offset
//! order; anything out of order makes it ask for the owner's whole state. The control loop
//! follows every new cluster state: copies of shards this node now owns become running rooms
//! at once, and copies of shards it no longer replicates are dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{CallReply, ClusterState, Refusal, WirePublication, WireRoomState};
use starling_placement::{NodeId, ShardId, hrw_owner};
use starling_protocol::{Publication, StreamPosition};
use starling_room::Room;
use tracing::debug;

use super::handoff::Ownership;
use super::{Cluster, publication_from_wire};
use crate::clock::unix_now_ms;
use crate::node::Node;
use crate::room_actor::room_options;

/// Where a shard keeps its second copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaOf {
    /// Nowhere: replication factor 1, or no other member to hold one.
    None,
    /// On this member.
    Node(NodeId),
    /// Still named as this node, which owns the shard now: a new replica is being assigned.
    Reassigning,
}

/// One room as a replica holds it.
pub(crate) struct ReplicaRoom {
    room: Room<()>,
}

/// The replica assignment the leader wants for `state`: each shard's rendezvous winner among
/// the `live` members other than its owner; empty with a replication factor of 1.
pub(super) fn desired(
    state: &ClusterState,
    live: &[NodeId],
    factor: usize,
) -> BTreeMap<ShardId, NodeId> {
    let mut replicas = BTreeMap::new();
    let Some(map) = &state.shard_map else {
        return replicas;
    };
    if factor < 2 {
        return replicas;
    }
    for (shard, owner) in map.shards() {
        let others: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|&n| n != owner && !state.draining.contains(&n))
            .collect();
        if let Some(replica) = hrw_owner(shard, &others) {
            replicas.insert(shard, replica);
        }
    }
    replicas
}

impl Cluster {
    /// Where `room`'s shard keeps its second copy, as this node's state says.
    pub(crate) fn replica_of(&self, room: &str) -> ReplicaOf {
        let state = self.state.borrow();
        let Some(map) = state.shard_map.as_ref() else {
            return ReplicaOf::None;
        };
        match state.replicas.get(&map.shard_of_room(room)) {
            None => ReplicaOf::None,
            // This node was the replica and owns the shard now (a failover); the leader's next
            // commit names a new replica.
            Some(&replica) if replica == self.node_id => ReplicaOf::Reassigning,
            Some(&replica) => ReplicaOf::Node(replica),
        }
    }

    /// Takes the copy this node holds of `room` (it owns the room now): its position and
    /// history, for the room actor to continue from.
    pub(crate) fn take_replica(
        &self,
        room: &str,
    ) -> Option<(StreamPosition, Vec<Arc<Publication>>)> {
        let (_, copy) = self.replica_rooms.remove(room)?;
        let history = copy.room.retained().cloned().collect();
        Some((copy.room.position(), history))
    }

    /// Notes whether room `room`, owned here, has its state on its replica.
    pub(crate) fn set_replicated(&self, room: &Arc<str>, replicated: bool) {
        let changed = if replicated {
            self.unreplicated_rooms.remove(room).is_some()
        } else {
            self.unreplicated_rooms.insert(Arc::clone(room))
        };
        if changed {
            self.metrics
                .set_unreplicated_rooms(self.unreplicated_rooms.len() as u64);
        }
    }

    /// Room `room` (of `epoch`) stopped here as idle: its replica, if it holds a copy, drops
    /// it, so copies do not outlive their rooms. Best effort: a copy left behind goes when
    /// the shard's replica changes.
    pub(crate) fn forget_on_replica(
        self: &Arc<Self>,
        room: &Arc<str>,
        epoch: &str,
        replica: NodeId,
    ) {
        self.set_replicated(room, true);
        let call = starling_cluster::Call::ReplicaForget {
            room: room.to_string(),
            epoch: epoch.to_owned(),
        };
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = cluster.call_within(replica, call, FORGET_TIMEOUT).await {
                debug!(%replica, %error, "replica did not hear that a room stopped");
            }
        });
    }

    /// Asks every room whose replica lacks its state to give it again; forgets the rooms that
    /// stopped meanwhile.
    pub(super) fn retry_unreplicated(&self, node: &Node) {
        let rooms: Vec<Arc<str>> = self.unreplicated_rooms.iter().map(|r| r.clone()).collect();
        for room in rooms {
            if !node.sync_replica_of(&room) {
                // Stopped meanwhile: nothing of it is missing anywhere.
                self.set_replicated(&room, true);
            }
        }
    }

    /// Follows `state` for the copies this node holds. A copy of a shard this node now owns
    /// (its owner died and the shard came here) becomes its room at once, not when a client
    /// next asks, so the sweep below can never drop it first; a room already running here
    /// is the newer truth and the copy goes. Copies of shards neither replicated nor owned
    /// here go. A shard still being taken over keeps its copies: if its hand-off is
    /// abandoned, its rooms continue from them.
    pub(super) fn follow_replicas(&self, node: &Node, state: &ClusterState) {
        let Some(map) = &state.shard_map else {
            return;
        };
        // Names first: starting a room takes its copy out of the table.
        let names: Vec<Arc<str>> = self
            .replica_rooms
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        for name in names {
            let ownership = self.read_serving().ownership(&name, self.node_id);
            match ownership {
                Ownership::Owned => {
                    if let Err(error) = node.ensure_room(&name) {
                        debug!(room = %name, %error, "replica copy not promoted");
                    }
                    self.replica_rooms.remove(&name);
                }
                Ownership::Incoming => {}
                Ownership::NotOwner { .. } => {
                    if state.replicas.get(&map.shard_of_room(&name)) != Some(&self.node_id) {
                        self.replica_rooms.remove(&name);
                    }
                }
            }
        }
    }
}

/// How long an owner waits for a replica to drop the copy of a stopped room.
const FORGET_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a replica waits for its own cluster state to name it the replica of a shard an
/// owner already copies to it (the owner applied the assignment first).
const ASSIGNMENT_WAIT: Duration = Duration::from_millis(500);

/// Whether this node's state names it the replica of `room`'s shard, waiting (bounded) for
/// the state to catch up with the owner's. Copies are kept only under such a state, so the
/// control loop's sweep, which follows this node's state, never drops one an owner counts on.
async fn assigned(cluster: &Cluster, room: &str) -> bool {
    let mut states = cluster.state.clone();
    let check = |state: &ClusterState| {
        state.shard_map.as_ref().is_some_and(|map| {
            state.replicas.get(&map.shard_of_room(room)) == Some(&cluster.node_id)
        })
    };
    if check(&states.borrow_and_update()) {
        return true;
    }
    tokio::time::timeout(ASSIGNMENT_WAIT, states.wait_for(|state| check(state)))
        .await
        .is_ok_and(|seen| seen.is_ok())
}

/// The answer to a copy sent to a node that is not the room's replica (by its state).
fn not_assigned(room: &str) -> CallReply {
    debug!(%room, "copy refused: not this shard's replica here");
    CallReply::Refused(Refusal::BadRequest {
        reason: format!("not the replica of the shard of room {room}"),
    })
}

/// `Call::Replicate` on the replica: appends the publication if it is the next one of the
/// room's copy in this epoch.
pub(super) async fn on_publication(
    cluster: &Cluster,
    room: String,
    epoch: String,
    publication: WirePublication,
) -> CallReply {
    if !assigned(cluster, &room).await {
        return not_assigned(&room);
    }
    let Some(mut copy) = cluster.replica_rooms.get_mut(room.as_str()) else {
        return CallReply::NeedState;
    };
    if copy.room.epoch() != epoch {
        return CallReply::NeedState;
    }
    let publication = Arc::new(publication_from_wire(publication));
    match copy.room.append(publication, unix_now_ms()) {
        Ok(()) => CallReply::Done,
        Err(error) => {
            debug!(%room, %error, "replica out of step; asking for the state");
            CallReply::NeedState
        }
    }
}

/// `Call::ReplicaState` on the replica: replaces the room's copy.
pub(super) async fn on_state(node: &Node, cluster: &Cluster, state: WireRoomState) -> CallReply {
    if !assigned(cluster, &state.room).await {
        return not_assigned(&state.room);
    }
    let options = match node.resolve_channel(&state.room) {
        Ok(resolved) => room_options(resolved.options),
        Err(error) => {
            return CallReply::Refused(Refusal::BadRequest {
                reason: error.to_string(),
            });
        }
    };
    let position = StreamPosition {
        offset: state.offset,
        epoch: state.epoch,
    };
    let history = state
        .history
        .into_iter()
        .map(|p| Arc::new(publication_from_wire(p)));
    match Room::resume(options, position, history) {
        Ok(room) => {
            debug!(room = %state.room, epoch = room.epoch(), offset = room.position().offset, node = %cluster.node_id, "replica holds the room's state");
            cluster
                .replica_rooms
                .insert(state.room.as_str().into(), ReplicaRoom { room });
            CallReply::Done
        }
        Err(error) => CallReply::Refused(Refusal::BadRequest {
            reason: error.to_string(),
        }),
    }
}

/// `Call::ReplicaForget` on the replica: drops the copy of a room its owner stopped as idle,
/// unless the copy is already of a newer room of that name.
pub(super) fn on_forget(cluster: &Cluster, room: &str, epoch: &str) -> CallReply {
    cluster
        .replica_rooms
        .remove_if(room, |_, copy| copy.room.epoch() == epoch);
    CallReply::Done
}
