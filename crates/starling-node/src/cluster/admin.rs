//! Operator commands on the shard map — move a shard, split, rebalance, drain a node — carried
//! out by the leader, whichever node the operator called ([`Node::admin`]). Each commits its
//! moves as hand-offs and answers once every new owner holds its rooms, with what moved and how
//! long the hand-offs took.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use starling_cluster::{
    AdminOp, AdminReport, Call, CallReply, ClusterCommand, ClusterNodeError, ClusterState,
    CommandRejected, Refusal,
};
use starling_placement::{Move, NodeId, Plan, ShardId, plan_drain, plan_rebalance};
use tokio::time::Instant;
use tracing::info;

use super::control::within_budget;
use super::{Cluster, HANDOFF_TIMEOUT, refused_failed, unexpected};
use crate::error::NodeError;
use crate::node::Node;

/// Bound on one admin command: a rebalance or drain of many shards runs batch after batch.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Attempts at committing a plan while the map keeps changing under it.
const PLAN_ATTEMPTS: usize = 10;

impl Node {
    /// Runs an operator command on the leader, wherever it is, and reports what it did.
    pub async fn admin(&self, op: AdminOp) -> Result<AdminReport, NodeError> {
        let cluster = self.cluster().ok_or(NodeError::Cluster {
            reason: "this node runs without a cluster".into(),
        })?;
        for _ in 0..PLAN_ATTEMPTS {
            let reply = match cluster.leader() {
                Some((leader, _)) if leader == cluster.node_id => {
                    on_leader(cluster, op.clone()).await
                }
                Some((leader, _)) => {
                    cluster
                        .call_within(leader, Call::Admin(op.clone()), ADMIN_TIMEOUT)
                        .await?
                }
                None => CallReply::Refused(Refusal::NotLeader { leader: None }),
            };
            match reply {
                CallReply::Admin(report) => return Ok(report),
                CallReply::Refused(Refusal::NotLeader { .. }) => {
                    // An election is under way: ask again once another leader is known (or
                    // after half a second).
                    let mut metrics = cluster.raft_handle.metrics();
                    let before = metrics.borrow().current_leader;
                    let elected = metrics.wait_for(|m| m.current_leader != before);
                    let _ = tokio::time::timeout(Duration::from_millis(500), elected).await;
                }
                other => return Err(unexpected(other)),
            }
        }
        Err(NodeError::Cluster {
            reason: "no leader answered".into(),
        })
    }
}

/// Carries out `op` on this node, which must be the leader.
pub(super) async fn on_leader(cluster: &Cluster, op: AdminOp) -> CallReply {
    if let Err(refusal) = cluster.as_leader().await {
        return refusal;
    }
    info!(?op, "operator command");
    let _running = Running::new(cluster);
    let result = match op {
        AdminOp::MoveShard { shard, to } => move_shard(cluster, shard, to).await,
        AdminOp::Split => split(cluster).await,
        AdminOp::Rebalance => {
            let plan = |state: &ClusterState| {
                let map = state.shard_map.as_ref()?;
                plan_rebalance(map, &serving_members(state, None), &BTreeMap::new()).ok()
            };
            in_batches(cluster, plan).await
        }
        AdminOp::Drain { node } => drain(cluster, node).await,
    };
    match result {
        Ok(report) => {
            info!(?report, "operator command done");
            CallReply::Admin(report)
        }
        Err(reply) => reply,
    }
}

/// Marks an operator command as running for as long as it lives (also when the HTTP client
/// goes away and the command's future is dropped).
struct Running<'a>(&'a Cluster);

impl<'a> Running<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        cluster.admin_running.fetch_add(1, Ordering::SeqCst);
        Running(cluster)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.admin_running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Members that may take shards: alive and not draining (nor `except`).
fn serving_members(state: &ClusterState, except: Option<NodeId>) -> Vec<NodeId> {
    state
        .members
        .keys()
        .copied()
        .filter(|id| !state.draining.contains(id) && Some(*id) != except)
        .collect()
}

fn bad_request(reason: String) -> CallReply {
    CallReply::Refused(Refusal::BadRequest { reason })
}

