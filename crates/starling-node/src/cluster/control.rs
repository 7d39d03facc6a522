//! The cluster control loop (the design's ClusterActor): on every node it follows the shard
//! map — rooms whose shard left this node stop, relays whose room changed owner close — and
//! purges presence of members that went silent. On the leader it also keeps the map right:
//! shards of dead or removed members get live owners, and once every member is alive the map
//! is rebalanced by rendezvous hashing (after a join, or when a node comes back).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{ClusterCommand, ClusterNode, ClusterNodeError, ClusterState};
use starling_placement::{NodeId, plan_drain, plan_rebalance};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{Cluster, Route, shard_counts};
use crate::error::NodeError;
use crate::node::Node;
use crate::room_actor::RoomMsg;

/// How often the loop looks at liveness even when the state does not change.
const TICK: Duration = Duration::from_millis(200);
/// Ticks between sweeps of rooms and relays against an unchanged map (every 2 s).
const SWEEP_EVERY: u32 = 10;

pub(super) fn spawn(node: Node, cluster: Arc<Cluster>) -> AbortHandle {
    tokio::spawn(async move {
        let mut changes = cluster.state.clone();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_version = None;
        let mut down: HashSet<NodeId> = HashSet::new();
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
            ticks = ticks.wrapping_add(1);
            let state = cluster.state();
            let version = state.shard_map.as_ref().map(|map| map.version());
            if version != seen_version {
                seen_version = version;
                info!(
                    version = version.unwrap_or(0),
                    shards = ?shard_counts(&state),
                    "shard map applied"
                );
                follow_map(&node, &cluster);
            } else if ticks.is_multiple_of(SWEEP_EVERY) {
                // A room started on this node just as its shard moved away can miss the sweep
                // of that map change; a periodic one catches it.
                follow_map(&node, &cluster);
            }
            for &id in state.members.keys() {
                if id == cluster.node_id {
                    continue;
                }
                let alive = cluster.is_alive(id);
                if !alive && down.insert(id) {
                    warn!(node_id = %id, "member silent past the failover timeout: declared dead");
                    node.member_down(id);
                } else if alive && down.remove(&id) {
                    info!(node_id = %id, "member alive again");
                }
            }
            down.retain(|id| state.members.contains_key(id));
            leader_duties(&cluster, &state).await;
        }
    })
    .abort_handle()
}

/// Stops rooms this node no longer owns and closes relays that follow an old owner.
fn follow_map(node: &Node, cluster: &Cluster) {
    for (name, room) in node.room_refs() {
        if !cluster.owns(&name) {
            let _ = room.send_message(RoomMsg::Relinquish);
        }
    }
    for (name, owner, relay) in node.relay_refs() {
        let current = match cluster.route(&name) {
            Route::Remote { owner, .. } => Some(owner),
            Route::Local => None,
        };
        if current != Some(owner) {
            let _ = relay.send_message(super::RelayMsg::Close);
        }
    }
}

async fn leader_duties(cluster: &Cluster, state: &ClusterState) {
    let guard = cluster.raft.read().await;
    let Some(raft) = guard.as_ref() else {
        return;
    };
    if !raft.is_leader() {
        return;
    }
    let Some(map) = &state.shard_map else {
        return;
    };
    let members = state.member_ids();
    let live: Vec<NodeId> = members
        .iter()
        .copied()
        .filter(|&id| cluster.is_alive(id))
        .collect();
    if live.is_empty() {
        return;
    }
    // Shards on a dead or removed node first: those rooms are unavailable until moved.
    let stranded = map
        .counts_per_node()
        .into_keys()
        .find(|owner| !live.contains(owner));
    let (why, plan) = match stranded {
        Some(owner) => match plan_drain(map, owner, &live) {
            Ok(plan) => (format!("node {owner} is unavailable"), plan),
            Err(error) => {
                warn!(%error, "cannot plan the failover");
                return;
            }
        },
        None if live.len() == members.len() => {
            match plan_rebalance(map, &members, &BTreeMap::new()) {
                Ok(plan) => ("rebalance".to_string(), plan),
                Err(error) => {
                    warn!(%error, "cannot plan a rebalance");
                    return;
                }
            }
        }
        None => return,
    };
    if plan.is_empty() {
        return;
    }
    let moves = plan.moves.len();
    let command = ClusterCommand::ApplyPlan {
        base_version: map.version(),
        plan,
    };
    match raft.propose(command).await {
        Ok(version) => info!(moves, version, reason = %why, "shards reassigned"),
        Err(ClusterNodeError::Rejected(rejected)) => {
            info!(%rejected, "shard plan overtaken; planning again");
        }
        Err(error) => warn!(%error, "cannot commit a shard plan"),
    }
}

/// On the leader: moves every shard of `node_id` to the `live` members. The control loop may
/// be reassigning the same shards at the same time; a plan overtaken by it is made again from
/// the newer map, and nothing is left to do once the node owns no shard.
pub(super) async fn drain(
    raft: &ClusterNode,
    node_id: NodeId,
    live: &[NodeId],
) -> Result<(), NodeError> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let state = raft.state();
        let Some(map) = &state.shard_map else {
            return Ok(());
        };
        let plan = plan_drain(map, node_id, live).map_err(|error| NodeError::Cluster {
            reason: error.to_string(),
        })?;
        if plan.is_empty() {
            return Ok(());
        }
        let command = ClusterCommand::ApplyPlan {
            base_version: map.version(),
            plan,
        };
        match raft.propose(command).await {
            Ok(_) => return Ok(()),
            Err(ClusterNodeError::Rejected(_)) => {}
            Err(error) => {
                return Err(NodeError::Cluster {
                    reason: error.to_string(),
                });
            }
        }
    }
    Err(NodeError::Cluster {
        reason: format!("could not move the shards of node {node_id}: the map kept changing"),
    })
}
