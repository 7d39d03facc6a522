//! Shard replicas: every shard has a replica on another member (`cluster.replication_factor`
//! 2), chosen by the leader by rendezvous hashing and kept in the Raft state. A room's owner
//! copies each publication to the replica and waits for its answer before it fans the
//! publication out and acknowledges it (`RoomState::replicate`), so an acknowledged
//! publication is on two nodes. When the owner dies, the leader gives the shard to its replica,
//! whose rooms then continue from the copies: same epoch, same offsets, the history there.
//!
//! A replica keeps, per room, a pure `starling_room::Room` without subscribers, fed in offset
//! order; anything out of order makes it ask for the owner's whole state. Rooms of shards it no
//! longer replicates are dropped by the control loop's sweep.

use std::collections::BTreeMap;
use std::sync::Arc;

use starling_cluster::{CallReply, ClusterState, WirePublication, WireRoomState};
use starling_placement::{NodeId, ShardId, hrw_owner};
use starling_protocol::{Publication, StreamPosition};
use starling_room::Room;
use tracing::debug;

use super::{Cluster, publication_from_wire};
use crate::clock::unix_now_ms;
use crate::node::Node;
use crate::room_actor::room_options;

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
    /// The replica of `room`'s shard, unless it is this node or there is none.
    pub(crate) fn replica_of(&self, room: &str) -> Option<NodeId> {
        let state = self.state.borrow();
        let map = state.shard_map.as_ref()?;
        let replica = *state.replicas.get(&map.shard_of_room(room))?;
        (replica != self.node_id).then_some(replica)
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

    /// Drops the copies of rooms whose shard this node no longer replicates.
    pub(super) fn sweep_replicas(&self, state: &ClusterState) {
        let Some(map) = &state.shard_map else {
            return;
        };
        self.replica_rooms
            .retain(|room, _| state.replicas.get(&map.shard_of_room(room)) == Some(&self.node_id));
    }
}

/// `Call::Replicate` on the replica: appends the publication if it is the next one of the
/// room's copy in this epoch.
pub(super) fn on_publication(
    cluster: &Cluster,
    room: String,
    epoch: String,
    publication: WirePublication,
) -> CallReply {
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
pub(super) fn on_state(node: &Node, cluster: &Cluster, state: WireRoomState) -> CallReply {
    let options = match node.resolve_channel(&state.room) {
        Ok(resolved) => room_options(resolved.options),
        Err(error) => {
            return CallReply::Refused(starling_cluster::Refusal::BadRequest {
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
            cluster
                .replica_rooms
                .insert(state.room.as_str().into(), ReplicaRoom { room });
            CallReply::Done
        }
        Err(error) => CallReply::Refused(starling_cluster::Refusal::BadRequest {
            reason: error.to_string(),
        }),
    }
}
