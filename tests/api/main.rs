//! The server HTTP API over real HTTP: every method, the key check, bad bodies, and what the
//! API does to WebSocket clients (publications with the returned offset, server-side
//! subscribe and unsubscribe pushes in order, custom disconnects in the close frame).
//!
//! Requests go out through `starling_tests::http`, a minimal HTTP/1.1 client on a `TcpStream`, so the
//! tests need no HTTP client crate.

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use starling_protocol::{Encoding, HistoryRequest};
use starling_tests::{
    BASE_CONFIG, TestNode, WAIT, connect_as, eventually, next_pub, next_push_where, sub,
};

use starling_tests::http::{Api, Response};

const KEY: &str = "api-test-key";

/// [`BASE_CONFIG`] with the API key set.
fn config() -> String {
    format!("{BASE_CONFIG}\n[http_api]\nkey = \"{KEY}\"\n")
}

async fn start() -> anyhow::Result<(TestNode, Api)> {
    let node = TestNode::start(&config()).await?;
    let api = Api::new(node.http_addr, KEY);
    Ok((node, api))
}

fn json_bytes(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// The `result` of a 200 reply, failing on anything else.
fn result(response: &Response) -> anyhow::Result<Value> {
    ensure!(
        response.status == 200,
        "HTTP {}: {response:?}",
        response.status
    );
    let body = response.json()?;
    ensure!(body.get("error").is_none(), "error reply: {body}");
    body.get("result")
        .cloned()
        .with_context(|| format!("no result in {body}"))
}

/// The error code of a 200 reply that carries an error.
fn error_code(response: &Response) -> anyhow::Result<u64> {
    ensure!(
        response.status == 200,
        "HTTP {}: {response:?}",
        response.status
    );
    let body = response.json()?;
    body["error"]["code"]
        .as_u64()
        .with_context(|| format!("no error in {body}"))
}

// ------------------------------------------------------------------ key and bad input

#[tokio::test]
async fn missing_or_wrong_key_gets_401_and_nothing_else() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let body = br#"{"channel":"x","data":1}"#;
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("X-API-Key", "wrong")],
        &[("X-API-Key", "api-test-ke")],
        &[("Authorization", "apikey wrong")],
        &[("Authorization", "Bearer api-test-key")],
    ];
    for headers in cases {
        let response = api.raw("/api/publish", headers, body).await?;
        assert_eq!(response.status, 401, "{headers:?}");
        assert!(response.body.is_empty(), "{headers:?}: {response:?}");
    }
    // Even an unknown method is not revealed without the key.
    let response = api.raw("/api/nope", &[], b"{}").await?;
    assert_eq!(response.status, 401);
    // Both documented headers work.
    let ok = api
        .raw(
            "/api/info",
            &[("Authorization", &format!("apikey {KEY}"))],
            b"{}",
        )
        .await?;
    result(&ok)?;
    let ok = api.raw("/api/info", &[("X-API-Key", KEY)], b"{}").await?;
    result(&ok)?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn empty_configured_key_disables_the_api() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let api = Api::new(node.http_addr, "");
    for headers in [
        &[][..],
        &[("X-API-Key", "")][..],
        &[("Authorization", "apikey ")][..],
    ] {
        let response = api.raw("/api/info", headers, b"{}").await?;
        assert_eq!(response.status, 401, "{headers:?}");
        assert!(response.body.is_empty());
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests_and_the_node_keeps_serving() -> anyhow::Result<()> {
    let mut config = starling_config::Config::from_toml_str(&config())?;
    config.http_api.max_request_body_size = 1024;
    let node = TestNode::start_with(&mut config).await?;
    let api = Api::new(node.http_addr, KEY);
    let bad: [&[u8]; 6] = [
        b"{not json",
        br#"{"channel": 5}"#,
        b"\xff\xfe{}",
        br#"{"channel":"a","data":"#,
        &[b'['; 2048][..1000],
        br#"{"commands":[{"publish":{"channel":["x"]}}]}"#,
    ];
    for (i, body) in bad.iter().enumerate() {
        let path = if i == 5 { "/api/batch" } else { "/api/publish" };
        let response = api.raw(path, &[("X-API-Key", KEY)], body).await?;
        assert_eq!(response.status, 400, "case {i}: {response:?}");
        assert_eq!(response.json()?["error"]["code"], 107, "case {i}");
    }
    let huge = vec![b' '; 2048];
    let response = api
        .raw("/api/publish", &[("X-API-Key", KEY)], &huge)
        .await?;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()?["error"]["code"], 107);

    let response = api
        .raw(
            "/api/publish",
            &[("X-API-Key", KEY)],
            br#"{"channel":"ok","data":1}"#,
        )
        .await?;
    result(&response)?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_method_is_not_found_and_get_is_not_allowed() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let response = api.call("rpc", json!({})).await?;
    assert_eq!(response.status, 404);
    assert_eq!(
        response.json()?,
        json!({"error": {"code": 104, "message": "not found"}})
    );
    let response = api.get("/api/info").await?;
    assert_eq!(response.status, 405);
    node.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ cluster endpoints

#[tokio::test]
async fn cluster_endpoints_need_the_key() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    for headers in [&[][..], &[("X-API-Key", "wrong")][..]] {
        let response = api.request("GET", "/api/cluster", headers, b"").await?;
        assert_eq!(response.status, 401, "{headers:?}: {response:?}");
        assert!(response.body.is_empty(), "{response:?}");
        let response = api
            .raw("/api/cluster/remove", headers, br#"{"node_id":2}"#)
            .await?;
        assert_eq!(response.status, 401, "{headers:?}: {response:?}");
        assert!(response.body.is_empty(), "{response:?}");
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn cluster_status_of_a_node_without_cluster_runtime_is_503() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let response = api.get("/api/cluster").await?;
    assert_eq!(response.status, 503, "{response:?}");
    let body = response.json()?;
    assert_eq!(body["error"]["code"], 108, "{body}");
    assert_eq!(body["error"]["message"], "not available", "{body}");
    assert!(body["error"]["reason"].is_string(), "{body}");

    let response = api.call("cluster/remove", json!({"node_id": 2})).await?;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.json()?["error"]["code"], 108);
    for (path, body) in [
        ("cluster/drain", json!({"node_id": 2})),
        ("shards/move", json!({"shard": 0, "to": 2})),
        ("shards/split", json!({})),
        ("shards/rebalance", json!({})),
    ] {
        let response = api.call(path, body).await?;
        assert_eq!(response.status, 503, "{path}: {response:?}");
        assert_eq!(response.json()?["error"]["code"], 108, "{path}");
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn cluster_paths_take_precedence_over_api_methods_and_check_their_method()
-> anyhow::Result<()> {
    let (node, api) = start().await?;
    // POST /api/cluster reaches the cluster handler (405 GET), not the method handler (404).
    let response = api.call("cluster", json!({})).await?;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("allow"), Some("GET"), "{response:?}");
    let response = api.get("/api/cluster/remove").await?;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("allow"), Some("POST"), "{response:?}");
    // A malformed removal is a 400 whatever the node's cluster state.
    for body in [&b"{}"[..], b"{\"node_id\":\"2\"}", b"not json"] {
        let response = api
            .raw("/api/cluster/remove", &[("X-API-Key", KEY)], body)
            .await?;
        assert_eq!(response.status, 400, "{response:?}");
        assert_eq!(response.json()?["error"]["code"], 107);
    }
    // The ordinary methods still answer beside them.
    result(&api.call("info", json!({})).await?)?;
    node.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ publish and broadcast

#[tokio::test]
async fn publish_reaches_websocket_subscribers_with_the_returned_offset() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (json_client, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let (proto_client, _) = connect_as(&node, "bob", Encoding::Protobuf).await?;
    let subscribed = json_client.subscribe(sub("news")).await?;
    proto_client.subscribe(sub("news")).await?;

    let data = json!({"text": "from the backend", "n": [1, 2]});
    let reply = result(
        &api.call(
            "publish",
            json!({"channel": "news", "data": data, "tags": {"kind": "note"}}),
        )
        .await?,
    )?;
    let offset = reply["offset"].as_u64().context("offset")?;
    assert_eq!(offset, subscribed.offset + 1);
    assert_eq!(reply["epoch"], subscribed.epoch.as_str());

    for client in [&json_client, &proto_client] {
        let publication = next_pub(client, "news").await?;
        assert_eq!(publication.offset, offset);
        assert_eq!(
            serde_json::from_slice::<Value>(&publication.data)?,
            data,
            "payload arrives as sent"
        );
        assert_eq!(
            publication.tags.get("kind").map(String::as_str),
            Some("note")
        );
        assert!(
            publication.info.is_none(),
            "server publications have no publisher"
        );
    }

    // Errors about the request itself come back in the body with HTTP 200.
    let unknown = api
        .call("publish", json!({"channel": "nosuchns:x", "data": 1}))
        .await?;
    assert_eq!(error_code(&unknown)?, 102);
    let empty = api.call("publish", json!({"data": 1})).await?;
    assert_eq!(error_code(&empty)?, 107);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn skip_history_publication_is_delivered_without_a_position() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "alice", Encoding::Json).await?;
    client.subscribe(sub("ephemeral")).await?;
    let kept = result(
        &api.call("publish", json!({"channel": "ephemeral", "data": 1}))
            .await?,
    )?;
    let skipped = result(
        &api.call(
            "publish",
            json!({"channel": "ephemeral", "data": 2, "skip_history": true}),
        )
        .await?,
    )?;
    assert_eq!(skipped, json!({}), "no stream position for skip_history");
    assert_eq!(next_pub(&client, "ephemeral").await?.offset, kept["offset"]);
    let second = next_pub(&client, "ephemeral").await?;
    assert_eq!(second.offset, 0);
    assert_eq!(second.data, Bytes::from_static(b"2"));
    let history = result(
        &api.call("history", json!({"channel": "ephemeral", "limit": 10}))
            .await?,
    )?;
    assert_eq!(history["publications"].as_array().map(Vec::len), Some(1));
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn broadcast_publishes_to_every_channel_with_an_answer_each() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "alice", Encoding::Json).await?;
    client.subscribe(sub("b1")).await?;
    client.subscribe(sub("b2")).await?;
    let reply = result(
        &api.call(
            "broadcast",
            json!({"channels": ["b1", "nosuchns:x", "b2"], "data": {"hi": true}}),
        )
        .await?,
    )?;
    let responses = reply["responses"].as_array().context("responses")?;
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[0]["result"]["offset"], 1);
    assert_eq!(responses[1]["error"]["code"], 102);
    assert_eq!(responses[2]["result"]["offset"], 1);
    assert_eq!(next_pub(&client, "b1").await?.offset, 1);
    assert_eq!(next_pub(&client, "b2").await?.offset, 1);
    let none = api
        .call("broadcast", json!({"channels": [], "data": 1}))
        .await?;
    assert_eq!(error_code(&none)?, 107);
    node.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ per-user operations

