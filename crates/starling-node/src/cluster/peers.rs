//! Links to the other members: dialling and re-dialling each one, reading the links they open
//! to this node, liveness, and the join procedure of a new node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::{Call, CallReply, Frame, IncomingLinks, NodeInfo, PeerLink, Refusal};
use starling_placement::NodeId;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{CALL_TIMEOUT, Cluster, HEARTBEAT_ID, JOIN_TIMEOUT, PING_INTERVAL, dispatch};
use crate::error::NodeError;
use crate::node::Node;

/// Delay before re-dialling a peer after a failed dial or a lost link; doubles up to
/// [`MAX_REDIAL`].
const FIRST_REDIAL: Duration = Duration::from_millis(100);
const MAX_REDIAL: Duration = Duration::from_secs(2);

/// Reads every link other members open to this node, and hands their frames to `dispatch`.
pub(super) fn spawn_acceptor(node: Node, mut incoming: IncomingLinks) -> AbortHandle {
    tokio::spawn(async move {
        // A JoinSet aborts its tasks when dropped, so aborting this task stops the readers.
        let mut readers = JoinSet::new();
        while let Some(link) = incoming.next().await {
            while readers.try_join_next().is_some() {}
            readers.spawn(read_incoming(node.clone(), link));
        }
    })
    .abort_handle()
}

async fn read_incoming(node: Node, mut link: PeerLink) {
    let peer = link.peer();
    debug!(%peer, "incoming cluster link");
    let reply_to = link.sender();
    // Liveness comes from answered heartbeats on this node's own link to the peer, not from
    // what arrives here: a peer may call this node without counting it as a member.
    while let Some(frame) = link.recv().await {
        dispatch::incoming(&node, peer, &reply_to, frame);
    }
    debug!(%peer, "incoming cluster link closed");
}

/// Keeps one outbound link per member (other than this node), following the member list.
pub(super) fn spawn_link_manager(node: Node, cluster: Arc<Cluster>) -> AbortHandle {
    tokio::spawn(async move {
        let mut state = cluster.state.clone();
        let mut links: HashMap<NodeId, (std::net::SocketAddr, AbortOnDrop)> = HashMap::new();
        loop {
            let members = state.borrow_and_update().members.clone();
            links.retain(|id, (addr, task)| {
                let keep = members.get(id).is_some_and(|m| m.addr == *addr);
                if !keep {
                    task.0.abort();
                    cluster.peers.remove(id);
                }
                keep
            });
            for (id, member) in &members {
                if *id == cluster.node_id || links.contains_key(id) {
                    continue;
                }
                let task = tokio::spawn(maintain_link(
                    node.clone(),
                    Arc::clone(&cluster),
                    *id,
                    member.addr,
                ));
                links.insert(*id, (member.addr, AbortOnDrop(task.abort_handle())));
            }
            if state.changed().await.is_err() {
                break;
            }
        }
    })
    .abort_handle()
}

