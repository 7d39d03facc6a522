//! The control plane end to end: three nodes on real QUIC endpoints form a
//! cluster, replicate commands, elect a new leader when the leader stops,
//! and take a restarted node back with its state.

mod fixtures;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fixtures::{Cluster, TestNode, WAIT, within};
use starling_cluster::{ClusterCommand, MemberRole, NodeId};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn voters(ids: &[u64]) -> BTreeSet<NodeId> {
    ids.iter().copied().map(NodeId).collect()
}

fn set(key: &str, value: &str) -> ClusterCommand {
    ClusterCommand::SetSetting {
        key: key.into(),
        value: value.into(),
    }
}

/// The node that leads, as `nodes` see it.
async fn leader_of(nodes: &[&TestNode]) -> NodeId {
    within("a leader", async {
        loop {
            let leaders: BTreeSet<_> = nodes.iter().map(|n| n.node.metrics().leader).collect();
            if leaders.len() == 1
                && let Some(Some(leader)) = leaders.into_iter().next()
                && nodes.iter().any(|n| n.id() == leader)
            {
                return leader;
            }
            let mut rx = nodes[0].node.raft().metrics();
            // Wake on the next metrics change of any kind.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_node_initializes_with_every_shard_on_itself() {
    let cluster = Cluster::new("init");
    let n1 = cluster.start(1, any_port()).await;
    within("initialize", n1.node.initialize())
        .await
        .expect("init");
    let state = n1
        .wait_state("the first shard map", |s| s.shard_map.is_some())
        .await;
    let map = state.shard_map.as_ref().expect("map");
    assert_eq!(map.version(), 1);
    assert_eq!(map.shard_count(), 16);
    assert!(map.owners().iter().all(|&o| o == NodeId(1)));
    assert_eq!(state.voter_ids(), vec![NodeId(1)]);
    // Initializing again (a restart without --join) changes nothing.
    within("initialize again", n1.node.initialize())
        .await
        .expect("init again");
    assert_eq!(
        n1.node.state().shard_map.as_ref().map(|m| m.version()),
        Some(1)
    );
    n1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_elect_a_new_leader_and_take_a_restarted_node_back() {
    let cluster = Cluster::new("three");
    let n1 = cluster.start(1, any_port()).await;
    within("initialize", n1.node.initialize())
        .await
        .expect("init");
    let n2 = cluster.start(2, any_port()).await;
    let n3 = cluster.start(3, any_port()).await;

    // Two join as learners and are promoted: three voters.
    let role = within("add node 2", n1.node.add_member(NodeId(2), n2.info()))
        .await
        .expect("add 2");
    assert_eq!(role, MemberRole::Voter);
    let role = within("add node 3", n1.node.add_member(NodeId(3), n3.info()))
        .await
        .expect("add 3");
    assert_eq!(role, MemberRole::Voter);
    for node in [&n1, &n2, &n3] {
        let state = node
            .wait_state("three voters and a map", |s| {
                s.voter_ids().len() == 3 && s.shard_map.is_some()
            })
            .await;
        assert_eq!(state.members[&NodeId(2)].addr, n2.addr());
        assert_eq!(node.node.metrics().voters, voters(&[1, 2, 3]));
    }

    // A command committed on the leader is applied everywhere.
    let leader = leader_of(&[&n1, &n2, &n3]).await;
    let nodes = [n1, n2, n3];
    let on_leader = nodes
        .iter()
        .find(|n| n.id() == leader)
        .expect("leader node");
    within("propose", on_leader.node.propose(set("greeting", "hello")))
        .await
        .expect("propose");
    for node in &nodes {
        node.wait_state("the setting", |s| {
            s.settings.get("greeting").map(String::as_str) == Some("hello")
        })
        .await;
    }
    // A follower cannot propose; it names the leader.
    let follower = nodes.iter().find(|n| n.id() != leader).expect("follower");
    match follower.node.propose(set("x", "y")).await {
        Err(starling_cluster::ClusterNodeError::NotLeader { leader: named, .. }) => {
            assert_eq!(named, Some(leader))
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // Stop the leader: the other two elect a new one in bounded time.
    let [a, b, c] = nodes;
    let (stopped, mut survivors): (Vec<_>, Vec<_>) =
        [a, b, c].into_iter().partition(|n| n.id() == leader);
    let old = stopped.into_iter().next().expect("old leader");
    let old_id = old.id();
    let old_addr = old.addr();
    let stopped_at = Instant::now();
    old.stop().await;
    let new_leader = within("a new leader", async {
        loop {
            let leader = leader_of(&[&survivors[0], &survivors[1]]).await;
            if leader != old_id {
                return leader;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(stopped_at.elapsed() < WAIT);
    survivors.sort_by_key(|n| n.id() != new_leader);
    within(
        "propose after failover",
        survivors[0].node.propose(set("after", "failover")),
    )
    .await
    .expect("propose after failover");
    survivors[1]
        .wait_state("the post-failover setting", |s| {
            s.settings.contains_key("after")
        })
        .await;

    // The old leader restarts on its data directory and address: it has
    // its state from disk and catches up with what it missed.
    let back = cluster.start(old_id.0, old_addr).await;
    let state = back
        .wait_state("the restarted node's state", |s| {
            s.settings.contains_key("after") && s.settings.contains_key("greeting")
        })
        .await;
    assert_eq!(state.voter_ids().len(), 3);
    assert!(state.shard_map.is_some());
    // All three agree on one leader again.
    leader_of(&[&back, &survivors[0], &survivors[1]]).await;

    back.stop().await;
    for node in survivors {
        node.stop().await;
    }
}
