//! Control-plane nodes on real QUIC endpoints (127.0.0.1, OS-assigned
//! ports) with certificates from one test CA, each with its own data
//! directory, and bounded waits on their state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{
    ClusterEndpoint, ClusterNode, ClusterNodeConfig, ClusterState, IncomingLinks, NodeId, NodeInfo,
    init_ca, issue_node_cert,
};

/// Bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test after [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A test cluster's shared CA and per-node directories.
pub(crate) struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    pub(crate) fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("starling-raft-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init_ca(&dir.join("ca")).expect("init ca");
        Cluster { dir }
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Starts node `id` on `addr` (port 0 for a new node; its old address
    /// for a restart), with its data directory kept across restarts.
    pub(crate) async fn start(&self, id: u64, addr: SocketAddr) -> TestNode {
        let dir = self.node_dir(id);
        let tls_dir = dir.join("tls");
        if !tls_dir.join(starling_cluster::NODE_CERT_FILE).exists() {
            issue_node_cert(&self.dir.join("ca"), NodeId(id), &tls_dir).expect("issue cert");
        }
        let tls = starling_cluster::ClusterTls::load(&tls_dir).expect("load tls");
        // A restart rebinds the old port, which the previous endpoint may
        // release a moment after its shutdown returns.
        let (endpoint, incoming) = within("the cluster port", async {
            loop {
                match ClusterEndpoint::bind(addr, tls.clone(), NodeId(id)) {
                    Ok(bound) => return bound,
                    Err(_) if addr.port() != 0 => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(error) => panic!("bind: {error}"),
                }
            }
        })
        .await;
        let info = NodeInfo {
            cluster_addr: endpoint.local_addr(),
            http_addr: format!("127.0.0.1:{}", 8000 + id),
        };
        let mut config = ClusterNodeConfig::new(NodeId(id), dir.join("data"), info);
        config.shard_count = 16;
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout = (Duration::from_millis(500), Duration::from_millis(1000));
        let node = ClusterNode::start(config, &endpoint)
            .await
            .expect("start node");
        TestNode {
            node,
            endpoint,
            _incoming: incoming,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One running node: its Raft and its endpoint.
pub(crate) struct TestNode {
    pub(crate) node: ClusterNode,
    pub(crate) endpoint: ClusterEndpoint,
    _incoming: IncomingLinks,
}

impl TestNode {
    pub(crate) fn id(&self) -> NodeId {
        self.node.node_id()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            cluster_addr: self.addr(),
            http_addr: format!("127.0.0.1:{}", 8000 + self.id().0),
        }
    }

    /// Waits until the applied state satisfies `pred`.
    pub(crate) async fn wait_state(
        &self,
        what: &str,
        pred: impl FnMut(&Arc<ClusterState>) -> bool,
    ) -> Arc<ClusterState> {
        let mut rx = self.node.subscribe();
        let state = within(what, rx.wait_for(pred))
            .await
            .expect("state channel");
        state.clone()
    }

    /// Stops Raft and the endpoint, as a crash would (no hand-over).
    pub(crate) async fn stop(self) {
        self.node.shutdown().await.expect("shutdown");
        self.endpoint.shutdown().await;
    }
}
