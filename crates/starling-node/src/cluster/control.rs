//! The cluster control loop (the design's ClusterActor): on every node it follows the shard
//! map — switching the map the node serves by, handing off rooms whose shard left, taking over
//! shards that arrive (`handoff`) — purges presence of members that went silent, and on a
//! drained node advises its clients to reconnect elsewhere. On the leader it also keeps the
//! map right: shards of dead or removed members get live owners at once (no hand-off is
//! possible), and when the set of live members changes the map is rebalanced by rendezvous
//! hashing with hand-offs, a few moves at a time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{ClusterCommand, ClusterNode, ClusterNodeError, ClusterState};
use starling_placement::{NodeId, Plan, plan_drain, plan_rebalance};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{Cluster, handoff, replica, shard_counts};
use crate::error::NodeError;
use crate::node::Node;

/// How often the loop looks at liveness even when the state does not change.
const TICK: Duration = Duration::from_millis(200);
/// Ticks between sweeps of rooms and relays against an unchanged map (every 2 s).
const SWEEP_EVERY: u32 = 10;
/// Every how many ticks rooms whose replica lacks their state give it again.
const RETRY_REPLICAS_EVERY: u32 = 5;

pub(super) fn spawn(node: Node, cluster: Arc<Cluster>) -> AbortHandle {
    tokio::spawn(async move {
        let mut changes = cluster.state.clone();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_version = None;
        let mut down: HashSet<NodeId> = HashSet::new();
        let mut ticks = 0u32;
        let mut leader = LeaderMemory::default();
        let mut drain_advised = false;
        let mut seen_state: Option<Arc<ClusterState>> = None;
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
                    handoffs = state.handoffs.len(),
                    "shard map applied"
                );
            }
            // A room started on this node just as its shard moved away can miss the switch
            // of that map; a periodic sweep catches it.
            handoff::follow(&node, &cluster, &state, ticks.is_multiple_of(SWEEP_EVERY));
            let (new_state, new_replicas) = match &seen_state {
                Some(seen) => (!Arc::ptr_eq(seen, &state), seen.replicas != state.replicas),
                None => (true, true),
            };
            if new_state || ticks.is_multiple_of(SWEEP_EVERY) {
                cluster.follow_replicas(&node, &state);
            }
            node.metrics()
                .set_replica_rooms(cluster.replica_rooms.len() as u64);
            if ticks.is_multiple_of(RETRY_REPLICAS_EVERY) {
                // Rooms whose replica missed their state try again (a room without
                // publications would otherwise never give it).
                cluster.retry_unreplicated(&node);
            }
            if new_replicas {
                // New replicas get the state of every room at once, not at its next
                // publication.
                node.sync_replicas();
            }
            seen_state = Some(Arc::clone(&state));
            for shard in handoff::overdue(&cluster) {
                handoff::finish(&node, &cluster, shard, None, 0);
            }
            cluster
                .handed_off
                .retain(|_, (_, at)| at.elapsed() < HANDED_OFF_MEMORY);
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
                    node.member_up(id);
                }
            }
            down.retain(|id| state.members.contains_key(id));
            if !drain_advised && drained(&cluster, &state) {
                drain_advised = true;
                let spread = cluster.settings.drain_reconnect_spread;
                info!(
                    ?spread,
                    "this node is drained; advising its clients to reconnect elsewhere"
                );
                let node = node.clone();
                tokio::spawn(async move { node.advise_reconnect(spread).await });
            }
            // Bounded: a leader cut off from its quorum would wait on a proposal until the
            // cut heals, and this loop must keep judging liveness meanwhile. The commands are
            // fenced by map version, so one that still commits later does no harm.
            let duties = leader_duties(&cluster, &state, &mut leader);
            if tokio::time::timeout(cluster.settings.failover_timeout, duties)
                .await
                .is_err()
            {
                warn!("leader duties did not finish within the failover timeout (no quorum?)");
            }
        }
    })
    .abort_handle()
}

/// How long a node remembers where it handed a room, to pass late unsubscribes on.
const HANDED_OFF_MEMORY: Duration = Duration::from_secs(60);
/// Hand-offs the leader keeps in flight at once when it rebalances or drains by itself.
pub(super) const MOVES_IN_FLIGHT: usize = 8;

/// Whether this node is marked draining and owns no shard any more.
fn drained(cluster: &Cluster, state: &ClusterState) -> bool {
    state.draining.contains(&cluster.node_id)
        && state.shard_map.as_ref().is_some_and(|map| {
            map.shards_of(cluster.node_id).next().is_none()
                && !state.handoffs.values().any(|h| h.from == cluster.node_id)
        })
}

