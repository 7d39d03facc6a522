//! [`ClusterNode`]: a running Raft member — start, initialize, grow and
//! shrink the membership, propose commands, read the applied state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use starling_placement::{DEFAULT_SHARD_COUNT, NodeId, assign};
use tokio::sync::watch;

use crate::endpoint::ClusterEndpoint;
use crate::raft::error::ClusterNodeError;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, RaftSlot, set_current};
use crate::raft::state::ClusterState;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::{ClusterCommand, ClusterResponse, NodeInfo, StarlingRaft};

/// Voters a cluster grows to by default; later members stay learners.
pub const DEFAULT_MAX_VOTERS: usize = 3;

/// The Raft files' directory inside the node's data directory.
pub const RAFT_DIR: &str = "raft";

/// How long [`ClusterNode::initialize`] waits to become leader of its new
/// one-node cluster.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one control-plane node, with documented defaults.
#[derive(Debug, Clone)]
pub struct ClusterNodeConfig {
    /// This node's id; must match the endpoint's.
    pub node_id: NodeId,
    /// The node's data directory; Raft keeps its files in `raft/` inside.
    pub data_dir: PathBuf,
    /// The addresses other members reach this node at.
    pub info: NodeInfo,
    /// Voters the cluster grows to (default [`DEFAULT_MAX_VOTERS`]).
    pub max_voters: usize,
    /// Shards in the map the first node creates (default
    /// [`DEFAULT_SHARD_COUNT`]).
    pub shard_count: u32,
    /// Leader heartbeat period (default 200 ms).
    pub heartbeat_interval: Duration,
    /// A follower without heartbeat for a random time in this range starts
    /// an election (default 1–2 s).
    pub election_timeout: (Duration, Duration),
}

impl ClusterNodeConfig {
    /// The defaults for node `node_id` with data in `data_dir`, reachable at
    /// `info`.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>, info: NodeInfo) -> Self {
        ClusterNodeConfig {
            node_id,
            data_dir: data_dir.into(),
            info,
            max_voters: DEFAULT_MAX_VOTERS,
            shard_count: DEFAULT_SHARD_COUNT,
            heartbeat_interval: Duration::from_millis(200),
            election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, ClusterNodeError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "starling".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|source| ClusterNodeError::Config {
            source: Box::new(source),
        })
    }
}

/// A member's role after [`ClusterNode::add_member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// Votes in Raft.
    Voter,
    /// Replicates the log without voting.
    Learner,
}

/// A point-in-time view of this node's Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetrics {
    /// This node.
    pub node_id: NodeId,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Leader, follower, candidate or learner.
    pub state: ServerState,
    /// Index of the last applied entry.
    pub last_applied: Option<u64>,
    /// The voters of the current membership.
    pub voters: BTreeSet<NodeId>,
}

