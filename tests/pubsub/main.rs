//! Publish/subscribe over real sockets: delivery, per-room order, history, recovery, presence,
//! join and leave — in both encodings.

use std::collections::HashSet;

use bytes::Bytes;
use starling_protocol::{Encoding, HistoryRequest, StreamPosition, SubscribeRequest};
use starling_tests::{BASE_CONFIG, TestNode, WAIT, connect_as, next_pub, next_push_where, sub};

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

fn json(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[tokio::test]
async fn publication_reaches_subscriber_in_both_encodings() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    for encoding in ENCODINGS {
        let (alice, connected) = connect_as(&node, "alice", encoding).await?;
        assert!(!connected.client.is_empty());
        assert_eq!(connected.ping, 25);
        assert!(connected.pong);
        let (bob, _) = connect_as(&node, "bob", encoding).await?;
        let room = format!("chat-{encoding:?}");
        alice.subscribe(sub(&room)).await?;
        let subscribed = bob.subscribe(sub(&room)).await?;
        assert!(
            subscribed.recoverable,
            "force_recovery makes the stream recoverable"
        );
        assert!(!subscribed.epoch.is_empty());

        let data = json(serde_json::json!({"text": "hello", "n": 1}));
        alice.publish(&room, data.clone()).await?;
        let publication = next_pub(&bob, &room).await?;
        assert_eq!(publication.data, data);
        assert_eq!(publication.offset, subscribed.offset + 1);
        let info = publication.info.expect("publisher info");
        assert_eq!(info.user, "alice");
        // The publisher, being subscribed, receives its own publication too.
        assert_eq!(next_pub(&alice, &room).await?.data, data);
    }
    node.stop().await;
    Ok(())
}

/// Promise 1: every subscriber sees a room's publications in offset order without gaps, even
/// with several publishers racing.
#[tokio::test]
async fn concurrent_publishers_are_seen_in_offset_order_by_every_subscriber() -> anyhow::Result<()>
{
    const PUBLISHERS: usize = 4;
    const EACH: usize = 100;
    let node = TestNode::start(BASE_CONFIG).await?;
    let room = "ordered";
    let mut subscribers = Vec::new();
    for (i, encoding) in [Encoding::Json, Encoding::Protobuf, Encoding::Json]
        .iter()
        .enumerate()
    {
        let (client, _) = connect_as(&node, &format!("reader{i}"), *encoding).await?;
        client.subscribe(sub(room)).await?;
        subscribers.push(client);
    }
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (client, _) = connect_as(&node, &format!("writer{p}"), Encoding::Json).await?;
        client.subscribe(sub(room)).await?;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                client
                    .publish(room, json(serde_json::json!({"p": p, "i": i})))
                    .await?;
            }
            anyhow::Ok(client)
        }));
    }
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(task.await??);
    }
    for reader in &subscribers {
        let mut seen_per_publisher = vec![0usize; PUBLISHERS];
        let first = next_pub(reader, room).await?;
        let mut last = first.offset;
        let mut count = 1;
        let record = |data: &Bytes, seen: &mut Vec<usize>| -> anyhow::Result<()> {
            let value: serde_json::Value = serde_json::from_slice(data)?;
            let p = value["p"].as_u64().unwrap_or(0) as usize;
            let i = value["i"].as_u64().unwrap_or(0) as usize;
            // Each publisher's own messages keep their order too.
            assert_eq!(seen[p], i, "publisher {p} out of order");
            seen[p] += 1;
            Ok(())
        };
        record(&first.data, &mut seen_per_publisher)?;
        while count < PUBLISHERS * EACH {
            let publication = next_pub(reader, room).await?;
            assert_eq!(publication.offset, last + 1, "gap or reorder in offsets");
            last = publication.offset;
            record(&publication.data, &mut seen_per_publisher)?;
            count += 1;
        }
    }
    drop(writers);
    node.stop().await;
    Ok(())
}