#[tokio::test]
async fn server_subscribe_push_comes_before_the_publications_in_order() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (json_client, _) = connect_as(&node, "carol", Encoding::Json).await?;
    let (proto_client, _) = connect_as(&node, "carol", Encoding::Protobuf).await?;
    // History before the subscription exists, so the push has a position to report.
    result(
        &api.call("publish", json!({"channel": "srv", "data": 0}))
            .await?,
    )?;

    result(
        &api.call(
            "subscribe",
            json!({"user": "carol", "channel": "srv", "data": {"welcome": 1}}),
        )
        .await?,
    )?;
    for i in 1..=5 {
        result(
            &api.call("publish", json!({"channel": "srv", "data": i}))
                .await?,
        )?;
    }
    for client in [&json_client, &proto_client] {
        let first = next_push_where(client, Some).await?;
        assert_eq!(first.channel, "srv");
        let subscribe = first
            .subscribe
            .with_context(|| "the subscribe push comes first")?;
        assert!(subscribe.recoverable && subscribe.positioned);
        assert_eq!(subscribe.offset, 1);
        assert!(!subscribe.epoch.is_empty());
        assert_eq!(
            serde_json::from_slice::<Value>(&subscribe.data)?,
            json!({"welcome": 1})
        );
        for expected in 2..=6 {
            let publication = next_push_where(client, |push| push.r#pub).await?;
            assert_eq!(publication.offset, expected);
        }
    }
    // The connections are real subscribers now: presence and channels count them.
    let stats = result(
        &api.call("presence_stats", json!({"channel": "srv"}))
            .await?,
    )?;
    assert_eq!(stats, json!({"num_clients": 2, "num_users": 1}));
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_subscribe_can_target_one_client_and_recover() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (first, connected) = connect_as(&node, "dave", Encoding::Json).await?;
    let (second, _) = connect_as(&node, "dave", Encoding::Json).await?;
    for i in 1..=3 {
        result(
            &api.call("publish", json!({"channel": "catchup", "data": i}))
                .await?,
        )?;
    }
    let top = result(&api.call("history", json!({"channel": "catchup"})).await?)?;
    let epoch = top["epoch"].as_str().context("epoch")?.to_owned();
    result(
        &api.call(
            "subscribe",
            json!({"user": "dave", "client": connected.client, "channel": "catchup",
                   "recover_since": {"offset": 1, "epoch": epoch}}),
        )
        .await?,
    )?;
    let push = next_push_where(&first, |push| push.subscribe).await?;
    assert_eq!(push.offset, 3);
    // The publications missed since offset 1 follow the push.
    assert_eq!(next_pub(&first, "catchup").await?.offset, 2);
    assert_eq!(next_pub(&first, "catchup").await?.offset, 3);
    // The other connection of the same user was not targeted.
    let presence = result(&api.call("presence", json!({"channel": "catchup"})).await?)?;
    let clients: Vec<&String> = presence["presence"]
        .as_object()
        .context("presence map")?
        .keys()
        .collect();
    assert_eq!(clients, [&connected.client]);
    assert!(second.try_next_push().is_none());
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_unsubscribe_sends_code_2000() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "erin", Encoding::Protobuf).await?;
    client.subscribe(sub("leaving")).await?;
    result(
        &api.call("unsubscribe", json!({"user": "erin", "channel": "leaving"}))
            .await?,
    )?;
    let push = next_push_where(&client, |push| {
        (push.channel == "leaving")
            .then_some(push.unsubscribe)
            .flatten()
    })
    .await?;
    assert_eq!(push.code, 2000);
    assert_eq!(push.reason, "server unsubscribe");
    let stats = result(
        &api.call("presence_stats", json!({"channel": "leaving"}))
            .await?,
    )?;
    assert_eq!(stats["num_clients"], 0);
    // The client may subscribe again on its own.
    client.subscribe(sub("leaving")).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn disconnect_carries_a_custom_code_to_the_close_frame() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (kept, kept_info) = connect_as(&node, "frank", Encoding::Json).await?;
    let (gone, _) = connect_as(&node, "frank", Encoding::Protobuf).await?;
    result(
        &api.call(
            "disconnect",
            json!({"user": "frank", "whitelist": [kept_info.client],
                   "disconnect": {"code": 4001, "reason": "custom goodbye"}}),
        )
        .await?,
    )?;
    let close = tokio::time::timeout(WAIT, gone.closed()).await?;
    assert_eq!(
        (close.code, close.reason.as_str()),
        (4001, "custom goodbye")
    );
    assert!(
        kept.close_reason().is_none(),
        "the whitelisted client stays"
    );
    kept.ping().await?;

    // Without a custom object Centrifugo's default applies: 3503, no reconnect.
    result(&api.call("disconnect", json!({"user": "frank"})).await?)?;
    let close = tokio::time::timeout(WAIT, kept.closed()).await?;
    assert_eq!(
        (close.code, close.reason.as_str()),
        (3503, "force disconnect")
    );
    assert!(
        eventually(WAIT, || async { node.node.user_count() == 0 }).await,
        "the user index forgets closed connections"
    );
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn refresh_sets_expiry_or_expires_at_once() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "gina", Encoding::Json).await?;
    let at = starling_tests::unix_now() + 3600;
    result(
        &api.call("refresh", json!({"user": "gina", "expire_at": at}))
            .await?,
    )?;
    let refresh = next_push_where(&client, |push| push.refresh).await?;
    assert!(refresh.expires);
    assert!((3590..=3600).contains(&refresh.ttl), "ttl {}", refresh.ttl);

    result(
        &api.call("refresh", json!({"user": "gina", "expired": true}))
            .await?,
    )?;
    let close = tokio::time::timeout(WAIT, client.closed()).await?;
    assert_eq!(close.code, 3005);
    node.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ reads

