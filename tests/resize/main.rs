//! Shard moves, splits and drains on a live three-node cluster under steady load, judged by
//! the loss checker (`starling_tests::checker`): every acknowledged publication reaches every
//! subscriber that stayed subscribed, exactly once, in offset order, with nobody told to
//! resubscribe (design.md promises 2–4). Killing an owner (promise 5) is judged the same way,
//! except that its rooms' subscribers are told to resubscribe and must recover every
//! acknowledged publication. Each scenario prints its counts.

use std::time::Duration;

use starling_node::{AdminOp, NodeId, ShardId};
use starling_tests::BASE_CONFIG;
use starling_tests::checker::{Load, Verdict};
use starling_tests::cluster::TestCluster;

/// Rooms under load: enough to spread over many shards.
const ROOMS: usize = 24;
/// Each publisher publishes this often, waiting for each acknowledgement (two per node).
const PUBLISH_EVERY: Duration = Duration::from_millis(4);
/// Acknowledgements between two operator commands, so every move happens under load.
const BETWEEN: u64 = 30;

fn rooms(prefix: &str) -> Vec<String> {
    (0..ROOMS).map(|i| format!("{prefix}{i}")).collect()
}

/// The shard `room` is in, by member 1's map.
fn shard_of(cluster: &TestCluster, room: &str) -> ShardId {
    let count = cluster.member(1).status().shard_count;
    starling_placement::shard_of(room, count)
}