/// Promise 2: an acknowledged publish is in history.
#[tokio::test]
async fn acknowledged_publications_are_in_history() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Protobuf).await?;
    alice.subscribe(sub("logbook")).await?;
    for i in 0..5 {
        alice.publish("logbook", json(serde_json::json!(i))).await?;
    }
    let history = alice
        .history(HistoryRequest {
            channel: "logbook".into(),
            limit: -1,
            ..Default::default()
        })
        .await?;
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    assert_eq!(history.offset, 5);
    assert!(!history.epoch.is_empty());
    let datas: Vec<&[u8]> = history.publications.iter().map(|p| &p.data[..]).collect();
    assert_eq!(datas, vec![&b"0"[..], b"1", b"2", b"3", b"4"]);

    // The two-entry namespace keeps only the newest two.
    for i in 0..3 {
        alice
            .publish("small:log", json(serde_json::json!(i)))
            .await?;
    }
    let small = alice
        .history(HistoryRequest {
            channel: "small:log".into(),
            limit: -1,
            ..Default::default()
        })
        .await?;
    let offsets: Vec<u64> = small.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![2, 3]);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn reconnecting_client_recovers_every_missed_publication() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    for encoding in ENCODINGS {
        let room = format!("recover-{encoding:?}");
        let (alice, _) = connect_as(&node, "alice", encoding).await?;
        alice.subscribe(sub(&room)).await?;
        let (bob, _) = connect_as(&node, "bob", encoding).await?;
        bob.subscribe(sub(&room)).await?;
        alice
            .publish(&room, json(serde_json::json!("before")))
            .await?;
        let seen = next_pub(&bob, &room).await?;
        let subscribed_epoch = {
            let h = bob
                .history(HistoryRequest {
                    channel: room.clone(),
                    limit: 0,
                    ..Default::default()
                })
                .await?;
            h.epoch
        };
        bob.close().await;

        for i in 0..3 {
            alice.publish(&room, json(serde_json::json!(i))).await?;
        }

        let (bob, _) = connect_as(&node, "bob", encoding).await?;
        let resumed = bob
            .subscribe(SubscribeRequest {
                channel: room.clone(),
                recover: true,
                offset: seen.offset,
                epoch: subscribed_epoch.clone(),
                ..Default::default()
            })
            .await?;
        assert!(resumed.was_recovering);
        assert!(resumed.recovered, "history still reaches back");
        let offsets: Vec<u64> = resumed.publications.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            vec![seen.offset + 1, seen.offset + 2, seen.offset + 3]
        );
        assert_eq!(resumed.offset, seen.offset + 3);

        // A stale epoch is never "recovered", and never a partial replay.
        let (carol, _) = connect_as(&node, "carol", encoding).await?;
        let stale = carol
            .subscribe(SubscribeRequest {
                channel: room.clone(),
                recover: true,
                offset: 1,
                epoch: "not-the-epoch".into(),
                ..Default::default()
            })
            .await?;
        assert!(!stale.recovered);
        assert!(stale.publications.is_empty());
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn recovery_beyond_history_reports_not_recovered() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let first = alice.subscribe(sub("small:trimmed")).await?;
    for i in 0..5 {
        alice
            .publish("small:trimmed", json(serde_json::json!(i)))
            .await?;
    }
    let (bob, _) = connect_as(&node, "bob", Encoding::Json).await?;
    let result = bob
        .subscribe(SubscribeRequest {
            channel: "small:trimmed".into(),
            recover: true,
            offset: 1,
            epoch: first.epoch.clone(),
            ..Default::default()
        })
        .await?;
    assert!(result.was_recovering);
    assert!(
        !result.recovered,
        "offsets 2..=3 were trimmed by history_size = 2"
    );
    assert!(result.publications.is_empty());
    assert_eq!(result.offset, 5);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn presence_join_and_leave_follow_subscriptions() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let room = "lobby";
    let (alice, alice_connected) = connect_as(&node, "alice", Encoding::Json).await?;
    alice.subscribe(sub(room)).await?;
    // Alice sees her own join first.
    let join = next_push_where(&alice, |p| p.join.filter(|_| p.channel == room)).await?;
    assert_eq!(join.info.expect("info").client, alice_connected.client);

    let (bob, bob_connected) = connect_as(&node, "bob", Encoding::Protobuf).await?;
    bob.subscribe(sub(room)).await?;
    let join = next_push_where(&alice, |p| p.join.filter(|_| p.channel == room)).await?;
    let info = join.info.expect("join carries client info");
    assert_eq!(info.user, "bob");
    assert_eq!(info.client, bob_connected.client);

    // A second connection of bob: three clients, two users.
    let (bob2, _) = connect_as(&node, "bob", Encoding::Json).await?;
    bob2.subscribe(sub(room)).await?;
    let stats = alice.presence_stats(room).await?;
    assert_eq!((stats.num_clients, stats.num_users), (3, 2));
    let presence = alice.presence(room).await?;
    let clients: HashSet<&str> = presence.presence.keys().map(String::as_str).collect();
    assert!(clients.contains(alice_connected.client.as_str()));
    assert!(clients.contains(bob_connected.client.as_str()));

    bob.unsubscribe(room).await?;
    let leave = next_push_where(&alice, |p| p.leave.filter(|_| p.channel == room)).await?;
    assert_eq!(leave.info.expect("info").client, bob_connected.client);

    // Vanishing without unsubscribe (closing the socket) also leaves.
    bob2.close().await;
    let leave = next_push_where(&alice, |p| p.leave.filter(|_| p.channel == room)).await?;
    assert_eq!(leave.info.expect("info").user, "bob");
    let stats = alice.presence_stats(room).await?;
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    node.stop().await;
    Ok(())
}

