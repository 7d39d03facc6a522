//! Three real nodes in one cluster (in-process, real QUIC with mutual TLS, real WebSockets):
//! publish and subscribe across nodes, per-room order with publishers everywhere, recovery on
//! another node, copies per publication, presence from any node, and failover.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use starling_protocol::{Encoding, StreamPosition, SubscribeRequest};
use starling_tests::cluster::{TEST_FAILOVER, TestCluster};
use starling_tests::{
    BASE_CONFIG, WAIT, connect_as, eventually, next_pub, next_push_where, sub, until_ok,
};

fn json(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_across_nodes() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    // One room owned by each node, so every path (local owner, relay) is taken.
    for owner in 1..=3 {
        let room = cluster.room_owned_by(owner, "across-");
        let mut subscribers = Vec::new();
        for id in 1..=3 {
            let (client, _) = connect_as(&cluster.member(id).node, "sub", Encoding::Json).await?;
            let subscribed = client.subscribe(sub(&room)).await?;
            subscribers.push((client, subscribed));
        }
        for publisher in 1..=3 {
            let (client, _) =
                connect_as(&cluster.member(publisher).node, "pub", Encoding::Json).await?;
            client.subscribe(sub(&room)).await?;
            let data = json(serde_json::json!({ "from": publisher }));
            client.publish(&room, data.clone()).await?;
            for (subscriber, _) in &subscribers {
                let publication = next_pub(subscriber, &room).await?;
                assert_eq!(publication.data, data, "room {room}, publisher {publisher}");
            }
        }
        // Every subscriber saw the same offsets, in the same epoch.
        let epochs: Vec<&str> = subscribers.iter().map(|(_, s)| s.epoch.as_str()).collect();
        assert!(
            epochs.windows(2).all(|w| w[0] == w[1]),
            "one epoch: {epochs:?}"
        );
    }
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_room_order_holds_with_publishers_on_every_node() -> anyhow::Result<()> {
    const EACH: usize = 40;
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(2, "order-");
    let mut subscribers = Vec::new();
    for id in 1..=3 {
        let (client, _) =
            connect_as(&cluster.member(id).node, "reader", Encoding::Protobuf).await?;
        let subscribed = client.subscribe(sub(&room)).await?;
        subscribers.push((client, subscribed.offset));
    }
    let mut publishers = Vec::new();
    for id in 1..=3u64 {
        let (client, _) = connect_as(&cluster.member(id).node, "writer", Encoding::Json).await?;
        // Publishing needs a subscription in the default namespace.
        client.subscribe(sub(&room)).await?;
        let room = room.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let data = json(serde_json::json!({ "node": id, "n": n }));
                client.publish(&room, data).await?;
            }
            anyhow::Ok(client)
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    for (subscriber, start) in &subscribers {
        let mut last = *start;
        let mut per_publisher: HashMap<u64, i64> = HashMap::new();
        for _ in 0..3 * EACH {
            let publication = next_pub(subscriber, &room).await?;
            assert_eq!(publication.offset, last + 1, "offsets strictly +1, no gaps");
            last = publication.offset;
            let body: serde_json::Value = serde_json::from_slice(&publication.data)?;
            let node = body["node"].as_u64().expect("node");
            let n = body["n"].as_i64().expect("n");
            let previous = per_publisher.insert(node, n).unwrap_or(-1);
            assert_eq!(n, previous + 1, "each publisher's messages in its order");
        }
    }
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_reconnecting_to_another_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(2, "recover-");
    let (first, _) = connect_as(&cluster.member(1).node, "roamer", Encoding::Json).await?;
    let subscribed = first.subscribe(sub(&room)).await?;
    // The publisher's subscription keeps the room (and its epoch) alive meanwhile.
    let (publisher, _) = connect_as(&cluster.member(2).node, "pub", Encoding::Json).await?;
    publisher.subscribe(sub(&room)).await?;
    drop(first);

    for n in 0..5 {
        publisher
            .publish(&room, json(serde_json::json!({ "n": n })))
            .await?;
    }
    let (again, _) = connect_as(&cluster.member(3).node, "roamer", Encoding::Json).await?;
    let recovered = again
        .subscribe(SubscribeRequest {
            recover: true,
            offset: subscribed.offset,
            epoch: subscribed.epoch.clone(),
            ..sub(&room)
        })
        .await?;
    assert!(recovered.was_recovering);
    assert!(recovered.recovered, "history reaches back");
    assert_eq!(recovered.epoch, subscribed.epoch);
    let offsets: Vec<u64> = recovered.publications.iter().map(|p| p.offset).collect();
    let expected: Vec<u64> = (1..=5).map(|i| subscribed.offset + i).collect();
    assert_eq!(offsets, expected);

    // History and presence answer the same from every node.
    for id in 1..=3 {
        let (client, _) = connect_as(&cluster.member(id).node, "reader", Encoding::Json).await?;
        client.subscribe(sub(&room)).await?;
        let history = client
            .history(starling_protocol::HistoryRequest {
                channel: room.clone(),
                limit: -1,
                ..Default::default()
            })
            .await?;
        assert_eq!(history.publications.len(), 5, "history via node {id}");
        let stats = client.presence_stats(&room).await?;
        assert!(stats.num_clients >= 2, "presence via node {id}: {stats:?}");
        let presence = client.presence(&room).await?;
        assert!(presence.presence.values().any(|info| info.user == "roamer"));
    }
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_other_node_with_subscribers() -> anyhow::Result<()> {
    const SUBSCRIBERS: usize = 1_000;
    const PUBLICATIONS: u64 = 10;
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(1, "fanout-");
    // 1,000 subscribers over the three nodes, connected 50 at a time.
    let mut clients = Vec::with_capacity(SUBSCRIBERS);
    for batch in (0..SUBSCRIBERS).collect::<Vec<_>>().chunks(50) {
        let joins = batch.iter().map(|&i| {
            let node = cluster.member((i % 3) as u64 + 1).node.ws_url();
            let room = room.clone();
            tokio::spawn(async move {
                let token = starling_tests::hs256_token(starling_tests::SECRET, "crowd", None);
                let (client, _) = starling_client::Client::builder(node)
                    .encoding(Encoding::Protobuf)
                    .token(token)
                    .connect()
                    .await?;
                client.subscribe(sub(&room)).await?;
                anyhow::Ok(client)
            })
        });
        for joined in futures_util::future::join_all(joins).await {
            clients.push(joined??);
        }
    }
    let owner = &cluster.member(1).node.node;
    let before = owner.metrics().snapshot().cluster_copies;
    let (publisher, _) = connect_as(&cluster.member(1).node, "pub", Encoding::Json).await?;
    publisher.subscribe(sub(&room)).await?;
    for n in 0..PUBLICATIONS {
        publisher
            .publish(&room, json(serde_json::json!({ "n": n })))
            .await?;
    }
    for client in &clients {
        for _ in 0..PUBLICATIONS {
            next_pub(client, &room).await?;
        }
    }
    let copies = owner.metrics().snapshot().cluster_copies - before;
    // Two other nodes have subscribers: two copies per publication, not one per subscriber.
    assert_eq!(copies, 2 * PUBLICATIONS, "cross-node copies");
    for id in 2..=3 {
        let relay_node = &cluster.member(id).node.node;
        assert_eq!(relay_node.metrics().snapshot().cluster_copies, 0);
    }
    cluster.stop().await;
    Ok(())
}

/// [`BASE_CONFIG`] without shard replicas.
fn without_replicas() -> String {
    format!("{BASE_CONFIG}\n[cluster]\nreplication_factor = 1\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_hands_its_shards_to_their_replicas_with_nothing_lost()
-> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(3, "failover-");
    let (client, _) = connect_as(&cluster.member(1).node, "survivor", Encoding::Json).await?;
    let before = client.subscribe(sub(&room)).await?;
    // Acknowledged by the owner, which has them on the replica first.
    let api = cluster.member(2).node.node.clone();
    let mut acked = Vec::new();
    for n in 0..3 {
        let position = api
            .publish_from_api(
                &room,
                json(serde_json::json!({ "n": n })),
                Default::default(),
                false,
            )
            .await?
            .expect("a position");
        acked.push(position.offset);
        next_pub(&client, &room).await?;
    }
    // The victim holds a presence entry in a room owned by node 1.
    let presence_room = cluster.room_owned_by(1, "presence-");
    let (victim, _) = connect_as(&cluster.member(3).node, "victim", Encoding::Json).await?;
    victim.subscribe(sub(&presence_room)).await?;
    let owner1 = cluster.member(1).node.node.clone();
    assert_eq!(owner1.presence(&presence_room).await?.len(), 1);

    let killed_at = tokio::time::Instant::now();
    cluster.kill(3).await;
    drop(victim);

    // The subscriber on node 1 is told to resubscribe (2500) once the shard has a new owner:
    // the shard's replica.
    let code = next_push_where(&client, |push| {
        (push.channel == room).then_some(push.unsubscribe?.code)
    });
    let code = tokio::time::timeout(TEST_FAILOVER * 5, code).await??;
    assert_eq!(code, 2500);
    let moved_within = killed_at.elapsed();
    assert!(
        moved_within < Duration::from_secs(10),
        "took {moved_within:?}"
    );
    assert_ne!(cluster.owner_of(1, &room), 3);

    // Resubscribing with recovery continues the same stream: same epoch, every acknowledged
    // publication recovered, and the next publication takes the next offset.
    let again = client.subscribe(recovering(&room, &before)).await?;
    assert_eq!(again.epoch, before.epoch, "the replica continues the epoch");
    assert!(again.recovered, "nothing acknowledged was lost");
    let offsets: Vec<u64> = again.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, acked);
    // Refused (and retried, as a backend would) until the leader has named the shard's next
    // replica: a publish is acknowledged only with two copies.
    let next = until_ok(TEST_FAILOVER * 3, || {
        api.publish_from_api(
            &room,
            json(serde_json::json!({"after": "failover"})),
            Default::default(),
            false,
        )
    })
    .await?
    .expect("a position");
    assert_eq!(next.offset, acked[2] + 1);
    assert_eq!(next_pub(&client, &room).await?.offset, next.offset);

    // Promise 10: the dead node's presence entries go within seconds.
    let gone = eventually(TEST_FAILOVER * 3, || {
        let owner1 = owner1.clone();
        let room = presence_room.clone();
        async move { owner1.presence(&room).await.is_ok_and(|p| p.is_empty()) }
    })
    .await;
    assert!(gone, "presence of the dead node's clients was purged");
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_replaced_and_filled_so_the_next_failover_loses_nothing()
-> anyhow::Result<()> {
    // Four members, so that after the replica dies and leaves, the owner's death still leaves
    // a quorum (two of three).
    let mut cluster = TestCluster::start(4, BASE_CONFIG).await?;
    let (room, owner, first_replica) = (0..10_000)
        .map(|i| format!("replaced-{i}"))
        .find_map(|room| {
            let owner = cluster.owner_of(1, &room);
            let replica = cluster.member(1).node.node.room_replica(&room)?;
            (owner != 1 && replica != 1).then_some((room, owner, replica))
        })
        .expect("a room neither owned nor replicated by member 1");
    let api = cluster.member(1).node.node.clone();
    let publish = |n: u32| {
        let api = api.clone();
        let room = room.clone();
        async move {
            api.publish_from_api(
                &room,
                json(serde_json::json!({ "n": n })),
                Default::default(),
                false,
            )
            .await
        }
    };
    let mut acked = Vec::new();
    for n in 0..3 {
        acked.push(publish(n).await?.expect("a position"));
    }

    // The replica dies: publishes fail until the leader names another one, which the owner
    // fills with the room's state before the next acknowledgement.
    cluster.kill(first_replica).await;
    assert!(
        publish(3).await.is_err(),
        "a publish the replica cannot confirm is refused"
    );
    let replaced = eventually(TEST_FAILOVER * 5, || async {
        cluster
            .member(owner)
            .node
            .node
            .room_replica(&room)
            .is_some_and(|r| r != first_replica)
    })
    .await;
    assert!(replaced, "a new replica was named");
    let second_replica = cluster
        .member(owner)
        .node
        .node
        .room_replica(&room)
        .expect("a replica");
    assert_ne!(second_replica, owner);
    let mut n = 3;
    let resumed = eventually(TEST_FAILOVER * 3, || {
        n += 1;
        let attempt = publish(n);
        async move { attempt.await.is_ok_and(|p| p.is_some()) }
    })
    .await;
    assert!(resumed, "publishes are acknowledged again");
    let metrics = cluster.member(owner).node.node.metrics().snapshot();
    assert!(metrics.unreplicated > 0, "{metrics:?}");
    assert_eq!(metrics.unreplicated_rooms, 0, "{metrics:?}");

    // The dead replica leaves; then the owner dies, and the new replica continues the stream
    // with everything acknowledged, including what came before it was named.
    api.cluster_remove(first_replica).await?;
    let last = publish(100).await?.expect("a position");
    cluster.kill(owner).await;
    let taken = eventually(TEST_FAILOVER * 5, || async {
        cluster.owner_of(1, &room) == second_replica
    })
    .await;
    assert!(taken, "the shard went to its replica");
    let query = starling_node::HistoryQuery {
        since: None,
        limit: -1,
        reverse: false,
    };
    let history = until_ok(TEST_FAILOVER * 3, || api.history(&room, query.clone())).await?;
    assert_eq!(history.position.epoch, acked[0].epoch, "the same stream");
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets.first(), Some(&acked[0].offset));
    assert_eq!(
        offsets.last(),
        Some(&last.offset),
        "nothing acknowledged is missing"
    );
    assert_eq!(
        offsets,
        (acked[0].offset..=last.offset).collect::<Vec<_>>(),
        "one contiguous history"
    );
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_drops_the_copy_of_a_room_that_stopped() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    // A room without history stops as soon as its last subscriber leaves.
    let room = (0..10_000)
        .map(|i| format!("plain:copied-{i}"))
        .find(|room| cluster.owner_of(1, room) != 1)
        .expect("a room another member owns");
    let owner = cluster.owner_of(1, &room);
    let replica = cluster
        .member(1)
        .node
        .node
        .room_replica(&room)
        .expect("a replica");
    let copies = || cluster.member(replica).status().replica_rooms;
    let (client, _) = connect_as(&cluster.member(1).node, "visitor", Encoding::Json).await?;
    client.subscribe(sub(&room)).await?;
    assert!(
        eventually(WAIT, || async { copies() == 1 }).await,
        "node {replica} holds a copy of {room} (owned by {owner}): {}",
        copies()
    );
    client.unsubscribe(&room).await?;
    assert!(
        eventually(WAIT, || async { copies() == 0 }).await,
        "the copy outlived its room: {}",
        copies()
    );
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_without_replicas_restarts_its_rooms() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, &without_replicas()).await?;
    let room = cluster.room_owned_by(3, "failover-");
    let (client, _) = connect_as(&cluster.member(1).node, "survivor", Encoding::Json).await?;
    let before = client.subscribe(sub(&room)).await?;
    cluster.kill(3).await;
    let code = next_push_where(&client, |push| {
        (push.channel == room).then_some(push.unsubscribe?.code)
    });
    let code = tokio::time::timeout(TEST_FAILOVER * 5, code).await??;
    assert_eq!(code, 2500);
    // Without a copy the room restarts: a new epoch and recovered: false.
    let again = client.subscribe(recovering(&room, &before)).await?;
    assert_ne!(again.epoch, before.epoch, "the room restarted");
    assert!(!again.recovered);
    client
        .publish(&room, json(serde_json::json!({"after": "failover"})))
        .await?;
    next_pub(&client, &room).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_and_restarting_a_node() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let leader = cluster.member(1).status().leader.expect("a leader");
    let leader_addr = cluster.member(leader).cluster_addr;
    cluster.kill(leader).await;
    cluster.settled().await?;
    let survivor = cluster.running().next().expect("a survivor").id;
    let new_leader = cluster
        .member(survivor)
        .status()
        .leader
        .expect("a new leader");
    assert_ne!(new_leader, leader);

    // Every room is served again: publish through each survivor into rooms of every owner.
    for member in cluster.running() {
        let (client, _) = connect_as(&member.node, "after", Encoding::Json).await?;
        for owner in cluster.running().map(|m| m.id) {
            let room = cluster.room_owned_by(owner, "leaderless-");
            client.subscribe(sub(&room)).await?;
            client
                .publish(&room, json(serde_json::json!({"ok": true})))
                .await?;
            next_pub(&client, &room).await?;
            client.unsubscribe(&room).await?;
        }
    }

    // The old leader comes back on its data directory and gets shards again.
    cluster.restart(leader, leader_addr).await?;
    cluster.settled().await?;
    let status = cluster.member(leader).status();
    assert_eq!(status.members.len(), 3);
    let room = cluster.room_owned_by(leader, "back-");
    let (client, _) = connect_as(&cluster.member(leader).node, "back", Encoding::Json).await?;
    client.subscribe(sub(&room)).await?;
    client
        .publish(&room, json(serde_json::json!({"back": true})))
        .await?;
    next_pub(&client, &room).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_publish_works_on_any_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(3, "api-");
    let (client, _) = connect_as(&cluster.member(1).node, "listener", Encoding::Json).await?;
    let subscribed = client.subscribe(sub(&room)).await?;
    let position = cluster
        .member(2)
        .node
        .node
        .publish_from_api(
            &room,
            json(serde_json::json!({"api": 1})),
            Default::default(),
            false,
        )
        .await?
        .expect("a position");
    assert_eq!(
        position,
        StreamPosition {
            offset: subscribed.offset + 1,
            epoch: subscribed.epoch.clone()
        }
    );
    let publication = tokio::time::timeout(WAIT, next_pub(&client, &room)).await??;
    assert_eq!(publication.offset, position.offset);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_user_operations_channels_and_info_span_the_cluster() -> anyhow::Result<()> {
    use starling_node::{ServerSubscription, UserConnections, default_api_disconnect};
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let room = cluster.room_owned_by(3, "ops-");
    // Carol is connected to node 2 only; the API calls go to node 1.
    let (carol, _) = connect_as(&cluster.member(2).node, "carol", Encoding::Json).await?;
    let api = cluster.member(1).node.node.clone();
    let carol_target = UserConnections::of("carol");

    let subscribed = api
        .subscribe_user(
            &carol_target,
            ServerSubscription {
                channel: room.clone(),
                ..ServerSubscription::default()
            },
        )
        .await?;
    assert_eq!(subscribed, 1, "carol's connection on node 2 was subscribed");
    next_push_where(&carol, |push| {
        (push.channel == room).then_some(push.subscribe?)
    })
    .await?;

    // The channel list counts subscribers on every node.
    let (dave, _) = connect_as(&cluster.member(3).node, "dave", Encoding::Json).await?;
    dave.subscribe(sub(&room)).await?;
    let channels = api.channels(|_| true).await;
    assert_eq!(channels.get(&room), Some(&2), "{channels:?}");

    let info = api.cluster_info().await;
    assert_eq!(info.len(), 3, "info reports every node");
    assert_eq!(info.iter().map(|n| n.num_clients).sum::<u64>(), 2);

    let told = api
        .disconnect_user(&carol_target, &default_api_disconnect())
        .await;
    assert_eq!(told, 1);
    let close = tokio::time::timeout(WAIT, carol.closed()).await?;
    assert_eq!(close.code, 3503, "force disconnect");
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_loses_its_shards_and_stops_sequencing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, BASE_CONFIG).await?;
    let api = cluster.member(1).node.node.clone();
    // Whoever leads, removal goes through it; remove a node that is not the leader.
    let leader = cluster.member(1).status().leader.expect("a leader");
    let removed = (1..=3).find(|&id| id != leader).expect("a follower");
    let via = (1..=3).find(|&id| id != removed).expect("another member");
    let room = cluster.room_owned_by(removed, "removed-");
    cluster
        .member(via)
        .node
        .node
        .cluster_remove(removed)
        .await?;

    // The remaining members agree: two members, every shard on them, and it stays that way
    // (no rebalance hands the shards back).
    let settled = eventually(Duration::from_secs(10), || async {
        [1, 2, 3].into_iter().filter(|&id| id != removed).all(|id| {
            let status = cluster.member(id).status();
            status.members.len() == 2 && status.members.iter().all(|m| m.shards > 0)
        })
    })
    .await;
    assert!(settled, "{:#?}", cluster.member(via).status());
    let owner = cluster.owner_of(via, &room);
    assert_ne!(owner, removed);
    drop(api);

    // The removed node hears that it is no member and refuses to sequence the rooms its stale
    // map still gives it.
    let removed_node = cluster.member(removed).node.node.clone();
    let stopped = eventually(TEST_FAILOVER * 3, || {
        let node = removed_node.clone();
        let room = room.clone();
        async move {
            node.publish_from_api(
                &room,
                json(serde_json::json!({})),
                Default::default(),
                false,
            )
            .await
            .is_err()
        }
    })
    .await;
    assert!(stopped, "a removed node must not keep sequencing");
    cluster.stop().await;
    Ok(())
}

/// A subscribe to `room` that recovers from where `before` left the subscriber.
fn recovering(room: &str, before: &starling_protocol::SubscribeResult) -> SubscribeRequest {
    SubscribeRequest {
        recover: true,
        offset: before.offset,
        epoch: before.epoch.clone(),
        ..sub(room)
    }
}