/// Aborts its task when dropped, so aborting the link manager stops every link it keeps.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Dials `peer`, pings it while the link lasts, reads the answers to this node's calls, and
/// dials again when the link is lost.
async fn maintain_link(
    node: Node,
    cluster: Arc<Cluster>,
    peer: NodeId,
    addr: std::net::SocketAddr,
) {
    let mut backoff = FIRST_REDIAL;
    let mut logged_failure = false;
    loop {
        let Some(endpoint) = cluster.endpoint() else {
            return;
        };
        let dialled = endpoint.connect(addr, peer).await;
        drop(endpoint);
        match dialled {
            Ok(link) => {
                info!(%peer, %addr, "cluster link up");
                backoff = FIRST_REDIAL;
                logged_failure = false;
                cluster.peers.insert(peer, link.sender());
                cluster.link_up.notify_waiters();
                run_link(&node, &cluster, link).await;
                cluster.peers.remove(&peer);
                warn!(%peer, %addr, "cluster link lost");
            }
            Err(error) => {
                // A dead peer fails every dial; say so once per outage, not every 2 s.
                if !logged_failure {
                    warn!(%peer, %addr, %error, "cannot reach cluster peer; retrying");
                    logged_failure = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_REDIAL);
    }
}

async fn run_link(node: &Node, cluster: &Cluster, mut link: PeerLink) {
    let peer = link.peer();
    let sender = link.sender();
    let mut ticker = tokio::time::interval(PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused = false;
    let connected = Instant::now();
    let window = cluster.settings.failover_timeout;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // A full queue means the link is busy, not dead; the next tick tries again.
                let _ = sender.try_send(Frame::Call { id: HEARTBEAT_ID, call: Call::Heartbeat });
                if connected.elapsed() > window && !cluster.seen_within(peer, window) {
                    warn!(%peer, "cluster peer silent past the failover timeout; re-dialling");
                    return;
                }
            }
            frame = link.recv() => {
                let Some(frame) = frame else { return };
                match frame {
                    // Only an answered heartbeat is contact: a peer that no longer counts this
                    // node as a member refuses it, and this node's lease runs out.
                    Frame::Reply { id: HEARTBEAT_ID, reply } => match reply {
                        CallReply::Done => {
                            refused = false;
                            cluster.last_seen.insert(peer, Instant::now());
                        }
                        refusal => {
                            if !refused {
                                warn!(%peer, ?refusal, "peer does not count this node as a member");
                                refused = true;
                            }
                        }
                    },
                    Frame::Reply { id, reply } => cluster.answer(id, reply),
                    Frame::Pong { .. } => {}
                    other => dispatch::incoming(node, peer, &sender, other),
                }
            }
        }
    }
}

/// Joins the cluster through the seeds: asks one for membership, follows "not the leader" to
/// the leader, and retries until [`JOIN_TIMEOUT`].
pub(super) async fn join(cluster: &Cluster, info: NodeInfo) -> Result<(), NodeError> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let seeds = cluster.settings.join.clone();
    let mut attempt = 0usize;
    loop {
        let seed = seeds[attempt % seeds.len()];
        attempt += 1;
        let mut target = (seed, None);
        // At most a few hops: seed → leader.
        for _ in 0..3 {
            let (addr, id) = target;
            let Some(endpoint) = cluster.endpoint() else {
                return Err(NodeError::Cluster {
                    reason: "stopped while joining".into(),
                });
            };
            let link = match id {
                Some(id) => endpoint.connect(addr, id).await,
                None => endpoint.connect_seed(addr).await,
            };
            let mut link = match link {
                Ok(link) => link,
                Err(error) => {
                    warn!(%addr, %error, "cannot reach join seed");
                    break;
                }
            };
            let call = Call::Join {
                node_id: cluster.node_id,
                info: info.clone(),
            };
            if link.send(Frame::Call { id: 0, call }).await.is_err() {
                break;
            }
            let reply = tokio::time::timeout(CALL_TIMEOUT * 6, async {
                while let Some(frame) = link.recv().await {
                    if let Frame::Reply { reply, .. } = frame {
                        return Some(reply);
                    }
                }
                None
            })
            .await;
            match reply {
                Ok(Some(CallReply::Joined { voter })) => {
                    info!(node_id = %cluster.node_id, via = %addr, voter, "joined the cluster");
                    return Ok(());
                }
                Ok(Some(CallReply::Refused(Refusal::NotLeader {
                    leader: Some((leader, leader_addr)),
                }))) => {
                    debug!(%leader, %leader_addr, "join: following the leader");
                    target = (leader_addr, Some(leader));
                }
                Ok(Some(CallReply::Refused(refusal))) => {
                    warn!(%addr, %refusal, "join refused");
                    break;
                }
                _ => {
                    warn!(%addr, "join: no answer");
                    break;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(NodeError::Cluster {
                reason: format!(
                    "could not join through {:?} within {}s",
                    seeds,
                    JOIN_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