async fn move_shard(
    cluster: &Cluster,
    shard: ShardId,
    to: NodeId,
) -> Result<AdminReport, CallReply> {
    let started = Instant::now();
    let state = cluster.state();
    let map = state
        .shard_map
        .as_ref()
        .ok_or_else(|| refused_failed("there is no shard map yet"))?;
    let Some(from) = map.owner(shard) else {
        return Err(bad_request(format!(
            "shard {shard} does not exist (the map has {} shards)",
            map.shard_count()
        )));
    };
    if !state.members.contains_key(&to) {
        return Err(bad_request(format!("node {to} is not a member")));
    }
    if state.draining.contains(&to) {
        return Err(bad_request(format!("node {to} is draining")));
    }
    if !cluster.is_alive(to) {
        return Err(refused_failed(&format!("node {to} is not answering")));
    }
    let mut report = AdminReport::default();
    let mut from = from;
    for _ in 0..PLAN_ATTEMPTS {
        if from == to {
            break;
        }
        let plan = Plan {
            moves: vec![Move { shard, from, to }],
        };
        if commit_and_wait(cluster, plan, &mut report).await? {
            break;
        }
        // The map moved on under the move: take the shard's owner from the newer one.
        let state = cluster.state();
        from = match state.shard_map.as_ref().and_then(|map| map.owner(shard)) {
            Some(owner) => owner,
            None => break,
        };
    }
    finish_report(cluster, &mut report);
    info!(%shard, %to, millis = elapsed_ms(started), "shard move done");
    Ok(report)
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn split(cluster: &Cluster) -> Result<AdminReport, CallReply> {
    let started = Instant::now();
    for _ in 0..PLAN_ATTEMPTS {
        let state = cluster.state();
        let Some(map) = &state.shard_map else {
            return Err(refused_failed("there is no shard map yet"));
        };
        if !state.handoffs.is_empty() {
            // A split waits for moves in flight to finish (shard numbers change).
            wait_for(cluster, |s| s.handoffs.is_empty()).await;
            continue;
        }
        match propose(
            cluster,
            ClusterCommand::Split {
                base_version: map.version(),
            },
        )
        .await
        {
            Ok(_) => {
                let mut report = AdminReport::default();
                finish_report(cluster, &mut report);
                info!(millis = elapsed_ms(started), "split committed");
                return Ok(report);
            }
            Err(Proposal::Stale) => {}
            Err(Proposal::Failed(reply)) => return Err(reply),
        }
    }
    Err(refused_failed("the shard map kept changing"))
}

async fn drain(cluster: &Cluster, node: NodeId) -> Result<AdminReport, CallReply> {
    let state = cluster.state();
    if !state.members.contains_key(&node) {
        return Err(bad_request(format!("node {node} is not a member")));
    }
    if serving_members(&state, Some(node)).is_empty() {
        return Err(bad_request(format!(
            "node {node} is the only member that could own shards"
        )));
    }
    match propose(
        cluster,
        ClusterCommand::SetDraining {
            node,
            draining: true,
        },
    )
    .await
    {
        Ok(_) | Err(Proposal::Stale) => {}
        Err(Proposal::Failed(reply)) => return Err(reply),
    }
    let plan = move |state: &ClusterState| {
        let map = state.shard_map.as_ref()?;
        plan_drain(map, node, &serving_members(state, Some(node))).ok()
    };
    in_batches(cluster, plan).await
}

/// Commits the moves `plan` makes from the current state, a few hand-offs at a time, until it
/// makes none.
async fn in_batches(
    cluster: &Cluster,
    plan: impl Fn(&ClusterState) -> Option<Plan>,
) -> Result<AdminReport, CallReply> {
    let started = Instant::now();
    let mut report = AdminReport::default();
    while started.elapsed() < ADMIN_TIMEOUT {
        let state = cluster.state();
        let Some(full) = plan(&state) else {
            return Err(refused_failed(
                "cannot plan: no shard map or no member to move to",
            ));
        };
        if full.is_empty() {
            break;
        }
        let batch = within_budget(full, &state);
        if batch.is_empty() {
            // Every shard left to move is still being handed over.
            wait_for(cluster, |s| s.handoffs.len() < state.handoffs.len().max(1)).await;
            continue;
        }
        commit_and_wait(cluster, batch, &mut report).await?;
    }
    finish_report(cluster, &mut report);
    Ok(report)
}

/// Commits `plan` as hand-offs and waits until every new owner holds its rooms. False when the
/// map changed under the plan (nothing was committed; plan again).
async fn commit_and_wait(
    cluster: &Cluster,
    plan: Plan,
    report: &mut AdminReport,
) -> Result<bool, CallReply> {
    let committed_at = Instant::now();
    let base_version = cluster
        .state()
        .shard_map
        .as_ref()
        .map_or(0, |map| map.version());
    let shards: Vec<ShardId> = plan.moves.iter().map(|mv| mv.shard).collect();
    let moves: Vec<(ShardId, NodeId, NodeId)> = plan
        .moves
        .iter()
        .map(|mv| (mv.shard, mv.from, mv.to))
        .collect();
    let version = match propose(cluster, ClusterCommand::HandoffPlan { base_version, plan }).await {
        Ok(version) => version.unwrap_or(base_version + 1),
        Err(Proposal::Stale) => {
            // Plan again once the map or the hand-offs in flight have changed (the rejection
            // itself may have been the only news).
            wait_for(cluster, |s| {
                s.shard_map.as_ref().map(|m| m.version()) != Some(base_version)
                    || shards.iter().all(|shard| !s.handoffs.contains_key(shard))
            })
            .await;
            return Ok(false);
        }
        Err(Proposal::Failed(reply)) => return Err(reply),
    };
    let finished = wait_for(cluster, |s| {
        !shards
            .iter()
            .any(|shard| s.handoffs.get(shard).is_some_and(|h| h.version == version))
    })
    .await;
    let state = cluster.state();
    for record in state
        .recent_handoffs
        .iter()
        .filter(|r| r.handoff.version == version && shards.contains(&r.shard))
    {
        report.rooms += u64::from(record.rooms);
        if !record.complete {
            report.incomplete += 1;
        }
    }
    if !finished {
        return Err(refused_failed(&format!(
            "the hand-off of shards {shards:?} did not finish within {:?}",
            HANDOFF_TIMEOUT * 3
        )));
    }
    report.moves.extend(moves);
    report.handoff_millis += elapsed_ms(committed_at);
    Ok(true)
}

fn finish_report(cluster: &Cluster, report: &mut AdminReport) {
    let state = cluster.state();
    if let Some(map) = &state.shard_map {
        report.map_version = map.version();
        report.shard_count = map.shard_count();
    }
}

/// Waits (bounded) until the applied state satisfies `done`; whether it did.
async fn wait_for(cluster: &Cluster, done: impl Fn(&ClusterState) -> bool) -> bool {
    let mut state = cluster.state.clone();
    let reached = state.wait_for(|s| done(s));
    tokio::time::timeout(HANDOFF_TIMEOUT * 3, reached)
        .await
        .is_ok_and(|r| r.is_ok())
}

enum Proposal {
    /// The command was made from a map that has changed since.
    Stale,
    Failed(CallReply),
}

async fn propose(cluster: &Cluster, command: ClusterCommand) -> Result<Option<u64>, Proposal> {
    let guard = cluster.raft.read().await;
    let Some(raft) = guard.as_ref() else {
        return Err(Proposal::Failed(refused_failed("shutting down")));
    };
    match raft.propose(command).await {
        Ok(version) => Ok(version),
        // The map, or a hand-off in it, moved on (the leader's own loop rebalances too):
        // plan again from the newer state.
        Err(ClusterNodeError::Rejected(
            CommandRejected::StaleShardMap { .. }
            | CommandRejected::StaleMove { .. }
            | CommandRejected::HandoffPending { .. },
        )) => Err(Proposal::Stale),
        Err(ClusterNodeError::Rejected(rejected)) => {
            Err(Proposal::Failed(bad_request(rejected.to_string())))
        }
        Err(error) => Err(Proposal::Failed(refused_failed(&error.to_string()))),
    }
}