/// What the leader's loop remembers between ticks.
#[derive(Default)]
struct LeaderMemory {
    /// The members (alive, not draining) the map was last rebalanced for. The loop rebalances
    /// by itself only when this changes (a join, a leave, a node back), so an operator's move
    /// stays until the membership changes.
    balanced_for: Option<Vec<NodeId>>,
}

async fn leader_duties(cluster: &Cluster, state: &ClusterState, memory: &mut LeaderMemory) {
    let guard = cluster.raft.read().await;
    let Some(raft) = guard.as_ref() else {
        return;
    };
    if !raft.is_leader() {
        memory.balanced_for = None;
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
    // Shards on a dead or removed node first: those rooms are unavailable until moved. Nobody
    // can ship them, so they move without a hand-off.
    let stranded = map
        .counts_per_node()
        .into_keys()
        .find(|owner| !live.contains(owner));
    if let Some(owner) = stranded {
        let targets: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|id| !state.draining.contains(id))
            .collect();
        let targets = if targets.is_empty() {
            live.clone()
        } else {
            targets
        };
        // Each shard goes to its replica when that is alive: its rooms continue there from
        // their copies (same epoch and offsets); the others to their rendezvous owner.
        let planned = plan_drain(map, owner, &targets).map(|mut plan| {
            for mv in &mut plan.moves {
                if let Some(&replica) = state.replicas.get(&mv.shard)
                    && replica != owner
                    && live.contains(&replica)
                {
                    mv.to = replica;
                }
            }
            plan
        });
        match planned {
            Ok(plan) if !plan.is_empty() => {
                let moves = plan.moves.len();
                let command = ClusterCommand::ApplyPlan {
                    base_version: map.version(),
                    plan,
                };
                commit(
                    raft,
                    command,
                    moves,
                    &format!("node {owner} is unavailable"),
                )
                .await;
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "cannot plan the failover"),
        }
        return;
    }
    // Replicas on members that answer (a dead one's shards are replicated again elsewhere).
    let answering: Vec<NodeId> = live
        .iter()
        .copied()
        .filter(|&id| {
            id == cluster.node_id || cluster.answered_within(id, cluster.settings.failover_timeout)
        })
        .collect();
    let replicas = replica::desired(state, &answering, cluster.settings.replication_factor);
    if replicas != state.replicas {
        let command = ClusterCommand::SetReplicas {
            map_version: map.version(),
            replicas,
        };
        match raft.propose(command).await {
            Ok(_) => info!("shard replicas reassigned"),
            Err(error) => info!(%error, "replica assignment overtaken; again later"),
        }
        return;
    }
    if live.len() != members.len() {
        return;
    }
    // An operator command is moving shards: it plans from the state it sees, and a rebalance
    // from here would only race it.
    if cluster
        .admin_running
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
    {
        return;
    }
    // Hand-offs need the data plane: rebalance only onto members that really answer (not
    // ones merely inside the start-up grace).
    let answering = members.iter().all(|&id| {
        id == cluster.node_id || cluster.answered_within(id, cluster.settings.failover_timeout)
    });
    if !answering {
        return;
    }
    let serving: Vec<NodeId> = members
        .iter()
        .copied()
        .filter(|id| !state.draining.contains(id))
        .collect();
    if serving.is_empty() {
        return;
    }
    let draining_owns = state
        .draining
        .iter()
        .any(|&id| map.shards_of(id).next().is_some());
    if memory.balanced_for.as_ref() == Some(&serving) && !draining_owns {
        return;
    }
    match plan_rebalance(map, &serving, &BTreeMap::new()) {
        Ok(plan) => {
            let plan = within_budget(plan, state);
            if plan.is_empty() {
                if state.handoffs.is_empty() {
                    memory.balanced_for = Some(serving);
                }
                return;
            }
            let moves = plan.moves.len();
            let command = ClusterCommand::HandoffPlan {
                base_version: map.version(),
                plan,
            };
            commit(raft, command, moves, "rebalance").await;
        }
        Err(error) => warn!(%error, "cannot plan a rebalance"),
    }
}

/// The moves of `plan` that can start now: none of a shard still being handed over, and no
/// more than [`MOVES_IN_FLIGHT`] hand-offs at once.
pub(super) fn within_budget(mut plan: Plan, state: &ClusterState) -> Plan {
    let budget = MOVES_IN_FLIGHT.saturating_sub(state.handoffs.len());
    plan.moves
        .retain(|mv| !state.handoffs.contains_key(&mv.shard));
    plan.moves.truncate(budget);
    plan
}

async fn commit(raft: &ClusterNode, command: ClusterCommand, moves: usize, why: &str) {
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