/// A running control-plane node: openraft over the endpoint's QUIC,
/// persisting in the data directory.
///
/// Owns the Raft task; [`shutdown`](Self::shutdown) stops it. The endpoint
/// stays the caller's (the data plane uses it too).
pub struct ClusterNode {
    config: ClusterNodeConfig,
    raft: StarlingRaft,
    state: watch::Receiver<Arc<ClusterState>>,
    slot: RaftSlot,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // openraft's handle has no Debug of its own.
        f.debug_struct("ClusterNode")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Opens the Raft files under `config.data_dir` (replaying what is
    /// there) and starts Raft, answering on `endpoint`. A restarted node
    /// comes back with its log, vote and snapshot and rejoins its cluster;
    /// a new one waits to be initialized or added.
    pub async fn start(
        config: ClusterNodeConfig,
        endpoint: &ClusterEndpoint,
    ) -> Result<Self, ClusterNodeError> {
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.data_dir.join(RAFT_DIR);
        let log = LogStore::open(&dir)?;
        let sm = StateMachineStore::open(&dir)?;
        let state = sm.subscribe();
        let network = NetworkFactory::new(endpoint.dialer());
        let raft = StarlingRaft::new(config.node_id.0, raft_config, network, log, sm)
            .await
            .map_err(|source| ClusterNodeError::Fatal {
                source: Box::new(source),
            })?;
        let slot = endpoint.raft_slot();
        set_current(&slot, Some(raft.clone()));
        tracing::info!(node_id = %config.node_id, dir = %dir.display(), "raft started");
        Ok(ClusterNode {
            config,
            raft,
            state,
            slot,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Makes this node a one-node cluster (it becomes leader) and commits
    /// the first shard map, every shard on this node. Does nothing to a
    /// node that is already part of a cluster, so a restart can call it
    /// again.
    pub async fn initialize(&self) -> Result<(), ClusterNodeError> {
        let id = self.config.node_id;
        if !self.is_initialized().await? {
            let members = BTreeMap::from([(id.0, self.config.info.clone())]);
            match self.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(RaftError::APIError(InitializeError::NotInMembers(_))) => {
                    // The member map names this very node.
                    return Err(ClusterNodeError::UnknownMember { node: id });
                }
                Err(RaftError::Fatal(source)) => {
                    return Err(ClusterNodeError::Fatal {
                        source: Box::new(source),
                    });
                }
            }
            tracing::info!(node_id = %id, "initialized a one-node cluster");
        }
        self.raft
            .wait(Some(INIT_TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader after initialize")
            .await
            .map_err(|_| ClusterNodeError::Timeout {
                what: "a leader after initialize",
            })?;
        if self.is_leader() && self.state().shard_map.is_none() {
            let map = assign(self.config.shard_count, &[id], 1)?;
            match self.propose(ClusterCommand::SetShardMap { map }).await {
                // Another leader term may have committed one meanwhile.
                Ok(_) | Err(ClusterNodeError::Rejected(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Whether this node has a membership (it initialized a cluster or was
    /// added to one).
    pub async fn is_initialized(&self) -> Result<bool, ClusterNodeError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|source| ClusterNodeError::Fatal {
                source: Box::new(source),
            })
    }

    /// On the leader: adds node `id` at `info` as a learner, waits until it
    /// has caught up, and promotes it to voter while the cluster has fewer
    /// than `max_voters`. Adding a known member again is harmless.
    pub async fn add_member(
        &self,
        id: NodeId,
        info: NodeInfo,
    ) -> Result<MemberRole, ClusterNodeError> {
        self.raft
            .add_learner(id.0, info, true)
            .await
            .map_err(|e| self.write_error(e))?;
        tracing::info!(node_id = %id, "added learner");
        self.promote_learners().await?;
        let voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id.0);
        Ok(if voter {
            MemberRole::Voter
        } else {
            MemberRole::Learner
        })
    }

    /// On the leader: promotes learners (lowest ids first) until there are
    /// `max_voters` voters or no learners left.
    pub async fn promote_learners(&self) -> Result<(), ClusterNodeError> {
        let (voters, learners) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let learners: Vec<u64> = membership.learner_ids().collect();
            (voters, learners)
        };
        let room = self.config.max_voters.saturating_sub(voters.len());
        let promote: BTreeSet<u64> = learners.into_iter().take(room).collect();
        if promote.is_empty() {
            return Ok(());
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(promote.clone()), true)
            .await
            .map_err(|e| self.write_error(e))?;
        tracing::info!(promoted = ?promote, "learners promoted to voters");
        Ok(())
    }

    /// On the leader: removes node `id` from the cluster (voter or learner)
    /// and promotes a learner into a freed voter seat.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterNodeError> {
        let (known, voter) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            (
                membership.get_node(&id.0).is_some(),
                membership.voter_ids().any(|v| v == id.0),
            )
        };
        if !known {
            return Err(ClusterNodeError::UnknownMember { node: id });
        }
        let ids = BTreeSet::from([id.0]);
        let change = if voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.write_error(e))?;
        tracing::info!(node_id = %id, "member removed");
        self.promote_learners().await
    }

    /// Proposes `command` (on the leader) and waits until it is applied
    /// here. Returns the shard map version afterwards.
    pub async fn propose(&self, command: ClusterCommand) -> Result<Option<u64>, ClusterNodeError> {
        let written = self
            .raft
            .client_write(command)
            .await
            .map_err(|e| self.write_error(e))?;
        match written.data {
            ClusterResponse::Applied { shard_map_version } => Ok(shard_map_version),
            ClusterResponse::Rejected(rejected) => Err(ClusterNodeError::Rejected(rejected)),
        }
    }

    /// The state as applied on this node (which may trail the leader).
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// Every applied state from now on, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Leader, term and role as this node sees them.
    pub fn metrics(&self) -> ClusterMetrics {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        ClusterMetrics {
            node_id: self.config.node_id,
            leader: m.current_leader.map(NodeId),
            term: m.current_term,
            state: m.state,
            last_applied: m.last_applied.map(|l| l.index),
            voters: m
                .membership_config
                .membership()
                .voter_ids()
                .map(NodeId)
                .collect(),
        }
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.config.node_id.0)
    }

    /// The openraft handle, for waiting on metrics and for calls this type
    /// does not wrap.
    pub fn raft(&self) -> &StarlingRaft {
        &self.raft
    }

    /// Stops Raft and stops answering Raft RPCs on the endpoint. A leader
    /// simply goes silent; the others elect a new one.
    pub async fn shutdown(self) -> Result<(), ClusterNodeError> {
        set_current(&self.slot, None);
        if let Err(error) = self.raft.shutdown().await {
            tracing::error!(%error, "raft task failed");
        }
        tracing::info!(node_id = %self.config.node_id, "raft stopped");
        Ok(())
    }

    fn write_error(
        &self,
        error: RaftError<u64, ClientWriteError<u64, NodeInfo>>,
    ) -> ClusterNodeError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ClusterNodeError::NotLeader {
                    node: self.config.node_id,
                    leader: forward.leader_id.map(NodeId),
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(source)) => {
                ClusterNodeError::Membership {
                    source: Box::new(source),
                }
            }
            RaftError::Fatal(source) => ClusterNodeError::Fatal {
                source: Box::new(source),
            },
        }
    }
}