fn assert_lossless(scenario: &str, verdict: &Verdict) {
    println!("{scenario}: {verdict}");
    assert!(
        verdict.acknowledged > 0,
        "{scenario}: nothing was acknowledged"
    );
    assert!(verdict.delivered > 0, "{scenario}: nothing was delivered");
    assert_eq!(verdict.lost, 0, "{scenario}: {verdict}");
    assert_eq!(verdict.duplicated, 0, "{scenario}: {verdict}");
    assert_eq!(verdict.out_of_order, 0, "{scenario}: {verdict}");
    assert_eq!(verdict.unsubscribed, 0, "{scenario}: {verdict}");
    assert_eq!(verdict.epoch_changes, 0, "{scenario}: {verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_shard_moves_under_load_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let rooms = rooms("moves-");
    let load = Load::start(&cluster, rooms.clone(), PUBLISH_EVERY).await?;
    assert!(load.progress(BETWEEN).await, "the load runs");
    let mut millis = Vec::new();
    for i in 0..20u64 {
        let room = &rooms[usize::try_from(i).unwrap_or(0) % rooms.len()];
        let shard = shard_of(&cluster, room);
        let owner = cluster.owner_of(1, room);
        let to = owner % 3 + 1;
        // Through a different member each time: the command finds the leader itself.
        let via = &cluster.member(i % 3 + 1).node.node;
        let report = via
            .admin(AdminOp::MoveShard {
                shard,
                to: NodeId(to),
            })
            .await?;
        assert_eq!(report.moves, vec![(shard, NodeId(owner), NodeId(to))]);
        assert_eq!(report.incomplete, 0, "every room arrived: {report:?}");
        assert!(report.rooms >= 1, "the moved shard had a room under load");
        millis.push(report.handoff_millis);
        assert_eq!(cluster.owner_of(1, room), to);
        assert!(load.progress(BETWEEN).await, "the load keeps running");
    }
    millis.sort_unstable();
    println!(
        "20 moves: hand-off median {} ms, max {} ms",
        millis[millis.len() / 2],
        millis[millis.len() - 1]
    );
    let verdict = load.finish(&[]).await?;
    assert_lossless("20 shard moves", &verdict);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_moves_of_its_new_shards_under_load_lose_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let rooms = rooms("split-");
    let before = cluster.member(1).status().shard_count;
    let load = Load::start(&cluster, rooms.clone(), PUBLISH_EVERY).await?;
    assert!(load.progress(BETWEEN).await, "the load runs");
    let owners: Vec<u64> = rooms.iter().map(|r| cluster.owner_of(1, r)).collect();
    let report = cluster.member(2).node.node.admin(AdminOp::Split).await?;
    assert_eq!(report.shard_count, before * 2);
    assert!(report.moves.is_empty(), "a split moves no room");
    // Every member routes by the doubled map, and no room changed owner.
    let doubled = starling_tests::eventually(Duration::from_secs(5), || async {
        cluster
            .running()
            .all(|m| m.status().shard_count == before * 2)
    })
    .await;
    assert!(doubled);
    let after: Vec<u64> = rooms.iter().map(|r| cluster.owner_of(1, r)).collect();
    assert_eq!(owners, after);
    // Then move some of the new upper-half shards away.
    let mut moved = 0;
    for room in &rooms {
        let shard = shard_of(&cluster, room);
        if shard.0 < before || moved == 4 {
            continue;
        }
        let owner = cluster.owner_of(1, room);
        let to = owner % 3 + 1;
        cluster
            .member(1)
            .node
            .node
            .admin(AdminOp::MoveShard {
                shard,
                to: NodeId(to),
            })
            .await?;
        moved += 1;
        assert!(load.progress(BETWEEN).await, "the load keeps running");
    }
    assert!(moved > 0, "some test room hashes to the new half");
    let verdict = load.finish(&[]).await?;
    assert_lossless("split + moves", &verdict);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_under_load_loses_nothing_and_sends_its_clients_away() -> anyhow::Result<()>
{
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let rooms = rooms("drain-");
    let load = Load::start(&cluster, rooms.clone(), PUBLISH_EVERY).await?;
    assert!(load.progress(BETWEEN).await, "the load runs");
    let report = cluster
        .member(1)
        .node
        .node
        .admin(AdminOp::Drain { node: NodeId(3) })
        .await?;
    println!(
        "drain: {} shards, {} rooms handed over in {} ms",
        report.moves.len(),
        report.rooms,
        report.handoff_millis
    );
    assert!(!report.moves.is_empty());
    assert_eq!(report.incomplete, 0);
    let status = cluster.member(1).status();
    let drained = status
        .members
        .iter()
        .find(|m| m.node_id == 3)
        .expect("node 3");
    assert_eq!(drained.shards, 0);
    assert!(drained.draining);
    // Node 3 then tells its clients to reconnect elsewhere (3001), spread over 2 s here.
    let advised = starling_tests::eventually(Duration::from_secs(10), || async {
        load.closed_on(3).is_some()
    })
    .await;
    assert!(
        advised,
        "the drained node's clients were advised to reconnect"
    );
    assert_eq!(load.closed_on(3), Some(3001));
    let verdict = load.finish(&[3]).await?;
    assert_lossless("drain", &verdict);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_under_load_loses_no_acknowledged_publication() -> anyhow::Result<()> {
    const VICTIM: u64 = 3;
    let mut cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let rooms = rooms("kill-");
    let owned = rooms
        .iter()
        .filter(|room| cluster.owner_of(1, room) == VICTIM)
        .count();
    assert!(owned > 0, "the victim owns some of the rooms under load");
    let load = Load::start(&cluster, rooms.clone(), PUBLISH_EVERY).await?;
    assert!(load.progress(BETWEEN * 3).await, "the load runs");
    // Replicas on: every shard has one, and each room under load is on it.
    let replicated = starling_tests::eventually(Duration::from_secs(10), || async {
        cluster.running().all(|m| {
            let status = m.status();
            status.unreplicated_shards == 0 && status.unreplicated_rooms == 0
        })
    })
    .await;
    assert!(replicated, "replicas hold every room");
    let killed_at = tokio::time::Instant::now();
    cluster.kill(VICTIM).await;
    // The survivors take the victim's shards (each to its replica) and the load goes on in
    // every room, the victim's included.
    let taken = starling_tests::eventually(Duration::from_secs(20), || async {
        rooms.iter().all(|room| cluster.owner_of(1, room) != VICTIM)
    })
    .await;
    assert!(taken, "the victim's shards got new owners");
    println!(
        "kill: {owned} of {} rooms failed over in {} ms",
        rooms.len(),
        killed_at.elapsed().as_millis()
    );
    assert!(load.progress(BETWEEN * 3).await, "the load goes on");
    let verdict = load.finish(&[VICTIM]).await?;
    println!("kill an owner (replicas on): {verdict}");
    assert!(
        verdict.acknowledged > 0 && verdict.delivered > 0,
        "{verdict}"
    );
    assert_eq!(verdict.lost, 0, "{verdict}");
    assert_eq!(verdict.duplicated, 0, "{verdict}");
    assert_eq!(verdict.out_of_order, 0, "{verdict}");
    assert_eq!(
        verdict.epoch_changes, 0,
        "the replicas continue the epochs: {verdict}"
    );
    assert_eq!(verdict.unrecovered, 0, "{verdict}");
    assert!(
        verdict.unsubscribed > 0,
        "the victim's rooms' subscribers were told to resubscribe: {verdict}"
    );
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_a_thousand_active_rooms_moves_whole() -> anyhow::Result<()> {
    const ACTIVE: usize = 1_000;
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    // A thousand rooms in one shard, each holding history (so each has a live room actor).
    let shard = shard_of(&cluster, "thousand-0");
    let rooms: Vec<String> = (0..)
        .map(|i| format!("thousand-{i}"))
        .filter(|room| shard_of(&cluster, room) == shard)
        .take(ACTIVE)
        .collect();
    let owner = cluster.owner_of(1, &rooms[0]);
    let api = cluster.member(owner).node.node.clone();
    for room in &rooms {
        api.publish_from_api(
            room,
            bytes::Bytes::from_static(b"{\"n\":1}"),
            Default::default(),
            false,
        )
        .await?;
    }
    // Relayed subscribers of some of them on another node keep their subscriptions.
    let watcher_node = owner % 3 + 1;
    let to = watcher_node % 3 + 1;
    let (watcher, _) = starling_tests::connect_as(
        &cluster.member(watcher_node).node,
        "watcher",
        starling_protocol::Encoding::Json,
    )
    .await?;
    let watched: Vec<&String> = rooms.iter().step_by(50).collect();
    for room in &watched {
        let subscribed = watcher.subscribe(starling_tests::sub(room)).await?;
        assert_eq!(subscribed.offset, 1);
    }
    let report = cluster
        .member(watcher_node)
        .node
        .node
        .admin(AdminOp::MoveShard {
            shard,
            to: NodeId(to),
        })
        .await?;
    println!(
        "moving a shard with {ACTIVE} active rooms: {} ms until the new owner held every room",
        report.handoff_millis
    );
    assert_eq!(
        report.rooms, ACTIVE as u64,
        "every room arrived: {report:?}"
    );
    assert_eq!(report.incomplete, 0);
    let metrics = cluster.member(to).node.node.metrics().snapshot();
    assert_eq!(metrics.handoff_rooms_received, ACTIVE as u64);
    // The rooms continue where they were: the next publication is offset 2 in every room, and
    // the watcher gets it without resubscribing.
    let api = cluster.member(to).node.node.clone();
    for room in &rooms {
        let position = api
            .publish_from_api(
                room,
                bytes::Bytes::from_static(b"{\"n\":2}"),
                Default::default(),
                false,
            )
            .await?
            .expect("a position");
        assert_eq!(position.offset, 2, "{room}");
    }
    for _ in &watched {
        let push = starling_tests::next_push_where(&watcher, |push| {
            push.unsubscribe.map(|u| Err(u.code)).or(push.r#pub.map(Ok))
        })
        .await?;
        assert_eq!(push.map(|p| p.offset), Ok(2));
    }
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_commands_over_http_report_what_they_did() -> anyhow::Result<()> {
    use serde_json::json;
    const KEY: &str = "resize-key";
    let config = format!("{BASE_CONFIG}\n[http_api]\nkey = \"{KEY}\"\n");
    let cluster = TestCluster::start(3, &config).await?;
    let api = starling_tests::http::Api::new(cluster.member(2).node.http_addr, KEY);

    // The key first, then the body's shape, then the command's sense.
    let response = api
        .raw("/api/shards/move", &[], br#"{"shard":0,"to":1}"#)
        .await?;
    assert_eq!(response.status, 401);
    for (path, body) in [
        ("shards/move", json!({"shard": 0})),
        ("shards/move", json!({"shard": 0, "to": 1, "extra": true})),
        ("shards/split", json!({"now": true})),
        ("cluster/drain", json!({})),
    ] {
        let response = api.call(path, body).await?;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert_eq!(response.json()?["error"]["code"], 107, "{path}");
    }
    let count = cluster.member(1).status().shard_count;
    for body in [
        json!({"shard": count, "to": 1}),
        json!({"shard": 0, "to": 9}),
    ] {
        let response = api.call("shards/move", body.clone()).await?;
        assert_eq!(response.status, 400, "{body}: {response:?}");
        let reason = response.json()?["error"]["reason"].to_string();
        assert!(
            reason.contains("does not exist") || reason.contains("not a member"),
            "{reason}"
        );
    }

    // A move of a shard with a room in it, reported with its rooms and time.
    let room = "http-moved";
    let owner = cluster.owner_of(1, room);
    cluster
        .member(owner)
        .node
        .node
        .publish_from_api(
            room,
            bytes::Bytes::from_static(b"{}"),
            Default::default(),
            false,
        )
        .await?;
    let shard = shard_of(&cluster, room).0;
    let to = owner % 3 + 1;
    let response = api
        .call("shards/move", json!({"shard": shard, "to": to}))
        .await?;
    assert_eq!(response.status, 200, "{response:?}");
    let report = response.json()?;
    assert_eq!(
        report["moves"],
        json!([{"shard": shard, "from": owner, "to": to}]),
        "{report}"
    );
    assert_eq!(report["rooms"], 1, "{report}");
    assert_eq!(report["incomplete"], 0, "{report}");
    assert!(
        report["handoff_ms"].is_u64() && report["elapsed_ms"].is_u64(),
        "{report}"
    );
    // The status (of any member, once its state has caught up) lists the finished move.
    let listed = starling_tests::eventually(Duration::from_secs(5), || async {
        let Ok(response) = api.get("/api/cluster").await else {
            return false;
        };
        let Ok(status) = response.json() else {
            return false;
        };
        status["recent_handoffs"].as_array().is_some_and(|moves| {
            moves.iter().any(|m| {
                m["shard"] == json!(shard) && m["to"] == json!(to) && m["rooms"] == json!(1)
            })
        })
    })
    .await;
    assert!(listed, "cluster status lists the move");

    // A split doubles the shards; a rebalance then answers with what it moved.
    let response = api.call("shards/split", json!({})).await?;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()?["shard_count"], count * 2);
    let response = api
        .raw("/api/shards/rebalance", &[("X-API-Key", KEY)], b"")
        .await?;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.json()?["moves"].is_array());
    cluster.stop().await;
    Ok(())
}
