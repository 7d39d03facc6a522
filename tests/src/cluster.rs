//! A cluster of in-process Starling nodes with real sockets: each member has its own client
//! plane (HTTP/WebSocket on a `:0` port), its own QUIC endpoint with mutual TLS from one test
//! CA, and its own data directory, kept across a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use starling_cluster::{ClusterTls, NodeId, init_ca, issue_node_cert};
use starling_config::Config;
use starling_node::{ClusterHandle, ClusterSettings, ClusterStatus, start_cluster};

use crate::{TestNode, eventually};

/// The failover timeout test clusters run with: short, so failover tests stay quick.
pub const TEST_FAILOVER: Duration = Duration::from_secs(3);

/// One member of a [`TestCluster`].
pub struct Member {
    /// The member's node id.
    pub id: u64,
    /// Its client plane and node runtime.
    pub node: TestNode,
    cluster: Option<ClusterHandle>,
    /// Its QUIC cluster address (kept across a restart).
    pub cluster_addr: SocketAddr,
}

impl Member {
    /// The cluster as this member sees it.
    pub fn status(&self) -> ClusterStatus {
        self.node.node.cluster_status().expect("a cluster member")
    }
}

/// Several in-process nodes forming one cluster.
pub struct TestCluster {
    /// The members, index `i` holding node id `i + 1`; `None` while stopped.
    pub members: Vec<Option<Member>>,
    dir: PathBuf,
    config_toml: String,
    shard_count: u32,
}

impl TestCluster {
    /// Starts `n` nodes configured by `config_toml`: node 1 initializes the cluster, the others
    /// join through it; returns once every member sees every other alive and owning shards.
    pub async fn start(n: usize, config_toml: &str) -> anyhow::Result<TestCluster> {
        crate::init_logs();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starling-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ca"))?;
        init_ca(&dir.join("ca"))?;
        let mut cluster = TestCluster {
            members: Vec::new(),
            dir,
            config_toml: config_toml.to_string(),
            shard_count: 64,
        };
        for id in 1..=n as u64 {
            let join = if id == 1 {
                Vec::new()
            } else {
                vec![cluster.member(1).cluster_addr]
            };
            let member = cluster
                .start_member(id, "127.0.0.1:0".parse()?, join)
                .await?;
            cluster.members.push(Some(member));
        }
        cluster.settled().await?;
        Ok(cluster)
    }

    /// Member `id` (1-based), which must be running.
    pub fn member(&self, id: u64) -> &Member {
        self.members[(id - 1) as usize]
            .as_ref()
            .expect("member is running")
    }

    /// The running members.
    pub fn running(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().flatten()
    }

    async fn start_member(
        &self,
        id: u64,
        cluster_addr: SocketAddr,
        join: Vec<SocketAddr>,
    ) -> anyhow::Result<Member> {
        let node_dir = self.dir.join(format!("node-{id}"));
        let tls_dir = node_dir.join("tls");
        if !tls_dir.join(starling_cluster::NODE_CERT_FILE).exists() {
            issue_node_cert(&self.dir.join("ca"), NodeId(id), &tls_dir)?;
        }
        let tls = ClusterTls::load(&tls_dir)?;
        let mut config = Config::from_toml_str(&self.config_toml).context("test config")?;
        let node = TestNode::start_in(&mut config, node_dir.join("data")).await?;
        let settings = ClusterSettings {
            node_id: NodeId(id),
            listen: cluster_addr,
            advertise: None,
            http_addr: node.http_addr.to_string(),
            join,
            tls,
            data_dir: node_dir.join("data"),
            max_voters: 3,
            shard_count: self.shard_count,
            failover_timeout: TEST_FAILOVER,
            drain_reconnect_spread: Duration::from_secs(2),
            replication_factor: config.cluster.replication_factor,
        };
        // A restart rebinds the old UDP port, which the previous endpoint may release a moment
        // after its shutdown returns.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let handle = loop {
            match start_cluster(&node.node, settings.clone()).await {
                Ok(handle) => break handle,
                Err(error)
                    if cluster_addr.port() != 0 && tokio::time::Instant::now() < deadline =>
                {
                    tracing_free_note(&error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        Ok(Member {
            id,
            cluster_addr: handle.local_addr(),
            node,
            cluster: Some(handle),
        })
    }

    /// Waits until every running member sees the same shard map version, a leader, every
    /// running member alive, every shard on a running member, and (when every member runs)
    /// the map balanced with no move in progress.
    pub async fn settled(&self) -> anyhow::Result<()> {
        let running: Vec<u64> = self.running().map(|m| m.id).collect();
        let ok = eventually(Duration::from_secs(30), || async {
            let statuses: Vec<ClusterStatus> = self.running().map(Member::status).collect();
            let Some(first) = statuses.first() else {
                return true;
            };
            let all_running = first.members.iter().all(|m| running.contains(&m.node_id));
            statuses.iter().all(|s| {
                s.leader.is_some()
                    && s.shard_map_version == first.shard_map_version
                    && (!all_running || (s.balanced && s.handoffs.is_empty()))
                    && s.members.iter().all(|m| {
                        let up = running.contains(&m.node_id);
                        m.alive == up && (m.shards > 0) == up
                    })
            })
        })
        .await;
        anyhow::ensure!(
            ok,
            "cluster did not settle: {:#?}",
            self.running().map(Member::status).collect::<Vec<_>>()
        );
        Ok(())
    }

    /// Stops member `id` abruptly: its cluster endpoint closes and its clients are dropped
    /// (as a crash would), while its data directory stays for a restart.
    pub async fn kill(&mut self, id: u64) {
        if let Some(mut member) = self.members[(id - 1) as usize].take() {
            if let Some(handle) = member.cluster.take() {
                handle.shutdown().await;
            }
            member.node.stop().await;
        }
    }

    /// Restarts member `id` on its old data directory and cluster address.
    pub async fn restart(&mut self, id: u64, cluster_addr: SocketAddr) -> anyhow::Result<()> {
        let member = self.start_member(id, cluster_addr, Vec::new()).await?;
        self.members[(id - 1) as usize] = Some(member);
        Ok(())
    }

    /// The id of the member that owns `room` in member `via`'s map.
    pub fn owner_of(&self, via: u64, room: &str) -> u64 {
        self.member(via)
            .node
            .node
            .room_owner(room)
            .expect("a shard map")
    }

    /// A room name (with `prefix`) that member `owner` owns.
    pub fn room_owned_by(&self, owner: u64, prefix: &str) -> String {
        (0..10_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|room| self.owner_of(owner, room) == owner)
            .expect("some room hashes to every member")
    }

    /// Stops every member.
    pub async fn stop(mut self) {
        for id in 1..=self.members.len() as u64 {
            self.kill(id).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tracing_free_note(error: &dyn std::fmt::Display) {
    eprintln!("cluster member restart: {error}; retrying");
}