/// Rooms with no subscribers and no history are dropped: 10,000 subscribe/unsubscribe cycles
/// over distinct rooms leave the live room count where it started.
#[tokio::test]
async fn room_actors_return_to_baseline_after_ten_thousand_cycles() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (client, _) = connect_as(&node, "cycler", Encoding::Protobuf).await?;
    let baseline = node.node.room_count();
    for i in 0..10_000 {
        let room = format!("plain:cycle-{i}");
        client.subscribe(sub(&room)).await?;
        client.unsubscribe(&room).await?;
    }
    let settled =
        starling_tests::eventually(WAIT, || async { node.node.room_count() == baseline }).await;
    assert!(
        settled,
        "live rooms {} did not return to baseline {baseline}",
        node.node.room_count()
    );
    assert_eq!(node.node.metrics().snapshot().rooms, baseline as u64);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn history_position_survives_while_room_is_subscribed() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let subscribed = alice.subscribe(sub("positions")).await?;
    alice
        .publish("positions", json(serde_json::json!(1)))
        .await?;
    let history = alice
        .history(HistoryRequest {
            channel: "positions".into(),
            limit: 10,
            since: Some(StreamPosition {
                offset: 0,
                epoch: subscribed.epoch.clone(),
            }),
            ..Default::default()
        })
        .await?;
    assert_eq!(history.epoch, subscribed.epoch);
    assert_eq!(history.publications.len(), 1);
    node.stop().await;
    Ok(())
}

/// A publication is encoded once per wire encoding, whatever the number of subscribers; every
/// recipient gets the same bytes.
#[tokio::test]
async fn fan_out_encodes_once_per_encoding() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let room = "plain:wide";
    let mut clients = Vec::new();
    for i in 0..40 {
        let encoding = if i % 2 == 0 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        let (client, _) = connect_as(&node, &format!("u{i}"), encoding).await?;
        client.subscribe(sub(room)).await?;
        clients.push(client);
    }
    let before = node.node.metrics().snapshot();
    clients[0]
        .publish(room, json(serde_json::json!({"wide": true})))
        .await?;
    for client in &clients {
        next_pub(client, room).await?;
    }
    let after = node.node.metrics().snapshot();
    assert_eq!(after.push_encodings - before.push_encodings, 2);
    assert_eq!(after.publications_out - before.publications_out, 40);
    node.stop().await;
    Ok(())
}