#[tokio::test]
async fn presence_methods_report_subscribers_or_not_available() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (alice, a) = connect_as(&node, "alice", Encoding::Json).await?;
    let (bob, _) = connect_as(&node, "bob", Encoding::Protobuf).await?;
    alice.subscribe(sub("lobby")).await?;
    bob.subscribe(sub("lobby")).await?;
    let presence = result(&api.call("presence", json!({"channel": "lobby"})).await?)?;
    let entries = presence["presence"].as_object().context("presence map")?;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[&a.client]["user"], "alice");
    assert_eq!(entries[&a.client]["client"], a.client.as_str());
    let stats = result(
        &api.call("presence_stats", json!({"channel": "lobby"}))
            .await?,
    )?;
    assert_eq!(stats, json!({"num_clients": 2, "num_users": 2}));
    // `plain` keeps no presence.
    let off = api.call("presence", json!({"channel": "plain:x"})).await?;
    assert_eq!(error_code(&off)?, 108);
    let off = api
        .call("presence_stats", json!({"channel": "plain:x"}))
        .await?;
    assert_eq!(error_code(&off)?, 108);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn history_and_history_remove_keep_the_stream_position() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "hana", Encoding::Json).await?;
    let subscribed = client.subscribe(sub("log")).await?;
    for i in 1..=4 {
        result(
            &api.call("publish", json!({"channel": "log", "data": {"i": i}}))
                .await?,
        )?;
    }
    let page = result(
        &api.call("history", json!({"channel": "log", "limit": 2}))
            .await?,
    )?;
    assert_eq!(page["offset"], 4);
    assert_eq!(page["epoch"], subscribed.epoch.as_str());
    assert_eq!(
        page["publications"],
        json!([{"data": {"i": 1}, "offset": 1}, {"data": {"i": 2}, "offset": 2}])
    );
    let reversed = result(
        &api.call(
            "history",
            json!({"channel": "log", "limit": 1, "reverse": true}),
        )
        .await?,
    )?;
    assert_eq!(reversed["publications"][0]["offset"], 4);
    let since = result(
        &api.call(
            "history",
            json!({"channel": "log", "limit": -1, "since": {"offset": 3, "epoch": subscribed.epoch}}),
        )
        .await?,
    )?;
    assert_eq!(since["publications"][0]["offset"], 4);
    let wrong_epoch = api
        .call(
            "history",
            json!({"channel": "log", "limit": 1, "since": {"offset": 1, "epoch": "other"}}),
        )
        .await?;
    assert_eq!(error_code(&wrong_epoch)?, 112);

    result(
        &api.call("history_remove", json!({"channel": "log"}))
            .await?,
    )?;
    let page = result(
        &api.call("history", json!({"channel": "log", "limit": -1}))
            .await?,
    )?;
    assert_eq!(page["publications"], json!([]));
    assert_eq!(page["offset"], 4, "the position survives history_remove");
    assert_eq!(page["epoch"], subscribed.epoch.as_str());
    // The subscriber is undisturbed and the stream goes on.
    let next = result(
        &api.call("publish", json!({"channel": "log", "data": 5}))
            .await?,
    )?;
    assert_eq!(next["offset"], 5);
    let mut last = 0;
    while last != 5 {
        last = next_pub(&client, "log").await?.offset;
    }
    // Client-side history agrees.
    let seen = client
        .history(HistoryRequest {
            channel: "log".into(),
            limit: -1,
            ..HistoryRequest::default()
        })
        .await?;
    assert_eq!(seen.publications.len(), 1);

    let off = api.call("history", json!({"channel": "plain:x"})).await?;
    assert_eq!(error_code(&off)?, 108);
    let off = api
        .call("history_remove", json!({"channel": "plain:x"}))
        .await?;
    assert_eq!(error_code(&off)?, 108);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn channels_lists_rooms_with_subscribers_filtered_by_pattern() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let (bob, _) = connect_as(&node, "bob", Encoding::Json).await?;
    for room in ["chan-a", "chan-b", "other"] {
        alice.subscribe(sub(room)).await?;
    }
    bob.subscribe(sub("chan-a")).await?;
    // A room with history but nobody in it is not an active channel.
    result(
        &api.call("publish", json!({"channel": "history-only", "data": 1}))
            .await?,
    )?;

    let all = result(&api.call("channels", json!({})).await?)?;
    assert_eq!(
        all,
        json!({"channels": {
            "chan-a": {"num_clients": 2},
            "chan-b": {"num_clients": 1},
            "other": {"num_clients": 1},
        }})
    );
    let some = result(&api.call("channels", json!({"pattern": "chan-*"})).await?)?;
    let names: Vec<&String> = some["channels"]
        .as_object()
        .context("map")?
        .keys()
        .collect();
    assert_eq!(names, ["chan-a", "chan-b"]);
    let alternatives = result(
        &api.call("channels", json!({"pattern": "{other,chan-b}"}))
            .await?,
    )?;
    assert_eq!(
        alternatives["channels"].as_object().map(|m| m.len()),
        Some(2)
    );
    let none = result(&api.call("channels", json!({"pattern": "zzz*"})).await?)?;
    assert_eq!(none, json!({"channels": {}}));
    let bad = api
        .call("channels", json!({"pattern": "[unclosed"}))
        .await?;
    assert_eq!(error_code(&bad)?, 107);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn info_reports_this_node() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let (_alice2, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let (bob, _) = connect_as(&node, "bob", Encoding::Json).await?;
    alice.subscribe(sub("i1")).await?;
    alice.subscribe(sub("i2")).await?;
    bob.subscribe(sub("i1")).await?;
    let info = result(&api.call("info", json!({})).await?)?;
    let nodes = info["nodes"].as_array().context("nodes")?;
    assert_eq!(nodes.len(), 1);
    let this = &nodes[0];
    assert_eq!(this["uid"], node.node.uid());
    assert_eq!(this["name"], node.node.name());
    assert_eq!(this["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(this["num_clients"], 3);
    assert_eq!(this["num_users"], 2);
    assert_eq!(this["num_channels"], 2);
    assert_eq!(this["num_subs"], 3);
    assert!(this["uptime"].is_u64());
    node.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ batch

#[tokio::test]
async fn batch_runs_commands_in_order_with_an_answer_each() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (client, _) = connect_as(&node, "ivan", Encoding::Json).await?;
    client.subscribe(sub("batched")).await?;
    let response = api
        .call(
            "batch",
            json!({"commands": [
                {"publish": {"channel": "batched", "data": "one"}},
                {"publish": {"channel": "nosuchns:x", "data": 1}},
                {"frobnicate": {}},
                {"publish": {"channel": "batched", "data": "two"}},
                {"history": {"channel": "batched", "limit": -1}},
            ]}),
        )
        .await?;
    assert_eq!(response.status, 200);
    let body = response.json()?;
    let replies = body["replies"].as_array().context("replies at top level")?;
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[0]["publish"]["offset"], 1);
    assert_eq!(
        replies[1],
        json!({"error": {"code": 102, "message": "unknown channel"}})
    );
    assert_eq!(
        replies[2],
        json!({"error": {"code": 104, "message": "not found"}})
    );
    assert_eq!(replies[3]["publish"]["offset"], 2);
    assert_eq!(
        replies[4]["history"]["publications"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "later commands see the effects of earlier ones"
    );
    assert_eq!(
        next_pub(&client, "batched").await?.data,
        json_bytes(json!("one"))
    );
    assert_eq!(
        next_pub(&client, "batched").await?.data,
        json_bytes(json!("two"))
    );

    let parallel = api
        .call(
            "batch",
            json!({"parallel": true, "commands": [
                {"publish": {"channel": "p1", "data": 1}},
                {"publish": {"channel": "p2", "data": 2}},
                {"info": {}},
            ]}),
        )
        .await?;
    let body = parallel.json()?;
    assert_eq!(body["replies"][0]["publish"]["offset"], 1);
    assert_eq!(body["replies"][1]["publish"]["offset"], 1);
    assert!(body["replies"][2]["info"]["nodes"].is_array());
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn many_api_calls_leave_no_connections_behind() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    for i in 0..50 {
        result(
            &api.call("publish", json!({"channel": "load", "data": i}))
                .await?,
        )?;
    }
    // HTTP connections are not client connections.
    assert_eq!(node.node.connection_count(), 0);
    node.stop().await;
    Ok(())
}

/// `/metrics` exposes the node's counters in Prometheus text format: gauges that follow the
/// connections, errors by code, bytes, and per-method command latency histograms.
#[tokio::test]
async fn metrics_expose_counters_errors_and_latency_histograms() -> anyhow::Result<()> {
    let (node, api) = start().await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    alice.subscribe(sub("metered")).await?;
    alice
        .publish("metered", json_bytes(json!({"n": 1})))
        .await?;
    // An unknown namespace gives error 102, which must show up by code.
    let _ = alice.subscribe(sub("nowhere:room")).await;

    let response = api.get("/metrics").await?;
    ensure!(response.status == 200, "{response:?}");
    let content_type = response
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = String::from_utf8(response.body)?;
    let sample = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix) && line[prefix.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    };
    assert_eq!(sample("starling_connections"), Some(1.0), "{text}");
    assert_eq!(sample("starling_subscriptions"), Some(1.0));
    assert_eq!(sample("starling_publications_in_total"), Some(1.0));
    assert_eq!(sample(r#"starling_errors_total{code="102"}"#), Some(1.0));
    assert!(sample("starling_bytes_in_total").unwrap_or(0.0) > 0.0);
    assert!(sample("starling_bytes_out_total").unwrap_or(0.0) > 0.0);
    assert_eq!(
        sample(r#"starling_command_duration_seconds_count{method="publish"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(r#"starling_command_duration_seconds_count{method="subscribe"}"#),
        Some(2.0)
    );
    alice.close().await;
    assert!(
        eventually(WAIT, || async {
            let Ok(response) = api.get("/metrics").await else {
                return false;
            };
            String::from_utf8_lossy(&response.body).contains("\nstarling_connections 0\n")
        })
        .await
    );
    node.stop().await;
    Ok(())
}
